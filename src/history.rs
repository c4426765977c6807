//! Revert, branch merge and cherry-pick by cells (merge-semantics.md §5, spec/028).
//!
//! Each operation applies the changes from a `base` to a `theirs` revision onto the tip of a
//! branch (`ours`), cell by cell, for every variable of every node whose arrays changed:
//!
//! | operation | base | theirs | a cell takes theirs' value when |
//! |---|---|---|---|
//! | revert C | C | parent of C | C wrote it (its cell record) and no later commit on the branch did |
//! | cherry-pick C | parent of C | C | base ≠ theirs and ours still equals base |
//! | merge S into T | common ancestor | tip of S | as for cherry-pick |
//!
//! A cell changed on both sides (to different values) is a conflict, named by coordinate values;
//! conflicts refuse the operation unless [`Resolve`] decides them. Axes are unioned as in §3
//! (ours' values keep their positions, sorted axes stay sorted). Where a revert can restore a
//! whole chunk (no later commit changed it) the parent's chunk is referenced, not copied.
//! Arrays outside the schema's nodes, created or removed nodes, schema changes, and the nodes of
//! a revert that no later commit touched go through the chunk-level engine of `repo`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use icechunk::format::SnapshotId;
use serde::Serialize;
use serde_json::Value;

use crate::provenance::{keys, Provenance};
use crate::repo::retry::{backoff, MAX_ATTEMPTS};
use crate::repo::{self, CellRecord, CommitInfo, Repo, RepoError, Strategy};
use crate::schema::{Coord, NodeSchema, Schema, StepLimits};
use crate::update::axis::merge_axis;
use crate::update::cells::{recorded, CellMatcher, CellSetBuilder};
use crate::update::dense::{dense_of, keys_of, read_dense, strides, write_dense, Dense};
use crate::update::diff::{axis_labels, labelled_boxes, CellBox, VarDiff};
use crate::update::keys::{KeyIndex, Keys};
use crate::update::layout::{
    array_path, coord_kind, kind, open_array, stored_chunks, stored_schema, Store,
};
use crate::update::{Key, Scalar, UpdateError};

/// Side-record field of a revert, merge or cherry-pick: the nodes it changed chunk by chunk
/// (restored exactly, not by cells), which blame treats as wholly restored or taken.
pub const BY_CHUNKS: &str = "by_chunks";

/// Side-record field of a merge: the commits it merged (from the source's tip down to the
/// merge base, oldest first, as squash lists its folded ones), for blame once they are
/// collected.
pub const MERGED: &str = "merged";

/// How conflicting cells are decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolve {
    /// Refuse the operation (nothing is written).
    #[default]
    Fail,
    /// Keep the target branch's value (revert `--strategy theirs`: the later value;
    /// merge `--strategy ours`).
    KeepTarget,
    /// Take the source's value (merge and cherry-pick `--strategy theirs`).
    TakeSource,
}

/// Why a revert, merge or cherry-pick by cells refused or failed. Nothing is written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Cells changed on both sides (the report names them by coordinate values).
    #[error("{}", .0.refusal())]
    CellConflicts(Box<HistoryReport>),
    /// The commit was reverted already.
    #[error("commit {commit} was already reverted by {by} (revert that revert to bring it back)")]
    AlreadyReverted {
        /// The commit.
        commit: String,
        /// The revert commit.
        by: String,
    },
    /// Reading or writing the nodes.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// The repository.
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// Options of a history operation.
#[derive(Clone, Debug, Default)]
pub struct HistoryOptions {
    /// How conflicts are decided.
    pub resolve: Resolve,
    /// Plan and report, commit nothing.
    pub dry_run: bool,
}

/// What a revert, merge or cherry-pick did (or, refused or dry-run, would do).
#[derive(Clone, Debug, Serialize, Default)]
pub struct HistoryReport {
    /// `revert`, `merge` or `cherry-pick`.
    pub operation: &'static str,
    /// The new commit (`None`: refused, dry run, or nothing to change).
    pub commit: Option<crate::repo::CommitId>,
    /// The target branch.
    pub branch: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Node path → variable → the cells changed at the tip.
    pub changed: BTreeMap<String, BTreeMap<String, VarDiff>>,
    /// Conflicting cells, grouped by variable and the later commits that wrote them.
    pub conflicts: Vec<CellConflict>,
    /// Conflicting cells in all.
    pub conflict_cells: u64,
    /// How the conflicts were decided (`fail`: refused).
    pub resolve: Resolve,
    /// Conflicts of arrays handled chunk by chunk (outside the schema's nodes, metadata).
    pub chunk_conflicts: Vec<repo::ChunkConflict>,
    /// Chunks restored by reference to the parent's (no bytes copied).
    pub chunks_by_reference: u64,
    /// Chunks read, modified and written again.
    pub chunks_rewritten: u64,
    /// Why nothing was committed, when nothing was.
    pub note: Option<String>,
}

