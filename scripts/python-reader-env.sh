#!/usr/bin/env bash
# Create .venv-ic with the reference reader (icechunk-python 2.3, the newest zarr-python and xarray,
# and datacite for the release metadata), which needs Python >= 3.12.
# Prints the interpreter path on success; prints nothing and exits 0 when no Python >= 3.12 exists.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$here/.venv-ic"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import icechunk, xarray, zarr, datacite' 2>/dev/null; then
  echo "$venv/bin/python"; exit 0
fi
py=""
for cand in python3.13 python3.12 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    py="$(command -v "$cand")"; break
  fi
done
if [ -z "$py" ] && command -v pyenv >/dev/null; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' || true); do
    py="$(PYENV_VERSION=$v pyenv which python3 2>/dev/null || true)"; [ -n "$py" ] && break
  done
fi
if [ -z "$py" ] && [ -x "$HOME/.pyenv/versions/3.12.1/bin/python3" ]; then py="$HOME/.pyenv/versions/3.12.1/bin/python3"; fi
[ -n "$py" ] || exit 0
"$py" -m venv "$venv"
# the newest zarr-python and xarray (not pinned): the reader users have; datacite validates
# release metadata against the DataCite 4.5 JSON schema
"$venv/bin/pip" install -q --upgrade 'icechunk==2.3.*' zarr xarray numpy datacite >&2
echo "$venv/bin/python"
