//! Measures of schema-driven updates on local storage (issue B):
//! - forecast re-fetch: 30 updates of 48 hourly times x 20 sites x 3 variables, each shifted by
//!   one hour (47 of 48 times overlap the previous update): median time per update incl. commit;
//! - bulk ingest from CSV: rows/s and peak memory (VmHWM), and the write part against a plain
//!   zarrs write of the same array (same codec: zstd level 1) through icechunk without our layer;
//!   then the same table from a CSV file and from a Parquet file as `update` reads files;
//! - insertion of one time step at the start of a long axis: chunks rewritten and time.
//!
//! `cargo bench --bench update` runs the full sizes (10 M cells, 1 M steps; ZF_BULK_CELLS and
//! ZF_INSERT_STEPS override); under `cargo test` a smoke version runs. `ZF_BENCH_ONLY=forecast`
//! stops after the re-fetch; `ZF_BENCH_ONLY=files` runs only the file ingest (CSV vs Parquet).

use std::fmt::Write as _;
use std::time::Instant;

use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::update::{self, UpdateOptions};
use zarr_fuse::{Location, Repo};

const WHO: &str = "Bench <bench@example.org>";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

async fn repo_with(dir: &std::path::Path, name: &str, schema: &str) -> Repo {
    let repo = Repo::init(&Location::Local(dir.join(name))).await.unwrap();
    update::init_dataset(
        &repo,
        schema,
        "bench.yaml",
        Provenance::new(WHO, "init", "init"),
    )
    .await
    .unwrap();
    repo
}

async fn update(repo: &Repo, csv: &str) -> update::UpdateReport {
    let t = Table::from_csv_bytes(csv.as_bytes(), "bench.csv").unwrap();
    update::update(
        repo,
        "main",
        &[(String::new(), t)],
        Provenance::new(WHO, "update", "bench"),
        &UpdateOptions::default(),
    )
    .await
    .unwrap()
}

fn forecast(rt: &tokio::runtime::Runtime, dir: &std::path::Path, n: usize) {
    let schema = "VARS:\n  temperature: {coords: [time, site], unit: K, source_unit: degC}\n  humidity: {coords: [time, site], unit: '%'}\n  pressure: {coords: [time, site], unit: hPa}\nCOORDS:\n  time: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: null}}\n  site: {type: 'str[16]', sorted: false, chunk_size: 64}\n";
    let repo = rt.block_on(repo_with(dir, "forecast", schema));
    let mut times = vec![];
    let mut phases = vec![];
    for k in 0..n {
        let mut csv = String::from("time,site,temperature,humidity,pressure\n");
        for h in k..k + 48 {
            for s in 0..20 {
                let _ = writeln!(
                    csv,
                    "{},site{s:02},{:.2},{:.1},{:.1}",
                    1_767_225_600 + h * 3600,
                    (h + s) as f64 * 0.1 + k as f64 * 0.01,
                    50.0 + s as f64,
                    1000.0 + h as f64 * 0.1
                );
            }
        }
        let t = Instant::now();
        let rep = rt.block_on(update(&repo, &csv));
        times.push(t.elapsed());
        phases.push(rep.timings);
    }
    times.sort();
    let med = times[times.len() / 2];
    let median = |f: &dyn Fn(&update::Timings) -> std::time::Duration| {
        let mut v: Vec<_> = phases.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "  median phases: convert {:.2?}, merge (read+plan) {:.2?}, write {:.2?}, commit {:.2?}",
        median(&|t| t.convert),
        median(&|t| t.merge),
        median(&|t| t.write),
        median(&|t| t.commit)
    );
    println!("forecast re-fetch: {n} updates of 48 times x 20 sites x 3 vars, median {med:.2?} per update incl. commit");
    println!(
        "  reference (zarr-fuse Python, no versioning): 330 ms per update -> {:.0}x less",
        0.33 / med.as_secs_f64()
    );
}