/// Conflicting cells of one variable.
#[derive(Clone, Debug, Serialize)]
pub struct CellConflict {
    /// Node path.
    pub node: String,
    /// Variable.
    pub var: String,
    /// Later commits on the branch that wrote these cells (revert); empty when the cells were
    /// changed on both sides (merge, cherry-pick) or by a commit without a cell record.
    pub later_commits: Vec<String>,
    /// How many cells.
    pub cells: u64,
    /// Boxes of coordinate values holding them (the first 20).
    pub boxes: Vec<CellBox>,
    /// Boxes in all.
    pub boxes_total: usize,
}

impl HistoryReport {
    /// The one-line message of a refusal.
    pub fn refusal(&self) -> String {
        let mut parts: Vec<String> = self
            .conflicts
            .iter()
            .take(4)
            .map(|c| {
                let at = c.boxes.first().map(box_text).unwrap_or_default();
                let more = if c.boxes_total > 1 {
                    format!(" and {} more box(es)", c.boxes_total - 1)
                } else {
                    String::new()
                };
                let by = if c.later_commits.is_empty() {
                    match self.operation {
                        "revert" => " (changed later)".to_string(),
                        _ => " (changed on both sides)".to_string(),
                    }
                } else {
                    format!(" (written later by {})", c.later_commits.join(", "))
                };
                let node = if c.node.is_empty() { "" } else { "/" };
                format!(
                    "{node}{}/{} {} cell(s) at {at}{more}{by}",
                    c.node, c.var, c.cells
                )
            })
            .collect();
        if self.conflicts.len() > 4 {
            parts.push(format!("and {} more variable(s)", self.conflicts.len() - 4));
        }
        format!(
            "{} refused, nothing written: {} conflicting cell(s): {}",
            self.operation,
            self.conflict_cells,
            parts.join("; ")
        )
    }
}

fn box_text(b: &CellBox) -> String {
    let show = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    b.coords
        .iter()
        .map(|s| {
            if s.first == s.last {
                format!("{} {}", s.dim, show(&s.first))
            } else {
                format!("{} {}..{}", s.dim, show(&s.first), show(&s.last))
            }
        })
        .collect::<Vec<_>>()
        .join(" × ")
}

impl Repo {
    /// Revert `commit` on `branch` by cells: every cell it changed gets its parent's value
    /// again, unless a later commit wrote that cell (a conflict, decided by `opts`).
    pub async fn revert(
        &self,
        commit: &str,
        branch: &str,
        opts: &HistoryOptions,
        prov: Provenance,
    ) -> Result<HistoryReport, HistoryError> {
        revert(self, commit, branch, opts, prov).await
    }

    /// Merge revision `source` into branch `into`, three-way by cells.
    pub async fn merge(
        &self,
        source: &str,
        into: &str,
        opts: &HistoryOptions,
        prov: Provenance,
    ) -> Result<HistoryReport, HistoryError> {
        merge(self, source, into, opts, prov).await
    }

    /// Apply the changes of `commit` onto `branch`, three-way by cells.
    pub async fn cherry_pick(
        &self,
        commit: &str,
        branch: &str,
        opts: &HistoryOptions,
        prov: Provenance,
    ) -> Result<HistoryReport, HistoryError> {
        cherry_pick(self, commit, branch, opts, prov).await
    }
}

/// Revert `commit` on `branch` by cells.
pub async fn revert(
    repo: &Repo,
    commit: &str,
    branch: &str,
    opts: &HistoryOptions,
    mut prov: Provenance,
) -> Result<HistoryReport, HistoryError> {
    let of = repo.revert_of(commit, branch).await?;
    if let Some(r) = of
        .later
        .iter()
        .find(|l| l.extra.get(keys::REVERTS).and_then(Value::as_str) == Some(&of.commit.id))
    {
        return Err(HistoryError::AlreadyReverted {
            commit: of.commit.id.to_string(),
            by: r.id.to_string(),
        });
    }
    if prov.message.is_empty() {
        prov.message = format!("Revert \"{}\"", of.commit.message);
    }
    prov.refs
        .insert(keys::REVERTS.into(), of.commit.id.to_string());
    // a squash commit after it wrote what its folded contributions wrote
    let later: Vec<CommitInfo> = of
        .later
        .iter()
        .flat_map(|l| {
            let folded = repo::folded_leaves(l);
            if folded.is_empty() {
                vec![l.clone()]
            } else {
                folded
            }
        })
        .collect();
    let later = later_writers(&later);
    let op = Op {
        name: "revert",
        base: of.id.clone(),
        theirs: of.parent.clone(),
        merged: None,
        revert: Some(RevertOf {
            record: repo.record(&of.commit).await?,
            extent: of.commit.extra.get(keys::EXTENT).cloned(),
            later,
        }),
    };
    run(repo, branch, &op, opts, prov).await
}

/// Merge `source` (a REV) into branch `into` by cells.
pub async fn merge(
    repo: &Repo,
    source: &str,
    into: &str,
    opts: &HistoryOptions,
    mut prov: Provenance,
) -> Result<HistoryReport, HistoryError> {
    let (src, base) = repo.merge_of(source, into).await?;
    let Some(base) = base else {
        return Ok(HistoryReport {
            operation: "merge",
            branch: into.into(),
            dry_run: opts.dry_run,
            resolve: opts.resolve,
            note: Some(format!("'{source}' is already merged into '{into}'")),
            ..Default::default()
        });
    };
    if prov.message.is_empty() {
        prov.message = format!("Merge {source} into {into}");
    }
    prov.refs.insert(keys::MERGED_FROM.into(), src.to_string());
    prov.refs.insert(keys::MERGE_BASE.into(), base.to_string());
    let mut chain = repo.ancestry_until(&src, |i| i.id == base).await?;
    chain.retain(|i| i.id != base);
    chain.reverse();
    let op = Op {
        name: "merge",
        base,
        theirs: src,
        revert: None,
        merged: Some(repo::entries_of(&chain)),
    };
    run(repo, into, &op, opts, prov).await
}

