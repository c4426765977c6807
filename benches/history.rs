//! Measures that are not latencies of one call: history-length scaling of `log`, `diff` and
//! `revert` (a branch of N vs 10×N commits), and dedup (chunk bytes added by re-committing the
//! same data and a reverted commit's data).
//!
//! `cargo bench --bench history` runs N = 1 000 and 10 000 on local storage (ZF_BENCH_BACKEND=memory
//! to use memory; ZF_BENCH_ONLY=commit for the commit latency and dedup only; ZF_BENCH_ONLY=blame
//! for blame of one cell on a history of N forecast updates; with ZF_BENCH_KEEP=DIR on local
//! storage the histories are built in DIR once and reused by later runs); under `cargo test` it
//! runs a smoke version (N = 20, 200).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use zarr_fuse::repo::Strategy;
use zarr_fuse::Location;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    reps: usize,
    mut f: impl FnMut() -> F,
) -> Duration {
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                rt.block_on(f());
                t.elapsed()
            })
            .collect(),
    )
}

struct Row {
    commits: usize,
    build: Duration,
    log: Duration,
    diff: Duration,
    revert: Duration,
    commit: Duration,
    ic_commit: Duration,
}

fn history(rt: &tokio::runtime::Runtime, loc: Location, n: usize) -> Row {
    let t = Instant::now();
    let repo = rt.block_on(async {
        let repo = init(&loc).await;
        // n commits, each changing one chunk of one of 4 arrays
        for i in 0..n {
            let name = ["a", "b", "c", "d"][i % 4];
            write(&repo, "main", &[name], i as f64, &format!("c{i}")).await;
        }
        repo
    });
    let build = t.elapsed();
    let log = time(rt, 5, || async {
        assert!(repo.log("main", None).await.unwrap().len() > n)
    });
    let ids: Vec<String> = rt
        .block_on(repo.log("main", Some(10)))
        .unwrap()
        .into_iter()
        .map(|c| c.id.to_string())
        .collect();
    let diff = time(rt, 5, || async {
        assert!(!repo.diff(&ids[1], &ids[0]).await.unwrap().is_empty())
    });
    // revert the 4th-newest commit (the 3 later ones touch the 3 other arrays), then undo it
    // (the undo is not timed)
    let target = ids[3].clone();
    let revert = median(
        (0..5)
            .map(|_| {
                rt.block_on(async {
                    let tip = repo.branch_tip("main").await.unwrap().to_string();
                    let t = Instant::now();
                    repo.revert_by_chunks(&target, "main", Strategy::Fail, prov(""))
                        .await
                        .unwrap();
                    let took = t.elapsed();
                    repo.reset("main", &tip, false).await.unwrap();
                    took
                })
            })
            .collect(),
    );
    // the floor: a plain commit of a small change at this history length, ours and icechunk's
    // own on the same repository (every commit rewrites icechunk's `repo` object)
    let mut seed = n as f64;
    let commit = time(rt, 5, || {
        seed += 1.0;
        let s = seed;
        let repo = &repo;
        async move {
            write(repo, "main", &["a"], s, "plain").await;
        }
    });
    let ic = repo.icechunk().clone();
    let ic_commit = time(rt, 5, || {
        seed += 1.0;
        let s = seed;
        let ic = ic.clone();
        async move { icechunk_commit(&ic, s).await }
    });
    Row {
        commits: n,
        build,
        log,
        diff,
        revert,
        commit,
        ic_commit,
    }
}

/// Delete icechunk's backups of earlier `repo` objects (`overwritten/`): one per commit, each as
/// large as the snapshot list, so a 10 000-commit history keeps ~40 GB of them; blame never reads
/// them. Only for building the benchmark's history.
async fn drop_repo_backups(repo: &zarr_fuse::Repo) {
    use futures::StreamExt;
    let ic = repo.icechunk();
    let storage = ic.storage();
    let ctx = ic.storage_context();
    let Ok(listing) = storage.list_objects(&ctx, "overwritten").await else {
        return;
    };
    let ids: Vec<(String, u64)> = listing
        .filter_map(|r| async move { r.ok().map(|i| (i.id, i.size_bytes)) })
        .collect()
        .await;
    let _ = storage
        .delete_objects(&ctx, "overwritten", futures::stream::iter(ids).boxed())
        .await;
}

