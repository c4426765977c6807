//! Revert, branch merge and cherry-pick: one three-way engine at chunk level.
//!
//! Each operation applies the changes between a `base` and a `theirs` snapshot onto the tip of a
//! target branch (`ours`), by chunk *reference*: no chunk bytes are copied or rewritten.
//!
//! | operation | base | theirs |
//! |---|---|---|
//! | revert C | C | parent of C |
//! | cherry-pick C | parent of C | C |
//! | merge S into T | common ancestor of S and T | tip of S |
//!
//! For each chunk (and each node's metadata) that differs between base and theirs: when ours
//! still equals base, theirs is taken; when ours already equals theirs (same content address),
//! nothing is to do; otherwise it is a conflict. Conflicts refuse the whole operation, unless
//! the strategy keeps our (the later) state for them.

use std::collections::{BTreeMap, BTreeSet};

use icechunk::format::manifest::ChunkPayload;
use icechunk::format::snapshot::{NodeData, NodeSnapshot};
use icechunk::format::{ChunkIndices, Path, SnapshotId};
use icechunk::session::Session;
use serde::Serialize;

use super::history::{changes, same_metadata, CommitInfo};
use super::{engine, CommitOutcome, Repo, RepoError, Result};
use crate::cas;
use crate::provenance::{keys, Provenance};

/// What to do with conflicting chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Refuse the operation.
    #[default]
    Fail,
    /// Keep the target branch's (later) state for conflicting chunks, apply the rest.
    Theirs,
    /// Take the source's state for conflicting chunks (node metadata conflicts keep the target's).
    Source,
}

/// A chunk or node metadata changed on both sides.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChunkConflict {
    /// Array or group path.
    pub array: String,
    /// Chunk coordinates; `None` for node metadata.
    pub coords: Option<Vec<u32>>,
    /// Commits on the target branch that changed it (reverts only).
    pub later_commits: Vec<String>,
}

/// One-line description of conflicts for error messages.
pub(crate) fn describe(conflicts: &[ChunkConflict]) -> String {
    let mut parts: Vec<String> = conflicts
        .iter()
        .take(8)
        .map(|c| {
            let what = match &c.coords {
                Some(k) => format!("{} chunk {:?}", c.array, k),
                None => format!("{} metadata", c.array),
            };
            if c.later_commits.is_empty() {
                what
            } else {
                format!("{what} (changed later by {})", c.later_commits.join(", "))
            }
        })
        .collect();
    if conflicts.len() > 8 {
        parts.push(format!("and {} more", conflicts.len() - 8));
    }
    parts.join("; ")
}

fn is_array(n: &NodeSnapshot) -> bool {
    matches!(n.node_data, NodeData::Array { .. })
}

fn same_state(a: Option<&NodeSnapshot>, b: Option<&NodeSnapshot>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => same_metadata(x, y),
        _ => false,
    }
}

async fn node_in(session: &Session, path: &Path) -> Result<Option<NodeSnapshot>> {
    match session.get_node(path).await {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                icechunk::session::SessionErrorKind::NodeNotFound { .. }
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(engine(format!("reading node {path}"))(e)),
    }
}

/// The planned edits of the target session.
#[derive(Default)]
pub(crate) struct Plan {
    /// Nodes to create (parents first), with the chunks to reference.
    add: Vec<(NodeSnapshot, BTreeMap<ChunkIndices, ChunkPayload>)>,
    /// Metadata updates.
    update: Vec<NodeSnapshot>,
    /// Nodes to delete (children first).
    delete: Vec<NodeSnapshot>,
    /// Chunk reference changes.
    chunks: Vec<(Path, ChunkIndices, Option<ChunkPayload>)>,
    /// What could not be applied.
    pub(crate) conflicts: Vec<ChunkConflict>,
}

impl Plan {
    /// How many chunk references the plan sets or removes (no bytes are copied).
    pub(crate) fn chunk_refs(&self) -> usize {
        self.chunks.len() + self.add.iter().map(|(_, c)| c.len()).sum::<usize>()
    }
}