/// Apply one commit's changes onto `branch` by cells.
pub async fn cherry_pick(
    repo: &Repo,
    commit: &str,
    branch: &str,
    opts: &HistoryOptions,
    mut prov: Provenance,
) -> Result<HistoryReport, HistoryError> {
    let (info, parent) = repo.pick_of(commit).await?;
    if prov.message.is_empty() {
        prov.message = info.message.clone();
    }
    prov.refs
        .insert(keys::CHERRY_PICKED.into(), info.id.to_string());
    let op = Op {
        name: "cherry-pick",
        base: parent,
        theirs: repo::snapshot_id(&info.id)?,
        revert: None,
        merged: None,
    };
    run(repo, branch, &op, opts, prov).await
}

/// One operation: its three-way sides.
struct Op {
    name: &'static str,
    base: SnapshotId,
    theirs: SnapshotId,
    revert: Option<RevertOf>,
    /// A merge's list of merged commits.
    merged: Option<Vec<Value>>,
}

/// What a revert knows about the reverted commit and the commits after it.
struct RevertOf {
    /// The reverted commit's side record (the cells it wrote, with the same value or not).
    record: Option<Value>,
    /// Its extent.
    extent: Option<Value>,
    /// Later commits that count as writers, newest first.
    later: Vec<CommitInfo>,
}

/// The later commits that count as writers of cells: a revert and the commit it reverts (both
/// after the reverted commit) cancel out.
fn later_writers(later: &[CommitInfo]) -> Vec<CommitInfo> {
    let ids: HashSet<&str> = later.iter().map(|l| l.id.as_str()).collect();
    let cancelled: HashSet<String> = later
        .iter()
        .filter_map(|l| {
            let t = l.extra.get(keys::REVERTS).and_then(Value::as_str)?;
            ids.contains(t).then(|| [l.id.to_string(), t.to_string()])
        })
        .flatten()
        .collect();
    later
        .iter()
        .filter(|l| !cancelled.contains(l.id.as_str()))
        .cloned()
        .collect()
}

/// Whether extent `a` (spec/011) shows that none of node `node`'s cells written in extent `b`
/// can be among its own.
fn disjoint(a: Option<&Value>, b: Option<&Value>, node: &str) -> bool {
    let (Some(a), Some(b)) = (a.and_then(Value::as_object), b.and_then(Value::as_object)) else {
        return false;
    };
    let (Some(na), Some(nb)) = (
        a.get(node).and_then(Value::as_object),
        b.get(node).and_then(Value::as_object),
    ) else {
        return a.get(node).is_none();
    };
    na.iter().any(|(dim, ra)| {
        let bounds = |r: &Value| match r.as_array().map(Vec::as_slice) {
            Some([lo, hi]) => Some((lo.clone(), hi.clone())),
            _ => None,
        };
        let (Some((alo, ahi)), Some((blo, bhi))) = (bounds(ra), nb.get(dim).and_then(bounds))
        else {
            return false;
        };
        let lt = |x: &Value, y: &Value| match (x, y) {
            (Value::Number(p), Value::Number(q)) => {
                p.as_f64().zip(q.as_f64()).is_some_and(|(p, q)| p < q)
            }
            (Value::String(p), Value::String(q)) => p < q,
            _ => false,
        };
        lt(&ahi, &blo) || lt(&bhi, &alo)
    })
}

/// The read-only sides of an operation.
struct Sides {
    base: Arc<Store>,
    theirs: Arc<Store>,
    base_schema: Option<Schema>,
    theirs_schema: Option<Schema>,
}

