//! Inputs are converted batch by batch while they are read (bounded memory, spec/016): the
//! result must not depend on where the batches split — duplicates, NA coordinates, new values of
//! unsorted and composed coordinates and error lines across batch boundaries — and an update from
//! a file must equal the same update from the whole table in memory.

use std::fmt::Write as _;
use std::path::Path;

use crate::ingest::Table;
use crate::provenance::Provenance;
use crate::repo::Repo;
use crate::schema;
use crate::storage::Location;
use crate::update::convert::{convert, Converted, Converter};
use crate::update::{self, OnInvalid, UpdateError, UpdateOptions};

const WHO: &str = "Stream Tester <stream@example.org>";

const SCHEMA: &str = "\
VARS:
  temp: {coords: [time, site], unit: K, source_unit: degC}
  count: {coords: [time, site], type: int32, na_value: -1}
  label: {coords: [time, site], type: 'str[4]'}
  x: {coords: loc}
  y: {coords: loc}
  depth: {coords: loc}
COORDS:
  time: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: UTC}}
  site: {type: 'str[8]', sorted: false}
  loc: {composed: [x, y]}
";

/// A contribution with duplicates spread over the whole input, NA coordinates, NA values and
/// new unsorted site names appearing late.
fn csv(rows: usize) -> String {
    let mut s = String::from("time,site,temp,count,label,x,y,depth\n");
    for r in 0..rows {
        let hour = (r * 7919) % 97; // repeats: later rows overwrite earlier ones
        let s_idx = (r * 13) % (5 + r / 200);
        let site = if r % 31 == 0 {
            String::new() // NA coordinate: dropped
        } else {
            format!("s{s_idx}")
        };
        let temp = if r % 11 == 0 {
            String::new()
        } else {
            format!("{:.2}", r as f64 * 0.1)
        };
        // the composed coordinate is a function of the cell, its variable a function of it
        let (x, y) = (hour % 3, s_idx % 4);
        let _ = writeln!(
            s,
            "2026-01-0{}T{:02}:00:00,{site},{temp},{},{},{x},{y},{}",
            1 + hour / 24,
            hour % 24,
            r % 50,
            ["a", "bb", "", "ccc"][r % 4],
            x * 10 + y
        );
    }
    s
}

fn node_schema() -> schema::Schema {
    schema::load_str(SCHEMA, "s.yaml").expect("schema")
}

fn batched(path: &Path, batch_rows: usize) -> Result<Converted, UpdateError> {
    batched_spilling(path, batch_rows, usize::MAX)
}

/// Converted batch by batch, the typed rows going to a temporary file beyond `spill_over` bytes.
fn batched_spilling(
    path: &Path,
    batch_rows: usize,
    spill_over: usize,
) -> Result<Converted, UpdateError> {
    let schema = node_schema();
    let mut conv = Converter::new(&schema.root, OnInvalid::Error).spill_over(spill_over);
    Table::read_batches(path, batch_rows, |_| {}, |t| conv.push(&t))?;
    conv.finish()
}

/// Everything a conversion yields, in a comparable (and NaN-safe) form.
fn summary(c: &Converted) -> String {
    let mut comps: Vec<String> = c
        .components
        .iter()
        .flat_map(|(name, m)| m.iter().map(move |(k, v)| format!("{name} {k:?} {v:?}")))
        .collect();
    comps.sort();
    let rows = c.rows.to_block().expect("rows");
    let coords: Vec<String> = c
        .dicts
        .iter()
        .zip(&rows.idx)
        .map(|(dict, idx)| format!("{dict:?} {idx:?}"))
        .collect();
    format!(
        "coords {coords:?}\nvars {:?} {:?}\nlines {:?}\ncomponents {comps:?}\ncounts {} {} {} {}",
        c.var_names, rows.vals, c.lines, c.rows_read, c.rows_dropped, c.duplicates, c.invalid_to_na
    )
}

#[test]
fn conversion_does_not_depend_on_batch_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    std::fs::write(&path, csv(2_000)).unwrap();
    let whole = convert(
        &Table::read(&path).unwrap(),
        &node_schema().root,
        OnInvalid::Error,
    )
    .expect("whole");
    assert!(
        whole.duplicates > 0 && whole.rows_dropped > 0,
        "the input exercises both"
    );
    let expected = summary(&whole);
    for batch_rows in [1, 7, 64, 1_999, 2_000, 5_000] {
        let got = batched(&path, batch_rows).expect("batched");
        assert_eq!(summary(&got), expected, "batches of {batch_rows} rows");
        // the same with the rows in a temporary file from the first byte, or from midway
        for spill_over in [0, 20_000] {
            let got = batched_spilling(&path, batch_rows, spill_over).expect("spilled");
            assert!(
                got.rows.spilled(),
                "rows beyond {spill_over} bytes are spilled"
            );
            assert_eq!(
                summary(&got),
                expected,
                "batches of {batch_rows} rows, spilled beyond {spill_over} bytes"
            );
        }
    }
}