/// Plan base→theirs onto `ours` for the paths `consider` accepts (all of them: the chunk-level
/// engine; the cell-level one in `history` takes the arrays it handles by cells out).
pub(crate) async fn plan(
    base: &Session,
    theirs: &Session,
    ours: &Session,
    strategy: Strategy,
    consider: &dyn Fn(&Path) -> bool,
) -> Result<Plan> {
    let mut ch = changes(base, theirs).await?;
    ch.nodes.retain(|p, _| consider(p));
    ch.chunks.retain(|p, _| consider(p));
    let mut p = Plan::default();
    let mut structural: BTreeSet<Path> = BTreeSet::new();
    for (path, (b, t)) in &ch.nodes {
        let o = node_in(ours, path).await?;
        if same_state(o.as_ref(), b.as_ref()) {
            match (b, t) {
                (_, None) => {
                    // deleting: ours must not hold chunk changes of its own for that array
                    if let (Some(b), Some(o)) = (b, &o) {
                        if is_array(o) {
                            let cb = cas::array_chunks(base, b)
                                .await
                                .map_err(engine("reading chunks"))?;
                            let co = cas::array_chunks(ours, o)
                                .await
                                .map_err(engine("reading chunks"))?;
                            if cb != co {
                                p.conflicts.push(ChunkConflict {
                                    array: path.to_string(),
                                    coords: None,
                                    later_commits: vec![],
                                });
                                continue;
                            }
                        }
                        p.delete.push(o.clone());
                    }
                    structural.insert(path.clone());
                }
                (None, Some(t)) => {
                    let chunks = if is_array(t) {
                        cas::array_chunks(theirs, t)
                            .await
                            .map_err(engine("reading chunks"))?
                    } else {
                        BTreeMap::new()
                    };
                    p.add.push((t.clone(), chunks));
                    structural.insert(path.clone());
                }
                (Some(_), Some(t)) => p.update.push(t.clone()),
            }
        } else if same_state(o.as_ref(), t.as_ref()) {
            if t.is_none() || b.is_none() {
                structural.insert(path.clone());
            }
        } else {
            p.conflicts.push(ChunkConflict {
                array: path.to_string(),
                coords: None,
                later_commits: vec![],
            });
            structural.insert(path.clone());
        }
    }
    for (path, chunks) in &ch.chunks {
        if structural.contains(path) {
            continue;
        }
        let Some(o) = node_in(ours, path).await? else {
            p.conflicts.push(ChunkConflict {
                array: path.to_string(),
                coords: None,
                later_commits: vec![],
            });
            continue;
        };
        let ours_chunks = cas::array_chunks(ours, &o)
            .await
            .map_err(engine("reading chunks"))?;
        for (coord, (bp, tp)) in chunks {
            let op = ours_chunks.get(coord);
            if op == bp.as_ref() {
                p.chunks.push((path.clone(), coord.clone(), tp.clone()));
            } else if op == tp.as_ref() {
                // already there (identical content address)
            } else {
                if strategy == Strategy::Source {
                    p.chunks.push((path.clone(), coord.clone(), tp.clone()));
                }
                p.conflicts.push(ChunkConflict {
                    array: path.to_string(),
                    coords: Some(coord.0.clone()),
                    later_commits: vec![],
                });
            }
        }
    }
    if strategy == Strategy::Theirs {
        // keep ours for the conflicting entries, apply the rest
        let conflicted: BTreeSet<(String, Option<Vec<u32>>)> = p
            .conflicts
            .iter()
            .map(|c| (c.array.clone(), c.coords.clone()))
            .collect();
        p.chunks
            .retain(|(path, c, _)| !conflicted.contains(&(path.to_string(), Some(c.0.clone()))));
    }
    p.add.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    p.delete.sort_by(|a, b| b.path.cmp(&a.path));
    Ok(p)
}

