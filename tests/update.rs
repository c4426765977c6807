//! `update`, `blame`, `export`, `demo` through the CLI, and a corpus of bad inputs: each must
//! fail with a message naming file, line, column and value, leaving the repository unchanged.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const AUTHOR: &str = "Upd Tester <upd@example.org>";

fn zf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(args)
        .env("ZF_AUTHOR", AUTHOR)
        .output()
        .expect("run")
}

fn ok(args: &[&str]) -> String {
    let o = zf(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

const SCHEMA: &str = "\
ATTRS: {title: test}
VARS:
  temp: {coords: [t, site], unit: K, source_unit: degC, df_col: temperature}
  hum: {coords: [t, site], unit: '%', range: {interval: [0, 100]}}
  count: {coords: [t, site], type: int32}
  lat: {coords: site, unit: deg}
COORDS:
  t: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: CET}, df_col: time}
  site: {type: 'str[8]', sorted: false}
";

fn setup(dir: &Path) -> String {
    std::fs::write(dir.join("s.yaml"), SCHEMA).unwrap();
    let repo = dir.join("repo").display().to_string();
    ok(&[
        "init",
        &repo,
        "--schema",
        dir.join("s.yaml").to_str().unwrap(),
    ]);
    let csv = "time,site,temperature,hum,count,lat\n\
               2026-01-01T01:00,A,10,50,1,50.1\n\
               2026-01-01T01:00,B,11,51,2,49.2\n\
               2026-01-01T02:00,A,12,52,3,50.1\n\
               2026-01-01T02:00,B,13,53,4,49.2\n";
    std::fs::write(dir.join("a.csv"), csv).unwrap();
    ok(&[
        "update",
        &repo,
        dir.join("a.csv").to_str().unwrap(),
        "-m",
        "first",
    ]);
    repo
}

