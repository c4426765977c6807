//! Cross-reader test: icechunk-python 2.3 + xarray open what we wrote (branch, tag, old commit,
//! commit metadata), on local storage and on S3.
//!
//! Needs the reader environment from `scripts/python-reader-env.sh` (Python ≥ 3.12); skipped with a
//! message where it is absent. The same readback is checked in Rust by `engine.rs`
//! (`branches_tags_and_time_travel`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::json;
use zarr_fuse::{Location, Repo};

/// The reader, or `None` after saying why the test is skipped and what covers it in Rust.
fn reader_or_skip(rust_twin: &str) -> Option<PathBuf> {
    let py = python();
    if py.is_none() {
        eprintln!("SKIPPED: no Python >= 3.12 reader environment (run scripts/python-reader-env.sh; needs Python 3.12+); {rust_twin}");
    }
    py
}

fn stats(seed: f64) -> serde_json::Value {
    let v = values(seed);
    json!([v.iter().sum::<f64>(), v.len()])
}

fn check(location: Location, storage: serde_json::Value) {
    let Some(py) = reader_or_skip("engine.rs checks the same readback in Rust") else {
        return;
    };
    let rt = rt();
    let expected = rt.block_on(async {
        let repo = init(&location).await;
        let c1 = write(&repo, "main", &["a"], 1.0, "first").await.commit.unwrap();
        repo.create_tag("v1", &c1, Some("release 1")).await.unwrap();
        repo.create_branch("dev", &c1).await.unwrap();
        write(&repo, "dev", &["a"], 3.0, "dev edit").await;
        write(&repo, "main", &["a", "b"], 2.0, "second").await;
        let repo = Repo::open(&location).await.unwrap();
        let log: Vec<_> = repo
            .log("main", None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| json!({"id": c.id, "author": c.author, "message": c.message, "content_digest": c.content_digest}))
            .collect();
        json!({
            "storage": storage,
            "refs": [
                {"branch": "main", "arrays": {"a": stats(2.0), "b": stats(2.0)}},
                {"tag": "v1", "arrays": {"a": stats(1.0), "b": null}},
                {"snapshot_id": c1, "arrays": {"a": stats(1.0), "b": null}},
                {"branch": "dev", "arrays": {"a": stats(3.0), "b": null}},
            ],
            "log": log,
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("expected.json");
    std::fs::write(&exp, expected.to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_repo.py");
    let out = Command::new(py)
        .arg(script)
        .arg(&exp)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python reader failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(res["ok"], true);
    assert_eq!(res["arrays_checked"], 5);
    assert_eq!(res["branches"], json!(["dev", "main"]));
    assert_eq!(res["tags"], json!(["v1"]));
    eprintln!("python reader: {res}");
}

#[test]
fn python_reads_local_repository() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py-local");
    check(
        Location::Local(path.clone()),
        json!({"kind": "local", "path": path}),
    );
}

#[test]
fn python_reads_s3_repository() {
    let dir = tempfile::tempdir().unwrap();
    let Some(Location::S3 { bucket, prefix }) = fresh_location("s3", dir.path(), "py") else {
        eprintln!("skipped: ZF_TEST_S3_BUCKET not set (.ci/run starts a local S3 server)");
        return;
    };
    let endpoint = std::env::var("ZF_S3_ENDPOINT_URL").unwrap_or_default();
    let loc = Location::S3 {
        bucket: bucket.clone(),
        prefix: prefix.clone(),
    };
    check(
        loc,
        json!({"kind": "s3", "bucket": bucket, "prefix": prefix, "endpoint": endpoint}),
    );
}

#[test]
fn python_opens_the_demo_dataset_with_cf_decoding() {
    let Some(py) = reader_or_skip("engine.rs checks the same readback in Rust") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .arg("demo")
        .arg(&d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!(
        r#"
import icechunk, xarray as xr, numpy as np, json
repo = icechunk.Repository.open(icechunk.local_filesystem_storage({path:?}))
ds = xr.open_zarr(repo.readonly_session(tag="v1.0").store, consolidated=False)
t = ds.temperature
print(json.dumps({{
  "time_dtype": str(ds.time.dtype), "first_time": str(ds.time.values[0])[:19],
  "dims": list(t.dims), "units": t.attrs.get("units"), "sites": int(ds.sizes["site"]),
  "times": int(ds.sizes["time"]), "lat": sorted(float(x) for x in ds.latitude.values),
  "t_min": float(np.nanmin(t.values)), "t_max": float(np.nanmax(t.values)),
  "title": ds.attrs.get("title")}}))
"#,
        path = d.display().to_string()
    );
    let out = Command::new(py).arg("-c").arg(script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(v["time_dtype"], "datetime64[ns]");
    assert_eq!(v["first_time"], "2026-01-01T00:00:00");
    assert_eq!(v["dims"], json!(["time", "site"]));
    assert_eq!(v["units"], "K");
    assert_eq!(v["sites"], 4);
    assert_eq!(
        v["times"], 53,
        "fetches 0..5 cover hours 0..52; the reverted fetch 6 added none"
    );
    assert_eq!(v["lat"], json!([49.19, 49.82, 50.08, 50.77]));
    // kelvin, and the reverted +273.15 glitch is gone
    assert!(
        v["t_min"].as_f64().unwrap() > 260.0 && v["t_max"].as_f64().unwrap() < 300.0,
        "{v}"
    );
    assert_eq!(v["title"], "Weather forecasts for CZ sites");
}

/// Expected arrays of the root node at `rev`, read through our API: dims, shape, C-order values
/// (null = NA), units and description.
fn expected_arrays(repo: &Repo, rev: &str) -> serde_json::Value {
    use zarr_fuse::update::Scalar;
    let rt = rt();
    rt.block_on(async {
        let id = repo.resolve(rev).await.unwrap().id;
        let node = zarr_fuse::update::read_node(repo, &id, "").await.unwrap();
        let schema = zarr_fuse::schema::load_str(zarr_fuse::demo::WEATHER_SCHEMA, "w").unwrap();
        let val = |s: &Scalar| match s {
            Scalar::F(f) if f.is_nan() => serde_json::Value::Null,
            Scalar::F(f) => json!(f),
            Scalar::I(i) => json!(i),
            Scalar::S(s) => json!(s),
            Scalar::Na => serde_json::Value::Null,
        };
        let mut arrays = serde_json::Map::new();
        for (name, vals) in &node.coords {
            let c = schema.root.coord(name).unwrap().to_json();
            arrays.insert(
                name.clone(),
                json!({"dims": [name], "shape": [vals.len()],
                "values": vals.iter().map(val).collect::<Vec<_>>(),
                "description": c.get("description")}),
            );
        }
        for (name, dims, shape, vals) in &node.vars {
            let v = schema.root.var(name).unwrap().to_json();
            let unit = v.get("unit").and_then(|u| u.as_str()).map(str::to_string);
            arrays.insert(
                name.clone(),
                json!({"dims": dims, "shape": shape,
                "values": vals.iter().map(val).collect::<Vec<_>>(),
                "units": unit, "description": v.get("description")}),
            );
        }
        serde_json::Value::Object(arrays)
    })
}

#[test]
fn python_opens_a_release_package_without_icechunk() {
    let Some(py) = reader_or_skip("tests/release.rs checks the same package byte for byte in Rust")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    rt().block_on(zarr_fuse::demo::run(&d)).unwrap();
    let pkg = dir.path().join("pkg");
    let out = Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args([
            "release",
            d.to_str().unwrap(),
            "v1.0",
            "--out",
            pkg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zip = std::fs::read_dir(&pkg)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".zarr.zip"))
        .unwrap();
    let repo = rt()
        .block_on(Repo::open(&Location::Local(d.clone())))
        .unwrap();
    let arrays = expected_arrays(&repo, "v1.0");
    let n = arrays.as_object().unwrap().len();
    let exp = dir.path().join("expected.json");
    std::fs::write(&exp, json!({"zarr": zip, "arrays": arrays}).to_string()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_release.py");
    let out = Command::new(&py).arg(script).arg(&exp).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["arrays"], n);
    assert_eq!(v["icechunk_loaded"], false);
    assert!(v["cells"].as_u64().unwrap() > 800, "{v}");
    // datacite.json validates against DataCite 4.5 as the `datacite` package ships it
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/validate_datacite.py");
    let out = Command::new(&py)
        .arg(script)
        .arg(pkg.join("datacite.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "datacite.json does not validate: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
