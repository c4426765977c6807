"""Open a repository written by zarr-fuse with icechunk-python + xarray and compare with expectations.

usage: read_repo.py EXPECTED.json
EXPECTED: {"storage": {"kind": "local", "path": ...} | {"kind": "s3", "bucket", "prefix", "endpoint"},
           "refs": [{"branch"|"tag"|"snapshot_id": ..., "arrays": {name: [sum, count_non_nan] | null}}],
           "log": [{"id", "author", "message", "content_digest"}]}
Prints one JSON line with what was checked; exits 1 on the first mismatch.
"""
import json
import math
import sys

import icechunk
import numpy as np
import xarray as xr


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def storage_of(spec):
    if spec["kind"] == "local":
        return icechunk.local_filesystem_storage(spec["path"])
    return icechunk.s3_storage(
        bucket=spec["bucket"], prefix=spec["prefix"], region="us-east-1", endpoint_url=spec["endpoint"],
        allow_http=True, force_path_style=True, access_key_id="test", secret_access_key="test")


def main():
    exp = json.load(open(sys.argv[1]))
    repo = icechunk.Repository.open(storage_of(exp["storage"]))
    checked = 0
    for ref in exp["refs"]:
        kw = {k: ref[k] for k in ("branch", "tag", "snapshot_id") if k in ref}
        session = repo.readonly_session(**kw)
        ds = xr.open_zarr(session.store, consolidated=False)
        for name, want in ref["arrays"].items():
            if want is None:
                if name in ds:
                    fail(f"{kw}: array {name} should not exist")
                continue
            if name not in ds:
                fail(f"{kw}: array {name} missing; have {list(ds.data_vars)}")
            v = ds[name].values
            if tuple(ds[name].dims) != ("time", "site"):
                fail(f"{kw}: {name} dims {ds[name].dims}")
            total, count = float(np.nansum(v)), int(np.count_nonzero(~np.isnan(v)))
            if not math.isclose(total, want[0], rel_tol=1e-12) or count != want[1]:
                fail(f"{kw}: {name} sum/count {total}/{count} != {want}")
            checked += 1
    log = list(repo.ancestry(branch="main"))
    if [s.id for s in log] != [c["id"] for c in exp["log"]]:
        fail(f"ancestry ids {[s.id for s in log]} != {[c['id'] for c in exp['log']]}")
    for snap, c in zip(log, exp["log"]):
        if snap.message != c["message"]:
            fail(f"message {snap.message!r} != {c['message']!r}")
        md = snap.metadata or {}
        if c["author"] is not None and md.get("author") != c["author"]:
            fail(f"{snap.id}: author {md.get('author')!r} != {c['author']!r}")
        if c["content_digest"] is not None and md.get("content_digest") != c["content_digest"]:
            fail(f"{snap.id}: content_digest differs")
    print(json.dumps({"ok": True, "arrays_checked": checked, "commits_checked": len(log),
                      "branches": sorted(repo.list_branches()), "tags": sorted(repo.list_tags())}))


main()