#[test]
fn an_error_in_a_later_batch_names_its_line_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let mut text = csv(500);
    text.push_str("2026-01-01T00:00:00,s1,warm,1,a,0,0,0\n"); // line 502
    std::fs::write(&path, text).unwrap();
    match batched(&path, 16) {
        Err(UpdateError::BadValue {
            line,
            column,
            value,
            ..
        }) => {
            assert_eq!(
                (line, column.as_str(), value.as_str()),
                (502, "temp", "warm")
            );
        }
        other => panic!("expected a bad value on line 502, got {other:?}"),
    }
    // a header-only file still reports a missing column
    let path = dir.path().join("header.csv");
    std::fs::write(&path, "time,site\n").unwrap();
    assert!(matches!(
        batched(&path, 16),
        Err(UpdateError::MissingColumn { .. })
    ));
}

#[test]
fn parquet_batches_split_record_batches_the_same_way() {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.parquet");
    let n = 300;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "time",
            Arc::new(StringArray::from(
                (0..n)
                    .map(|r| format!("2026-01-01T{:02}:00:00", r % 20))
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "site",
            Arc::new(StringArray::from(
                (0..n).map(|r| format!("p{}", r % 6)).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "temp",
            Arc::new(Float64Array::from(
                (0..n).map(|r| r as f64).collect::<Vec<_>>(),
            )) as ArrayRef,
        ),
        (
            "count",
            Arc::new(Int64Array::from((0..n).collect::<Vec<i64>>())) as ArrayRef,
        ),
        (
            "label",
            Arc::new(StringArray::from(vec!["z"; n as usize])) as ArrayRef,
        ),
        (
            "x",
            Arc::new(Int64Array::from(vec![1; n as usize])) as ArrayRef,
        ),
        (
            "y",
            Arc::new(Int64Array::from(vec![2; n as usize])) as ArrayRef,
        ),
        (
            "depth",
            Arc::new(Int64Array::from(vec![3; n as usize])) as ArrayRef,
        ),
    ])
    .unwrap();
    let f = std::fs::File::create(&path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(70)) // several row groups
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let whole = convert(
        &Table::read(&path).unwrap(),
        &node_schema().root,
        OnInvalid::Error,
    )
    .expect("whole");
    // 20 times x 6 sites repeat every 60 rows: 60 cells, the other 240 rows are duplicates
    assert_eq!((whole.rows_read, whole.duplicates), (300, 240));
    let expected = summary(&whole);
    for batch_rows in [1, 13, 70, 299, 1_000] {
        let got = batched(&path, batch_rows).expect("batched");
        assert_eq!(summary(&got), expected, "batches of {batch_rows} rows");
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn an_update_from_a_file_equals_the_update_from_the_whole_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    // more rows than one batch of update_files, so the file is read in several
    let rows = update::BATCH_ROWS * 2 + 1_234;
    std::fs::write(&path, csv(rows)).unwrap();
    let rt = rt();
    rt.block_on(async {
        let mut outcomes = Vec::new();
        for (name, from_file) in [("table", false), ("file", true)] {
            let repo = Repo::init(&Location::Local(dir.path().join(name)))
                .await
                .unwrap();
            update::init_dataset(&repo, SCHEMA, "s.yaml", Provenance::new(WHO, "init", "x"))
                .await
                .unwrap();
            let prov = Provenance::new(WHO, "update", "big");
            // the file's typed rows go to a temporary file after ~100 kB (several blocks)
            let opts = UpdateOptions {
                memory: from_file.then_some(100_000),
                ..Default::default()
            };
            let report = if from_file {
                let read = std::sync::atomic::AtomicU64::new(0);
                let progress = |n: u64| {
                    read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                };
                let files = [(String::new(), path.clone())];
                let r = update::update_files(&repo, "main", &files, prov, &opts, &progress)
                    .await
                    .unwrap();
                let len = std::fs::metadata(&path).unwrap().len();
                assert_eq!(read.into_inner(), len, "progress counts every byte");
                r
            } else {
                let table = Table::read(&path).unwrap();
                update::update(&repo, "main", &[(String::new(), table)], prov, &opts)
                    .await
                    .unwrap()
            };
            let tip = repo.branch_tip("main").await.unwrap();
            let data = update::read_node(&repo, &tip, "").await.unwrap();
            let info = repo.commit_info(&tip).await.unwrap();
            outcomes.push((report, data, info.input_blake3.clone()));
        }
        let (a, b) = (&outcomes[0], &outcomes[1]);
        assert!(a.0.rows_read == rows as u64 && a.0.duplicates > 0);
        for (x, y) in [
            (a.0.rows_read, b.0.rows_read),
            (a.0.rows_dropped, b.0.rows_dropped),
            (a.0.duplicates, b.0.duplicates),
            (a.0.cells_written, b.0.cells_written),
        ] {
            assert_eq!(x, y);
        }
        assert_eq!(format!("{:?}", a.1), format!("{:?}", b.1), "same content");
        let digest = blake3::hash(&std::fs::read(&path).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(
            b.2.as_deref(),
            Some(digest.as_str()),
            "input digest recorded"
        );
    });
}
