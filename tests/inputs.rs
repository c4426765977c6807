//! What users' files and habits bring (issue E): JSON and yr.no inputs with `--set`/`--rename`,
//! NA spellings, bools, every `--node` form, `--strict`, refused `init`s that leave nothing
//! behind, output into a closed pipe, and every schema type read back by the newest zarr-python +
//! xarray (skipped with a message where Python ≥ 3.12 is absent; the Rust twin reads the same
//! values through `export`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

mod common;
use common::python;

const AUTHOR: &str = "Input Tester <in@example.org>";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}"))
}

fn zf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(args)
        .env("ZF_AUTHOR", AUTHOR)
        .output()
        .expect("run zarr-fuse")
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

fn fails(args: &[&str], code: i32, words: &[&str]) -> String {
    let o = zf(args);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    for w in words {
        assert!(err.contains(w), "{args:?}: stderr lacks '{w}': {err}");
    }
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// Every file under `dir` with its bytes' digest, to prove a refused command wrote nothing.
fn tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((p, blake3::hash(&bytes).to_hex().to_string()));
            }
        }
    }
    out.sort();
    out
}

fn export_json(repo: &str, node: &str, at: Option<&str>) -> Vec<Value> {
    let mut args = vec!["export", repo, "--node", node, "--format", "json"];
    if let Some(a) = at {
        args.extend(["--at", a]);
    }
    let text = ok(&args);
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_else(|| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect()
        })
}