/// Carry out `plan` on the target session.
pub(crate) async fn apply(plan: &Plan, session: &mut Session) -> Result<()> {
    let shape_dims = |n: &NodeSnapshot| match &n.node_data {
        NodeData::Array {
            shape,
            dimension_names,
            ..
        } => Some((shape.clone(), dimension_names.clone())),
        NodeData::Group => None,
    };
    // chunk removals first: they must be in bounds of the current (possibly larger) shape
    for (path, coord, payload) in plan.chunks.iter().filter(|c| c.2.is_none()) {
        session
            .set_chunk_ref(path.clone(), coord.clone(), payload.clone())
            .await
            .map_err(engine(format!("updating {path}")))?;
    }
    for node in &plan.delete {
        let r = if is_array(node) {
            session.delete_array(node.path.clone()).await
        } else {
            session.delete_group(node.path.clone()).await
        };
        r.map_err(engine(format!("deleting {}", node.path)))?;
    }
    for node in &plan.update {
        let r = match shape_dims(node) {
            Some((shape, dims)) => {
                session
                    .update_array(&node.path, shape, dims, node.user_data.clone())
                    .await
            }
            None => {
                session
                    .update_group(&node.path, node.user_data.clone())
                    .await
            }
        };
        r.map_err(engine(format!("updating metadata of {}", node.path)))?;
    }
    for (node, chunks) in &plan.add {
        let r = match shape_dims(node) {
            Some((shape, dims)) => {
                session
                    .add_array(node.path.clone(), shape, dims, node.user_data.clone())
                    .await
            }
            None => {
                session
                    .add_group(node.path.clone(), node.user_data.clone())
                    .await
            }
        };
        r.map_err(engine(format!("creating {}", node.path)))?;
        for (coord, payload) in chunks {
            session
                .set_chunk_ref(node.path.clone(), coord.clone(), Some(payload.clone()))
                .await
                .map_err(engine(format!("referencing chunks of {}", node.path)))?;
        }
    }
    for (path, coord, payload) in plan.chunks.iter().filter(|c| c.2.is_some()) {
        session
            .set_chunk_ref(path.clone(), coord.clone(), payload.clone())
            .await
            .map_err(engine(format!("updating {path}")))?;
    }
    Ok(())
}

impl Repo {
    /// Apply base→theirs onto `branch` and commit with `prov`.
    async fn three_way(
        &self,
        operation: &'static str,
        branch: &str,
        base: &SnapshotId,
        theirs: &SnapshotId,
        strategy: Strategy,
        prov: Provenance,
    ) -> Result<(CommitOutcome, Vec<ChunkConflict>)> {
        let base_s = self.session_at(base).await?;
        let theirs_s = self.session_at(theirs).await?;
        let tx = self.transaction(branch).await?;
        let session = tx.session();
        let mut guard = session.write().await;
        let plan = plan(&base_s, &theirs_s, &guard, strategy, &|_| true).await?;
        if !plan.conflicts.is_empty() && strategy == Strategy::Fail {
            return Err(RepoError::Conflicts {
                operation,
                conflicts: plan.conflicts,
            });
        }
        apply(&plan, &mut guard).await?;
        drop(guard);
        let outcome = tx.commit(prov).await?;
        Ok((outcome, plan.conflicts))
    }

    /// What reverting `commit` on `branch` works from (refused for a commit not on the branch
    /// and for the first commit).
    pub(crate) async fn revert_of(&self, commit: &str, branch: &str) -> Result<RevertOf> {
        let tip = self.branch_tip(branch).await?;
        let given = commit.trim();
        let c = match self.resolve(given).await {
            Ok(c) => Some(c.id),
            Err(_) if snapshot_id(given).is_ok() => None, // collected: maybe replayed or folded
            Err(e) => return Err(e),
        };
        let history = self
            .ancestry_until(&tip, |i| c.as_ref() == Some(&i.id))
            .await?;
        // a commit a squash wrote again is found by the id it was first committed as
        let replayed_from = |s: &icechunk::format::snapshot::SnapshotInfo| {
            s.metadata
                .get(super::folded::REPLAYED_FROM)
                .and_then(|v| v.as_str())
                == Some(given)
        };
        let found = history
            .iter()
            .position(|i| c.as_ref() == Some(&i.id))
            .or_else(|| history.iter().position(replayed_from));
        let Some(pos) = found else {
            let id = snapshot_id(given)?;
            return self.revert_of_folded(&id, branch, &history).await;
        };
        let c = history[pos].id.clone();
        let Some(parent) = history[pos].parent_id.clone() else {
            return Err(RepoError::Invalid(format!(
                "commit {c} is the repository's first commit and cannot be reverted"
            )));
        };
        Ok(RevertOf {
            commit: CommitInfo::from_snapshot(&history[pos]),
            id: c,
            parent,
            later: history[..pos]
                .iter()
                .map(CommitInfo::from_snapshot)
                .collect(),
        })
    }

