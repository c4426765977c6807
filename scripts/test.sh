#!/usr/bin/env bash
# Run every test against real parts: local repositories on disk, a local S3 server (moto, started
# here on 127.0.0.1), separate processes killed with SIGKILL, and the Python reader
# (icechunk-python 2.3 + xarray) where Python >= 3.12 exists.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/s3-server.sh start)"
trap 'scripts/s3-server.sh stop' EXIT
if py="$(scripts/python-reader-env.sh)" && [ -n "$py" ]; then
  export ZF_TEST_PYTHON="$py"
else
  echo "note: no Python >= 3.12: the cross-reader tests will report SKIPPED" >&2
fi
rm -f target/tmp/serve-figures.txt
cargo test --all-targets "$@"
if [ -f target/tmp/serve-figures.txt ]; then
  echo "== figures of the service's tests (tests/serve.rs) =="
  cat target/tmp/serve-figures.txt
fi