/// Every variable of `node` at each of `refs`, as icechunk-python + the newest zarr-python +
/// xarray read them (`tests/python/read_types.py`).
fn read_with_xarray(py: &Path, repo: &str, node: &str, refs: &[Value]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_types.py");
    let out = Command::new(py)
        .arg(&script)
        .arg(repo)
        .arg(node)
        .args(refs.iter().map(Value::to_string))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn yrno_repo(dir: &Path) -> String {
    let repo = dir.join("repo").display().to_string();
    ok(&[
        "init",
        &repo,
        "--schema",
        fixture("yrno_schema.yaml").to_str().unwrap(),
    ]);
    repo
}

#[test]
fn yrno_forecast_with_set_and_rename() {
    let dir = tempfile::tempdir().unwrap();
    let repo = yrno_repo(dir.path());
    let doc = fixture("yrno_forecast.json");
    let report: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        "--node",
        "forecast",
        doc.to_str().unwrap(),
        "--set",
        "station=hlavo",
        "--set",
        "fresh=True",
        "--rename",
        "relative_humidity=relative_humidity",
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["rows_read"], 6);
    let rows = export_json(&repo, "forecast", None);
    assert_eq!(rows.len(), 6, "{rows:#?}");
    let r0 = &rows[0];
    assert_eq!(r0["station"], "hlavo");
    assert!((r0["air_temperature"].as_f64().unwrap() - 274.35).abs() < 1e-9);
    assert_eq!(r0["longitude"], 15.0531);
    assert_eq!(r0["latitude"], 50.7663);
    assert_eq!(r0["altitude"], 412.0);
    // the 1-hour part has precipitation; entries with only a 6-hour part give NA there
    assert!((rows[3]["precipitation_amount"].as_f64().unwrap() - 0.3).abs() < 1e-9);
    assert!(rows[4]["precipitation_amount"].is_null(), "{:?}", rows[4]);
    assert_eq!(rows[5]["fresh"], 1);
    // the same through the newest zarr-python + xarray
    if let Some(py) = python() {
        let got = read_with_xarray(&py, &repo, "forecast", &[json!({"branch": "main"})]);
        let r = &got["refs"][0];
        assert_eq!(r["station"]["values"], json!(["hlavo"]));
        assert_eq!(r["time"]["values"][5], "2026-11-24T05:00:00");
        assert_eq!(r["precipitation_amount"]["values"][3], 0.3);
        assert!(r["precipitation_amount"]["values"][4].is_null());
        assert_eq!(r["fresh"]["dtype"], "bool");
        assert_eq!(r["longitude"]["values"], json!([15.0531]));
    } else {
        eprintln!("SKIPPED (xarray part): no Python >= 3.12 reader environment; export checked it");
    }
    // the input digest is that of the file's bytes
    let log: Value = serde_json::from_str(&ok(&["log", &repo, "-n", "1", "--json"])).unwrap();
    let digest = blake3::hash(&std::fs::read(&doc).unwrap())
        .to_hex()
        .to_string();
    assert_eq!(log[0]["input_blake3"], digest.as_str());

    // --rename of the input's column, then a second station by --set; JSON records
    let records = dir.path().join("records.json");
    std::fs::write(
        &records,
        r#"[{"time": "2026-11-24T00:00:00Z", "temp_c": 5.0, "wind_speed": 1, "longitude": 14, "latitude": 50, "altitude": 300}]"#,
    )
    .unwrap();
    ok(&[
        "update",
        &repo,
        "--node",
        "forecast",
        records.to_str().unwrap(),
        "--rename",
        "temp_c=air_temperature",
        "--set",
        "station=liberec",
        "--set",
        "air_pressure_at_sea_level=NA",
        "--set",
        "relative_humidity=",
        "--set",
        "precipitation_amount=null",
        "--set",
        "fresh=no",
    ]);
    let rows = export_json(&repo, "forecast", None);
    // a bool array has no NA (spec/024): the new station's unwritten cells read false, so
    // export lists its six times; one of them has the values written here
    let lib: Vec<&Value> = rows
        .iter()
        .filter(|r| r["station"] == "liberec" && !r["air_temperature"].is_null())
        .collect();
    assert_eq!(lib.len(), 1, "{rows:#?}");
    assert!((lib[0]["air_temperature"].as_f64().unwrap() - 278.15).abs() < 1e-9);
    assert_eq!(lib[0]["fresh"], 0);
    assert!(lib[0]["air_pressure_at_sea_level"].is_null());

    // bad input options and shapes: one line, exit 1, nothing written
    let before = tree(Path::new(&repo));
    let f = records.to_str().unwrap();
    let n = ["--node", "forecast"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--set", "temp_c=1"],
            vec!["records.json", "--set temp_c=1", "already has"],
        ),
        (
            vec!["--rename", "nope=x"],
            vec!["records.json", "no column 'nope'"],
        ),
        (vec!["--format", "yrno"], vec!["properties.timeseries"]),
    ];
    let y = doc.to_str().unwrap();
    let yrno_cases: Vec<(Vec<&str>, Vec<&str>)> = vec![(
        vec!["--set", "fresh=maybe", "--set", "station=x"],
        vec![
            "yrno_forecast.json:2",
            "column 'fresh'",
            "'maybe' is not a bool",
        ],
    )];
    let all = cases
        .into_iter()
        .map(|c| (f, c))
        .chain(yrno_cases.into_iter().map(|c| (y, c)));
    for (f, (extra, words)) in all {
        let mut args = vec!["update", &repo, n[0], n[1], f];
        args.extend(extra.iter());
        fails(&args, 1, &words);
    }
    let shapes = dir.path().join("shape.json");
    std::fs::write(&shapes, "42").unwrap();
    fails(
        &["update", &repo, n[0], n[1], shapes.to_str().unwrap()],
        1,
        &[
            "shape.json:1",
            "tried an array of records",
            "NDJSON",
            "yr.no",
        ],
    );
    fails(
        &["update", &repo, n[0], n[1], f, "--set", "novalue"],
        2,
        &["--set 'novalue'", "COL=VALUE"],
    );
    assert_eq!(tree(Path::new(&repo)), before, "a refused update wrote");
}

const NA_SCHEMA: &str = "\
VARS:
  temp: {coords: [t, site], type: float64}
  level: {coords: [t, site], type: int32, na_value: -1}
  wet: {coords: [t, site], type: bool}
  note: {coords: [t, site], type: 'str[8]', na_tokens: ['-', 'missing']}
COORDS:
  t: {type: int64}
  site: {type: 'str[8]', sorted: false}
";

