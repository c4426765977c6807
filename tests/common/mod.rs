//! Helpers shared by the integration tests: repositories on every backend, small arrays.
#![allow(dead_code)]

use std::sync::Arc;

use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::{CommitOutcome, Transaction};
use zarr_fuse::{Location, Repo};
use zarrs::array::{data_type, Array, ArrayBuilder};

pub const AUTHOR: &str = "Test Writer <test@example.org>";
pub const SHAPE: [u64; 2] = [48, 20];

/// A fresh repository location for `backend`: "local", "memory" or "s3" (needs ZF_TEST_S3_BUCKET).
pub fn fresh_location(backend: &str, dir: &std::path::Path, name: &str) -> Option<Location> {
    match backend {
        "local" => Some(Location::Local(dir.join(name))),
        "memory" => Some(Location::Memory(format!("{name}-{}", unique()))),
        "s3" => {
            let bucket = std::env::var("ZF_TEST_S3_BUCKET").ok()?;
            Some(Location::S3 {
                bucket,
                prefix: format!("t/{name}-{}", unique()),
            })
        }
        _ => None,
    }
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Backends to run a test on: local and memory always, S3 when the test server is configured.
pub fn backends() -> Vec<&'static str> {
    let mut b = vec!["local", "memory"];
    if std::env::var("ZF_TEST_S3_BUCKET").is_ok() {
        b.push("s3");
    } else {
        eprintln!("note: S3 backend skipped (ZF_TEST_S3_BUCKET not set; .ci/run starts a local S3 server)");
    }
    b
}

pub fn prov(message: &str) -> Provenance {
    Provenance::new(AUTHOR, "test", message)
}

pub async fn init(loc: &Location) -> Repo {
    let repo = Repo::init(loc).await.expect("init");
    let tx = repo.transaction("main").await.expect("tx");
    let store = tx.store();
    zarrs::group::GroupBuilder::new()
        .build(store.clone(), "/")
        .expect("group")
        .async_store_metadata()
        .await
        .expect("root");
    tx.commit(prov("root")).await.expect("commit root");
    repo
}

/// Create a 48×20 f64 array (one chunk) if it does not exist yet.
pub async fn ensure_array(tx: &Transaction, name: &str) -> Array<zarr_fuse::cas::CasStore> {
    let store = tx.store();
    let path = format!("/{name}");
    if let Ok(a) = Array::async_open(store.clone(), &path).await {
        return a;
    }
    let mut b = ArrayBuilder::new(
        SHAPE.to_vec(),
        SHAPE.to_vec(),
        data_type::float64(),
        f64::NAN,
    );
    b.dimension_names(Some(["time", "site"]));
    let a = b.build(store, &path).expect("build array");
    a.async_store_metadata().await.expect("array metadata");
    a
}

/// Values of a chunk derived from a seed.
pub fn values(seed: f64) -> Vec<f64> {
    (0..SHAPE[0] * SHAPE[1])
        .map(|i| seed + i as f64 * 0.5)
        .collect()
}

/// Write chunk [0,0] of each named array with `values(seed)` and commit.
pub async fn write(
    repo: &Repo,
    branch: &str,
    names: &[&str],
    seed: f64,
    msg: &str,
) -> CommitOutcome {
    let tx = repo.transaction(branch).await.expect("tx");
    for n in names {
        let a = ensure_array(&tx, n).await;
        a.async_store_chunk(&[0, 0], values(seed))
            .await
            .expect("store chunk");
    }
    tx.commit(prov(msg)).await.expect("commit")
}

/// Read chunk [0,0] of array `name` at REV (None when the array does not exist).
pub async fn read(repo: &Repo, rev: &str, name: &str) -> Option<Vec<f64>> {
    let id = repo.resolve(rev).await.expect("resolve").id;
    let store = repo.read_store(&id).await.expect("store");
    let a = Array::async_open(store, &format!("/{name}")).await.ok()?;
    Some(
        a.async_retrieve_chunk::<Vec<f64>>(&[0, 0])
            .await
            .expect("read chunk"),
    )
}

pub fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

pub fn dir_size(path: &std::path::Path, sub: &str) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path.join(sub)) {
        for e in rd.flatten() {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}

/// The three arrays of the small-commit measure.
pub const ARRAYS: [&str; 3] = ["a", "b", "c"];

/// A repository written by icechunk directly (the baseline of the commit measure).
pub async fn icechunk_repo(
    storage: Arc<dyn icechunk::Storage + Send + Sync>,
) -> icechunk::Repository {
    use zarrs_icechunk::AsyncIcechunkStore;
    let repo = icechunk::Repository::create(storage)
        .execute()
        .await
        .expect("create");
    let store = Arc::new(AsyncIcechunkStore::new(
        repo.writable_session("main").await.expect("session"),
    ));
    zarrs::group::GroupBuilder::new()
        .build(store.clone(), "/")
        .unwrap()
        .async_store_metadata()
        .await
        .unwrap();
    for n in ARRAYS {
        let mut b = ArrayBuilder::new(
            SHAPE.to_vec(),
            SHAPE.to_vec(),
            data_type::float64(),
            f64::NAN,
        );
        b.dimension_names(Some(["time", "site"]));
        b.build(store.clone(), &format!("/{n}"))
            .unwrap()
            .async_store_metadata()
            .await
            .unwrap();
    }
    store
        .session()
        .write()
        .await
        .commit("setup")
        .execute()
        .await
        .expect("commit");
    repo
}

/// The same write + commit as [`write`] of the three arrays, done by icechunk directly.
pub async fn icechunk_commit(repo: &icechunk::Repository, seed: f64) {
    use zarrs_icechunk::AsyncIcechunkStore;
    let store = Arc::new(AsyncIcechunkStore::new(
        repo.writable_session("main").await.expect("session"),
    ));
    for n in ARRAYS {
        let a = Array::async_open(store.clone(), &format!("/{n}"))
            .await
            .expect("open");
        a.async_store_chunk(&[0, 0], values(seed))
            .await
            .expect("chunk");
    }
    store
        .session()
        .write()
        .await
        .commit("bench")
        .execute()
        .await
        .expect("commit");
}

/// Coordinate `i` of a node read back, as integers (panics on other types: a test failure).
pub fn axis_i64(n: &zarr_fuse::update::NodeData, i: usize) -> Vec<i64> {
    n.coords[i]
        .1
        .iter()
        .map(|s| match s {
            zarr_fuse::update::Scalar::I(x) => *x,
            o => panic!("coordinate {} holds {o:?}", n.coords[i].0),
        })
        .collect()
}

/// Coordinate `i` of a node read back, as strings (panics on other types: a test failure).
pub fn axis_str(n: &zarr_fuse::update::NodeData, i: usize) -> Vec<String> {
    n.coords[i]
        .1
        .iter()
        .map(|s| match s {
            zarr_fuse::update::Scalar::S(x) => x.clone(),
            o => panic!("coordinate {} holds {o:?}", n.coords[i].0),
        })
        .collect()
}

/// The Python reader environment (icechunk-python 2.3, the newest zarr-python and xarray):
/// `ZF_TEST_PYTHON`, else `.venv-ic` from `scripts/python-reader-env.sh`; `None` when absent.
pub fn python() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("ZF_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ic/bin/python");
    let ok = p.exists()
        && std::process::Command::new(&p)
            .args(["-c", "import icechunk, xarray, zarr"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    ok.then_some(p)
}
