//! Release throughput (issue D): a dataset of incompressible float64 chunks (1 MiB each) released
//! as a `.zarr.zip` package, side by side with a plain copy of the same bytes (every chunk object
//! of the repository read and written into one file, fsynced), in interleaved rounds; and the
//! package size against the repository's bytes for the tag.
//!
//! `cargo bench --bench release` uses 1 GiB (`ZF_RELEASE_MB` overrides, `ZF_RELEASE_ROUNDS`
//! the number of rounds, default 5; `ZF_BENCH_DIR` where the data go, default the temp dir);
//! under `cargo test` a 16 MiB smoke version runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use zarr_fuse::provenance::Provenance;
use zarr_fuse::release::{self, Format, ReleaseOptions};
use zarr_fuse::{Location, Repo};
use zarrs_storage::{AsyncWritableStorageTraits, StoreKey};

const CHUNK: usize = 131_072; // f64 elements: 1 MiB

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn du(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() { du(&e.path()) } else { m.len() };
        }
    }
    n
}

/// A repository holding one array of `mb` 1 MiB chunks of pseudo-random floats, tagged `v1`.
fn build(rt: &tokio::runtime::Runtime, dir: &Path, mb: usize) -> Location {
    let loc = Location::Local(dir.join("repo"));
    rt.block_on(async {
        let repo = Repo::init(&loc).await.unwrap();
        let tx = repo.transaction("main").await.unwrap();
        let store = tx.store();
        let root = r#"{"zarr_format":3,"node_type":"group","attributes":{"title":"Release benchmark","description":"Incompressible float64 chunks","license":"cc0-1.0"}}"#;
        store.set(&StoreKey::new("zarr.json").unwrap(), root.as_bytes().to_vec().into()).await.unwrap();
        let n = mb * CHUNK;
        let array = format!(
            r#"{{"zarr_format":3,"node_type":"array","shape":[{n}],"data_type":"float64","chunk_grid":{{"name":"regular","configuration":{{"chunk_shape":[{CHUNK}]}}}},"chunk_key_encoding":{{"name":"default","configuration":{{"separator":"/"}}}},"fill_value":"NaN","codecs":[{{"name":"bytes","configuration":{{"endian":"little"}}}}],"attributes":{{"units":"K"}},"dimension_names":["x"]}}"#
        );
        store.set(&StoreKey::new("data/zarr.json").unwrap(), array.into_bytes().into()).await.unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for c in 0..mb {
            let mut b = Vec::with_capacity(CHUNK * 8);
            for _ in 0..CHUNK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.extend_from_slice(&(f64::from(x as u32) / 7.0).to_le_bytes());
            }
            tx.write_chunk("/data", vec![c as u32], b.into()).await.unwrap();
        }
        tx.commit(Provenance::new("Bench <bench@example.org>", "update", "data")).await.unwrap();
        repo.create_tag("v1", "main", None).await.unwrap();
    });
    loc
}

/// The baseline: every chunk object read and appended to one file, then fsynced.
fn plain_copy(chunks: &[PathBuf], out: &Path) -> u64 {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).unwrap());
    let mut n = 0;
    for c in chunks {
        let b = std::fs::read(c).unwrap();
        f.write_all(&b).unwrap();
        n += b.len() as u64;
    }
    f.into_inner().unwrap().sync_all().unwrap();
    n
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let mb = if full { env("ZF_RELEASE_MB", 1024) } else { 16 };
    let rounds = if full { env("ZF_RELEASE_ROUNDS", 5) } else { 1 };
    let rt = rt();
    let dir = tempfile::tempdir_in(
        std::env::var("ZF_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir()),
    )
    .unwrap();
    let t = Instant::now();
    let loc = build(&rt, dir.path(), mb);
    println!(
        "release: built a {mb} MiB dataset in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let Location::Local(repo_dir) = &loc else {
        unreachable!()
    };
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(repo_dir.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunks.sort();
    let repo = rt.block_on(Repo::open(&loc)).unwrap();
    let (mut rel, mut copy) = (vec![], vec![]);
    let mut pkg_bytes = 0;
    let mut data = 0;
    for r in 0..rounds {
        let out = dir.path().join(format!("pkg{r}"));
        let t = Instant::now();
        let rep = rt
            .block_on(release::release(
                &repo,
                "v1",
                &ReleaseOptions {
                    out: out.clone(),
                    format: Format::Zip,
                    meta: None,
                },
                &|_, _| {},
            ))
            .unwrap();
        rel.push(t.elapsed().as_secs_f64());
        data = rep.zarr_bytes;
        pkg_bytes = du(&out);
        std::fs::remove_dir_all(&out).unwrap();
        let target = dir.path().join(format!("copy{r}"));
        let t = Instant::now();
        plain_copy(&chunks, &target);
        copy.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&target).unwrap();
    }
    let (r, c) = (median(rel), median(copy));
    let mbs = |s: f64| data as f64 / 1e6 / s;
    println!(
        "release of {:.0} MB ({} chunks), median of {rounds} interleaved rounds: release {r:.2} s = {:.0} MB/s | plain copy {c:.2} s = {:.0} MB/s | ratio release/copy speed = {:.2}x",
        data as f64 / 1e6,
        chunks.len(),
        mbs(r),
        mbs(c),
        c / r
    );
    // verify and import of one package, for the record
    let out = dir.path().join("pkg-final");
    let o = ReleaseOptions {
        out: out.clone(),
        format: Format::Zip,
        meta: None,
    };
    rt.block_on(release::release(&repo, "v1", &o, &|_, _| {}))
        .unwrap();
    let t = Instant::now();
    let v = release::verify(&out, &|_| {}).unwrap();
    let tv = t.elapsed().as_secs_f64();
    assert!(v.ok, "{:?}", v.problems);
    let t = Instant::now();
    let back = Location::Local(dir.path().join("imported"));
    let prov = Provenance::new("Bench <bench@example.org>", "import", "");
    let imp = rt
        .block_on(release::import::import(&back, &out, None, prov))
        .unwrap();
    let ti = t.elapsed().as_secs_f64();
    assert!(imp.digest_matches);
    println!(
        "verify {tv:.2} s = {:.0} MB/s (reads the archive twice: file sums, then entries) | import into a new local repository {ti:.2} s = {:.0} MB/s",
        mbs(tv),
        mbs(ti)
    );
    let repo_bytes = du(repo_dir);
    println!(
        "package {pkg_bytes} B vs repository {repo_bytes} B (the tag is all of it): {:.4}x",
        pkg_bytes as f64 / repo_bytes as f64
    );
}