#[test]
fn update_json_blame_export() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let b = dir.path().join("b.csv");
    std::fs::write(&b, "time,site,temperature,hum,count,lat\n2026-01-01T02:00,B,20,60,5,49.2\n2026-01-01T03:00,C,21,61,6,48.0\n2026-01-01T03:00,C,22,62,7,48.0\n,A,1,1,1,1\n").unwrap();
    let dry: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        b.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]))
    .unwrap();
    assert!(dry["commit"].is_null());
    let before = ok(&["log", &repo, "--json"]);
    let out: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        b.to_str().unwrap(),
        "--json",
        "--author",
        "Bob <bob@example.org>",
        "--meta",
        "station=x",
    ]))
    .unwrap();
    for k in [
        "commit",
        "branch",
        "rows_read",
        "rows_dropped",
        "duplicates",
        "invalid_to_na",
        "cells_written",
        "chunks_written",
        "chunks_deduplicated",
        "new_coords",
    ] {
        assert!(out.get(k).is_some(), "update --json lacks {k}: {out}");
    }
    assert_eq!(out["rows_read"], 4);
    assert_eq!(out["rows_dropped"], 1);
    assert_eq!(out["duplicates"], 1);
    assert_eq!(out["new_coords"]["t"], 1);
    assert_eq!(out["new_coords"]["site"], 1);
    assert_ne!(before, ok(&["log", &repo, "--json"]));
    let log: Value = serde_json::from_str(&ok(&["log", &repo, "--json", "-n", "1"])).unwrap();
    assert_eq!(log[0]["author"], "Bob <bob@example.org>");
    assert_eq!(log[0]["input_blake3"].as_str().map(str::len), Some(64));
    assert_eq!(log[0]["meta"]["station"], "x");
    assert_eq!(log[0]["counts"]["duplicates"], 1);

    // blame: one cell → one record. Input times are CET: 02:00 CET = 01:00 UTC, which Bob
    // overwrote for site B; 01:00 CET = 00:00 UTC was written by the first commit only.
    let one: Value = serde_json::from_str(&ok(&[
        "blame",
        &repo,
        "--var",
        "temp",
        "--where",
        "t=2026-01-01T01:00",
        "--where",
        "site=B",
        "--json",
    ]))
    .unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["author"], "Bob <bob@example.org>");
    assert_eq!(one[0]["selection"]["t"][0], "2026-01-01T01:00:00");
    let first: Value = serde_json::from_str(&ok(&[
        "blame",
        &repo,
        "--var",
        "temp",
        "--where",
        "t=2026-01-01T00:00..2026-01-01T00:30",
        "--where",
        "site=B",
        "--at",
        "main",
        "--json",
    ]))
    .unwrap();
    assert_eq!(first.as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first[0]["author"], AUTHOR);
    assert_eq!(first[0]["message"], "first");
    let all: Value =
        serde_json::from_str(&ok(&["blame", &repo, "--var", "temp", "--json"])).unwrap();
    let authors: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["author"].as_str())
        .collect();
    assert!(
        authors.contains(&"Bob <bob@example.org>") && authors.contains(&AUTHOR),
        "{all}"
    );

    // export: tidy long table, ISO times, kelvin
    let csv = ok(&["export", &repo, "--where", "site=A"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t,site,temp,hum,count,lat"));
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[0], "2026-01-01T00:00:00", "01:00 CET is 00:00 UTC");
    assert_eq!(first[1], "A");
    assert!((first[2].parse::<f64>().unwrap() - 283.15).abs() < 1e-9);
    let json: Value = serde_json::from_str(&ok(&["export", &repo, "--format", "json"])).unwrap();
    assert_eq!(
        json.as_array().unwrap().len(),
        5,
        "2 times x 2 sites + 1 new cell (t=02:00 UTC, C): {json}"
    );
    let out = dir.path().join("e.csv");
    ok(&["export", &repo, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("t,site"));
}

#[test]
fn demo_builds_a_repository_python_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = ok(&["demo", d.to_str().unwrap()]);
    assert!(
        out.contains("== log")
            && out.contains("== blame")
            && out.contains("== what the revert restored")
            && out.contains("cell(s) changed back")
            && out.contains("xr.open_zarr")
    );
    let tags: Value =
        serde_json::from_str(&ok(&["tag", d.to_str().unwrap(), "list", "--json"])).unwrap();
    assert_eq!(tags[0]["name"], "v1.0");
    let v: Value =
        serde_json::from_str(&ok(&["verify", d.to_str().unwrap(), "v1.0", "--json"])).unwrap();
    assert_eq!(v["ok"], true);
    // the revert restored the state before the bad fetch
    let log: Value = serde_json::from_str(&ok(&["log", d.to_str().unwrap(), "--json"])).unwrap();
    let bad = log
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["message"] == "yr.no fetch 6")
        .unwrap();
    let before_bad = bad["parents"][0].as_str().unwrap();
    let diff: Value = serde_json::from_str(&ok(&[
        "diff",
        d.to_str().unwrap(),
        before_bad,
        "v1.0",
        "--json",
    ]))
    .unwrap();
    assert!(
        diff["chunk_counts"].as_object().unwrap().is_empty(),
        "{diff}"
    );
    assert!(
        !zf(&["demo", d.to_str().unwrap()]).status.success(),
        "demo refuses an existing repository"
    );
}

/// (file name, CSV content, words the error must contain)
const BAD_INPUTS: &[(&str, &str, &[&str])] = &[
    ("missing-col.csv", "time,site,temperature,hum,lat\n2026-01-01T01:00,A,1,2,3\n", &["column 'count'", "missing", "time, site"]),
    ("bad-number.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,warm,2,1,3\n", &["bad-number.csv:2", "temperature", "'warm'", "not a number", "--on-invalid na"]),
    ("bad-time.csv", "time,site,temperature,hum,count,lat\nyesterday,A,1,2,1,3\n", &["bad-time.csv:2", "column 'time'", "'yesterday'"]),
    ("bad-date.csv", "time,site,temperature,hum,count,lat\n2026-02-30T01:00,A,1,2,1,3\n", &[":2", "2026-02-30T01:00"]),
    ("out-of-range.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,1,3\n2026-01-01T02:00,A,1,150,1,3\n", &["out-of-range.csv:3", "hum", "150", "outside the range [0, 100]"]),
    ("int-na.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,,3\n", &[":2", "count", "NA in integer variable"]),
    ("int-frac.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,1.5,3\n", &[":2", "count", "'1.5'", "not an integer"]),
    ("int-overflow.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,9999999999,3\n", &[":2", "does not fit type int32"]),
    ("ragged.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2\n", &["ragged.csv:2", "ragged row"]),
    ("bad-utf8.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,\u{FFFD}A,1,2,1,3\n", &[]),
    ("empty.csv", "", &["empty.csv", "empty"]),
    ("long-str.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,ABCDEFGHIJ,1,2,1,3\n", &[":2", "longer than 8"]),
    ("varies.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,1,3\n2026-01-01T02:00,A,1,2,1,4\n", &["lat", "does not use", "lines 2 and 3"]),
    ("nan.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00,A,1,2,inf,3\n", &[":2", "not a finite number"]),
    ("dup-header.csv", "time,site,temperature,hum,count,count,lat\n2026-01-01T01:00,A,1,2,1,1,3\n", &["dup-header.csv:1", "'count' appears twice", "columns 5 and 6"]),
    ("offset.csv", "time,site,temperature,hum,count,lat\n2026-01-01T01:00+25:00,A,1,2,1,3\n", &[":2", "column 'time'"]),
    ("bad-ext.parquet.txt2", "x", &["unsupported input format"]),
];

