"""Open a zarr-fuse repository with icechunk-python + the newest zarr-python + xarray and print
every variable and coordinate of a node at the given refs, as plain JSON values.

usage: read_types.py REPO_DIR NODE REF_JSON...   (REF_JSON: {"branch"|"tag"|"snapshot_id": ...})
Prints one JSON object: {"versions": {...}, "refs": [{name: {"dtype", "dims", "values"}}]}.
NaN, NaT and masked cells are null; datetimes are ISO text (seconds); strings as they are.
"""
import json
import sys

import icechunk
import numpy as np
import xarray as xr
import zarr


def plain(a):
    out = []
    for x in np.asarray(a).ravel().tolist():
        if isinstance(x, float) and x != x:
            out.append(None)
        else:
            out.append(x)
    return out


def column(da):
    v = da.values
    if np.issubdtype(v.dtype, np.datetime64):
        vals = [None if np.isnat(t) else np.datetime_as_string(t, unit="s") for t in v.ravel()]
    else:
        vals = plain(v)
    return {"dtype": str(v.dtype), "dims": list(da.dims), "values": vals}


def main():
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(sys.argv[1]))
    node = sys.argv[2]
    refs = []
    for spec in sys.argv[3:]:
        kw = json.loads(spec)
        ds = xr.open_zarr(repo.readonly_session(**kw).store, group=node or None, consolidated=False)
        refs.append({name: column(ds[name]) for name in list(ds.variables)})
    print(json.dumps({"versions": {"zarr": zarr.__version__, "xarray": xr.__version__,
                                   "icechunk": icechunk.__version__}, "refs": refs}))


main()
