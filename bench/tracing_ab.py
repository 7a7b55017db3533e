"""Tracing on against off, side by side in one run: three Envoys (one worker each) with the
shipped configuration, the second with `tracing` sampling nothing (the context is still made,
sent on and logged), the third with every request sampled (spans posted to the stub collector),
the same 1 KB chat request in turn on each, `--rounds` rounds of `--seconds`.
Prints the medians of p50, p99 and Envoy's CPU per request. The full table is `make bench`
(its "tracing on" rows); this is the focused measurement quoted in the README.

    .venv/bin/python bench/tracing_ab.py --rounds 8 --seconds 4
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=4)
    args = ap.parse_args()
    procs = bench.Procs()
    try:
        with tempfile.TemporaryDirectory() as wd:
            fake = bench.start_fake(procs)
            sink = bench.start_collector(procs)
            body = bench.content_file(wd, "1KB", 1 << 10)
            envoys = {v: bench.start_envoy(procs, v, fake, wd, 1, sink_port=sink) for v in ("filter", "tracing-unsampled", "tracing")}
            for e in envoys.values():
                bench.wrk(e, body, 1, "2s")
            runs = {v: [] for v in envoys}
            for _ in range(args.rounds):
                for v, e in envoys.items():
                    runs[v].append(bench.wrk(e, body, 1, f"{args.seconds}s"))
            spans = bench.gauge(envoys["tracing"], "llm_gateway_trace_spans_sent_total") or 0
            if not spans:
                sys.exit("the collector accepted no spans")
            print(f"{args.rounds} rounds of {args.seconds}s, 1 KB chat, c=1, one worker; {spans} spans accepted")
            print("| | tracing off | on, none sampled | Δ | on, all sampled | Δ |\n|---|---|---|---|---|---|")
            for stat in ("p50", "p99", "cpu"):
                a, u, b = (statistics.median(r[stat] for r in runs[v])
                           for v in ("filter", "tracing-unsampled", "tracing"))
                name = "Envoy CPU per request" if stat == "cpu" else stat
                print(f"| {name} | {a:.0f} µs | {u:.0f} µs | {u - a:+.0f} µs ({u / a:.2f}×) "
                      f"| {b:.0f} µs | {b - a:+.0f} µs ({b / a:.2f}×) |")
    finally:
        procs.close()


if __name__ == "__main__":
    main()
