#!/usr/bin/env bash
# Run the benchmarks side by side in one run and print the ratios the issues ask for.
#   commit: median latency of a small commit, zarr-fuse vs icechunk directly (criterion)
#   history: log/diff/revert growth from 1 000 to 10 000 commits, dedup bytes
#   release: a 1 GiB tag released as a Zenodo package vs a plain copy of the same bytes
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench commit -- --noplot "$@"
med() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['median']['point_estimate'])" \
  "target/criterion/commit_small_change/$1/new/estimates.json"; }
zf=$(med zarr-fuse); ic=$(med icechunk-direct_icechunk-local-fs); icd=$(med icechunk-direct_durable-local-fs)
python3 - "$zf" "$ic" "$icd" <<'PY'
import sys
zf, ic, icd = map(float, sys.argv[1:])
print(f"commit of a small change (median): zarr-fuse {zf/1e6:.2f} ms | icechunk on its local fs {ic/1e6:.2f} ms "
      f"| icechunk on our durable fs {icd/1e6:.2f} ms")
print(f"ratio zarr-fuse / icechunk (its fs)     = {zf/ic:.2f}x")
print(f"ratio zarr-fuse / icechunk (durable fs) = {zf/icd:.2f}x  (our layer's overhead without the fsync cost)")
PY
cargo bench --bench history
cargo bench --bench release