/// Blame of one cell on a history of `n` forecast updates (each 48 hours x 20 sites, shifting
/// by one hour): the cell's hour is written by 48 updates, the last of them `n / 2` commits
/// before the tip. Returns (time to build, median blame time).
fn blame_history(rt: &tokio::runtime::Runtime, loc: Location, n: usize) -> (Duration, Duration) {
    use zarr_fuse::ingest::Table;
    use zarr_fuse::update::{self, UpdateOptions};
    const SCHEMA: &str = "VARS:\n  temp: {coords: [time, site], type: float64}\nCOORDS:\n  time: {type: int64, chunk_size: 48}\n  site: {type: 'str[4]', sorted: false}\n";
    let t = Instant::now();
    // ZF_BENCH_KEEP: a local history built by an earlier run is reused (built once, blamed often)
    let done = match &loc {
        Location::Local(p) => Some(p.join("zarr-fuse-bench-complete")),
        _ => None,
    };
    if done.as_ref().is_some_and(|d| d.exists()) {
        let repo = rt
            .block_on(zarr_fuse::Repo::open(&loc))
            .expect("open kept history");
        return (Duration::ZERO, blame_time(rt, &repo, n));
    }
    let repo = rt.block_on(async {
        let repo = zarr_fuse::Repo::init(&loc).await.expect("init");
        update::init_dataset(&repo, SCHEMA, "blame.yaml", prov("init"))
            .await
            .expect("schema");
        for k in 0..n {
            let mut csv = String::from("time,site,temp\n");
            for h in k..k + 48 {
                for s in 0..20 {
                    csv.push_str(&format!("{h},s{s},{k}\n"));
                }
            }
            let table = Table::from_csv_bytes(csv.as_bytes(), "f.csv").expect("csv");
            update::update(
                &repo,
                "main",
                &[(String::new(), table)],
                prov(&format!("update {k}")),
                &UpdateOptions::default(),
            )
            .await
            .expect("update");
            if k % 250 == 249 {
                drop_repo_backups(&repo).await;
            }
        }
        repo
    });
    let build = t.elapsed();
    if let Some(done) = done {
        std::fs::write(done, b"").expect("mark the kept history complete");
    }
    (build, blame_time(rt, &repo, n))
}

/// Median time of blaming the cell last written `n / 2` commits before the tip.
fn blame_time(rt: &tokio::runtime::Runtime, repo: &zarr_fuse::Repo, n: usize) -> Duration {
    let hour = n / 2;
    let wheres = [
        zarr_fuse::audit::Where::parse(&format!("time={hour}")).expect("where"),
        zarr_fuse::audit::Where::parse("site=s7").expect("where"),
    ];
    time(rt, 5, || async {
        let got = zarr_fuse::audit::blame(repo, "", "temp", "main", &wheres)
            .await
            .expect("blame");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].message.as_deref(),
            Some(format!("update {hour}").as_str())
        );
    })
}

