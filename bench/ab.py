#!/usr/bin/env python3
"""Two builds of the filter side by side: Envoy's CPU per request and latency, A/B alternating.

  bench/ab.py --base OLD.wasm [--candidate NEW.wasm] [--rounds 5] [--seconds 4]

Each build runs in its own Envoy (the demo bootstrap, one worker) in front of the same fake
provider; wrk sends 1 KB chat requests (every prompt new) to one, then the other, round after
round. CPU per request is the Envoy process's user+system time over the requests it served
(steadier than latency on a shared machine); p50 is wrk's. The figure to read is the ratio.
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the build to compare against")
    ap.add_argument("--candidate", default=bench.WASM, help="default: this tree's release build")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    procs = bench.Procs()
    try:
        with tempfile.TemporaryDirectory() as wd:
            fake = bench.start_fake(procs)
            body = os.path.join(wd, "content-1KB.txt")
            with open(body, "w", encoding="utf-8") as f:
                f.write(bench.json.dumps(bench.prompt(1 << 10), ensure_ascii=False)[1:-1])
            envoys = {"base": start(procs, args.base, "base", fake, wd),
                      "candidate": start(procs, args.candidate, "candidate", fake, wd)}
            for e in envoys.values():
                bench.wrk(e, body, 1, "1s")
            cpu = {k: [] for k in envoys}
            p50 = {k: [] for k in envoys}
            for _ in range(args.rounds):
                for k, e in envoys.items():
                    r = bench.wrk(e, body, 1, f"{args.seconds}s")
                    cpu[k].append(r["cpu"])
                    p50[k].append(r["p50"])
            b, c = (statistics.median(cpu[k]) for k in ("base", "candidate"))
            bl, cl = (statistics.median(p50[k]) for k in ("base", "candidate"))
            print(f"rounds: {args.rounds} x {args.seconds}s, 1 KB chat, c=1, 1 worker")
            print("| figure | base | candidate | ratio |")
            print("|---|---|---|---|")
            print(f"| Envoy CPU per request | {b:.1f} µs | {c:.1f} µs | {c / b:.3f}× |")
            print(f"| p50 latency | {bl:.0f} µs | {cl:.0f} µs | {cl / bl:.3f}× |")
            print("per-round CPU/request (µs): base " + " ".join(f"{x:.1f}" for x in cpu["base"])
                  + " | candidate " + " ".join(f"{x:.1f}" for x in cpu["candidate"]))
    finally:
        procs.close()


if __name__ == "__main__":
    main()
