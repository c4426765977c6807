#!/usr/bin/env python3
"""Blame of one cell after N commits through the CLI, previous and new binary alternated (issue G).

usage: scripts/bench-blame-cli.py --bin PATH [--bin PATH]... [--commits 1000] [--runs 15]
One repository is built with the first binary: N hourly forecast updates (24 h x 4 sites, each
shifted by one hour), then `blame` of a cell written early in the history is run with each binary
in turn (every run one process, start included). Prints the median and spread per binary.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import time

SCHEMA = """\
VARS:
  temp: {coords: [time, site], unit: K}
COORDS:
  time: {unit: {tick: h, tz: null}, chunk_size: 256}
  site: {type: 'str[8]', sorted: false, chunk_size: 16}
"""
T0 = 1_764_547_200  # 2025-12-01T00:00Z


def stamp(h):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + h * 3600))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True)
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args()
    env = dict(os.environ, ZF_AUTHOR="Bench <bench@example.org>")
    with tempfile.TemporaryDirectory() as d:
        repo = os.path.join(d, "repo")
        schema = os.path.join(d, "s.yaml")
        open(schema, "w").write(SCHEMA)
        run = lambda b, *args: subprocess.run([b, *args], env=env, check=True, capture_output=True)
        run(a.bin[0], "init", repo, "--schema", schema)
        csv = os.path.join(d, "in.csv")
        for k in range(a.commits):
            with open(csv, "w") as f:
                f.write("time,site,temp\n")
                for h in range(24):
                    for s in range(4):
                        f.write(f"{stamp(k + h)},s{s},{270 + k * 0.01 + h:.2f}\n")
            run(a.bin[0], "update", repo, csv, "-m", f"u{k}")
        # a cell written by the 3rd update and by no later one
        where = ["--where", f"time={stamp(2)}", "--where", "site=s1"]
        times = {b: [] for b in a.bin}
        for _ in range(a.runs):
            for b in a.bin:
                t = time.perf_counter()
                run(b, "blame", repo, "--var", "temp", *where, "--json")
                times[b].append((time.perf_counter() - t) * 1e3)
        for b, ts in times.items():
            ts.sort()
            print(f"{b}: blame at {a.commits} commits: median {statistics.median(ts):.1f} ms "
                  f"(min {ts[0]:.1f}, max {ts[-1]:.1f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