    /// A revert of a contribution folded into a squash commit of the branch (spec/029): its
    /// own snapshot and its parent's still hold the values; the later writers are the
    /// contributions folded after it and the commits after the squash commit.
    async fn revert_of_folded(
        &self,
        id: &SnapshotId,
        branch: &str,
        history: &[icechunk::format::snapshot::SnapshotInfo],
    ) -> Result<RevertOf> {
        let key = id.to_string();
        for (pos, s) in history.iter().enumerate() {
            let info = CommitInfo::from_snapshot(s);
            let folded = super::folded::folded_leaves(&info); // newest first
            let Some(at) = folded.iter().position(|f| f.id == key) else {
                continue;
            };
            // its snapshot: the one it was written as last (a squash may have replayed it)
            let snapshot = folded[at]
                .extra
                .get("snapshot")
                .and_then(|v| v.as_str())
                .and_then(|s| snapshot_id(s).ok())
                .unwrap_or_else(|| id.clone());
            let snap = self
                .all_commits()
                .await?
                .into_iter()
                .find(|c| c.id == snapshot);
            let Some(parent) = snap.and_then(|c| c.parent_id) else {
                return Err(RepoError::Invalid(format!(
                    "commit {key} was folded into squash commit {} and its snapshot was collected; revert the squash commit instead",
                    s.id
                )));
            };
            let mut later: Vec<CommitInfo> = history[..pos]
                .iter()
                .map(CommitInfo::from_snapshot)
                .collect();
            later.extend(folded[..at].iter().cloned());
            return Ok(RevertOf {
                commit: folded[at].clone(),
                id: snapshot,
                parent,
                later,
            });
        }
        Err(RepoError::Invalid(format!(
            "commit {key} is not on branch '{branch}' (neither in its history nor folded into one of its squash commits)"
        )))
    }

    /// Revert `commit` on `branch` as a new commit, chunk by chunk (the engine's own revert;
    /// [`Repo::revert`] reverts by cells).
    pub async fn revert_by_chunks(
        &self,
        commit: &str,
        branch: &str,
        strategy: Strategy,
        mut prov: Provenance,
    ) -> Result<(CommitOutcome, Vec<ChunkConflict>)> {
        let of = self.revert_of(commit, branch).await?;
        if prov.message.is_empty() {
            prov.message = format!("Revert \"{}\"", of.commit.message);
        }
        prov.refs.insert(keys::REVERTS.into(), of.id.to_string());
        match self
            .three_way("revert", branch, &of.id, &of.parent, strategy, prov)
            .await
        {
            Err(RepoError::Conflicts {
                operation,
                mut conflicts,
            }) => {
                // name the later commits that touched each conflicting chunk
                for later in &of.later {
                    let Some(p) = later.parents.first() else {
                        continue;
                    };
                    let (p, id) = (snapshot_id(p)?, snapshot_id(&later.id)?);
                    let d = self.diff_ids(&p, &id).await?;
                    for conflict in conflicts.iter_mut() {
                        let hit = match &conflict.coords {
                            Some(k) => d
                                .chunks
                                .get(&conflict.array)
                                .is_some_and(|cs| cs.contains(k)),
                            None => {
                                d.arrays_changed
                                    .iter()
                                    .chain(d.groups_changed.iter())
                                    .any(|n| n.path == conflict.array)
                                    || d.arrays_added.contains(&conflict.array)
                                    || d.arrays_removed.contains(&conflict.array)
                            }
                        };
                        if hit {
                            conflict.later_commits.push(later.id.to_string());
                        }
                    }
                }
                Err(RepoError::Conflicts {
                    operation,
                    conflicts,
                })
            }
            other => other,
        }
    }

    /// The newest commit that is an ancestor of both `a` and `b`.
    pub async fn merge_base(&self, a: &SnapshotId, b: &SnapshotId) -> Result<Option<SnapshotId>> {
        let ours: BTreeSet<String> = self
            .ancestry(a)
            .await?
            .iter()
            .map(|i| i.id.to_string())
            .collect();
        Ok(self
            .ancestry(b)
            .await?
            .into_iter()
            .find(|i| ours.contains(&i.id.to_string()))
            .map(|i| i.id))
    }

    /// What merging `source` into branch `into` works from: the source commit and the merge
    /// base, `None` when the source is already contained in the target.
    pub(crate) async fn merge_of(
        &self,
        source: &str,
        into: &str,
    ) -> Result<(SnapshotId, Option<SnapshotId>)> {
        if source.trim() == into {
            return Err(RepoError::MergeIntoItself(into.to_string()));
        }
        let src = self.resolve(source).await?;
        let tip = self.branch_tip(into).await?;
        let base = self.merge_base(&tip, &src.id).await?.ok_or_else(|| {
            RepoError::Invalid(format!("'{source}' and '{into}' have no common ancestor"))
        })?;
        let base = (base != src.id).then_some(base);
        Ok((src.id, base))
    }