async fn run(
    repo: &Repo,
    branch: &str,
    op: &Op,
    opts: &HistoryOptions,
    prov: Provenance,
) -> Result<HistoryReport, HistoryError> {
    let (base, theirs): (Arc<Store>, Arc<Store>) = (
        repo.read_store(&op.base).await?,
        repo.read_store(&op.theirs).await?,
    );
    let sides = Sides {
        base_schema: stored_schema(&base).await.ok(),
        theirs_schema: stored_schema(&theirs).await.ok(),
        base,
        theirs,
    };
    let (base_s, theirs_s) = (
        repo.session_at(&op.base).await?,
        repo.session_at(&op.theirs).await?,
    );
    let changed = repo::changed_paths(&base_s, &theirs_s).await?;
    let mut records: HashMap<String, Option<Value>> = HashMap::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = repo.transaction(branch).await?;
        let ours: Arc<Store> = tx.store();
        let schema = stored_schema(&ours).await?;
        let session = tx.session();
        // nodes handled by cells: in the schema of all three sides, with arrays that changed (a
        // revert's nodes that no later commit touched are restored exactly, chunk by chunk)
        let later_touched = match &op.revert {
            Some(_) => Some(repo::changed_paths(&base_s, &*session.read().await).await?),
            None => None,
        };
        let (by_cells, cell_paths) = nodes_by_cells(&schema, &sides, &changed, later_touched);
        let mut report = HistoryReport {
            operation: op.name,
            branch: branch.into(),
            dry_run: opts.dry_run,
            resolve: opts.resolve,
            ..Default::default()
        };
        // plan every node by cells before anything is written: a refusal writes nothing
        let mut planned = vec![];
        for node in by_cells {
            let later = match &op.revert {
                Some(r) => later_records(repo, r, &node.path, &mut records).await?,
                None => vec![],
            };
            let ctx = NodeOp {
                op,
                sides: &sides,
                node,
                ours: &ours,
                ours_schema: &schema,
                resolve: opts.resolve,
                later,
                base_session: &base_s,
                theirs_session: &theirs_s,
                session: &session,
            };
            let plan = ctx.plan(&mut report).await?;
            planned.push((ctx, plan));
        }
        if report.conflict_cells > 0 && opts.resolve == Resolve::Fail {
            return Err(HistoryError::CellConflicts(Box::new(report)));
        }
        // everything else, chunk by chunk
        chunk_part(
            op,
            opts,
            &base_s,
            &theirs_s,
            &session,
            &cell_paths,
            &mut report,
        )
        .await?;
        if op.revert.is_some() {
            // nodes restored exactly, chunk by chunk: their cells change as from the reverted
            // commit to its parent
            let d = repo.diff_ids(&op.base, &op.theirs).await?;
            let exact = crate::update::diff::cell_diff(repo, &op.base, &op.theirs, &d).await?;
            for (node, vars) in exact.nodes {
                if !planned.iter().any(|(c, _)| c.node.path == node) {
                    report.changed.insert(node, vars);
                }
            }
        }
        let mut cells: CellRecord = BTreeMap::new();
        let planned_paths: HashSet<String> =
            planned.iter().map(|(c, _)| c.node.path.clone()).collect();
        for (ctx, mut plan) in planned {
            ctx.write(&plan, &mut report).await?;
            let taken: BTreeMap<String, Box<serde_json::value::RawValue>> = plan
                .vars
                .iter_mut()
                .filter_map(|(v, r)| r.taken.take().map(|t| (v.name.clone(), t)))
                .collect();
            if !taken.is_empty() {
                cells.insert(ctx.node.path.clone(), taken);
            }
        }
        if opts.dry_run {
            return Ok(report);
        }
        if !tx.has_changes().await {
            report.note = Some(if report.conflict_cells > 0 {
                format!(
                    "nothing to change: all {} cell(s) to {} were written later and kept",
                    report.conflict_cells, op.name
                )
            } else {
                "nothing to change: the tip already has every value".into()
            });
            return Ok(report);
        }
        tx.set_cells(cells);
        let by_chunks: Vec<&str> = schema
            .root
            .walk()
            .into_iter()
            .filter(|n| {
                !planned_paths.contains(&n.path)
                    && node_arrays(n).iter().any(|p| changed.contains(p))
            })
            .map(|n| n.path.as_str())
            .collect();
        tx.set_record_field(BY_CHUNKS, serde_json::json!(by_chunks));
        if let Some(m) = &op.merged {
            tx.set_record_field(MERGED, Value::Array(m.clone()));
        }
        let p = commit_provenance(&prov, &schema, &report);
        match tx.commit(p).await {
            Ok(out) => {
                report.commit = out.commit;
                return Ok(report);
            }
            Err(RepoError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The nodes handled by cells (in the schema of all three sides, with arrays that changed; for
/// a revert, only those a later commit touched — the others are restored exactly, chunk by
/// chunk), and their array paths.
fn nodes_by_cells<'s>(
    schema: &'s Schema,
    sides: &Sides,
    changed: &BTreeSet<String>,
    later_touched: Option<BTreeSet<String>>,
) -> (Vec<&'s NodeSchema>, HashSet<String>) {
    let mut by_cells = vec![];
    let mut cell_paths = HashSet::new();
    for node in schema.root.walk() {
        let paths = node_arrays(node);
        let in_sides = [&sides.base_schema, &sides.theirs_schema]
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.node(&node.path).is_some()));
        let touched = |set: &BTreeSet<String>| paths.iter().any(|p| set.contains(p));
        if !in_sides || !touched(changed) || later_touched.as_ref().is_some_and(|l| !touched(l)) {
            continue;
        }
        cell_paths.extend(paths);
        by_cells.push(node);
    }
    (by_cells, cell_paths)
}

/// Apply base→theirs chunk by chunk to every path not handled by cells (refused on conflicts
/// unless `opts` decides them); the report counts the references set.
async fn chunk_part(
    op: &Op,
    opts: &HistoryOptions,
    base: &icechunk::session::Session,
    theirs: &icechunk::session::Session,
    session: &tokio::sync::RwLock<icechunk::session::Session>,
    cell_paths: &HashSet<String>,
    report: &mut HistoryReport,
) -> Result<(), HistoryError> {
    let mut guard = session.write().await;
    let strategy = match opts.resolve {
        Resolve::Fail => Strategy::Fail,
        Resolve::KeepTarget => Strategy::Theirs,
        Resolve::TakeSource => Strategy::Source,
    };
    let consider = |p: &icechunk::format::Path| !cell_paths.contains(&p.to_string());
    let plan = repo::chunk_plan(base, theirs, &guard, strategy, &consider).await?;
    if !plan.conflicts.is_empty() && opts.resolve == Resolve::Fail {
        return Err(RepoError::Conflicts {
            operation: op.name,
            conflicts: plan.conflicts,
        }
        .into());
    }
    repo::apply_chunk_plan(&plan, &mut guard).await?;
    report.chunks_by_reference += plan.chunk_refs() as u64;
    report.chunk_conflicts = plan.conflicts;
    Ok(())
}

/// The provenance of the commit: the schema digest and what changed.
fn commit_provenance(prov: &Provenance, schema: &Schema, report: &HistoryReport) -> Provenance {
    let mut p = prov.clone();
    p.schema_blake3 = Some(schema.digest());
    let cells_changed: u64 = report
        .changed
        .values()
        .flat_map(BTreeMap::values)
        .map(|d| d.changed + d.added + d.set_na)
        .sum();
    p.counts.insert("cells_written".into(), cells_changed);
    p.counts
        .insert("conflicts_kept".into(), report.conflict_cells);
    p
}

/// The cell set of the positions `taken` (over the result axes) of variable `v`, as JSON.
fn taken_record(
    v: &crate::schema::Variable,
    dims: &[usize],
    axes: &[Axis],
    taken: &[Vec<u32>],
) -> Result<Option<Box<serde_json::value::RawValue>>, HistoryError> {
    if taken.is_empty() {
        return Ok(None);
    }
    let dicts: Vec<&Keys> = dims.iter().map(|&d| &axes[d].keys).collect();
    let mut b = CellSetBuilder::new(v.coords.clone(), dicts);
    for c in taken {
        b.note(c.iter().copied());
    }
    if b.needs_tuples() {
        for c in taken {
            b.push_tuple(c.iter().copied());
        }
    }
    b.to_json()
        .map_err(|e| UpdateError::Invalid(format!("cell record: {e}")).into())
}

/// The array paths of a node: coordinates, then variables.
fn node_arrays(node: &NodeSchema) -> Vec<String> {
    node.coords
        .iter()
        .map(|c| array_path(&node.path, c.name()))
        .chain(node.vars.iter().map(|v| array_path(&node.path, &v.name)))
        .collect()
}

/// The later commits whose side records may hold cells of `node` the reverted commit wrote:
/// (index in `later`, record). Extents that cannot overlap leave a record unread.
async fn later_records(
    repo: &Repo,
    r: &RevertOf,
    node: &str,
    cache: &mut HashMap<String, Option<Value>>,
) -> Result<Vec<(usize, Value)>, HistoryError> {
    let mut out = vec![];
    for (i, l) in r.later.iter().enumerate() {
        if disjoint(l.extra.get(keys::EXTENT), r.extent.as_ref(), node) {
            continue;
        }
        // a cherry-pick without a record of its own wrote the cells of the commit it picked
        let mut rec = match cache.get(l.id.as_str()) {
            Some(rec) => rec.clone(),
            None => {
                let rec = repo.record(l).await?;
                cache.insert(l.id.to_string(), rec.clone());
                rec
            }
        };
        let has_cells = |r: &Option<Value>| r.as_ref().is_some_and(|r| r.get("cells").is_some());
        if !has_cells(&rec) {
            if let Some(picked) = l.extra.get(keys::CHERRY_PICKED).and_then(Value::as_str) {
                let info = repo.commit_info(&repo::snapshot_id(picked)?).await?;
                rec = repo.record(&info).await?;
            }
        }
        if let Some(rec) = rec.filter(|r| r.get("cells").is_some()) {
            out.push((i, rec));
        }
    }
    Ok(out)
}

/// One node of an operation.
struct NodeOp<'a> {
    op: &'a Op,
    sides: &'a Sides,
    node: &'a NodeSchema,
    ours: &'a Arc<Store>,
    ours_schema: &'a Schema,
    resolve: Resolve,
    /// Later commits' records (revert).
    later: Vec<(usize, Value)>,
    base_session: &'a icechunk::session::Session,
    theirs_session: &'a icechunk::session::Session,
    session: &'a Arc<tokio::sync::RwLock<icechunk::session::Session>>,
}