#[test]
fn na_spellings_nan_inf_and_bools() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::write(&s, NA_SCHEMA).unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&["init", &repo, "--schema", s.to_str().unwrap()]);
    let csv = dir.path().join("a.csv");
    std::fs::write(
        &csv,
        "t,site,temp,level,wet,note\n\
         1,A,NaN,NA,true,-\n\
         2,A,nan,N/A,False,missing\n\
         3,A,inf,null,YES,NA\n\
         4,A,-inf,#N/A,0,ok\n\
         5,A,1.5,None,1,\n\
         6,A,-NaN,NULL,no,n/a\n\
         ,A,1,1,1,dropped\n\
         NA,A,1,1,1,dropped\n",
    )
    .unwrap();
    let report: Value =
        serde_json::from_str(&ok(&["update", &repo, csv.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(report["rows_dropped"], 2, "{report}");
    let f = csv.display().to_string();
    assert_eq!(
        report["dropped"],
        json!([{"file": f, "line": 8}, {"file": f, "line": 9}]),
        "the dropped rows' lines"
    );
    let rows = export_json(&repo, "/", None);
    let by_t = |t: i64| {
        rows.iter()
            .find(|r| r["t"] == t)
            .unwrap_or_else(|| panic!("t={t} in {rows:#?}"))
    };
    assert!(by_t(1)["temp"].is_null() && by_t(1)["level"].is_null());
    assert!(by_t(1)["note"].is_null(), "'-' is a schema NA token");
    assert_eq!(by_t(2)["wet"], 0);
    assert_eq!(by_t(3)["wet"], 1);
    assert_eq!(
        by_t(3)["note"],
        "NA",
        "the schema's list replaces the defaults"
    );
    assert_eq!(by_t(4)["note"], "ok");
    assert_eq!(by_t(5)["temp"], 1.5);
    for t in 1..=6 {
        assert!(by_t(t)["level"].is_null(), "t={t}: {:?}", by_t(t));
    }
    // inf and -inf are stored as IEEE values (JSON export has no infinity: the CSV shows them)
    let text = ok(&["export", &repo, "--format", "csv"]);
    assert!(text.contains("inf"), "{text}");
}

#[test]
fn node_option_forms_all_make_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::write(
        &s,
        "a:\n  VARS: {x: {coords: t}}\n  COORDS: {t: {type: int64}}\nb:\n  VARS: {y: {coords: t}}\n  COORDS: {t: {type: int64}}\n",
    )
    .unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&["init", &repo, "--schema", s.to_str().unwrap()]);
    let fa = dir.path().join("a.csv");
    let fb = dir.path().join("b.csv");
    let count = |r: &str| -> usize {
        serde_json::from_str::<Value>(&ok(&["log", r, "--json"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    type Form<'a> = &'a dyn Fn(&str, &str) -> Vec<String>;
    let forms: [Form; 3] = [
        &|a, b| {
            vec![
                "--node".into(),
                format!("a={a}"),
                "--node".into(),
                format!("b={b}"),
            ]
        },
        &|a, b| vec![format!("a={a}"), format!("/b={b}")],
        &|a, _| vec!["--node".into(), "a".into(), a.into()],
    ];
    for (i, form) in forms.iter().enumerate() {
        let t = i as i64 * 10;
        std::fs::write(&fa, format!("t,x\n{t},1\n{},2\n", t + 1)).unwrap();
        std::fs::write(&fb, format!("t,y\n{t},3\n")).unwrap();
        let before = count(&repo);
        let mut args: Vec<String> = vec!["update".into(), repo.clone()];
        args.extend(form(fa.to_str().unwrap(), fb.to_str().unwrap()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&argv);
        assert_eq!(
            count(&repo),
            before + 1,
            "form {i}: one commit for all inputs"
        );
        let rows = export_json(&repo, "a", None);
        assert!(rows.iter().any(|r| r["t"] == t + 1), "form {i}: {rows:?}");
        if i < 2 {
            assert!(export_json(&repo, "b", None).iter().any(|r| r["t"] == t));
        }
    }
    fails(
        &[
            "update",
            &repo,
            "--node",
            "a",
            "--node",
            "b",
            fa.to_str().unwrap(),
        ],
        2,
        &["--node PATH given 2 times"],
    );
    let help = ok(&["update", "--help"]);
    assert!(help.contains("PATH=FILE"), "{help}");
}

#[test]
fn strict_schema_check_refused_init_and_closed_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = fixture("legacy_schema.yaml");
    let l = legacy.to_str().unwrap();
    let out = ok(&["schema", "check", l]);
    assert!(out.contains("OK"), "{out}");
    fails(
        &["schema", "check", l, "--strict"],
        1,
        &["--strict", "warning(s)"],
    );
    // a refused init leaves the path as it was: absent, or an empty directory
    let absent = dir.path().join("absent");
    let a = absent.to_str().unwrap();
    fails(&["init", a, "--schema", l, "--strict"], 1, &["--strict"]);
    assert!(!absent.exists(), "init --strict left a directory");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "\"../x\":\n  VARS: {v: {coords: t}}\n  COORDS: {t: {}}\n",
    )
    .unwrap();
    fails(
        &["init", a, "--schema", bad.to_str().unwrap()],
        1,
        &["bad.yaml:1:1", "node name '../x'"],
    );
    assert!(!absent.exists());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        &["init", empty.to_str().unwrap(), "--schema", l, "--strict"],
        1,
        &["--strict"],
    );
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    // output into a closed pipe ends quietly
    let repo = dir.path().join("repo");
    ok(&["init", repo.to_str().unwrap(), "--schema", l]);
    // outputs that cannot be written say what and why
    let missing = dir.path().join("no/such/dir/out.csv");
    fails(
        &[
            "export",
            repo.to_str().unwrap(),
            "--node",
            "hillside",
            "-o",
            missing.to_str().unwrap(),
        ],
        1,
        &[
            "cannot write the 0-row export to",
            "does not exist; create it first",
        ],
    );

    for _ in 0..3 {
        ok(&[
            "tag",
            repo.to_str().unwrap(),
            "create",
            &format!("t{}", rand_name()),
        ]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(["log", repo.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.trim().is_empty(), "{err}");
}

fn rand_name() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Every type of the schema language, written by `update` at two commits (a tag, a branch) and
/// read back by icechunk-python + the newest zarr-python + xarray at the tag, the branch and the
/// old commit; the same values are checked through `export` in Rust first.
#[test]
fn every_type_reads_back_in_the_newest_zarr_python() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::write(
        &s,
        "\
VARS:
  f32: {coords: [time, loc], type: float32}
  f64: {coords: [time, loc], type: float64}
  i8: {coords: [time, loc], type: int8, na_value: -1}
  i16: {coords: [time, loc], type: int16}
  i32: {coords: [time, loc], type: int32}
  i64: {coords: [time, loc], type: int64}
  u8: {coords: [time, loc], type: uint8}
  u16: {coords: [time, loc], type: uint16}
  u32: {coords: [time, loc], type: uint32}
  u64: {coords: [time, loc], type: uint64}
  flag: {coords: [time, loc], type: bool}
  label: {coords: [time, loc], type: 'str[8]'}
  seen: {coords: [time, loc], unit: {tick: s, tz: null}}
  lat: {coords: loc, unit: deg}
  lon: {coords: loc, unit: deg}
  name: {coords: loc, type: 'str[16]'}
COORDS:
  time: {unit: {tick: h, tz: null}}
  loc: {composed: [lat, lon]}
",
    )
    .unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&["init", &repo, "--schema", s.to_str().unwrap()]);
    let header = "time,lat,lon,name,f32,f64,i8,i16,i32,i64,u8,u16,u32,u64,flag,label,seen\n";
    let a = dir.path().join("a.csv");
    std::fs::write(
        &a,
        format!(
            "{header}\
             2026-01-01T00:00Z,50.5,14.25,Hlavo,1.5,2.25,-8,-16,-32,-64,8,16,32,64,true,ab,2026-01-01T00:00:30Z\n\
             2026-01-01T01:00Z,50.5,14.25,Hlavo,,,NA,16,32,64,0,0,0,0,false,,\n"
        ),
    )
    .unwrap();
    let c1 = serde_json::from_str::<Value>(&ok(&["update", &repo, a.to_str().unwrap(), "--json"]))
        .unwrap()["commit"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["tag", &repo, "create", "v1"]);
    let b = dir.path().join("b.csv");
    std::fs::write(
        &b,
        format!(
            "{header}2026-01-01T02:00Z,49.0,15.5,Liberec,-0.5,1e300,127,32767,2147483647,9007199254740993,254,65534,4294967294,123,1,xyz,2026-01-01T02:59:59Z\n"
        ),
    )
    .unwrap();
    ok(&["update", &repo, b.to_str().unwrap()]);

    // the NA marker of a narrow type without na_value is refused, not silently made NA
    let m = dir.path().join("marker.csv");
    std::fs::write(
        &m,
        format!("{header}2026-01-01T03:00Z,49.0,15.5,Liberec,1,1,1,1,1,1,255,1,1,1,1,a,\n"),
    )
    .unwrap();
    let o = zf(&["update", &repo, m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NA marker of type uint8"));

    // Rust twin: the values as export reads them
    let rows = export_json(&repo, "/", None);
    // 3 times x 2 places: every cell has a value in `flag` (a bool array has no NA, spec/024)
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| !r["f64"].is_null()).count(), 2);
    let last = rows
        .iter()
        .find(|r| r["name"] == "Liberec" && !r["i64"].is_null())
        .expect("Liberec");
    assert_eq!(last["i64"], 9_007_199_254_740_993i64);
    assert_eq!(last["u32"], 4_294_967_294u64);
    assert_eq!(last["label"], "xyz");

    let Some(py) = python() else {
        eprintln!("SKIPPED: no Python >= 3.12 reader environment (run scripts/python-reader-env.sh); the Rust export above checked the same values");
        return;
    };
    let refs = [
        json!({"branch": "main"}),
        json!({"tag": "v1"}),
        json!({"snapshot_id": c1}),
    ];
    let got = read_with_xarray(&py, &repo, "", &refs);
    eprintln!("reader versions: {}", got["versions"]);
    let main = &got["refs"][0];
    let v = |name: &str| main[name]["values"].as_array().cloned().unwrap_or_default();
    // shape (time 3, loc 2): row-major cells (t0,l0) (t0,l1) (t1,l0) ...
    assert_eq!(main["time"]["values"][2], "2026-01-01T02:00:00");
    assert_eq!(v("name"), [json!("Hlavo"), json!("Liberec")]);
    assert_eq!(v("lat"), [json!(50.5), json!(49.0)]);
    assert_eq!(v("f32")[0], 1.5);
    assert_eq!(v("f64")[5], 1e300);
    assert_eq!(v("i8")[0], -8.0);
    assert!(v("i8")[2].is_null(), "NA of int8 is masked: {:?}", v("i8"));
    assert!(v("i16")[1].is_null(), "never-written cells are masked");
    assert_eq!(v("i32")[5], 2_147_483_647.0);
    assert_eq!(v("u16")[5], 65534.0);
    assert_eq!(main["flag"]["dtype"], "bool", "booleans read as booleans");
    assert_eq!(v("flag")[0], true);
    assert_eq!(v("flag")[2], false);
    assert_eq!(v("flag")[5], true);
    for (name, dtype) in [("i16", "int16"), ("u8", "uint8"), ("i64", "int64")] {
        // masked integer arrays read as floats (NaN = NA); their own type shows without NA
        let d = main[name]["dtype"].as_str().unwrap_or_default().to_string();
        assert!(d == dtype || d.starts_with("float"), "{name}: {d}");
    }
    assert_eq!(v("label")[0], "ab");
    assert_eq!(v("label")[5], "xyz");
    assert_eq!(v("seen")[0], "2026-01-01T00:00:30");
    assert!(v("seen")[2].is_null(), "NaT");
    // the tag and the old commit see the first state only
    for r in [&got["refs"][1], &got["refs"][2]] {
        assert_eq!(r["time"]["values"].as_array().map(Vec::len), Some(2));
        assert_eq!(r["name"]["values"], json!(["Hlavo"]));
    }
}

/// A repository written before spec/024 (a codec as a bare name, no `_FillValue`) is repaired by
/// `zarr-fuse repair` as one commit; a second repair finds nothing to do; the newest zarr-python
/// opens the repaired node.
#[test]
fn repair_rewrites_old_array_metadata() {
    use zarrs_storage::AsyncWritableStorageTraits;
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::write(
        &s,
        "VARS:\n  v: {coords: [t, site], type: int32}\nCOORDS:\n  t: {type: int64}\n  site: {type: 'str[8]', sorted: false}\n",
    )
    .unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&["init", &repo, "--schema", s.to_str().unwrap()]);
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "t,site,v\n1,A,5\n2,B,6\n").unwrap();
    ok(&["update", &repo, csv.to_str().unwrap()]);
    // make the metadata look as earlier versions wrote it
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = zarr_fuse::Repo::open(&zarr_fuse::Location::Local(repo.clone().into()))
            .await
            .unwrap();
        let tx = r.transaction("main").await.unwrap();
        let store = tx.store();
        for (key, mutate) in [("site/zarr.json", true), ("v/zarr.json", false)] {
            let k = zarrs_storage::StoreKey::new(key).unwrap();
            let bytes = zarrs_storage::AsyncReadableStorageTraits::get(store.as_ref(), &k)
                .await
                .unwrap()
                .unwrap();
            let mut v: Value = serde_json::from_slice(&bytes).unwrap();
            if mutate {
                v["codecs"][0] = json!("vlen-utf8");
            }
            v["attributes"]
                .as_object_mut()
                .unwrap()
                .remove("_FillValue");
            store
                .set(&k, serde_json::to_vec(&v).unwrap().into())
                .await
                .unwrap();
        }
        tx.commit(zarr_fuse::provenance::Provenance::new(
            AUTHOR, "test", "old form",
        ))
        .await
        .unwrap();
    });
    let out: Value = serde_json::from_str(&ok(&["repair", &repo, "--json"])).unwrap();
    assert!(out["commit"].is_string(), "{out}");
    assert_eq!(out["arrays"], json!(["/site", "/v"]), "{out}");
    let again: Value = serde_json::from_str(&ok(&["repair", &repo, "--json"])).unwrap();
    assert!(again["commit"].is_null(), "{again}");
    assert_eq!(again["arrays"], json!([]));
    let Some(py) = python() else {
        eprintln!("SKIPPED: no Python >= 3.12 reader environment; the metadata was checked above");
        return;
    };
    let got = read_with_xarray(&py, &repo, "", &[json!({"branch": "main"})]);
    assert_eq!(got["refs"][0]["site"]["values"], json!(["A", "B"]));
    // an integer coordinate stays integer in xarray (no _FillValue on coordinates)
    assert_eq!(got["refs"][0]["t"]["dtype"], "int64", "{got}");
    assert_eq!(got["refs"][0]["v"]["values"], json!([5.0, null, null, 6.0]));
}