fn bulk(rt: &tokio::runtime::Runtime, dir: &std::path::Path, cells: usize) {
    let sites = 1140.min(cells.max(1));
    let steps = (cells / sites).max(1);
    let mut csv = String::with_capacity(cells * 28);
    csv.push_str("time,site,temp\n");
    for h in 0..steps {
        for s in 0..sites {
            let _ = writeln!(csv, "{h},{s},{:.3}", (h * 7 + s) as f64 * 0.001);
        }
    }
    let schema = "VARS:\n  temp: {coords: [time, site], type: float64}\nCOORDS:\n  time: {type: int64, chunk_size: 1024}\n  site: {type: int64, chunk_size: 128}\n";
    let repo = rt.block_on(repo_with(dir, "bulk", schema));
    let t = Instant::now();
    let table = Table::from_csv_bytes(csv.as_bytes(), "bulk.csv").unwrap();
    let parse = t.elapsed();
    drop(csv);
    let t2 = Instant::now();
    let rep = rt
        .block_on(update::update(
            &repo,
            "main",
            &[(String::new(), table)],
            Provenance::new(WHO, "update", "bulk"),
            &UpdateOptions::default(),
        ))
        .unwrap();
    let merge_t = t2.elapsed();
    let total = parse + merge_t;
    println!(
        "bulk ingest: {} cells ({steps} times x {sites} sites) from CSV in {total:.2?} ({:.0} rows/s; parse {parse:.2?}, convert+merge+write+commit {merge_t:.2?}), peak RSS {:.0} MB, {} chunks",
        rep.cells_written,
        rep.rows_read as f64 / total.as_secs_f64(),
        peak_rss_mb(),
        rep.chunks_written
    );
    // the write part alone against a plain zarrs write through icechunk (same array, same codec)
    let raw = rt.block_on(async {
        use std::sync::Arc;
        use zarrs::array::{data_type, ArrayBuilder};
        let storage: Arc<dyn icechunk::Storage + Send + Sync> = Arc::new(
            zarr_fuse::storage::DurableLocalStorage::new(dir.join("raw")),
        );
        let repo = icechunk::Repository::create(storage)
            .execute()
            .await
            .unwrap();
        let store = Arc::new(zarrs_icechunk::AsyncIcechunkStore::new(
            repo.writable_session("main").await.unwrap(),
        ));
        let data: Vec<f64> = (0..steps * sites).map(|i| i as f64 * 0.001).collect();
        let t = Instant::now();
        let mut b = ArrayBuilder::new(
            vec![steps as u64, sites as u64],
            vec![1024u64, 128],
            data_type::float64(),
            f64::NAN,
        );
        b.dimension_names(Some(["time", "site"]));
        b.bytes_to_bytes_codecs(vec![Arc::new(
            zarrs::array::codec::bytes_to_bytes::zstd::ZstdCodec::new(1, false),
        )]);
        let a = b.build(store.clone(), "/temp").unwrap();
        a.async_store_metadata().await.unwrap();
        a.async_store_array_subset(&a.subset_all(), data)
            .await
            .unwrap();
        store
            .session()
            .write()
            .await
            .commit("raw")
            .execute()
            .await
            .unwrap();
        t.elapsed()
    });
    let tm = &rep.timings;
    let ours = tm.write + tm.commit;
    println!(
        "  phases: convert {:.2?}, merge {:.2?}, write {:.2?}, commit {:.2?}",
        tm.convert, tm.merge, tm.write, tm.commit
    );
    println!("  plain zarrs+icechunk write+commit of the same array: {raw:.2?}; zarr-fuse write+commit {ours:.2?} = {:.2}x of its speed (whole merge+write+commit: {:.2}x)", raw.as_secs_f64() / ours.as_secs_f64(), raw.as_secs_f64() / merge_t.as_secs_f64());
}

