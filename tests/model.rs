//! Model-based property test (issue C): proptest generates random sequences of operations —
//! updates with small random tables (sorted and unsorted coordinates, NA cells, duplicate rows,
//! insertions before, between and after stored values), revert, reset, branch, merge,
//! cherry-pick, tag — and applies each to the engine and to a plain reference model (dense
//! arrays following ../shared/merge-semantics.md). After every step, the content of every branch
//! and every tag, read back through the public API, equals the model's.
//!
//! The model is exact where the outcome is defined without chunk-level three-way logic: revert of
//! a branch's newest commit, merge and cherry-pick when the target holds exactly the source's
//! base (fast-forward-like); reset to any earlier commit of the branch. Failures shrink; proptest
//! stores their seeds in tests/model.proptest-regressions (committed; re-run first). `ZF_MODEL_CASES` sets the
//! number of cases (CI: 24; a long campaign: `ZF_MODEL_CASES=2000`).

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use zarr_fuse::ingest::Table;
use zarr_fuse::merge::{self, Scalar, UpdateOptions};
use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::Strategy as RevertStrategy;
use zarr_fuse::{Location, Repo};

const WHO: &str = "Model Tester <model@example.org>";
const SCHEMA: &str = "\
VARS:
  temp: {coords: [t, site], type: float64}
COORDS:
  t: {type: int64, chunk_size: 4}
  site: {type: 'str[4]', sorted: false, chunk_size: 2}
";
const SITES: [&str; 4] = ["s0", "s1", "s2", "s3"];

/// The model of one dataset state: sorted t axis, site axis in order of first appearance, cells.
#[derive(Clone, Debug, PartialEq, Default)]
struct State {
    t: Vec<i64>,
    site: Vec<String>,
    temp: BTreeMap<(i64, String), f64>,
}

impl State {
    /// merge-semantics.md: NA coordinates none here; later duplicate rows win; NA values do not
    /// erase stored ones; new t values are inserted in order, new sites appended in order of
    /// first appearance.
    fn update(&self, rows: &[Row]) -> State {
        let mut s = self.clone();
        let mut last: BTreeMap<(i64, String), Option<f64>> = BTreeMap::new();
        for r in rows {
            if !s.t.contains(&r.t) {
                let pos = s.t.partition_point(|x| *x < r.t);
                s.t.insert(pos, r.t);
            }
            let site = SITES[r.site].to_string();
            if !s.site.contains(&site) {
                s.site.push(site.clone());
            }
            last.insert((r.t, site), r.temp);
        }
        for (k, v) in last {
            if let Some(v) = v {
                s.temp.insert(k, v);
            }
        }
        s
    }
}

#[derive(Clone, Debug)]
struct Row {
    t: i64,
    site: usize,
    temp: Option<f64>,
}

#[derive(Clone, Debug)]
enum Op {
    /// `tight`: no memory budget (rows in a temporary file, arrays rewritten one row of chunks
    /// at a time, last first).
    Update {
        branch: usize,
        rows: Vec<Row>,
        tight: bool,
    },
    RevertTip {
        branch: usize,
    },
    Reset {
        branch: usize,
        back: usize,
    },
    Branch {
        from: usize,
    },
    Merge {
        from: usize,
        into: usize,
    },
    CherryPick {
        from: usize,
        into: usize,
    },
    Tag {
        branch: usize,
    },
}

fn row() -> impl proptest::strategy::Strategy<Value = Row> {
    (
        0i64..24,
        0usize..SITES.len(),
        prop_oneof![3 => (-50i32..50).prop_map(|v| Some(f64::from(v) / 2.0)), 1 => Just(None)],
    )
        .prop_map(|(t, site, temp)| Row { t, site, temp })
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, proptest::collection::vec(row(), 1..8), proptest::bool::ANY)
            .prop_map(|(branch, rows, tight)| Op::Update { branch, rows, tight }),
        1 => (0usize..3).prop_map(|branch| Op::RevertTip { branch }),
        1 => (0usize..3, 1usize..4).prop_map(|(branch, back)| Op::Reset { branch, back }),
        1 => (0usize..3).prop_map(|from| Op::Branch { from }),
        1 => (0usize..3, 0usize..3).prop_map(|(from, into)| Op::Merge { from, into }),
        1 => (0usize..3, 0usize..3).prop_map(|(from, into)| Op::CherryPick { from, into }),
        1 => (0usize..3).prop_map(|branch| Op::Tag { branch }),
    ]
}

