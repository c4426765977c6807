#!/usr/bin/env python3
"""Forecast re-fetch through the CLI, side by side with xarray + icechunk-python (issue E measure).

usage: scripts/bench-forecast-cli.py [--bin PATH]... [--updates 30] [--python-baseline]
Each --bin is a zarr-fuse binary (e.g. the previous and the new build); they are alternated update
by update on their own repositories, so both see the same machine load. The schema sets no
chunk_size (the usual case). Every update is one process (start included): 48 hourly steps ×
20 sites × 3 variables, shifted by one hour each time (47 steps overlap the stored ones).
The baseline, with --python-baseline (needs the .venv-ic reader environment), does what a user of
xarray + icechunk-python does in-process: open the branch, combine_first with the new forecast,
rewrite the node, commit.
Prints the median (and p90) per update and the ratios.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SCHEMA = """\
VARS:
  temperature: {coords: [time, site], unit: K, source_unit: degC}
  humidity: {coords: [time, site], unit: '%'}
  pressure: {coords: [time, site], unit: hPa}
COORDS:
  time: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: null}}
  site: {type: 'str[16]', sorted: false}
"""
SITES = [f"site{i:02d}" for i in range(20)]
T0 = 1_764_547_200  # 2025-12-01T00:00Z


def forecast_csv(path, k):
    lines = ["time,site,temperature,humidity,pressure"]
    for h in range(48):
        t = T0 + (k + h) * 3600
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        for j, s in enumerate(SITES):
            lines.append(f"{stamp},{s},{(k + h + j) % 30 - 5}.5,{50 + (h + j) % 40},{1000 + (h * j) % 30}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


PHASES = []


def run(args, env):
    t = time.perf_counter()
    out = subprocess.run(args, check=True, env=dict(env, ZF_TIMINGS="1"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    phases = {}
    for line in out.stderr.splitlines():
        if line.startswith("timings_ms:"):
            words = line.split()[1:]
            phases.update(zip(words[::2], map(float, words[1::2])))
    if "convert" in phases:
        PHASES.append((args[0], phases, dt))
    return dt


def stats(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[int(0.9 * (len(xs) - 1))]


def python_baseline(py, work, files):
    code = r'''
import sys, time, json
import numpy as np, pandas as pd, xarray as xr, icechunk
repo = icechunk.Repository.create(icechunk.local_filesystem_storage(sys.argv[1]))
times = []
for i, f in enumerate(sys.argv[2:]):
    t = time.perf_counter()
    df = pd.read_csv(f)
    df["time"] = pd.to_datetime(df["time"], utc=True).dt.tz_localize(None)
    df["temperature"] = df["temperature"] + 273.15
    new = df.set_index(["time", "site"]).to_xarray()
    s = repo.writable_session("main")
    if i == 0:
        ds = new
    else:
        old = xr.open_zarr(s.store, consolidated=False).load()
        ds = new.combine_first(old)
    ds.to_zarr(s.store, mode="w", consolidated=False)
    s.commit(f"forecast {i}")
    times.append(time.perf_counter() - t)
print(json.dumps(times))
'''
    out = subprocess.run([py, "-c", code, os.path.join(work, "xr-repo")] + files,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the xarray baseline failed: {out.stderr[-2000:]}")
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", default=[])
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--python-baseline", action="store_true")
    a = ap.parse_args()
    bins = a.bin or ["target/release/zarr-fuse"]
    work = tempfile.mkdtemp(prefix="zf-forecast-")
    schema = os.path.join(work, "schema.yaml")
    with open(schema, "w") as f:
        f.write(SCHEMA)
    files = []
    for k in range(a.updates + 1):
        p = os.path.join(work, f"f{k:03d}.csv")
        forecast_csv(p, k)
        files.append(p)
    env = dict(os.environ, ZF_AUTHOR="Bench <bench@example.org>")
    repos = []
    for i, b in enumerate(bins):
        r = os.path.join(work, f"repo{i}")
        run([b, "init", r, "--schema", schema], env)
        run([b, "update", r, files[0]], env)  # first load, not timed
        repos.append(r)
    times = [[] for _ in bins]
    for f in files[1:]:
        for i, b in enumerate(bins):
            times[i].append(run([b, "update", repos[i], f], env))
    print(f"forecast re-fetch through the CLI, {a.updates} updates of 48 h x 20 sites x 3 vars, "
          "schema without chunk_size, process start included")
    meds = []
    for b, ts in zip(bins, times):
        m, p90 = stats(ts)
        meds.append(m)
        print(f"  {b}: median {m * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms per update; "
              f"{682 / (m * 1e3):.1f}x less than zarr-fuse's 682 ms")
    for b in bins:
        rows = [(p, dt) for (x, p, dt) in PHASES if x == b][1:]  # the untimed first load left out
        if rows:
            keys = list(rows[0][0].keys())
            med = {k: statistics.median(p[k] for p, _ in rows) for k in keys}
            wall = statistics.median(dt for _, dt in rows) * 1e3
            inside = med.get("total", 0.0)
            phases = med["start"] + med["open"] + med["convert"] + med["read+plan"] + med["write"] + med["commit"]
            print(f"  {b} breakdown (median ms of {wall:.2f}): exec and exit outside main "
                  f"{max(wall - inside, 0):.2f}; in main {inside:.2f}: runtime+arguments+author "
                  f"{med['start']:.2f}, repository open {med['open']:.2f}, convert {med['convert']:.2f}, "
                  f"read+plan {med['read+plan']:.2f}, write {med['write']:.2f}, commit {med['commit']:.2f}, "
                  f"other (schema load, output, shutdown) {max(inside - phases, 0):.2f}")
    if len(meds) > 1:
        print(f"  ratio first/last binary: {meds[0] / meds[-1]:.2f}x")
    if a.python_baseline:
        py = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv-ic", "bin", "python")
        xs = python_baseline(py, work, files)[1:]
        m, p90 = stats(xs)
        print(f"  xarray + icechunk-python in-process (combine_first + rewrite + commit): median "
              f"{m * 1e3:.1f} ms, p90 {p90 * 1e3:.1f} ms; ours is {m / meds[-1]:.1f}x faster")


if __name__ == "__main__":
    sys.exit(main())
