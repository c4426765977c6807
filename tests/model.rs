//! Model-based property test (issue C): proptest generates random sequences of operations —
//! updates with small random tables (sorted and unsorted coordinates, NA cells, duplicate rows,
//! insertions before, between and after stored values), revert, reset, branch, merge,
//! cherry-pick, tag — and applies each to the engine and to a plain reference model (dense
//! arrays following ../shared/merge-semantics.md). After every step, the content of every branch
//! and every tag, read back through the public API, equals the model's, and blame of every cell
//! of every branch names the commit the model credits (spec/011, 018: reverts and what they
//! revert passed over, merges followed, cherry-picks credited with the picked update's cells),
//! so the skip pointers blame jumps by (spec/018) are checked against the model.
//!
//! Revert, merge and cherry-pick go by cells (merge-semantics §5, spec/028): revert of any commit
//! of a branch (conflicting cells keep their later values), merges of diverged branches and
//! cherry-picks (conflicts decided by turns for either side), reset to any earlier commit of the
//! branch, squash by hour of a whole branch followed by gc (spec/029: commits written again get
//! new ids, folded contributions keep theirs). Failures shrink; proptest
//! stores their seeds in tests/model.proptest-regressions (committed; re-run first). `ZF_MODEL_CASES` sets the
//! number of cases (CI: 24; a long campaign: `ZF_MODEL_CASES=2000`).

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use zarr_fuse::history::{self, HistoryOptions, Resolve};
use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::Period;
use zarr_fuse::update::{self, Scalar, UpdateOptions};
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

type Cell = (i64, String);

impl State {
    /// The axes of a three-way by cells onto `self` from `other` (§3): sorted union of t, sites
    /// in `self`'s order then `other`'s new ones in its order; the cells of `temp`.
    fn with_axes_of(&self, other: &State, temp: BTreeMap<Cell, f64>) -> State {
        let mut t: Vec<i64> = self.t.iter().chain(&other.t).copied().collect();
        t.sort_unstable();
        t.dedup();
        let mut site = self.site.clone();
        for x in &other.site {
            if !site.contains(x) {
                site.push(x.clone());
            }
        }
        State { t, site, temp }
    }