fn dedup(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (u64, u64) {
    let path = dir.join("dedup");
    rt.block_on(async {
        let repo = init(&Location::Local(path.clone())).await;
        write(&repo, "main", &["a", "b", "c"], 1.0, "v1").await;
        let bad = write(&repo, "main", &["a", "b", "c"], 2.0, "v2")
            .await
            .commit
            .unwrap();
        let before = dir_size(&path, "chunks");
        // same data as the tip again, in a new array too
        write(&repo, "main", &["a", "b", "c", "d"], 2.0, "same again").await;
        let same_again = dir_size(&path, "chunks") - before;
        repo.revert_by_chunks(&bad, "main", Strategy::Fail, prov(""))
            .await
            .unwrap();
        let before = dir_size(&path, "chunks");
        write(
            &repo,
            "main",
            &["a", "b", "c"],
            2.0,
            "re-commit reverted data",
        )
        .await;
        let reverted_again = dir_size(&path, "chunks") - before;
        (same_again, reverted_again)
    })
}

/// Commit latency measured interleaved (each repository gets the same number of commits, so
/// history growth affects all alike): zarr-fuse vs icechunk directly, on icechunk's local storage
/// and on our durable storage.
fn commit_interleaved(rt: &tokio::runtime::Runtime, dir: &std::path::Path, rounds: usize) {
    use std::sync::Arc;
    let zf = rt.block_on(async {
        let r = init(&Location::Local(dir.join("zf-i"))).await;
        write(&r, "main", &ARRAYS, 0.0, "setup").await;
        r
    });
    let ic = rt.block_on(async {
        icechunk_repo(
            icechunk::new_local_filesystem_storage(&dir.join("ic-i"))
                .await
                .unwrap(),
        )
        .await
    });
    let icd = rt.block_on(async {
        icechunk_repo(Arc::new(zarr_fuse::storage::DurableLocalStorage::new(
            dir.join("icd-i"),
        )))
        .await
    });
    let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
    for i in 0..rounds {
        let seed = i as f64 + 1.0;
        let t = Instant::now();
        rt.block_on(write(&zf, "main", &ARRAYS, seed, "bench"));
        a.push(t.elapsed());
        let t = Instant::now();
        rt.block_on(icechunk_commit(&ic, seed));
        b.push(t.elapsed());
        let t = Instant::now();
        rt.block_on(icechunk_commit(&icd, seed));
        c.push(t.elapsed());
    }
    let (a, b, c) = (median(a), median(b), median(c));
    println!("commit of a small change (3 arrays x one 48x20 f64 chunk), {rounds} interleaved rounds, medians:");
    println!("  zarr-fuse {a:.2?} | icechunk on its local fs {b:.2?} | icechunk on our durable fs {c:.2?}");
    println!(
        "  ratio zarr-fuse/icechunk(its fs) = {:.2}x, zarr-fuse/icechunk(durable fs) = {:.2}x",
        a.as_secs_f64() / b.as_secs_f64(),
        a.as_secs_f64() / c.as_secs_f64()
    );
}

/// Where the repository for a history of `n` commits lives.
fn location(memory: bool, dir: &std::path::Path, name: &str, n: usize) -> Location {
    if memory {
        Location::Memory(format!("{name}-{n}"))
    } else {
        Location::Local(dir.join(format!("{name}-{n}")))
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { [1_000, 10_000] } else { [20, 200] };
    let memory = std::env::var("ZF_BENCH_BACKEND").as_deref() == Ok("memory");
    let rt = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("ZF_BENCH_KEEP").map(std::path::PathBuf::from);
    if std::env::var("ZF_BENCH_ONLY").as_deref() == Ok("blame") || !full {
        let at = kept.as_deref().unwrap_or(dir.path());
        let times: Vec<(Duration, Duration)> = sizes
            .iter()
            .map(|&n| {
                let (build, blame) = blame_history(&rt, location(memory, at, "blame", n), n);
                println!("blame of one cell (last written n/2 commits ago) on {n} forecast updates: {blame:.2?} (history built in {build:.2?})");
                (build, blame)
            })
            .collect();
        println!(
            "growth {}→{} commits: blame {:.2}×",
            sizes[0],
            sizes[1],
            times[1].1.as_secs_f64() / times[0].1.as_secs_f64()
        );
        if full {
            return;
        }
    }
    if std::env::var("ZF_BENCH_ONLY").as_deref() == Ok("commit") {
        // only the side-by-side commit latency and dedup (minutes instead of ~25)
        commit_interleaved(&rt, dir.path(), if full { 300 } else { 10 });
        let (same, reverted) = dedup(&rt, dir.path());
        println!("dedup: chunk bytes added re-committing the same data: {same}; re-committing a reverted commit's data: {reverted}");
        return;
    }
    let rows: Vec<Row> = sizes
        .iter()
        .map(|&n| history(&rt, location(memory, dir.path(), "hist", n), n))
        .collect();
    println!(
        "backend: {}",
        if memory { "memory" } else { "local (durable)" }
    );
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "commits", "build", "log", "diff(1)", "revert(1)", "commit(1)", "icechunk(1)"
    );
    for r in &rows {
        println!(
            "{:>8} {:>12.2?} {:>12.2?} {:>12.2?} {:>12.2?} {:>12.2?} {:>14.2?}",
            r.commits, r.build, r.log, r.diff, r.revert, r.commit, r.ic_commit
        );
    }
    let ratio = |f: fn(&Row) -> Duration| f(&rows[1]).as_secs_f64() / f(&rows[0]).as_secs_f64();
    println!(
        "growth {}→{} commits: log {:.2}×, diff {:.2}×, revert {:.2}×, commit {:.2}×, icechunk's own commit {:.2}×",
        rows[0].commits,
        rows[1].commits,
        ratio(|r| r.log),
        ratio(|r| r.diff),
        ratio(|r| r.revert),
        ratio(|r| r.commit),
        ratio(|r| r.ic_commit)
    );
    commit_interleaved(&rt, dir.path(), if full { 300 } else { 10 });
    let (same, reverted) = dedup(&rt, dir.path());
    println!("dedup: chunk bytes added re-committing the same data: {same}; re-committing a reverted commit's data: {reverted}");
}