/// One axis of the result: the union of ours and theirs (§3) and where each of its values is on
/// every side.
struct Axis {
    keys: Keys,
    /// Whether ours' values all keep their positions and no value was added.
    same_as_ours: bool,
    ours: Vec<Option<usize>>,
    theirs: Vec<Option<usize>>,
    base: Vec<Option<usize>>,
}

/// What happens to one cell.
enum Cell {
    Keep,
    Set(Scalar),
    /// Conflict; the later writers (indices into the revert's later commits).
    Conflict(Vec<usize>),
}

/// A variable of one side: values, shape and strides (`None`: the side does not have it).
struct SideVar {
    data: Option<(Dense, Vec<usize>)>,
}

impl SideVar {
    fn get(&self, pos: impl Iterator<Item = Option<usize>>) -> Scalar {
        let Some((d, st)) = &self.data else {
            return Scalar::Na;
        };
        let mut flat = 0;
        for (p, s) in pos.zip(st) {
            match p {
                Some(p) => flat += p * s,
                None => return Scalar::Na,
            }
        }
        if flat < d.len() {
            d.get(flat)
        } else {
            Scalar::Na
        }
    }
}

/// The result of one variable: its new values and what changed.
struct VarResult {
    data: Dense,
    shape: Vec<u64>,
    /// Whether positions moved or the shape grew (every chunk is written).
    moved: bool,
    /// Flat positions whose value changes.
    modified: Vec<usize>,
    /// Flat positions of conflicting cells.
    conflicted: Vec<usize>,
    /// Shape of theirs' array (a revert restores chunks by reference only within it).
    theirs_shape: Vec<u64>,
    diff: VarDiff,
    /// Positions of changed cells (capped), for boxes.
    hits: Vec<Vec<usize>>,
    /// Later writers → positions of conflicting cells.
    conflicts: BTreeMap<Vec<usize>, Vec<Vec<usize>>>,
    /// The cells taken from theirs, as a cell set (merge, cherry-pick).
    taken: Option<Box<serde_json::value::RawValue>>,
}