/// A branch of the model: its commits (id, state), oldest first.
#[derive(Clone, Debug)]
struct Branch {
    name: String,
    commits: Vec<(String, State)>,
}

fn read_state(rt: &tokio::runtime::Runtime, repo: &Repo, rev: &str) -> State {
    rt.block_on(async {
        let id = repo.resolve(rev).await.expect("resolve").id;
        let n = merge::read_node(repo, &id, "").await.expect("read");
        let t = common::axis_i64(&n, 0);
        let site = common::axis_str(&n, 1);
        let (_, _, shape, vals) = &n.vars[0];
        let mut temp = BTreeMap::new();
        for (ti, tv) in t.iter().enumerate() {
            for (si, sv) in site.iter().enumerate() {
                if let Scalar::F(x) = vals[ti * shape[1] as usize + si] {
                    temp.insert((*tv, sv.clone()), x);
                }
            }
        }
        State { t, site, temp }
    })
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from("t,site,temp\n");
    for r in rows {
        let v = r.temp.map(|v| v.to_string()).unwrap_or_default();
        s.push_str(&format!("{},{},{v}\n", r.t, SITES[r.site]));
    }
    s
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let loc = Location::Memory(format!(
        "model-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let repo = rt.block_on(async {
        let repo = Repo::init(&loc).await.expect("init");
        merge::init_dataset(
            &repo,
            SCHEMA,
            "model.yaml",
            Provenance::new(WHO, "init", "init"),
        )
        .await
        .expect("schema");
        repo
    });
    let root = rt
        .block_on(repo.resolve("main"))
        .expect("main")
        .id
        .to_string();
    let mut branches = vec![Branch {
        name: "main".into(),
        commits: vec![(root, State::default())],
    }];
    let mut tags: Vec<(String, State)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let pick = |i: usize| i % branches.len();
        match op {
            Op::Update {
                branch,
                rows,
                tight,
            } => {
                let b = pick(*branch);
                let name = branches[b].name.clone();
                let table = Table::from_csv_bytes(csv(rows).as_bytes(), "model.csv").expect("csv");
                let out = rt
                    .block_on(merge::update(
                        &repo,
                        &name,
                        &[(String::new(), table)],
                        Provenance::new(WHO, "update", format!("step {step}")),
                        &UpdateOptions {
                            memory: tight.then_some(0),
                            ..Default::default()
                        },
                    ))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: update failed: {e}")))?;
                let next = branches[b].commits.last().expect("tip").1.update(rows);
                match out.commit {
                    Some(id) => branches[b].commits.push((id, next)),
                    None => prop_assert_eq!(
                        &next,
                        &branches[b].commits.last().expect("tip").1,
                        "step {}: no commit although the model changed",
                        step
                    ),
                }
            }
            Op::RevertTip { branch } => {
                let b = pick(*branch);
                if branches[b].commits.len() < 2 {
                    continue;
                }
                let (tip, _) = branches[b].commits.last().expect("tip").clone();
                let before = branches[b].commits[branches[b].commits.len() - 2].1.clone();
                let (out, _) = rt
                    .block_on(repo.revert(
                        &tip,
                        &branches[b].name,
                        RevertStrategy::Fail,
                        Provenance::new(WHO, "revert", format!("step {step}")),
                    ))
                    .map_err(|e| {
                        TestCaseError::fail(format!("step {step}: revert of the tip failed: {e}"))
                    })?;
                if let Some(id) = out.commit {
                    branches[b].commits.push((id, before));
                }
            }
            Op::Reset { branch, back } => {
                let b = pick(*branch);
                let n = branches[b].commits.len();
                if *back >= n {
                    continue;
                }
                let keep = n - back;
                let (target, _) = branches[b].commits[keep - 1].clone();
                rt.block_on(repo.reset(&branches[b].name, &target, false))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: reset failed: {e}")))?;
                branches[b].commits.truncate(keep);
            }
            Op::Branch { from } => {
                if branches.len() >= 3 {
                    continue;
                }
                let f = pick(*from);
                let name = format!("b{step}");
                let (tip, _) = branches[f].commits.last().expect("tip").clone();
                rt.block_on(repo.create_branch(&name, &tip))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: branch failed: {e}")))?;
                branches.push(Branch {
                    name,
                    commits: branches[f].commits.clone(),
                });
            }
            Op::Merge { from, into } | Op::CherryPick { from, into } => {
                let (f, i) = (pick(*from), pick(*into));
                if f == i {
                    continue;
                }
                let into_tip = branches[i].commits.last().expect("tip").clone();
                let from_commits = branches[f].commits.clone();
                let from_tip = from_commits.last().expect("tip").clone();
                let is_merge = matches!(op, Op::Merge { .. });
                if is_merge {
                    // defined outcome: the target is an ancestor of the source (or equal to it)
                    if !from_commits.iter().any(|(id, _)| *id == into_tip.0) {
                        continue;
                    }
                    let out = rt
                        .block_on(repo.merge(
                            &branches[f].name,
                            &branches[i].name,
                            Provenance::new(WHO, "merge", format!("step {step}")),
                        ))
                        .map_err(|e| {
                            TestCaseError::fail(format!("step {step}: merge failed: {e}"))
                        })?;
                    match out.commit {
                        Some(id) => branches[i].commits.push((id, from_tip.1.clone())),
                        None => prop_assert_eq!(
                            &into_tip.1,
                            &from_tip.1,
                            "step {}: merge made no commit",
                            step
                        ),
                    }
                } else {
                    // defined outcome: the target holds exactly the source tip's parent state
                    if from_commits.len() < 2
                        || from_commits[from_commits.len() - 2].1 != into_tip.1
                    {
                        continue;
                    }
                    let out = rt
                        .block_on(repo.cherry_pick(
                            &from_tip.0,
                            &branches[i].name,
                            Provenance::new(WHO, "cherry-pick", format!("step {step}")),
                        ))
                        .map_err(|e| {
                            TestCaseError::fail(format!("step {step}: cherry-pick failed: {e}"))
                        })?;
                    if let Some(id) = out.commit {
                        branches[i].commits.push((id, from_tip.1.clone()));
                    }
                }
            }
            Op::Tag { branch } => {
                let b = pick(*branch);
                let name = format!("t{step}");
                let (tip, state) = branches[b].commits.last().expect("tip").clone();
                rt.block_on(repo.create_tag(&name, &tip, None))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: tag failed: {e}")))?;
                tags.push((name, state));
            }
        }
        // after every step: every branch tip and every tag equals the model
        for b in &branches {
            let got = read_state(&rt, &repo, &b.name);
            let want = &b.commits.last().expect("tip").1;
            prop_assert_eq!(&got, want, "step {} ({:?}): branch {}", step, op, b.name);
        }
        for (name, want) in &tags {
            let got = read_state(&rt, &repo, name);
            prop_assert_eq!(&got, want, "step {}: tag {}", step, name);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("ZF_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 400,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_equals_model(ops in proptest::collection::vec(op(), 1..14)) {
        run(&ops)?;
    }
}

/// Regression found by this test: with a duplicate row, new sites were appended in order of
/// first appearance among the rows kept after de-duplication, not in the contribution.
#[test]
fn regression_duplicate_row_keeps_first_appearance_order() {
    let rows = vec![
        Row {
            t: 8,
            site: 2,
            temp: Some(0.0),
        },
        Row {
            t: 0,
            site: 0,
            temp: Some(0.0),
        },
        Row {
            t: 8,
            site: 2,
            temp: Some(0.0),
        },
    ];
    if let Err(e) = run(&[Op::Update {
        branch: 0,
        rows,
        tight: false,
    }]) {
        panic!("{e}");
    }
}
