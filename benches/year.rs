//! A year of hourly forecasts (issue F): N updates of 48 h × 20 sites on local storage, each
//! made an hour after the one before (the library's provenance time: a test hook, not a CLI
//! option), squashing everything older than 7 days by day once a simulated day, then `gc`.
//! Prints commit latency at the start, at 1 000 and at the end, the repository's size by part
//! (chunks, snapshots + manifests, repo object, `overwritten/`), blame of a cell from the first
//! month, release + verify of a tag from month 6, and revert by cells of one contribution 10 and
//! 1 000 commits back (time, chunks rewritten / by reference).
//!
//! `cargo bench --bench year` (ZF_YEAR_UPDATES=8760 by default; ZF_YEAR_SQUASH_EVERY=24 updates
//! by default; ZF_BENCH_DIR for the repository); under `cargo test` a smoke version (72 updates).
//! Time chunks of 256 h: a commit's cost does not depend on how full a 1 MiB chunk is.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use zarr_fuse::history::{self, HistoryOptions};
use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::Period;
use zarr_fuse::update::{self, UpdateOptions};
use zarr_fuse::{Location, Repo};

const SCHEMA: &str = "\
ATTRS: {title: A year of forecasts, description: Hourly yr.no forecasts at 20 sites, license: cc-by-4.0}
VARS:
  temp: {coords: [time, site], unit: K}
COORDS:
  time: {unit: {tick: h, tz: null}, chunk_size: 256}
  site: {type: 'str[8]', sorted: false}
";
const SITES: usize = 20;
const HOURS: usize = 48;

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("time")
}

/// Forecast `i`: 48 hourly values from hour `i` at 20 sites (overlapping the previous one).
fn forecast(i: usize) -> zarr_fuse::ingest::Table {
    let mut csv = String::from("time,site,temp\n");
    for h in 0..HOURS {
        let t = start() + chrono::Duration::hours((i + h) as i64);
        for s in 0..SITES {
            let v = 270.0 + ((i * 7 + h * 3 + s) % 50) as f64 / 2.0;
            csv.push_str(&format!("{},S{s:02},{v}\n", t.format("%Y-%m-%dT%H:%M")));
        }
    }
    zarr_fuse::ingest::Table::from_csv_bytes(csv.as_bytes(), &format!("yr-{i}.csv")).expect("csv")
}

fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|d| d.flatten().map(|e| size(&e.path())).sum())
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let n: usize = if smoke {
        72
    } else {
        std::env::var("ZF_YEAR_UPDATES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8760)
    };
    let base = std::env::var("ZF_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let root = dir.path().join("year");
    let loc = Location::Local(root.clone());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let repo = rt.block_on(async {
        let repo = Repo::init(&loc).await.expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "year.yaml",
            Provenance::new("Bench <bench@example.org>", "init", "init"),
        )
        .await
        .expect("schema");
        repo
    });
    let keep_days = if smoke { 1 } else { 7 };
    // squash (then gc) once a simulated day (ZF_YEAR_SQUASH_EVERY=24, the default) or less often
    let squash_every: usize = std::env::var("ZF_YEAR_SQUASH_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut lat: Vec<Duration> = vec![];
    let mut ids: Vec<String> = vec![];
    let t0 = Instant::now();
    let mut squash_time = Duration::ZERO;
    for i in 0..n {
        let mut prov = Provenance::new(
            format!("Fetcher{} <f{}@example.org>", i % 3, i % 3),
            "update",
            format!("yr.no fetch {i}"),
        );
        let now = start() + chrono::Duration::hours(i as i64);
        prov.time = Some(now);
        let t = Instant::now();
        let out = rt
            .block_on(update::update(
                &repo,
                "main",
                &[(String::new(), forecast(i))],
                prov,
                &UpdateOptions::default(),
            ))
            .expect("update");
        lat.push(t.elapsed());
        ids.push(out.commit.map(|c| c.to_string()).unwrap_or_default());
        if i == n / 2 {
            rt.block_on(repo.create_tag("month-6", "main", Some("half a year")))
                .expect("tag");
        }
        if i % squash_every == squash_every - 1 {
            let t = Instant::now();
            let cutoff = now - chrono::Duration::days(keep_days);
            let prov = Provenance::new("Bench <bench@example.org>", "squash", "");
            rt.block_on(repo.squash("main", cutoff, Period::Day, false, prov))
                .expect("squash");
            rt.block_on(repo.collect_garbage(Utc::now(), false, false))
                .expect("gc");
            squash_time += t.elapsed();
        }
        if !smoke && i % 1000 == 999 {
            eprintln!("{} updates, {:.0} s", i + 1, t0.elapsed().as_secs_f64());
        }
    }
    let at = |k: usize| median(lat[k.min(n - 1).saturating_sub(50)..(k + 50).min(n)].to_vec());
    println!(
        "year: {n} updates of {HOURS} h × {SITES} sites in {:.0} s (squash + gc every {squash_every} updates: {:.0} s in all)",
        t0.elapsed().as_secs_f64(),
        squash_time.as_secs_f64()
    );
    println!(
        "commit latency (median of 100): start {:.1} ms | at 1000 {:.1} ms | end {:.1} ms | end/start {:.2}",
        at(50),
        at(1000),
        at(n - 50),
        at(n - 50) / at(50)
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "size: chunks {:.1} MiB | snapshots + manifests {:.1} MiB | repo object {:.3} MiB | overwritten/ {:.2} MiB | records {:.1} MiB",
        mib(size(&root.join("chunks"))),
        mib(size(&root.join("snapshots")) + size(&root.join("manifests"))),
        mib(size(&root.join("repo"))),
        mib(size(&root.join("overwritten"))),
        mib(size(&root.join("zarr-fuse")))
    );
    let log = rt.block_on(repo.log("main", None)).expect("log");
    println!("history: {} commits on main", log.len());
    // blame of a cell from the first month names its original contribution
    let t = Instant::now();
    let w = zarr_fuse::audit::Where::parse("time=2026-01-03T05:00").expect("where");
    let s = zarr_fuse::audit::Where::parse("site=S07").expect("where");
    let b = rt
        .block_on(zarr_fuse::audit::blame(&repo, "", "temp", "main", &[w, s]))
        .expect("blame");
    let who = b
        .first()
        .and_then(|r| r.message.clone())
        .unwrap_or_default();
    // the last forecast covering 2026-01-03T05:00 is the one made 47 h before it... or later
    let expect = format!("yr.no fetch {}", (2 * 24 + 5).min(n - 1));
    println!(
        "blame of (2026-01-03T05:00, S07): {who} ({:.1} ms; expected {expect})",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(who, expect, "blame names the original contribution");
    // release of the month-6 tag verifies
    let out = dir.path().join("release");
    let t = Instant::now();
    let opts = zarr_fuse::release::ReleaseOptions {
        out: out.clone(),
        format: zarr_fuse::release::Format::Zip,
        meta: None,
    };
    rt.block_on(zarr_fuse::release::release(
        &repo,
        "month-6",
        &opts,
        &|_, _| {},
    ))
    .expect("release");
    let v = zarr_fuse::release::verify(&out, &|_| {}).expect("verify");
    assert!(v.ok, "{:?}", v.problems);
    println!(
        "release + verify of month-6: ok ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    // revert by cells of one contribution N commits back
    for back in [10usize, 1000] {
        if back >= n {
            continue;
        }
        let id = &ids[n - 1 - back];
        let t = Instant::now();
        let r = rt.block_on(history::revert(
            &repo,
            id,
            "main",
            &HistoryOptions {
                resolve: history::Resolve::KeepTarget,
                dry_run: true,
            },
            Provenance::new("Bench <bench@example.org>", "revert", ""),
        ));
        match r {
            Ok(r) => println!(
                "revert by cells of the contribution {back} commits back (dry run): {:.0} ms, {} cell(s) would change, {} conflicting (written later); chunks {} rewritten, {} by reference",
                t.elapsed().as_secs_f64() * 1e3,
                r.changed.values().flat_map(|v| v.values()).map(|d| d.changed + d.added + d.set_na).sum::<u64>(),
                r.conflict_cells,
                r.chunks_rewritten,
                r.chunks_by_reference
            ),
            Err(e) => println!("revert {back} commits back: {e}"),
        }
    }
}