fn insertion(rt: &tokio::runtime::Runtime, dir: &std::path::Path, steps: usize) {
    let schema = "VARS:\n  temp: {coords: [t], type: float64}\nCOORDS:\n  t: {type: int64, chunk_size: 1024}\n";
    let repo = rt.block_on(repo_with(dir, "insert", schema));
    let mut csv = String::with_capacity(steps * 16);
    csv.push_str("t,temp\n");
    for i in 0..steps {
        let _ = writeln!(csv, "{},{}", i + 1, i % 1000);
    }
    rt.block_on(update(&repo, &csv));
    let t = Instant::now();
    let rep = rt.block_on(update(&repo, "t,temp\n0,-1\n"));
    let el = t.elapsed();
    println!(
        "insertion of one step at the start of a {steps}-step axis: {el:.2?}, {} chunk(s) written ({} of the axis' {} chunks per array; positions shift, so their bytes change)",
        rep.chunks_written,
        rep.chunks_written,
        2 * steps.div_ceil(1024)
    );
    let t = Instant::now();
    let rep = rt.block_on(update(&repo, &format!("t,temp\n{},5\n", steps + 1)));
    println!(
        "  append one step at the end: {:.2?}, {} chunk(s) written",
        t.elapsed(),
        rep.chunks_written
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let only = std::env::var("ZF_BENCH_ONLY").unwrap_or_default();
    if only == "files" {
        bulk_files(&rt, dir.path(), env("ZF_BULK_CELLS", 10_000_000));
        return;
    }
    forecast(&rt, dir.path(), if full { 30 } else { 3 });
    if only == "forecast" {
        return;
    }
    insertion(
        &rt,
        dir.path(),
        if full {
            env("ZF_INSERT_STEPS", 1_000_000)
        } else {
            5_000
        },
    );
    let cells = if full {
        env("ZF_BULK_CELLS", 10_000_000)
    } else {
        20_000
    };
    bulk(&rt, dir.path(), cells);
    bulk_files(&rt, dir.path(), cells);
}

/// Reset the process's peak RSS (VmHWM) to its current RSS (Linux `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bulk ingest from files as `zarr-fuse update FILE` reads them (batch by batch, bounded
/// memory): the same table as CSV and as Parquet (row groups of 1 M rows), each into a new
/// repository; rows/s and the peak RSS of the run (VmHWM reset before each).
fn bulk_files(rt: &tokio::runtime::Runtime, dir: &std::path::Path, cells: usize) {
    use std::sync::Arc;
    let sites = 1140.min(cells.max(1));
    let steps = (cells / sites).max(1);
    let n = steps * sites;
    let time: Vec<i64> = (0..n).map(|i| (i / sites) as i64).collect();
    let site: Vec<i64> = (0..n).map(|i| (i % sites) as i64).collect();
    let temp: Vec<f64> = (0..n)
        .map(|i| ((i / sites) * 7 + i % sites) as f64 * 0.001)
        .collect();
    let csv_path = dir.join("bulk-file.csv");
    {
        use std::io::Write as _;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_path).unwrap());
        writeln!(w, "time,site,temp").unwrap();
        for i in 0..n {
            writeln!(w, "{},{},{:.3}", time[i], site[i], temp[i]).unwrap();
        }
        w.flush().unwrap();
    }
    let pq_path = dir.join("bulk-file.parquet");
    {
        use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
        let batch = RecordBatch::try_from_iter([
            ("time", Arc::new(Int64Array::from(time)) as ArrayRef),
            ("site", Arc::new(Int64Array::from(site)) as ArrayRef),
            ("temp", Arc::new(Float64Array::from(temp)) as ArrayRef),
        ])
        .unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        let f = std::fs::File::create(&pq_path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let schema = "VARS:\n  temp: {coords: [time, site], type: float64}\nCOORDS:\n  time: {type: int64, chunk_size: 1024}\n  site: {type: int64, chunk_size: 128}\n";
    for (what, path) in [("CSV", &csv_path), ("Parquet", &pq_path)] {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let repo = rt.block_on(repo_with(dir, &format!("bulk-{what}"), schema));
        reset_peak_rss();
        let before = peak_rss_mb();
        let t = Instant::now();
        let rep = rt
            .block_on(update::update_files(
                &repo,
                "main",
                &[(String::new(), path.to_path_buf())],
                Provenance::new(WHO, "update", "bulk file"),
                &UpdateOptions::default(),
                &|_| {},
            ))
            .unwrap();
        let took = t.elapsed();
        println!(
            "bulk ingest from a {what} file ({:.0} MB, {} cells): {took:.2?} = {:.0} rows/s; peak RSS {:.0} MB (process at start {before:.0} MB); phases convert {:.2?}, merge {:.2?}, write {:.2?}, commit {:.2?}",
            size as f64 / 1e6,
            rep.cells_written,
            rep.rows_read as f64 / took.as_secs_f64(),
            peak_rss_mb(),
            rep.timings.convert,
            rep.timings.merge,
            rep.timings.write,
            rep.timings.commit,
        );
    }
}
