//! Every merge scenario in tests/fixtures/scenarios (copied from shared/scenarios) as a test:
//! each step is one `update` commit on `main` of a local repository; failing steps must leave the
//! branch exactly as it was; the final arrays must equal the expected ones.

use serde_json::Value;
use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::schema::{load_str, DType};
use zarr_fuse::time::format_ticks;
use zarr_fuse::update::{self, OnInvalid, Scalar, UpdateOptions};
use zarr_fuse::{Location, Repo};

const AUTHOR: &str = "Scenario <scenario@example.org>";

fn matches(expected: &Value, got: &Scalar, tick: Option<zarr_fuse::time::Tick>) -> bool {
    match (expected, got) {
        (Value::Null, Scalar::Na) => true,
        (Value::Number(n), Scalar::F(x)) => {
            let e = n.as_f64().unwrap_or(f64::NAN);
            (e - x).abs() <= 1e-9 * e.abs().max(1e-300) || e == *x
        }
        (Value::Number(n), Scalar::I(x)) => n.as_f64() == Some(*x as f64),
        (Value::String(s), Scalar::I(x)) if tick.is_some() => {
            format_ticks(*x, tick.unwrap_or(zarr_fuse::time::Tick::Second)) == *s
        }
        (Value::String(s), Scalar::S(x)) => s == x,
        (Value::Number(n), Scalar::S(x)) => n.to_string() == *x,
        _ => false,
    }
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other.clone()),
    }
}

async fn run(name: &str, text: &str, memory: Option<usize>) {
    let case = zarr_fuse::schema::yaml_to_json(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let schema_text = case["schema"].as_str().expect("schema");
    let schema = load_str(schema_text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(&Location::Local(dir.path().join("r")))
        .await
        .unwrap();
    update::init_dataset(
        &repo,
        schema_text,
        name,
        Provenance::new(AUTHOR, "init", "init"),
    )
    .await
    .unwrap();
    for (i, step) in case["steps"].as_array().expect("steps").iter().enumerate() {
        let node = step["node"].as_str().unwrap_or("").to_string();
        let csv = step["csv"].as_str().expect("csv");
        let table = Table::from_csv_bytes(csv.as_bytes(), &format!("step{}.csv", i + 1)).unwrap();
        let opts_text: Vec<String> = match &step["options"] {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            _ => vec![],
        };
        let opts = UpdateOptions {
            overwrite_na: opts_text.iter().any(|o| o == "--overwrite-na"),
            on_invalid: if opts_text
                .windows(2)
                .any(|w| w[0] == "--on-invalid" && w[1] == "na")
            {
                OnInvalid::Na
            } else {
                OnInvalid::Error
            },
            dry_run: false,
            memory,
            ..Default::default()
        };
        let tip = repo.branch_tip("main").await.unwrap();
        let res = update::update(
            &repo,
            "main",
            &[(node, table)],
            Provenance::new(AUTHOR, "update", format!("step {}", i + 1)),
            &opts,
        )
        .await;
        if step["expect_error"].as_bool() == Some(true) {
            let err = res
                .err()
                .unwrap_or_else(|| panic!("{name} step {}: must fail", i + 1))
                .to_string();
            for w in step["error_contains"].as_array().into_iter().flatten() {
                let w = match w {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert!(
                    err.contains(&w),
                    "{name} step {}: error '{err}' lacks '{w}'",
                    i + 1
                );
            }
            assert_eq!(
                repo.branch_tip("main").await.unwrap(),
                tip,
                "{name}: failed step changed the branch"
            );
        } else {
            res.unwrap_or_else(|e| panic!("{name} step {}: {e}", i + 1));
        }
    }
    let tip = repo.branch_tip("main").await.unwrap();
    for (node, exp) in case["expect"].as_object().expect("expect") {
        let data = update::read_node(&repo, &tip, node)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ns = schema.node(node).unwrap();
        for (c, want) in exp["coords"].as_object().into_iter().flatten() {
            let got = &data
                .coords
                .iter()
                .find(|(n, _)| n == c)
                .unwrap_or_else(|| panic!("{name}: no coord {c}"))
                .1;
            let tick = ns.coord(c).and_then(|c| match c.var.dtype {
                Some(DType::DateTime(t)) => Some(t),
                _ => None,
            });
            let want = want.as_array().unwrap();
            assert_eq!(
                got.len(),
                want.len(),
                "{name}: coord {c}: got {got:?}, want {want:?}"
            );
            for (w, g) in want.iter().zip(got) {
                assert!(
                    matches(w, g, tick),
                    "{name}: coord {c}: got {got:?}, want {want:?}"
                );
            }
        }
        for (v, want) in exp["vars"].as_object().into_iter().flatten() {
            let (_, _, _, got) = data
                .vars
                .iter()
                .find(|(n, ..)| n == v)
                .unwrap_or_else(|| panic!("{name}: no var {v}"));
            let tick = ns.var(v).and_then(|v| match v.dtype {
                Some(DType::DateTime(t)) => Some(t),
                _ => None,
            });
            let mut flat = vec![];
            flatten(want, &mut flat);
            assert_eq!(
                got.len(),
                flat.len(),
                "{name}: var {v}: got {got:?}, want {want}"
            );
            for (w, g) in flat.iter().zip(got) {
                assert!(
                    matches(w, g, tick),
                    "{name}: var {v}: got {got:?}, want {want}"
                );
            }
        }
    }
    assert!(repo.verify("main", &|_| {}).await.unwrap().ok);
}

#[test]
fn all_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = vec![];
    // every scenario with the default memory budget, and again with none: converted rows in a
    // temporary file, arrays rewritten one row of chunks at a time
    for (f, memory) in files.iter().flat_map(|f| [(f, None), (f, Some(0))]) {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(run(&name, &text, memory))
        }));
        let name = format!("{name} (memory budget {memory:?})");
        if let Err(e) = res {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
