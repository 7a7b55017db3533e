#!/usr/bin/env python3
"""Two builds of the filter side by side: Envoy's CPU per request, latency and RSS, A/B alternating.

  bench/ab.py --base OLD.wasm [--candidate NEW.wasm] [--rounds 5] [--seconds 4] [--sizes 1024,131072]

Each build runs in its own Envoy (the demo bootstrap, one worker) in front of the same fake
provider, beside a plain Envoy (the same bootstrap without the filter); wrk sends chat requests
(every prompt new) of each size to one, then the next, round after round. CPU per request is the
Envoy process's user+system time over the requests it served (steadier than latency on a shared
machine); p50 is wrk's; RSS is each Envoy's after the runs. The figures to read are the ratios.
"""
import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def start(procs, wasm, label, fake, wd):
    bench.WASM = wasm
    return bench.start_envoy(procs, label, fake, wd, 1)


def size_label(n):
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the build to compare against")
    ap.add_argument("--candidate", default=bench.WASM, help="default: this tree's release build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--sizes", default="1024", help="prompt sizes in bytes, comma-separated")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    procs = bench.Procs()
    try:
        with tempfile.TemporaryDirectory() as wd:
            fake = bench.start_fake(procs)
            bodies = {n: bench.content_file(wd, str(n), n) for n in sizes}
            envoys = {"plain": bench.start_envoy(procs, "plain", fake, wd, 1),
                      "base": start(procs, args.base, "base", fake, wd),
                      "candidate": start(procs, args.candidate, "candidate", fake, wd)}
            for e in envoys.values():
                for n in sizes:
                    bench.wrk(e, bodies[n], 1, "1s")
            cpu = {(k, n): [] for k in envoys for n in sizes}
            p50 = {(k, n): [] for k in envoys for n in sizes}
            for _ in range(args.rounds):
                for n in sizes:
                    for k, e in envoys.items():
                        r = bench.wrk(e, bodies[n], 1, f"{args.seconds}s")
                        cpu[k, n].append(r["cpu"])
                        p50[k, n].append(r["p50"])
            med = lambda d, k, n: statistics.median(d[k, n])  # noqa: E731
            print(f"rounds: {args.rounds} x {args.seconds}s per build and size, chat, c=1, 1 worker;"
                  " added = the build's figure minus plain Envoy's")
            print("| figure | plain | base | candidate | base added | candidate added | candidate/base (added) |")
            print("|---|---|---|---|---|---|---|")
            for n in sizes:
                for name, d, unit in (("Envoy CPU per request", cpu, "µs"), ("p50 latency", p50, "µs")):
                    p, b, c = (med(d, k, n) for k in ("plain", "base", "candidate"))
                    ratio = (c - p) / (b - p) if b != p else float("nan")
                    print(f"| {name}, {size_label(n)} | {p:.0f} {unit} | {b:.0f} {unit} | {c:.0f} {unit} "
                          f"| {b - p:.0f} {unit} | {c - p:.0f} {unit} | {ratio:.2f}× |")
            rss = {k: bench.rss_mb(e["proc"].pid) for k, e in envoys.items()}
            print(f"| Envoy RSS after the runs | {rss['plain']:.0f} MB | {rss['base']:.0f} MB "
                  f"| {rss['candidate']:.0f} MB | {rss['base'] - rss['plain']:+.0f} MB "
                  f"| {rss['candidate'] - rss['plain']:+.0f} MB | |")
            for n in sizes:
                print(f"per-round CPU/request at {size_label(n)} (µs): "
                      + " | ".join(f"{k} " + " ".join(f"{x:.0f}" for x in cpu[k, n]) for k in envoys))
    finally:
        procs.close()


if __name__ == "__main__":
    main()