/// Positions listed for boxes at most (the counts are exact).
const MAX_HITS: usize = 1_000_000;

/// What one node will do: its result axes, coordinate labels and variables.
struct NodePlan<'a> {
    axes: Vec<Axis>,
    vars: Vec<(&'a crate::schema::Variable, VarResult)>,
}

impl<'a> NodeOp<'a> {
    async fn axis(&self, c: &Coord) -> Result<(Axis, Vec<Value>), HistoryError> {
        let ours = self.side_axis(self.ours, Some(self.node), c).await?;
        let theirs_node = self.side_node(&self.sides.theirs_schema, c);
        let base_node = self.side_node(&self.sides.base_schema, c);
        let theirs = self.side_axis(&self.sides.theirs, theirs_node, c).await?;
        let base = self.side_axis(&self.sides.base, base_node, c).await?;
        let mut plain = c.clone();
        plain.step_limits = StepLimits::AnyNew;
        plain.interpolate = None;
        let n_ours = ours.0.len();
        let m = merge_axis(&plain, ours.0.clone(), &theirs.0);
        let at = |side: &Keys| {
            let ix = KeyIndex::of(side);
            (0..m.axis.len())
                .map(|i| ix.get(side, m.axis.get(i)))
                .collect::<Vec<_>>()
        };
        let axis = Axis {
            same_as_ours: m.first_shift.is_none() && m.axis.len() == n_ours,
            ours: at(&ours.0),
            theirs: at(&theirs.0),
            base: at(&base.0),
            keys: m.axis,
        };
        // how users name each value: from the side that has it
        let labels = (0..axis.keys.len())
            .map(|i| {
                axis.ours[i]
                    .and_then(|j| ours.1.get(j))
                    .or_else(|| axis.theirs[i].and_then(|j| theirs.1.get(j)))
                    .or_else(|| axis.base[i].and_then(|j| base.1.get(j)))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect();
        Ok((axis, labels))
    }

    fn side_node(&self, schema: &'a Option<Schema>, c: &Coord) -> Option<&'a NodeSchema> {
        schema
            .as_ref()
            .and_then(|s| s.node(&self.node.path))
            .filter(|n| n.coord(c.name()).is_some())
    }

    /// A side's axis of coordinate `c` and its labels (empty when the side does not have it).
    async fn side_axis(
        &self,
        store: &Arc<Store>,
        node: Option<&NodeSchema>,
        c: &Coord,
    ) -> Result<(Keys, Vec<Value>), HistoryError> {
        let Some(node) = node else {
            return Ok((Keys::default(), vec![]));
        };
        let (_, d) = read_dense(store, &array_path(&node.path, c.name()), coord_kind(c)).await?;
        let values = d.scalars();
        let labels = axis_labels(store, node, c.name(), values).await?;
        Ok((keys_of(d), labels))
    }

    /// A side's values of variable `name` with their strides (`None`: it does not have it).
    async fn side_var(
        &self,
        store: &Arc<Store>,
        schema: Option<&Schema>,
        name: &str,
    ) -> Result<(SideVar, Vec<u64>), HistoryError> {
        let Some(v) = schema
            .and_then(|s| s.node(&self.node.path))
            .and_then(|n| n.var(name))
        else {
            return Ok((SideVar { data: None }, vec![]));
        };
        let (arr, d) = read_dense(store, &array_path(&self.node.path, name), kind(v)).await?;
        let shape = arr.shape().to_vec();
        Ok((
            SideVar {
                data: Some((d, strides(&shape))),
            },
            shape,
        ))
    }

    /// Plan the node: result axes and, per variable, the cells to change and the conflicts;
    /// adds the changes and conflicts to `report`.
    async fn plan(&self, report: &mut HistoryReport) -> Result<NodePlan<'a>, HistoryError> {
        let mut axes = Vec::new();
        let mut labels: HashMap<&str, Vec<Value>> = HashMap::new();
        for c in &self.node.coords {
            let (a, l) = self.axis(c).await?;
            axes.push(a);
            labels.insert(c.name(), l);
        }
        let coord_names: HashSet<&str> = self.node.coords.iter().map(|c| c.name()).collect();
        let mut vars = Vec::new();
        for v in self
            .node
            .vars
            .iter()
            .filter(|v| !coord_names.contains(v.name.as_str()))
        {
            let mut r = self.var(v, &axes).await?;
            let dim_labels: Vec<&[Value]> = v
                .coords
                .iter()
                .map(|d| labels.get(d.as_str()).map_or(&[][..], Vec::as_slice))
                .collect();
            let mk_boxes = |hits| labelled_boxes(hits, &v.coords, &dim_labels);
            if r.diff.changed + r.diff.added + r.diff.set_na > 0 {
                let mut d = r.diff.clone();
                (d.boxes, d.boxes_total) = mk_boxes(std::mem::take(&mut r.hits));
                report
                    .changed
                    .entry(self.node.path.clone())
                    .or_default()
                    .insert(v.name.clone(), d);
            }
            for (writers, hits) in std::mem::take(&mut r.conflicts) {
                let cells = hits.len() as u64;
                report.conflict_cells += cells;
                let (boxes, boxes_total) = mk_boxes(hits);
                let later_commits = match &self.op.revert {
                    Some(rv) => writers
                        .iter()
                        .map(|&i| rv.later[i].id.to_string())
                        .collect(),
                    None => vec![],
                };
                report.conflicts.push(CellConflict {
                    node: self.node.path.clone(),
                    var: v.name.clone(),
                    later_commits,
                    cells,
                    boxes,
                    boxes_total,
                });
            }
            vars.push((v, r));
        }
        Ok(NodePlan { axes, vars })
    }

    /// One variable's three-way by cells over the result axes.
    async fn var(
        &self,
        v: &crate::schema::Variable,
        axes: &[Axis],
    ) -> Result<VarResult, HistoryError> {
        let dims: Vec<usize> = v
            .coords
            .iter()
            .map(|d| self.node.coords.iter().position(|c| c.name() == d))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                UpdateError::Invalid(format!(
                    "node '{}': variable '{}' names a coordinate the node does not have",
                    self.node.path, v.name
                ))
            })?;
        let shape: Vec<u64> = dims.iter().map(|&d| axes[d].keys.len() as u64).collect();
        let (ours, _) = self
            .side_var(self.ours, Some(self.ours_schema), &v.name)
            .await?;
        let (theirs, theirs_shape) = self
            .side_var(
                &self.sides.theirs,
                self.sides.theirs_schema.as_ref(),
                &v.name,
            )
            .await?;
        let (base, _) = self
            .side_var(&self.sides.base, self.sides.base_schema.as_ref(), &v.name)
            .await?;
        let mine = match &self.op.revert {
            Some(RevertOf {
                record: Some(rec), ..
            }) => recorded(rec, &self.node.path, &v.name),
            _ => None,
        };
        let later: Vec<(usize, CellMatcher)> = self
            .later
            .iter()
            .filter_map(|(i, rec)| recorded(rec, &self.node.path, &v.name).map(|m| (*i, m)))
            .collect();
        let moved = dims.iter().any(|&d| !axes[d].same_as_ours);
        let total = shape.iter().product::<u64>() as usize;
        let k = kind(v);
        let mut out = Dense::na(k, total);
        let mut r = VarResult {
            data: Dense::na(k, 0),
            shape: shape.clone(),
            moved,
            modified: vec![],
            conflicted: vec![],
            theirs_shape,
            diff: VarDiff::default(),
            hits: vec![],
            conflicts: BTreeMap::new(),
            taken: None,
        };
        let mut taken: Vec<Vec<u32>> = vec![];
        let mut idx = vec![0usize; shape.len()];
        let st = strides(&shape);
        let at = |side: fn(&Axis) -> &Vec<Option<usize>>, idx: &[usize]| {
            dims.iter()
                .enumerate()
                .map(|(a, &d)| side(&axes[d])[idx[a]])
                .collect::<Vec<_>>()
        };
        for flat in 0..total {
            for (a, n) in idx.iter_mut().enumerate() {
                *n = flat / st[a] % shape[a] as usize;
            }
            let o = ours.get(at(|a| &a.ours, &idx).into_iter());
            out.set(flat, &o);
            let t = theirs.get(at(|a| &a.theirs, &idx).into_iter());
            let b = base.get(at(|a| &a.base, &idx).into_iter());
            let keys = || -> Vec<Key> {
                dims.iter()
                    .enumerate()
                    .map(|(a, &d)| axes[d].keys.key(idx[a]))
                    .collect()
            };
            if t == b {
                // a cell the reverted commit wrote with the value it had: nothing to restore,
                // but the revert's record lists it (blame passes over the reverted commit)
                if mine.as_ref().is_some_and(|m| m.contains(&keys())) {
                    taken.push(idx.iter().map(|&i| i as u32).collect());
                }
                continue;
            }
            let cell = match &self.op.revert {
                Some(_) => {
                    let keys = keys();
                    let writers: Vec<usize> = later
                        .iter()
                        .filter(|(_, m)| m.contains(&keys))
                        .map(|(i, _)| *i)
                        .collect();
                    if !writers.is_empty() || o != b {
                        Cell::Conflict(writers)
                    } else {
                        Cell::Set(t.clone())
                    }
                }
                None if o == b => Cell::Set(t.clone()),
                None if o == t => Cell::Keep,
                None => Cell::Conflict(vec![]),
            };
            let cell = match cell {
                Cell::Conflict(writers) => {
                    r.conflicted.push(flat);
                    r.conflicts.entry(writers).or_default().push(idx.clone());
                    match self.resolve {
                        Resolve::TakeSource => Cell::Set(t.clone()),
                        _ => Cell::Keep,
                    }
                }
                c => c,
            };
            if let Cell::Set(x) = cell {
                if x == o {
                    continue;
                }
                match (&o, &x) {
                    (Scalar::Na, _) => r.diff.added += 1,
                    (_, Scalar::Na) => r.diff.set_na += 1,
                    _ => r.diff.changed += 1,
                }
                out.set(flat, &x);
                r.modified.push(flat);
                if r.hits.len() < MAX_HITS {
                    r.hits.push(idx.clone());
                }
                taken.push(idx.iter().map(|&i| i as u32).collect());
            }
        }
        r.taken = taken_record(v, &dims, axes, &taken)?;
        r.data = out;
        Ok(r)
    }

