#!/usr/bin/env python3
"""Forecast updates pushed through `zarr-fuse serve` with ?wait=true (issue H measures).

usage: scripts/bench-serve.py [--bin target/release/zarr-fuse] [--uploads 200] [--clients 1]
Each upload is one yr.no-like forecast: 48 hourly steps x 20 sites x 3 variables, shifted by
one hour per upload (47 steps overlap the stored ones), pushed by `--clients` threads at once
to a fresh repository on local storage. Prints the median and p99 upload->commit latency (the
time from sending the request to the 200 that names the commit), commits per second, and the
server's resident memory at the end.
"""
import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

SCHEMA = """\
VARS:
  temperature: {coords: [time, site], unit: K, source_unit: degC}
  humidity: {coords: [time, site], unit: '%'}
  pressure: {coords: [time, site], unit: hPa}
COORDS:
  time: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: null}}
  site: {type: 'str[16]', sorted: false}
"""
T0 = 1_764_547_200


def forecast(k):
    lines = ["time,site,temperature,humidity,pressure"]
    for h in range(48):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + (k + h) * 3600))
        for j in range(20):
            lines.append(f"{stamp},site{j:02d},{5 + (k + h + j) % 7 * 0.5:.1f},{60 + j},{1000 + h % 9}")
    return ("\n".join(lines) + "\n").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/zarr-fuse")
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--clients", type=int, default=1)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, ZF_AUTHOR="Bench <bench@example.org>")
        open(f"{d}/s.yaml", "w").write(SCHEMA)
        subprocess.run([a.bin, "init", f"{d}/repo", "--schema", f"{d}/s.yaml"], env=env, check=True,
                       capture_output=True)
        open(f"{d}/serve.yaml", "w").write(
            "tokens: tokens.yaml\nqueue: ./queue\nrate_per_minute: 1000000\n"
            "endpoints:\n  - {name: yr, node: /, branch: main, format: csv}\n")
        tok = subprocess.run([a.bin, "token", "add", "--config", f"{d}/serve.yaml", "bench", "--email",
                              "b@example.org", "--role", "contributor:main"], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        srv = subprocess.Popen([a.bin, "serve", f"{d}/repo", "--config", f"{d}/serve.yaml", "--listen",
                                "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        addr = srv.stdout.readline().strip().removeprefix("listening on ")
        lat = []
        lock = threading.Lock()
        counter = iter(range(a.uploads))

        def client():
            while True:
                with lock:
                    k = next(counter, None)
                if k is None:
                    return
                body = forecast(k)
                req = urllib.request.Request(f"{addr}/api/v1/push/yr?wait=true", data=body, method="POST",
                                             headers={"Authorization": f"Bearer {tok}", "Content-Type": "text/csv"})
                t = time.perf_counter()
                with urllib.request.urlopen(req, timeout=120) as r:
                    r.read()
                    assert r.status == 200, r.status
                with lock:
                    lat.append((time.perf_counter() - t) * 1e3)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        rss = next(l for l in open(f"/proc/{srv.pid}/status") if l.startswith("VmRSS")).split()[1]
        srv.kill()
        lat.sort()
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"{a.uploads} forecast uploads (48 h x 20 sites x 3 vars) by {a.clients} client(s), ?wait=true: "
              f"median {statistics.median(lat):.1f} ms, p99 {p99:.1f} ms upload->commit; "
              f"{a.uploads / wall:.1f} commits/s; server RSS {int(rss) / 1024:.0f} MB")


if __name__ == "__main__":
    main()