    /// Merge `source` (a REV) into branch `into`, chunk by chunk (`history::merge`
    /// merges by cells).
    pub async fn merge_by_chunks(
        &self,
        source: &str,
        into: &str,
        mut prov: Provenance,
    ) -> Result<CommitOutcome> {
        let (src, base) = self.merge_of(source, into).await?;
        let Some(base) = base else {
            // source is already contained in the target
            return Ok(CommitOutcome {
                commit: None,
                branch: into.into(),
                stats: Default::default(),
                content_digest: None,
                rebases: 0,
            });
        };
        if prov.message.is_empty() {
            prov.message = format!("Merge {source} into {into}");
        }
        prov.refs.insert(keys::MERGED_FROM.into(), src.to_string());
        prov.refs.insert(keys::MERGE_BASE.into(), base.to_string());
        Ok(self
            .three_way("merge", into, &base, &src, Strategy::Fail, prov)
            .await?
            .0)
    }

    /// The commit to cherry-pick and its parent.
    pub(crate) async fn pick_of(&self, commit: &str) -> Result<(CommitInfo, SnapshotId)> {
        let c = self.resolve(commit).await?;
        let info = self.commit_info(&c.id).await?;
        let Some(parent) = info.parents.first() else {
            return Err(RepoError::Invalid(format!(
                "commit {} has no parent to compare with",
                c.id
            )));
        };
        let parent = snapshot_id(parent)?;
        Ok((info, parent))
    }

    /// Apply one commit's changes onto `branch`, chunk by chunk (`history::cherry_pick`
    /// picks by cells).
    pub async fn cherry_pick_by_chunks(
        &self,
        commit: &str,
        branch: &str,
        mut prov: Provenance,
    ) -> Result<CommitOutcome> {
        let (info, parent) = self.pick_of(commit).await?;
        if prov.message.is_empty() {
            prov.message = info.message.clone();
        }
        prov.refs
            .insert(keys::CHERRY_PICKED.into(), info.id.to_string());
        let id = snapshot_id(&info.id)?;
        Ok(self
            .three_way("cherry-pick", branch, &parent, &id, Strategy::Fail, prov)
            .await?
            .0)
    }
}

/// A commit id as given in history (`Invalid` if it is not one).
pub(crate) fn snapshot_id(s: &str) -> Result<SnapshotId> {
    SnapshotId::try_from(s).map_err(|e| RepoError::Invalid(format!("commit id '{s}': {e}")))
}

/// What a revert works from.
pub(crate) struct RevertOf {
    /// The commit reverted.
    pub commit: CommitInfo,
    /// Its id.
    pub id: SnapshotId,
    /// Its parent.
    pub parent: SnapshotId,
    /// The commits after it on the branch, newest first.
    pub later: Vec<CommitInfo>,
}

/// Paths of the nodes (arrays and groups) whose metadata or chunks differ between two sessions.
pub(crate) async fn changed_paths(a: &Session, b: &Session) -> Result<BTreeSet<String>> {
    let ch = changes(a, b).await?;
    Ok(ch
        .nodes
        .keys()
        .chain(ch.chunks.keys())
        .map(ToString::to_string)
        .collect())
}

/// Restore chunks of `array` by reference: each chunk in `candidates` whose reference in
/// `target` is still the one in `same_as` gets the reference it has in `from` (none: the chunk is
/// removed, reading as fill). Returns the chunks restored; the others are left to the caller.
pub(crate) async fn restore_by_reference(
    target: &mut Session,
    from: &Session,
    same_as: &Session,
    array: &str,
    candidates: &[Vec<u32>],
) -> Result<BTreeSet<Vec<u32>>> {
    let path = Path::new(array).map_err(|e| RepoError::Invalid(format!("{array}: {e}")))?;
    let (now, was, before) = (
        chunks_at(target, &path).await?,
        chunks_at(same_as, &path).await?,
        chunks_at(from, &path).await?,
    );
    let mut done = BTreeSet::new();
    for c in candidates {
        let k = ChunkIndices(c.clone());
        if now.get(&k) != was.get(&k) {
            continue;
        }
        target
            .set_chunk_ref(path.clone(), k.clone(), before.get(&k).cloned())
            .await
            .map_err(engine(format!("updating {array}")))?;
        done.insert(c.clone());
    }
    Ok(done)
}

async fn chunks_at(s: &Session, path: &Path) -> Result<BTreeMap<ChunkIndices, ChunkPayload>> {
    match node_in(s, path).await? {
        Some(n) if is_array(&n) => cas::array_chunks(s, &n)
            .await
            .map_err(engine(format!("reading chunks of {path}"))),
        _ => Ok(BTreeMap::new()),
    }
}