    /// Write the planned node: grown coordinates, then the chunks of each variable that change
    /// (restored by reference where a revert can).
    async fn write(
        &self,
        plan: &NodePlan<'_>,
        report: &mut HistoryReport,
    ) -> Result<(), HistoryError> {
        for (c, a) in self.node.coords.iter().zip(&plan.axes) {
            if a.same_as_ours {
                continue;
            }
            let mut arr = open_array(self.ours, &array_path(&self.node.path, c.name())).await?;
            let d = dense_of(coord_kind(c), &a.keys);
            write_dense(&mut arr, vec![a.keys.len() as u64], &d, &|_, _| true).await?;
        }
        for (v, r) in &plan.vars {
            if r.modified.is_empty() && !r.moved {
                continue;
            }
            let path = array_path(&self.node.path, &v.name);
            let mut arr = open_array(self.ours, &path).await?;
            let cs = stored_chunks(&arr)?;
            let chunk_of = |flat: usize| -> Vec<u64> {
                let st = strides(&r.shape);
                (0..r.shape.len())
                    .map(|a| (flat / st[a] % r.shape[a] as usize) as u64 / cs[a])
                    .collect()
            };
            if r.moved {
                let grid: u64 = r
                    .shape
                    .iter()
                    .zip(&cs)
                    .map(|(n, c)| n.div_ceil(*c))
                    .product();
                write_dense(&mut arr, r.shape.clone(), &r.data, &|_, _| true).await?;
                report.chunks_rewritten += grid;
                continue;
            }
            let dirty: BTreeSet<Vec<u64>> = r.modified.iter().map(|&f| chunk_of(f)).collect();
            let mut restored = BTreeSet::new();
            if self.op.revert.is_some() {
                let conflicted: HashSet<Vec<u64>> =
                    r.conflicted.iter().map(|&f| chunk_of(f)).collect();
                let axes = &plan.axes;
                let dims: Vec<usize> = v
                    .coords
                    .iter()
                    .filter_map(|d| self.node.coords.iter().position(|c| c.name() == d))
                    .collect();
                // a chunk whose positions hold the same coordinate values in the parent, inside
                // the parent's array (or at the same edge)
                let same_layout = |ci: &[u64]| {
                    r.theirs_shape.len() == ci.len()
                        && dims.iter().enumerate().all(|(a, &d)| {
                            let s = ci[a] * cs[a];
                            let e = (s + cs[a]).min(r.shape[a]);
                            let p = r.theirs_shape[a];
                            (p >= s + cs[a] || p == r.shape[a])
                                && (s..e).all(|i| axes[d].theirs[i as usize] == Some(i as usize))
                        })
                };
                let candidates: Vec<Vec<u32>> = dirty
                    .iter()
                    .filter(|c| !conflicted.contains(*c) && same_layout(c))
                    .map(|c| c.iter().map(|&x| x as u32).collect())
                    .collect();
                if !candidates.is_empty() {
                    let mut guard = self.session.write().await;
                    restored = repo::restore_by_reference(
                        &mut guard,
                        self.theirs_session,
                        self.base_session,
                        &path,
                        &candidates,
                    )
                    .await?
                    .into_iter()
                    .map(|c| c.into_iter().map(u64::from).collect::<Vec<u64>>())
                    .collect();
                }
            }
            let rest: HashSet<Vec<u64>> = dirty.difference(&restored).cloned().collect();
            write_dense(&mut arr, r.shape.clone(), &r.data, &|start, c| {
                let ci: Vec<u64> = start.iter().zip(c).map(|(s, c)| s / c).collect();
                rest.contains(&ci)
            })
            .await?;
            report.chunks_by_reference += restored.len() as u64;
            report.chunks_rewritten += rest.len() as u64;
        }
        Ok(())
    }
}