    /// merge-semantics.md: NA coordinates none here; later duplicate rows win; NA values do not
    /// erase stored ones; new t values are inserted in order, new sites appended in order of
    /// first appearance.
    /// The cells an update with `rows` writes (blame credits them to it): the last row of each
    /// cell, when its value is not NA.
    fn written(rows: &[Row]) -> Vec<(i64, String)> {
        let mut last: BTreeMap<(i64, String), Option<f64>> = BTreeMap::new();
        for r in rows {
            last.insert((r.t, SITES[r.site].to_string()), r.temp);
        }
        last.into_iter().filter_map(|(k, v)| v.map(|_| k)).collect()
    }

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
    /// Revert the commit `back` steps below the tip, by cells, keeping later values.
    Revert {
        branch: usize,
        back: usize,
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
    /// Squash the whole branch by hour (every commit is older than now), then gc.
    Squash {
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
        2 => (0usize..3, 1usize..5).prop_map(|(branch, back)| Op::Revert { branch, back }),
        1 => (0usize..3, 1usize..4).prop_map(|(branch, back)| Op::Reset { branch, back }),
        1 => (0usize..3).prop_map(|from| Op::Branch { from }),
        1 => (0usize..3, 0usize..3).prop_map(|(from, into)| Op::Merge { from, into }),
        1 => (0usize..3, 0usize..3).prop_map(|(from, into)| Op::CherryPick { from, into }),
        1 => (0usize..3).prop_map(|branch| Op::Tag { branch }),
        1 => (0usize..3).prop_map(|branch| Op::Squash { branch }),
    ]
}

/// Who blame says last wrote each cell (spec/011): cell → commit id; `None` where the model
/// does not define it (after a cherry-pick of a commit that is not an update).
type Attr = Option<BTreeMap<(i64, String), String>>;

/// A branch of the model: its commits (id, state, blame), oldest first.
#[derive(Clone, Debug)]
struct Branch {
    name: String,
    commits: Vec<(String, State, Attr)>,
}

/// Blame of every cell of `rev` (one call, no selection), as cell → commit id.
fn read_blame(
    rt: &tokio::runtime::Runtime,
    repo: &Repo,
    rev: &str,
    state: &State,
    wheres: &[&str],
) -> BTreeMap<(i64, String), Option<String>> {
    let wheres: Vec<_> = wheres
        .iter()
        .map(|w| zarr_fuse::audit::Where::parse(w).expect("where"))
        .collect();
    let recs = rt
        .block_on(zarr_fuse::audit::blame(repo, "", "temp", rev, &wheres))
        .expect("blame");
    let mut got = BTreeMap::new();
    for r in recs {
        let t = r.selection["t"].as_array().expect("t range");
        let (lo, hi) = (t[0].as_i64().expect("t"), t[1].as_i64().expect("t"));
        // one site shows as [s, s]
        let sites: std::collections::BTreeSet<&str> = r.selection["site"]
            .as_array()
            .expect("sites")
            .iter()
            .map(|s| s.as_str().expect("site"))
            .collect();
        for site in sites {
            let site = site.to_string();
            for tv in state.t.iter().filter(|tv| (lo..=hi).contains(*tv)) {
                let prev = got.insert((*tv, site.clone()), r.commit.clone());
                assert!(prev.is_none(), "blame names cell ({tv}, {site}) twice");
            }
        }
    }
    got
}

fn read_state(rt: &tokio::runtime::Runtime, repo: &Repo, rev: &str) -> State {
    rt.block_on(async {
        let id = repo.resolve(rev).await.expect("resolve").id;
        let n = update::read_node(repo, &id, "").await.expect("read");
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

/// The model of a revert by cells (merge-semantics §5), keeping later values.
struct RevertModel {
    state: State,
    /// The cells the revert's record lists: restored, or written by the reverted commit with
    /// the value its parent had.
    taken: Vec<Cell>,
    /// Of those, the ones no later commit wrote (blame passes over the reverted commit there).
    passed: Vec<Cell>,
}

/// Revert of commit `c_id` (state `c`, parent state `p`) on a tip `tip` after `later` commits.
fn model_revert(
    c_id: &str,
    c: &State,
    p: &State,
    tip: &State,
    later: &[String],
    records: &BTreeMap<String, Vec<Cell>>,
    reverts: &BTreeMap<String, String>,
) -> RevertModel {
    let ids: std::collections::BTreeSet<&String> = later.iter().collect();
    // a revert and the commit it reverts, both later, cancel out
    let mut cancelled = std::collections::BTreeSet::new();
    for id in later {
        if let Some(t) = reverts.get(id).filter(|t| ids.contains(t)) {
            cancelled.insert(id.clone());
            cancelled.insert(t.clone());
        }
    }
    let written_later = |x: &Cell| {
        later
            .iter()
            .filter(|id| !cancelled.contains(*id))
            .any(|id| records.get(id).is_some_and(|r| r.contains(x)))
    };
    let mut temp = tip.temp.clone();
    let mut taken = vec![];
    let mut passed = vec![];
    let mine = records.get(c_id).cloned().unwrap_or_default();
    let keys: std::collections::BTreeSet<Cell> = c
        .temp
        .keys()
        .chain(p.temp.keys())
        .chain(mine.iter())
        .cloned()
        .collect();
    for x in keys {
        let (b, t, o) = (c.temp.get(&x), p.temp.get(&x), tip.temp.get(&x));
        if b == t {
            if mine.contains(&x) {
                if !written_later(&x) {
                    passed.push(x.clone());
                }
                taken.push(x);
            }
            continue;
        }
        if written_later(&x) || o != b {
            continue; // a conflict: the later value stays
        }
        match t {
            Some(v) => temp.insert(x.clone(), *v),
            None => temp.remove(&x),
        };
        passed.push(x.clone());
        taken.push(x);
    }
    RevertModel {
        state: tip.with_axes_of(p, temp),
        taken,
        passed,
    }
}

impl RevertModel {
    /// State, blame and record: the cells blame passes over the reverted commit for are blamed
    /// as at its parent, the others as at the tip.
    fn with_blame(
        self,
        tip: Option<&BTreeMap<Cell, String>>,
        parent: Option<&BTreeMap<Cell, String>>,
    ) -> (State, Attr, Vec<Cell>) {
        let attr = match (tip, parent) {
            (Some(tip), Some(parent)) => {
                let mut a = tip.clone();
                for x in &self.passed {
                    match parent.get(x) {
                        Some(id) => a.insert(x.clone(), id.clone()),
                        None => a.remove(x),
                    };
                }
                Some(a)
            }
            _ => None,
        };
        (self.state, attr, self.taken)
    }
}

/// Three-way by cells of `theirs` over `base` onto `ours` (merge-semantics §5), conflicts (both
/// sides changed, differently) decided for theirs when `take_source`: the result and the cells
/// taken from theirs.
fn three_way(ours: &State, theirs: &State, base: &State, take_source: bool) -> (State, Vec<Cell>) {
    let axes = ours.with_axes_of(theirs, BTreeMap::new());
    let mut temp = BTreeMap::new();
    let mut taken = vec![];
    for t in &axes.t {
        for site in &axes.site {
            let x = (*t, site.clone());
            let (o, th, b) = (ours.temp.get(&x), theirs.temp.get(&x), base.temp.get(&x));
            let v = if th != b && (o == b || take_source) {
                th
            } else {
                o
            };
            if v != o {
                taken.push(x.clone());
            }
            if let Some(v) = v {
                temp.insert(x, *v);
            }
        }
    }
    (State { temp, ..axes }, taken)
}

/// The model's commits of a branch after a squash (spec/029), matched to the engine's new
/// history `log` (newest first): kept commits as they were, squash commits with the state of
/// the last contribution they fold, commits written again with the state of the one they
/// replay. Blame credits folded contributions by their first id and replayed commits by their
/// new id; the records and reverts of renamed commits follow.
fn model_squash(
    old: &[(String, State, Attr)],
    log: &[zarr_fuse::repo::CommitInfo],
    records: &mut BTreeMap<String, Vec<Cell>>,
    reverts: &mut BTreeMap<String, String>,
    folded_ids: &mut BTreeMap<String, Vec<String>>,
    originals: &mut BTreeMap<String, String>,
) -> Result<Vec<(String, State, Attr)>, String> {
    let first_id = |id: &str| originals.get(id).cloned().unwrap_or_else(|| id.to_string());
    let mut rename: BTreeMap<String, String> = BTreeMap::new();
    let mut out = vec![];
    let mut pending_originals = vec![];
    for c in log.iter().rev() {
        if let Some(e) = old.iter().find(|e| e.0 == c.id) {
            out.push(e.clone());
            continue;
        }
        let folded = zarr_fuse::repo::folded(c);
        let key = if !folded.is_empty() {
            let mut ids = vec![];
            for f in &folded {
                let cur = f
                    .extra
                    .get("snapshot")
                    .and_then(|v| v.as_str())
                    .unwrap_or(&f.id)
                    .to_string();
                match folded_ids.get(f.id.as_str()).cloned() {
                    // an earlier squash commit, kept whole inside this one
                    Some(inner) => ids.extend(inner),
                    None => {
                        rename.insert(cur, f.id.to_string());
                        ids.push(f.id.to_string());
                    }
                }
            }
            folded_ids.insert(c.id.to_string(), ids);
            // the state of the last commit of the run: the newest entry's, or the earlier
            // squash commit's whose list ends with it
            let last = &folded[0];
            let cur = last
                .extra
                .get("snapshot")
                .and_then(|v| v.as_str())
                .unwrap_or(&last.id)
                .to_string();
            old.iter()
                .map(|e| e.0.clone())
                .find(|id| {
                    *id == cur
                        || folded_ids.get(id).is_some_and(|l| {
                            l.first().map(String::as_str) == Some(last.id.as_str())
                        })
                })
                .unwrap_or(cur)
        } else if let Some(r) = c.extra.get("replayed_from").and_then(|v| v.as_str()) {
            let cur = old
                .iter()
                .map(|e| e.0.clone())
                .find(|id| first_id(id) == r)
                .ok_or_else(|| format!("replayed commit {} of {r}: not in the model", c.id))?;
            rename.insert(cur.clone(), c.id.to_string());
            pending_originals.push((c.id.to_string(), r.to_string()));
            cur
        } else if c.parents.is_empty() {
            continue; // the repository's first commit, below the model's history
        } else {
            return Err(format!(
                "commit {} after the squash is unknown to the model",
                c.id
            ));
        };
        let e = old
            .iter()
            .find(|e| e.0 == key)
            .ok_or_else(|| format!("squash commit {}: {key} not in the model", c.id))?;
        out.push((c.id.to_string(), e.1.clone(), e.2.clone()));
    }
    originals.extend(pending_originals);
    for e in &mut out {
        if let Some(a) = &mut e.2 {
            for v in a.values_mut() {
                if let Some(n) = rename.get(v) {
                    *v = n.clone();
                }
            }
        }
    }
    for (from, to) in &rename {
        if let Some(r) = records.get(from).cloned() {
            records.insert(to.clone(), r);
        }
        if let Some(t) = reverts.get(from).cloned() {
            reverts.insert(to.clone(), rename.get(&t).cloned().unwrap_or(t));
        }
    }
    Ok(out)
}

/// Blame after taking `taken` cells onto a target blamed as `target`: from the source's blame
/// (a merge) or to the new commit `to` (a cherry-pick).
fn credit(
    target: Option<&BTreeMap<Cell, String>>,
    source: Option<&BTreeMap<Cell, String>>,
    taken: &[Cell],
    to: Option<&String>,
) -> Attr {
    let mut a = target?.clone();
    for x in taken {
        let who = match to {
            Some(id) => Some(id.clone()),
            None => source?.get(x).cloned(),
        };
        match who {
            Some(id) => a.insert(x.clone(), id),
            None => a.remove(x),
        };
    }
    Some(a)
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
        update::init_dataset(
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
        commits: vec![(root, State::default(), Some(BTreeMap::new()))],
    }];
    let mut tags: Vec<(String, State)> = Vec::new();
    // the cells each commit's record lists (updates: written; revert, merge, cherry-pick: taken)
    let mut records: BTreeMap<String, Vec<Cell>> = BTreeMap::new();
    // revert commit → the commit it reverted
    let mut reverts: BTreeMap<String, String> = BTreeMap::new();
    // squash commit → the (first) ids of the contributions it folds, newest first
    let mut folded_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // commit written again by a squash → the id it was first committed as
    let mut originals: BTreeMap<String, String> = BTreeMap::new();
    let cells_opts = |resolve| HistoryOptions {
        resolve,
        dry_run: false,
    };
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
                    .block_on(update::update(
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
                let tip = branches[b].commits.last().expect("tip");
                let next = tip.1.update(rows);
                let mut attr = tip.2.clone();
                match out.commit.map(|c| c.to_string()) {
                    Some(id) => {
                        let cells = State::written(rows);
                        for cell in &cells {
                            attr.as_mut().map(|a| a.insert(cell.clone(), id.clone()));
                        }
                        records.insert(id.clone(), cells);
                        branches[b].commits.push((id, next, attr))
                    }
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
                let (tip, _, _) = branches[b].commits.last().expect("tip").clone();
                let (_, before, before_attr) =
                    branches[b].commits[branches[b].commits.len() - 2].clone();
                let out = rt
                    .block_on(history::revert(
                        &repo,
                        &tip,
                        &branches[b].name,
                        &cells_opts(Resolve::Fail),
                        Provenance::new(WHO, "revert", format!("step {step}")),
                    ))
                    .map_err(|e| {
                        TestCaseError::fail(format!("step {step}: revert of the tip failed: {e}"))
                    })?;
                // nothing after it: the parent's exact state; blame passes over both
                if let Some(id) = out.commit.map(|c| c.to_string()) {
                    reverts.insert(id.clone(), tip);
                    branches[b].commits.push((id, before, before_attr));
                }
            }
            Op::Revert { branch, back } => {
                let b = pick(*branch);
                let n = branches[b].commits.len();
                if *back >= n - 1 {
                    continue; // not the first commit (the schema's)
                }
                let k = n - 1 - back;
                let commits = branches[b].commits.clone();
                let (c_id, c_state, _) = commits[k].clone();
                let (_, p_state, p_attr) = commits[k - 1].clone();
                let (_, tip_state, tip_attr) = commits[n - 1].clone();
                let later = &commits[k + 1..];
                if later
                    .iter()
                    .any(|(id, _, _)| reverts.get(id) == Some(&c_id))
                {
                    continue; // already reverted: refused (tested in tests/history.rs)
                }
                let out = rt
                    .block_on(history::revert(
                        &repo,
                        &c_id,
                        &branches[b].name,
                        &cells_opts(Resolve::KeepTarget),
                        Provenance::new(WHO, "revert", format!("step {step}")),
                    ))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: revert failed: {e}")))?;
                // a squash commit stands for the contributions it folds
                let later: Vec<String> = later
                    .iter()
                    .flat_map(|(id, _, _)| {
                        folded_ids
                            .get(id)
                            .cloned()
                            .unwrap_or_else(|| vec![id.clone()])
                    })
                    .collect();
                let (want, attr, taken) = model_revert(
                    &c_id, &c_state, &p_state, &tip_state, &later, &records, &reverts,
                )
                .with_blame(tip_attr.as_ref(), p_attr.as_ref());
                // no later change: the parent's exact state, axes included, restored by chunks
                // (blame as by cells: later writers of a cell keep it)
                let (want, taken) = if tip_state == c_state {
                    (p_state.clone(), vec![])
                } else {
                    (want, taken)
                };
                match out.commit.map(|c| c.to_string()) {
                    Some(id) => {
                        reverts.insert(id.clone(), c_id);
                        records.insert(id.clone(), taken);
                        branches[b].commits.push((id, want, attr));
                    }
                    None => {
                        prop_assert_eq!(&want, &tip_state, "step {}: revert made no commit", step)
                    }
                }
            }
            Op::Reset { branch, back } => {
                let b = pick(*branch);
                let n = branches[b].commits.len();
                if *back >= n {
                    continue;
                }
                let keep = n - back;
                let (target, _, _) = branches[b].commits[keep - 1].clone();
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
                let (tip, _, _) = branches[f].commits.last().expect("tip").clone();
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
                // conflicts are decided (by turns keeping the target's or taking the source's)
                let resolve = if step % 2 == 0 {
                    Resolve::KeepTarget
                } else {
                    Resolve::TakeSource
                };
                let prov = Provenance::new(WHO, "history", format!("step {step}"));
                let opts = cells_opts(resolve);
                let (base, out) = if is_merge {
                    // the merge base: the newest commit of the source also on the target
                    let Some(base) = from_commits
                        .iter()
                        .rev()
                        .find(|(id, _, _)| branches[i].commits.iter().any(|(j, _, _)| j == id))
                        .cloned()
                    else {
                        continue;
                    };
                    let (src, into) = (&branches[f].name, &branches[i].name);
                    let out = history::merge(&repo, src, into, &opts, prov);
                    (base, rt.block_on(out))
                } else {
                    if from_commits.len() < 2 {
                        continue;
                    }
                    let base = from_commits[from_commits.len() - 2].clone();
                    let (c, into) = (&from_tip.0, &branches[i].name);
                    let out = history::cherry_pick(&repo, c, into, &opts, prov);
                    (base, rt.block_on(out))
                };
                let out = out
                    .map_err(|e| TestCaseError::fail(format!("step {step}: {op:?} failed: {e}")))?;
                // the source changed nothing since the base: nothing to do (axes included)
                let (want, taken) = if from_tip.1 == base.1 {
                    (into_tip.1.clone(), vec![])
                } else {
                    three_way(
                        &into_tip.1,
                        &from_tip.1,
                        &base.1,
                        resolve == Resolve::TakeSource,
                    )
                };
                match out.commit.map(|c| c.to_string()) {
                    Some(id) => {
                        // a merge's taken cells are blamed along the source, a pick's on it
                        let attr = if is_merge {
                            credit(into_tip.2.as_ref(), from_tip.2.as_ref(), &taken, None)
                        } else {
                            credit(into_tip.2.as_ref(), None, &taken, Some(&id))
                        };
                        records.insert(id.clone(), taken);
                        branches[i].commits.push((id, want, attr))
                    }
                    None => prop_assert_eq!(
                        &into_tip.1,
                        &want,
                        "step {} ({:?}): no commit although the model changed",
                        step,
                        op
                    ),
                }
            }
            Op::Squash { branch } => {
                let b = pick(*branch);
                let name = branches[b].name.clone();
                let prov = Provenance::new(WHO, "squash", format!("step {step}"));
                let out = rt
                    .block_on(repo.squash(&name, chrono::Utc::now(), Period::Hour, false, prov))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: squash failed: {e}")))?;
                rt.block_on(repo.collect_garbage(chrono::Utc::now(), false, false))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: gc failed: {e}")))?;
                if out.new_tip.is_none() {
                    continue;
                }
                let log = rt
                    .block_on(repo.log(&name, None))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: log: {e}")))?;
                let squashed = model_squash(
                    &branches[b].commits,
                    &log,
                    &mut records,
                    &mut reverts,
                    &mut folded_ids,
                    &mut originals,
                )
                .map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                branches[b].commits = squashed;
            }
            Op::Tag { branch } => {
                let b = pick(*branch);
                let name = format!("t{step}");
                let (tip, state, _) = branches[b].commits.last().expect("tip").clone();
                rt.block_on(repo.create_tag(&name, &tip, None))
                    .map_err(|e| TestCaseError::fail(format!("step {step}: tag failed: {e}")))?;
                tags.push((name, state));
            }
        }
        // after every step: every branch tip and every tag equals the model, and blame of
        // every cell of every branch names the commit the model says
        for b in &branches {
            let got = read_state(&rt, &repo, &b.name);
            let (_, want, attr) = b.commits.last().expect("tip");
            prop_assert_eq!(&got, want, "step {} ({:?}): branch {}", step, op, b.name);
            if let Some(attr) = attr {
                let blamed = read_blame(&rt, &repo, &b.name, want, &[]);
                // a range of t (bounds inside, outside or between stored values) selects
                // exactly the cells of that range
                let (lo, hi) = (step as i64 % 7 - 1, step as i64 % 7 + 9);
                let part = read_blame(&rt, &repo, &b.name, want, &[&format!("t={lo}..{hi}")]);
                let expect: BTreeMap<_, _> = blamed
                    .iter()
                    .filter(|((t, _), _)| (lo..=hi).contains(t))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                prop_assert_eq!(part, expect, "step {}: blame of t={}..{}", step, lo, hi);
                for tv in &want.t {
                    for site in &want.site {
                        let cell = (*tv, site.clone());
                        prop_assert_eq!(
                            blamed.get(&cell).cloned().flatten(),
                            attr.get(&cell).cloned(),
                            "step {} ({:?}): blame of {:?} on branch {}",
                            step,
                            op,
                            cell,
                            b.name
                        );
                    }
                }
            }
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
    fn engine_equals_model(ops in proptest::collection::vec(op(), 1..24)) {
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

/// Regression found by this test: blame of a cell whose update was reverted and the revert
/// reverted again must name the update (the second revert brought its values back).
#[test]
fn regression_blame_after_a_reverted_revert() {
    let rows = vec![Row {
        t: 0,
        site: 0,
        temp: Some(1.0),
    }];
    let ops = [
        Op::Update {
            branch: 0,
            rows,
            tight: false,
        },
        Op::RevertTip { branch: 0 },
        Op::RevertTip { branch: 0 },
    ];
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
}

/// A repository with the model schema and `n` updates on main: update k writes t = k..k+2 at
/// site k % 4.
fn linear_history(rt: &tokio::runtime::Runtime, loc: &Location, n: i64) -> Repo {
    rt.block_on(async {
        let repo = Repo::init(loc).await.expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "m.yaml",
            Provenance::new(WHO, "init", "init"),
        )
        .await
        .expect("schema");
        for k in 0..n {
            let rows: Vec<Row> = (k..k + 3)
                .map(|t| Row {
                    t,
                    site: (k % 4) as usize,
                    temp: Some(k as f64),
                })
                .collect();
            let table = Table::from_csv_bytes(csv(&rows).as_bytes(), "m.csv").expect("csv");
            update::update(
                &repo,
                "main",
                &[(String::new(), table)],
                Provenance::new(WHO, "update", format!("u{k}")),
                &UpdateOptions::default(),
            )
            .await
            .expect("update");
        }
        repo
    })
}

/// The skip records (spec/018) of a linear history: depth counts the commits, `to` is the
/// ancestor `lowbit(depth)` back, and `over` bounds the extents of every commit it jumps over.
#[test]
fn skip_records_tile_a_linear_history() {
    /// The stored skip record (spec/018): `{"depth", "to", "over"}` under the `skip` key.
    struct Skip {
        depth: u64,
        to: String,
        over: Option<serde_json::Map<String, serde_json::Value>>,
    }
    impl Skip {
        fn of(props: &std::collections::BTreeMap<String, serde_json::Value>) -> Option<Skip> {
            let v = props.get("skip")?.as_object()?;
            Some(Skip {
                depth: v.get("depth")?.as_u64()?,
                to: v.get("to")?.as_str()?.to_string(),
                over: v.get("over")?.as_object().cloned(),
            })
        }
    }
    let lowbit = |d: u64| d & d.wrapping_neg();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let repo = linear_history(&rt, &Location::Memory("skip-tiles".into()), 21);
    let tip = rt.block_on(repo.resolve("main")).expect("main").id;
    let (info, _) = rt
        .block_on(repo.icechunk().asset_manager().fetch_repo_info())
        .expect("repo info");
    // oldest first: icechunk's first snapshot (no skip record), init, 21 updates
    let mut chain: Vec<_> = info
        .ancestry(&tip)
        .expect("ancestry")
        .map(|s| s.expect("snapshot"))
        .collect();
    chain.reverse();
    assert_eq!(chain.len(), 23);
    assert!(Skip::of(&chain[0].metadata).is_none());
    for (d, snap) in chain.iter().enumerate().skip(1) {
        let skip = Skip::of(&snap.metadata).expect("a skip record");
        assert_eq!(skip.depth, d as u64, "depth of {}", snap.id);
        let to = d - lowbit(d as u64) as usize;
        assert_eq!(skip.to, chain[to].id.to_string(), "ancestor of depth {d}");
        let over = skip
            .over
            .as_ref()
            .map(|o| serde_json::Value::Object(o.clone()));
        for covered in &chain[to + 1..=d] {
            let Some(extent) = covered.metadata.get("extent") else {
                continue; // init wrote no cells
            };
            for (coord, bounds) in extent[""].as_object().expect("node extent") {
                let o = &over.as_ref().expect("bounded")[""][coord];
                let lo_ok = match (o[0].as_i64(), bounds[0].as_i64()) {
                    (Some(a), Some(b)) => a <= b,
                    _ => o[0].as_str() <= bounds[0].as_str(),
                };
                let hi_ok = match (o[1].as_i64(), bounds[1].as_i64()) {
                    (Some(a), Some(b)) => a >= b,
                    _ => o[1].as_str() >= bounds[1].as_str(),
                };
                assert!(
                    lo_ok && hi_ok,
                    "depth {d}: {coord} {o} does not bound {bounds}"
                );
            }
        }
    }
}

/// Blame on a history whose older commits gc expired: a skip pointer to an expired commit is
/// not followed (the walk goes on commit by commit), and blame still answers.
#[test]
fn blame_after_gc_expired_the_commits_skips_point_to() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // init is at depth 1, update k at depth k + 2: the tip (k = 10) jumps to depth 8
    let repo = linear_history(&rt, &Location::Local(dir.path().join("r")), 11);
    let cutoff = chrono::Utc::now() + chrono::Duration::seconds(1);
    let report = rt.block_on(repo.gc(cutoff, false)).expect("gc");
    assert!(report.snapshots_expired >= 10, "{report:?}");
    let w = |s: &str| zarr_fuse::audit::Where::parse(s).expect("where");
    let tip = rt.block_on(zarr_fuse::audit::blame(
        &repo,
        "",
        "temp",
        "main",
        &[w("t=12"), w("site=s2")],
    ));
    assert_eq!(
        tip.expect("blame of the tip's cell")[0].message.as_deref(),
        Some("u10")
    );
    let old = rt.block_on(zarr_fuse::audit::blame(
        &repo,
        "",
        "temp",
        "main",
        &[w("t=0"), w("site=s0")],
    ));
    assert!(
        old.is_ok(),
        "blame of a cell written by an expired commit: {old:?}"
    );
}

fn upd(branch: usize, t: i64, site: usize, temp: f64) -> Op {
    Op::Update {
        branch,
        rows: vec![Row {
            t,
            site,
            temp: Some(temp),
        }],
        tight: false,
    }
}

/// Regression found by this test: a cell a merge took from the source, where a revert had set
/// it to NA, is blamed as on the source ("never written"), not on the target's earlier writer.
#[test]
fn regression_merge_takes_a_reverted_cell_blamed_as_on_the_source() {
    let ops = [
        upd(0, 4, 1, 0.0),
        Op::Branch { from: 0 },
        upd(1, 4, 1, -0.5),
        upd(2, 0, 0, 0.0),
        Op::Revert { branch: 0, back: 1 },
        Op::Revert { branch: 0, back: 1 },
        upd(0, 0, 0, 0.0),
        Op::Merge { from: 0, into: 1 },
    ];
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
}

/// Regression found by this test: a cherry-pick of a merge that only grows an axis takes no
/// cell, and blame does not fall back to the picked commit's cells.
#[test]
fn regression_pick_of_a_merge_that_takes_no_cell() {
    let ops = [
        upd(0, 0, 0, 0.0),
        upd(0, 0, 0, -0.5),
        Op::Branch { from: 0 },
        Op::Reset { branch: 1, back: 1 },
        upd(1, 0, 1, 0.0),
        Op::Merge { from: 2, into: 1 },
        Op::CherryPick { from: 1, into: 2 },
    ];
    if let Err(e) = run(&ops) {
        panic!("{e}");
    }
}