/// Blame after one update with several files: every file's cells are credited to the commit
/// (not "never written"), for one node and for several; a later file wins at a cell both write.
#[test]
fn blame_covers_every_file_of_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.yaml");
    std::fs::write(
        &s,
        "VARS:\n  v: {coords: [t, site]}\nCOORDS:\n  t: {type: int64}\n  site: {type: 'str[8]', sorted: false}\nother:\n  VARS: {w: {coords: t}}\n  COORDS: {t: {type: int64}}\n",
    )
    .unwrap();
    let repo = dir.path().join("repo").display().to_string();
    ok(&["init", &repo, "--schema", s.to_str().unwrap()]);
    let a = dir.path().join("a.csv");
    let b = dir.path().join("b.csv");
    let c = dir.path().join("c.csv");
    std::fs::write(&a, "t,site,v\n1,A,1.0\n2,A,2.0\n").unwrap();
    std::fs::write(&b, "t,site,v\n2,A,20.0\n3,B,3.0\n,B,9.0\n").unwrap();
    std::fs::write(&c, "t,w\n7,70\n").unwrap();
    let report: Value = serde_json::from_str(&ok(&[
        "update",
        &repo,
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        &format!("other={}", c.display()),
        "--json",
    ]))
    .unwrap();
    let commit = report["commit"].as_str().unwrap().to_string();
    assert_eq!(report["duplicates"], 1, "{report}");
    // a dropped row is named by its own file and line
    assert_eq!(
        report["dropped"],
        json!([{"file": b.display().to_string(), "line": 4}]),
        "{report}"
    );
    let blame = |node: &str, var: &str, wheres: &[&str]| -> Value {
        let mut args = vec!["blame", &repo, "--node", node, "--var", var, "--json"];
        for w in wheres {
            args.extend(["--where", w]);
        }
        serde_json::from_str(&ok(&args)).unwrap()
    };
    for (t, site) in [("1", "A"), ("2", "A"), ("3", "B")] {
        let r = blame("/", "v", &[&format!("t={t}"), &format!("site={site}")]);
        assert_eq!(r[0]["commit"], commit.as_str(), "t={t} site={site}: {r}");
    }
    let r = blame("other", "w", &["t=7"]);
    assert_eq!(r[0]["commit"], commit.as_str(), "{r}");
    // the later file won at (2, A)
    let rows = export_json(&repo, "/", None);
    let cell = rows
        .iter()
        .find(|r| r["t"] == 2 && r["site"] == "A")
        .unwrap();
    assert_eq!(cell["v"], 20.0);
}
