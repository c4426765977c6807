//! Commit latency of a small change (one 48×20 f64 chunk in each of 3 arrays) on local storage:
//! zarr-fuse (content addressing + provenance + durable storage) side by side with the same
//! write+commit done by icechunk directly, on icechunk's own local storage and on ours.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use zarr_fuse::storage::DurableLocalStorage;
use zarr_fuse::Location;

fn bench(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = AtomicU64::new(1);
    let next = || seed.fetch_add(1, Ordering::Relaxed) as f64;

    let zf = rt.block_on(async {
        let r = init(&Location::Local(dir.path().join("zf"))).await;
        write(&r, "main", &ARRAYS, 0.0, "setup").await;
        r
    });
    let ic_fs = rt.block_on(async {
        icechunk_repo(
            icechunk::new_local_filesystem_storage(&dir.path().join("ic"))
                .await
                .unwrap(),
        )
        .await
    });
    let ic_durable = rt.block_on(async {
        icechunk_repo(Arc::new(DurableLocalStorage::new(dir.path().join("icd")))).await
    });

    let mut g = c.benchmark_group("commit_small_change");
    g.sample_size(30);
    g.bench_function("zarr-fuse", |b| {
        b.to_async(&rt).iter(|| {
            let s = next();
            let zf = &zf;
            async move { write(zf, "main", &ARRAYS, s, "bench").await }
        })
    });
    g.bench_function("icechunk-direct/icechunk-local-fs", |b| {
        b.to_async(&rt).iter(|| {
            let s = next();
            let repo = &ic_fs;
            async move { icechunk_commit(repo, s).await }
        })
    });
    g.bench_function("icechunk-direct/durable-local-fs", |b| {
        b.to_async(&rt).iter(|| {
            let s = next();
            let repo = &ic_durable;
            async move { icechunk_commit(repo, s).await }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