#[test]
fn bad_inputs_are_rejected_whole_with_file_line_column_value() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let before = ok(&["log", &repo, "--json"]);
    let export_before = ok(&["export", &repo]);
    for (name, content, words) in BAD_INPUTS {
        let f = dir.path().join(name);
        if *name == "bad-utf8.csv" {
            let mut bytes = b"time,site,temperature,hum,count,lat\n2026-01-01T01:00,".to_vec();
            bytes.extend_from_slice(&[0xff, 0xfe]);
            bytes.extend_from_slice(b",1,2,1,3\n");
            std::fs::write(&f, bytes).unwrap();
        } else {
            std::fs::write(&f, content).unwrap();
        }
        let o = zf(&["update", &repo, f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{name}: one-line error expected: {err}"
        );
        assert!(
            err.contains(name),
            "{name}: error does not name the file: {err}"
        );
        for w in *words {
            assert!(err.contains(w), "{name}: '{err}' lacks '{w}'");
        }
    }
    // bad arguments
    let a = dir.path().join("a.csv");
    let o = zf(&["update", &repo, "--node", "nosuch", a.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("node 'nosuch' is not in the schema"));
    let o = zf(&["update", &repo, "/no/such/file.csv"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/file.csv"));
    let o = zf(&["blame", &repo, "--var", "nosuch"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("variable 'nosuch'"));
    let o = zf(&["blame", &repo, "--var", "temp", "--where", "depth=3"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("depth"));
    let o = zf(&["blame", &repo, "--var", "temp", "--where", "t"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("DIM=VALUE"));
    assert_eq!(
        zf(&[
            "update",
            &repo,
            a.to_str().unwrap(),
            "--on-invalid",
            "maybe"
        ])
        .status
        .code(),
        Some(2)
    );
    // the repository is exactly as before
    assert_eq!(ok(&["log", &repo, "--json"]), before);
    assert_eq!(ok(&["export", &repo]), export_before);
    // --on-invalid na turns the bad cell into NA and counts it
    let f = dir.path().join("bad-number.csv");
    let out: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        f.to_str().unwrap(),
        "--on-invalid",
        "na",
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["invalid_to_na"], 1);
}

#[test]
fn schema_check_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    assert!(ok(&[
        "schema",
        "check",
        dir.path().join("s.yaml").to_str().unwrap()
    ])
    .contains("OK"));
    assert_eq!(ok(&["schema", "show", &repo]), SCHEMA);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "VARS:\n  x: {coords: t, unti: K}\nCOORDS: {t: {}}\n").unwrap();
    let o = zf(&["schema", "check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.yaml:2:"));
    let o = zf(&[
        "init",
        dir.path().join("r2").to_str().unwrap(),
        "--schema",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !dir.path().join("r2").exists(),
        "a bad schema creates no repository"
    );
}

#[test]
fn schema_evolution_allowed_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let before = ok(&["log", &repo, "--json"]);
    // refused: a unit change, a removed variable, a changed coordinate policy
    for (i, (text, words)) in [
        (
            SCHEMA.replace("unit: K, source_unit: degC", "unit: degC"),
            vec!["variable 'temp'", "unit"],
        ),
        (
            SCHEMA.replace("  count: {coords: [t, site], type: int32}\n", ""),
            vec!["variable 'count'", "removed"],
        ),
        (
            SCHEMA.replace("sorted: false", "sorted: true"),
            vec!["coordinate 'site'", "sorted"],
        ),
        (
            SCHEMA.replace(
                "count: {coords: [t, site], type: int32}",
                "count: {coords: [t, site], type: int64}",
            ),
            vec!["'count'", "type int32 → int64"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, text).unwrap();
        let o = zf(&["schema", "apply", &repo, f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        for w in words {
            assert!(err.contains(w), "case {i}: '{err}' lacks '{w}'");
        }
    }
    assert_eq!(
        ok(&["log", &repo, "--json"]),
        before,
        "refused changes write nothing"
    );
    // allowed: a new variable, a new child node, new ATTRS and description
    let evolved = SCHEMA
        .replace("ATTRS: {title: test}", "ATTRS: {title: test v2, doi: x}")
        .replace("COORDS:\n  t:", "  wind: {coords: [t, site], unit: m/s, description: wind}\n  wind2: {coords: [t], unit: m/s}\nCOORDS:\n  t:")
        + "child:\n  VARS: {x: {coords: k}}\n  COORDS: {k: {}}\n";
    let f = dir.path().join("v2.yaml");
    std::fs::write(&f, &evolved).unwrap();
    let out: Value = serde_json::from_str(&ok(&[
        "schema",
        "apply",
        &repo,
        f.to_str().unwrap(),
        "--json",
    ]))
    .unwrap();
    assert!(out["commit"].is_string());
    assert_eq!(ok(&["schema", "show", &repo]), evolved);
    let log: Value = serde_json::from_str(&ok(&["log", &repo, "--json", "-n", "1"])).unwrap();
    assert_eq!(log[0]["operation"], "schema");
    // the new variable has the existing axes' shape and takes data
    let c = dir.path().join("c.csv");
    std::fs::write(
        &c,
        "time,site,temperature,hum,count,lat,wind,wind2\n2026-01-01T01:00,A,10,50,1,50.1,3.5,1\n",
    )
    .unwrap();
    ok(&["update", &repo, c.to_str().unwrap()]);
    let rows: Value = serde_json::from_str(&ok(&[
        "export",
        &repo,
        "--format",
        "json",
        "--where",
        "site=A",
        "--where",
        "t=2026-01-01T00:00",
    ]))
    .unwrap();
    assert_eq!(rows[0]["wind"], 3.5);
    let k = dir.path().join("k.csv");
    std::fs::write(&k, "k,x\n1,2\n").unwrap();
    ok(&["update", &repo, "--node", "child", k.to_str().unwrap()]);
    assert!(ok(&["export", &repo, "--node", "child"]).contains("1.0,2.0"));
}

fn write_parquet(path: &Path, temp_as_text: bool) {
    use arrow_array::{
        ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray,
    };
    use std::sync::Arc;
    let times = TimestampMillisecondArray::from(vec![1_767_232_800_000i64, 1_767_236_400_000])
        .with_timezone("UTC");
    let temp: ArrayRef = if temp_as_text {
        Arc::new(StringArray::from(vec!["warm", "cold"]))
    } else {
        Arc::new(Float64Array::from(vec![Some(20.0), None]))
    };
    let batch = RecordBatch::try_from_iter(vec![
        ("time", Arc::new(times) as ArrayRef),
        (
            "site",
            Arc::new(StringArray::from(vec!["P", "P"])) as ArrayRef,
        ),
        ("temperature", temp),
        (
            "hum",
            Arc::new(Float64Array::from(vec![40.0, 41.0])) as ArrayRef,
        ),
        ("count", Arc::new(Int32Array::from(vec![7, 8])) as ArrayRef),
        (
            "lat",
            Arc::new(Float64Array::from(vec![50.0, 50.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let p = dir.path().join("in.parquet");
    write_parquet(&p, false);
    let out: Value =
        serde_json::from_str(&ok(&["update", &repo, p.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(out["rows_read"], 2);
    let rows: Value = serde_json::from_str(&ok(&[
        "export", &repo, "--format", "json", "--where", "site=P",
    ]))
    .unwrap();
    // zoned timestamps are instants: 2026-01-01T02:00Z stays 02:00 UTC (no CET shift)
    assert_eq!(rows[0]["t"], "2026-01-01T02:00:00");
    assert_eq!(rows[0]["temp"], 293.15);
    assert_eq!(rows[1]["temp"], Value::Null);
    assert_eq!(rows[1]["count"], 8);
    // wrong column type and a truncated file: clear errors, nothing written
    let before = ok(&["log", &repo, "--json"]);
    let bad = dir.path().join("badtype.parquet");
    write_parquet(&bad, true);
    let e =
        String::from_utf8_lossy(&zf(&["update", &repo, bad.to_str().unwrap()]).stderr).to_string();
    assert!(
        e.contains("badtype.parquet:2") && e.contains("temperature") && e.contains("'warm'"),
        "{e}"
    );
    let cut = dir.path().join("cut.parquet");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e =
        String::from_utf8_lossy(&zf(&["update", &repo, cut.to_str().unwrap()]).stderr).to_string();
    assert!(
        e.contains("cut.parquet") && e.contains("not a readable Parquet file"),
        "{e}"
    );
    assert_eq!(ok(&["log", &repo, "--json"]), before);
}

#[test]
fn export_parquet_round_trips_through_update() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let out = dir.path().join("out.parquet");
    ok(&[
        "export",
        &repo,
        "--format",
        "parquet",
        "-o",
        out.to_str().unwrap(),
    ]);
    // the exported table is a valid input: re-importing it changes nothing
    let before = ok(&["log", &repo, "--json"]);
    // exported columns are named after the schema's variables, not their df_col, and times are
    // UTC while the schema reads CET: re-import through a schema-neutral copy
    let f = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut n = 0;
    let mut names = vec![];
    for b in reader {
        let b = b.unwrap();
        n += b.num_rows();
        names = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
    }
    assert_eq!(n, 4);
    assert_eq!(names, vec!["t", "site", "temp", "hum", "count", "lat"]);
    assert_eq!(ok(&["log", &repo, "--json"]), before);
}

/// An update records the extent of what it wrote (spec/011); blame passes over a commit whose
/// extent misses the cells without reading its side record: with that record deleted, blame of
/// a cell outside the extent still works, and of a cell inside it fails.
#[test]
fn blame_skips_commits_whose_extent_misses_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let c = dir.path().join("c.csv");
    std::fs::write(
        &c,
        "time,site,temperature,hum,count,lat\n2026-01-01T05:00,A,30,70,8,50.1\n",
    )
    .unwrap();
    ok(&["update", &repo, c.to_str().unwrap(), "-m", "later"]);
    let log: Value = serde_json::from_str(&ok(&["log", &repo, "--json", "-n", "1"])).unwrap();
    // 05:00 CET = 04:00 UTC, in hours since the epoch
    let hour = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(4, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
        / 3600;
    assert_eq!(log[0]["extent"][""]["t"], serde_json::json!([hour, hour]));
    assert_eq!(log[0]["extent"][""]["site"], serde_json::json!(["A", "A"]));
    let record = log[0]["record"].as_str().expect("record key").to_string();
    std::fs::remove_file(Path::new(&repo).join(&record)).expect("remove the side record");
    let blame = |t: &str| {
        zf(&[
            "blame", &repo, "--var", "temp", "--where", t, "--where", "site=A", "--json",
        ])
    };
    let out = blame("t=2026-01-01T01:00");
    assert!(
        out.status.success(),
        "a cell outside the extent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.as_array().map(Vec::len), Some(1));
    assert_eq!(got[0]["message"], "first");
    // (blame takes UTC: the later commit wrote 04:00 UTC)
    assert!(
        !blame("t=2026-01-01T04:00").status.success(),
        "a cell inside the extent needs the (deleted) record"
    );
}

/// Variables written at the same cells share one cell set in the side record (spec/019), a
/// regular time axis is stored as runs and an irregular increasing one as deltas; blame reads
/// all three and credits a variable's NA cell (not written) to the commit before.
#[test]
fn cell_sets_are_shared_and_compact_and_blame_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let record_of_tip = || -> Value {
        let log: Value = serde_json::from_str(&ok(&["log", &repo, "--json", "-n", "1"])).unwrap();
        let key = log[0]["record"].as_str().expect("record key").to_string();
        serde_json::from_slice(&std::fs::read(Path::new(&repo).join(key)).unwrap()).unwrap()
    };
    let blame = |var: &str, t: &str, site: &str| -> String {
        let out = ok(&[
            "blame",
            &repo,
            "--var",
            var,
            "--where",
            &format!("t={t}"),
            "--where",
            &format!("site={site}"),
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v.as_array().map(Vec::len),
            Some(1),
            "{var} {t} {site}: {out}"
        );
        v[0]["message"]
            .as_str()
            .unwrap_or("never written")
            .to_string()
    };
    // hourly 02:00..11:00 CET at A and B; hum is NA at 02:00 A
    let mut csv = String::from("time,site,temperature,hum,count,lat\n");
    for h in 2..12 {
        for (s, lat) in [("A", 50.1), ("B", 49.2)] {
            let hum = if h == 2 && s == "A" {
                String::new()
            } else {
                format!("{}", 40 + h)
            };
            csv.push_str(&format!("2026-01-01T{h:02}:00,{s},{h},{hum},{h},{lat}\n"));
        }
    }
    let regular = dir.path().join("regular.csv");
    std::fs::write(&regular, csv).unwrap();
    ok(&["update", &repo, regular.to_str().unwrap(), "-m", "regular"]);
    let rec = record_of_tip();
    let cells = &rec["cells"][""];
    assert_eq!(
        cells["count"],
        serde_json::json!({"same_as": "temp"}),
        "{rec}"
    );
    assert!(
        cells["hum"].get("same_as").is_none(),
        "hum has an NA cell: {rec}"
    );
    assert_eq!(cells["temp"]["values"][0]["kind"], "r", "{rec}");
    assert_eq!(
        cells["temp"]["values"][0]["values"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // (blame takes UTC: 02:00 CET = 01:00 UTC)
    assert_eq!(blame("count", "2026-01-01T01:00", "A"), "regular");
    assert_eq!(blame("hum", "2026-01-01T01:00", "A"), "first");
    assert_eq!(blame("hum", "2026-01-01T01:00", "B"), "regular");
    assert_eq!(blame("temp", "2026-01-01T10:00", "B"), "regular");
    // irregular hours, increasing: deltas
    let mut csv = String::from("time,site,temperature,hum,count,lat\n");
    for (i, h) in [20, 21, 23, 26, 30, 35, 41].iter().enumerate() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            + chrono::Duration::hours(*h);
        csv.push_str(&format!(
            "{},A,{i},{i},{i},50.1\n",
            t.format("%Y-%m-%dT%H:%M")
        ));
    }
    let irregular = dir.path().join("irregular.csv");
    std::fs::write(&irregular, csv).unwrap();
    ok(&[
        "update",
        &repo,
        irregular.to_str().unwrap(),
        "-m",
        "irregular",
    ]);
    let rec = record_of_tip();
    let cells = &rec["cells"][""];
    assert_eq!(cells["temp"]["values"][0]["kind"], "d", "{rec}");
    assert_eq!(
        cells["hum"],
        serde_json::json!({"same_as": "temp"}),
        "{rec}"
    );
    // 26 h after 2026-01-01T00:00 CET = 2026-01-02T01:00 UTC, written at A only
    assert_eq!(blame("hum", "2026-01-02T01:00", "A"), "irregular");
    assert_eq!(blame("temp", "2026-01-02T01:00", "B"), "never written");
    assert_eq!(blame("count", "2026-01-02T16:00", "A"), "irregular");
}

/// `diff` and `show` name what changed by cells and coordinate values: counts of cells changed,
/// added and set to NA per variable, and boxes of times × sites; chunk indices only with --chunks.
#[test]
fn diff_and_show_by_cells_and_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    let first: Value = serde_json::from_str(&ok(&["log", &repo, "-n", "1", "--json"])).unwrap();
    let first = first[0]["id"].as_str().unwrap().to_string();
    let b = dir.path().join("b.csv");
    // (02:00, B) changes; (03:00, C) is new; hum at (01:00, A) is erased with --overwrite-na
    std::fs::write(
        &b,
        "time,site,temperature,hum,count,lat\n\
         2026-01-01T02:00,B,30,53,4,49.2\n\
         2026-01-01T03:00,C,31,63,7,48.0\n\
         2026-01-01T01:00,A,10,,1,50.1\n",
    )
    .unwrap();
    let out: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        b.to_str().unwrap(),
        "--overwrite-na",
        "--json",
    ]))
    .unwrap();
    let second = out["commit"].as_str().unwrap().to_string();
    let d: Value = serde_json::from_str(&ok(&["diff", &repo, &first, &second, "--json"])).unwrap();
    let temp = &d["cells"]["nodes"][""]["temp"];
    assert_eq!(temp["changed"], 1, "{d}");
    assert_eq!(temp["added"], 1, "{d}");
    assert_eq!(temp["set_na"], 0, "{d}");
    let hum = &d["cells"]["nodes"][""]["hum"];
    assert_eq!(hum["set_na"], 1, "{d}");
    assert_eq!(hum["added"], 1, "{d}");
    let boxes = temp["boxes"].as_array().unwrap();
    assert_eq!(temp["boxes_total"], boxes.len());
    let named: Vec<(Value, Value)> = boxes
        .iter()
        .map(|b| {
            (
                b["coords"][0]["first"].clone(),
                b["coords"][1]["first"].clone(),
            )
        })
        .collect();
    assert!(
        named.contains(&(Value::from("2026-01-01T01:00:00"), Value::from("B")))
            && named.contains(&(Value::from("2026-01-01T02:00:00"), Value::from("C"))),
        "boxes name times (UTC, from CET) and sites: {named:?}"
    );
    assert_eq!(temp["boxes"][0]["coords"][0]["dim"], "t");
    assert!(
        d.get("chunks").is_none(),
        "chunk indices only with --chunks"
    );
    let with: Value =
        serde_json::from_str(&ok(&["diff", &repo, &first, &second, "--json", "--chunks"])).unwrap();
    assert!(with["chunks"].as_object().is_some_and(|c| !c.is_empty()));
    // count is unchanged where the same values were written again
    assert!(d["cells"]["nodes"][""]
        .get("count")
        .is_none_or(|c| c["changed"] == 0));
    let text = ok(&["show", &repo, &second]);
    assert!(
        text.contains("~ cells  temp: 1 changed, 1 added, 0 set to NA"),
        "{text}"
    );
    assert!(text.contains("site=\"C\""), "{text}");
    // nothing differs between a revision and itself
    let same: Value =
        serde_json::from_str(&ok(&["diff", &repo, &second, &second, "--json"])).unwrap();
    assert_eq!(same["cells"]["nodes"], serde_json::json!({}));
}

/// After gc expired the commits that wrote cells, blame says those cells were written before
/// the history horizon (with its date), never "never written"; cells no one wrote still are.
#[test]
fn blame_after_gc_names_the_history_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let repo = setup(dir.path());
    for (i, t) in ["03:00", "04:00", "05:00"].iter().enumerate() {
        let f = dir.path().join(format!("u{i}.csv"));
        std::fs::write(
            &f,
            format!("time,site,temperature,hum,count,lat\n2026-01-01T{t},C,1,2,3,48.0\n"),
        )
        .unwrap();
        ok(&["update", &repo, f.to_str().unwrap()]);
    }
    // without --drop-provenance gc keeps every commit's provenance: blame still names the writer
    let keep: Value =
        serde_json::from_str(&ok(&["gc", &repo, "--older-than", "0s", "--json"])).unwrap();
    assert_eq!(keep["snapshots_expired"], 0, "{keep}");
    assert!(
        keep["snapshots_kept_for_provenance"].as_u64() > Some(0),
        "{keep}"
    );
    let blame = |t: &str, site: &str| -> Value {
        let out = ok(&[
            "blame",
            &repo,
            "--var",
            "temp",
            "--where",
            &format!("t={t}"),
            "--where",
            &format!("site={site}"),
            "--json",
        ]);
        serde_json::from_str::<Value>(&out).unwrap()[0].clone()
    };
    let kept = blame("2026-01-01T00:00", "A");
    assert_eq!(kept["message"], "first", "{kept}");
    ok(&["gc", &repo, "--older-than", "0s", "--drop-provenance"]);
    // written by the first update, whose commit gc expired (it is no ref's tip)
    let early = blame("2026-01-01T00:00", "A");
    let msg = early["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.starts_with("before the history horizon (2026-"),
        "{early}"
    );
    assert!(early["commit"].is_null());
    // the tip's own cells are still blamed on it
    let tip = blame("2026-01-01T04:00", "C"); // 05:00 CET, the last update
    assert!(tip["commit"].is_string(), "{tip}");
    // a cell no contribution wrote
    let none = blame("2026-01-01T00:00", "C");
    assert_eq!(none["message"], "never written", "{none}");
    let text = ok(&[
        "blame",
        &repo,
        "--var",
        "temp",
        "--where",
        "t=2026-01-01T00:00",
        "--where",
        "site=A",
    ]);
    assert!(text.contains("(before the history horizon"), "{text}");
}
