"""Open a zarr-fuse release package with zarr-python 3 + xarray only (icechunk is blocked) and
compare every array with what zarr-fuse read at the tag.

usage: read_release.py EXPECTED.json
EXPECTED: {"zarr": path of the .zarr.zip, "arrays": {name: {"dims", "shape", "values": [...] (null = NA),
           "units": str|null, "description": str|null}}}
Prints one JSON line with what was checked; exits 1 on the first mismatch.
"""
import json
import math
import sys

sys.modules["icechunk"] = None  # the package must open without icechunk

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
import zarr  # noqa: E402


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def same(got, want, fill):
    if want is None:
        if isinstance(got, (float, np.floating)) and math.isnan(got):
            return True
        return got == fill or (isinstance(fill, float) and math.isnan(fill) and got != got)
    if isinstance(want, str):
        return str(got) == want
    if isinstance(want, float):
        return math.isclose(float(got), want, rel_tol=0, abs_tol=0) or float(got) == want
    return int(got) == want


def main():
    exp = json.load(open(sys.argv[1]))
    store = zarr.storage.ZipStore(exp["zarr"], mode="r")
    root = zarr.open_group(store, mode="r", zarr_format=3)
    cells = 0
    for name, want in exp["arrays"].items():
        if name not in root:
            fail(f"array {name} missing; have {sorted(root.array_keys())}")
        a = root[name]
        if list(a.shape) != want["shape"]:
            fail(f"{name}: shape {a.shape} != {want['shape']}")
        flat = np.asarray(a[...]).reshape(-1)
        fill = a.fill_value
        for i, (g, w) in enumerate(zip(flat, want["values"])):
            if not same(g, w, fill):
                fail(f"{name}[{i}]: {g!r} != {w!r}")
            cells += 1
        attrs = dict(a.attrs)
        for key in ("units", "description"):
            if want.get(key) is not None and attrs.get(key) != want[key]:
                fail(f"{name}: attribute {key} {attrs.get(key)!r} != {want[key]!r}")
    ds = xr.open_zarr(store, consolidated=False)
    for name, want in exp["arrays"].items():
        if name not in ds.variables:
            fail(f"xarray: {name} missing")
        if list(ds[name].dims) != want["dims"]:
            fail(f"xarray: {name} dims {ds[name].dims} != {want['dims']}")
    t = ds["time"].values
    if not np.issubdtype(t.dtype, np.datetime64):
        fail(f"xarray: time decodes to {t.dtype}, not datetime64")
    print(json.dumps({"ok": True, "arrays": len(exp["arrays"]), "cells": cells,
                      "data_vars": sorted(ds.data_vars), "zarr": zarr.__version__,
                      "icechunk_loaded": sys.modules.get("icechunk") is not None}))


main()
