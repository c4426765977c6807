//! History: log, show, and diff between any two revisions.

use std::collections::{BTreeMap, BTreeSet};

use icechunk::format::manifest::ChunkPayload;
use icechunk::format::snapshot::{NodeData, NodeSnapshot, SnapshotInfo};
use icechunk::format::{ChunkIndices, Path, SnapshotId};
use icechunk::session::Session;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{engine, CommitId, Repo, Result};
use crate::cas;
use crate::provenance::{keys, prop_meta, prop_str};

/// One commit as `log` and `show` print it.
#[derive(Clone, Debug, Serialize)]
pub struct CommitInfo {
    /// Commit id (the icechunk snapshot id).
    pub id: CommitId,
    /// Parent commits: the previous commit on the branch, then a merged source tip, if any.
    pub parents: Vec<CommitId>,
    /// When the commit was written (UTC; printed as RFC 3339 with microseconds).
    #[serde(serialize_with = "rfc3339_micros")]
    pub time: chrono::DateTime<chrono::Utc>,
    /// `Name <email>`.
    pub author: Option<String>,
    /// Commit message.
    pub message: String,
    /// What kind of operation made it.
    pub operation: Option<String>,
    /// Input source.
    pub source: Option<String>,
    /// blake3 of the input.
    pub input_blake3: Option<String>,
    /// blake3 of the normalised schema.
    pub schema_blake3: Option<String>,
    /// Content digest of the snapshot.
    pub content_digest: Option<String>,
    /// Counts.
    pub counts: Map<String, Value>,
    /// Free metadata.
    pub meta: Map<String, Value>,
    /// Everything else in the commit metadata (reverts, merged_from, ...).
    pub extra: Map<String, Value>,
}

impl CommitInfo {
    /// The commit as `log --json` prints it: the fields above, and every other metadata key.
    pub fn to_json(&self) -> Value {
        let c = self;
        let mut v = json!({
            "id": c.id,
            "parents": c.parents,
            "time": c.time_text(),
            "author": c.author,
            "message": c.message,
            "operation": c.operation,
            "source": c.source,
            "input_blake3": c.input_blake3,
            "schema_blake3": c.schema_blake3,
            "content_digest": c.content_digest,
            "counts": c.counts,
            "meta": c.meta,
        });
        if let Some(o) = v.as_object_mut() {
            for (k, val) in &c.extra {
                o.entry(k.clone()).or_insert(val.clone());
            }
        }
        v
    }

    /// The commit time as `log --json` prints it (RFC 3339, UTC, microseconds).
    pub fn time_text(&self) -> String {
        self.time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// Build from icechunk's snapshot info.
    pub fn from_snapshot(info: &SnapshotInfo) -> CommitInfo {
        CommitInfo::from_parts(
            CommitId::from(&info.id),
            info.parent_id.iter().map(CommitId::from).collect(),
            info.flushed_at,
            &info.message,
            &info.metadata,
        )
    }

    /// Build from the parts of a commit: id, parent ids, time, message and metadata (provenance).
    pub fn from_parts(
        id: CommitId,
        mut parents: Vec<CommitId>,
        flushed_at: chrono::DateTime<chrono::Utc>,
        message: &str,
        p: &BTreeMap<String, Value>,
    ) -> CommitInfo {
        if let Some(m) = prop_str(p, keys::MERGED_FROM).and_then(|m| m.parse().ok()) {
            parents.push(m);
        }
        let known = [
            keys::AUTHOR,
            keys::OPERATION,
            keys::SOURCE,
            keys::INPUT_BLAKE3,
            keys::SCHEMA_BLAKE3,
            keys::CONTENT_DIGEST,
            keys::COUNTS,
            keys::META,
            keys::SKIP,
        ];
        let extra = p
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        CommitInfo {
            id,
            parents,
            time: flushed_at,
            author: prop_str(p, keys::AUTHOR),
            message: message.to_string(),
            operation: prop_str(p, keys::OPERATION),
            source: prop_str(p, keys::SOURCE),
            input_blake3: prop_str(p, keys::INPUT_BLAKE3),
            schema_blake3: prop_str(p, keys::SCHEMA_BLAKE3),
            content_digest: prop_str(p, keys::CONTENT_DIGEST),
            counts: p
                .get(keys::COUNTS)
                .and_then(|v| v.as_object())
                .cloned()
                .unwrap_or_default(),
            meta: prop_meta(p),
            extra,
        }
    }
}

/// A time as `log --json` prints it: RFC 3339, UTC, microseconds.
fn rfc3339_micros<S: serde::Serializer>(
    t: &chrono::DateTime<chrono::Utc>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// A node whose presence or metadata differs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeChange {
    /// Node path.
    pub path: String,
    /// Attribute keys whose values differ.
    pub attributes: Vec<String>,
}

/// What differs between two revisions.
#[derive(Clone, Debug, Serialize, Default)]
pub struct DiffReport {
    /// From commit.
    pub from: String,
    /// To commit.
    pub to: String,
    /// Groups only in `to`.
    pub groups_added: Vec<String>,
    /// Groups only in `from`.
    pub groups_removed: Vec<String>,
    /// Groups whose metadata differs.
    pub groups_changed: Vec<NodeChange>,
    /// Arrays only in `to`.
    pub arrays_added: Vec<String>,
    /// Arrays only in `from`.
    pub arrays_removed: Vec<String>,
    /// Arrays whose metadata (shape, attributes, ...) differs.
    pub arrays_changed: Vec<NodeChange>,
    /// Per array: the number of changed chunks.
    pub chunk_counts: BTreeMap<String, usize>,
    /// Per array: the coordinates of changed chunks (the CLI shows them with `--chunks`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub chunks: BTreeMap<String, Vec<Vec<u32>>>,
}

impl DiffReport {
    /// Whether the two revisions hold the same content.
    pub fn is_empty(&self) -> bool {
        self.groups_added.is_empty()
            && self.groups_removed.is_empty()
            && self.groups_changed.is_empty()
            && self.arrays_added.is_empty()
            && self.arrays_removed.is_empty()
            && self.arrays_changed.is_empty()
            && self.chunks.is_empty()
    }
}

/// Changed chunks of one array: (before, after) by coordinates.
pub(crate) type ChunkChanges = BTreeMap<ChunkIndices, (Option<ChunkPayload>, Option<ChunkPayload>)>;

/// Node-level and chunk-level differences between two sessions.
#[derive(Default)]
pub(crate) struct Changes {
    /// Nodes added, removed or with different metadata: (before, after).
    pub nodes: BTreeMap<Path, (Option<NodeSnapshot>, Option<NodeSnapshot>)>,
    /// Changed chunks of arrays present on both sides: (before, after).
    pub chunks: BTreeMap<Path, ChunkChanges>,
}

/// Node metadata as compared: kind and the Zarr metadata document.
pub(crate) fn same_metadata(a: &NodeSnapshot, b: &NodeSnapshot) -> bool {
    let kind = |n: &NodeSnapshot| matches!(n.node_data, NodeData::Array { .. });
    kind(a) == kind(b) && a.user_data == b.user_data && shape_of(a) == shape_of(b)
}

fn shape_of(n: &NodeSnapshot) -> Option<String> {
    match &n.node_data {
        NodeData::Array {
            shape,
            dimension_names,
            ..
        } => Some(format!("{shape:?}{dimension_names:?}")),
        NodeData::Group => None,
    }
}

fn same_manifests(a: &NodeSnapshot, b: &NodeSnapshot) -> bool {
    match (&a.node_data, &b.node_data) {
        (NodeData::Array { manifests: ma, .. }, NodeData::Array { manifests: mb, .. }) => ma == mb,
        _ => false,
    }
}

/// Compare two sessions. Arrays whose manifests are identical are not read.
pub(crate) async fn changes(a: &Session, b: &Session) -> Result<Changes> {
    let na: BTreeMap<Path, NodeSnapshot> = cas::list_nodes(a)
        .await
        .map_err(engine("listing nodes"))?
        .into_iter()
        .map(|n| (n.path.clone(), n))
        .collect();
    let nb: BTreeMap<Path, NodeSnapshot> = cas::list_nodes(b)
        .await
        .map_err(engine("listing nodes"))?
        .into_iter()
        .map(|n| (n.path.clone(), n))
        .collect();
    let mut out = Changes::default();
    let paths: BTreeSet<&Path> = na.keys().chain(nb.keys()).collect();
    for path in paths {
        let (x, y) = (na.get(path), nb.get(path));
        match (x, y) {
            (Some(x), Some(y)) => {
                if !same_metadata(x, y) {
                    out.nodes
                        .insert(path.clone(), (Some(x.clone()), Some(y.clone())));
                }
                let both_arrays = matches!(x.node_data, NodeData::Array { .. })
                    && matches!(y.node_data, NodeData::Array { .. });
                if both_arrays && !(x.id == y.id && same_manifests(x, y)) {
                    let ca = cas::array_chunks(a, x)
                        .await
                        .map_err(engine(format!("reading chunks of {path}")))?;
                    let cb = cas::array_chunks(b, y)
                        .await
                        .map_err(engine(format!("reading chunks of {path}")))?;
                    let coords: BTreeSet<&ChunkIndices> = ca.keys().chain(cb.keys()).collect();
                    let mut changed = BTreeMap::new();
                    for c in coords {
                        let (p, q) = (ca.get(c), cb.get(c));
                        if p != q {
                            changed.insert(c.clone(), (p.cloned(), q.cloned()));
                        }
                    }
                    if !changed.is_empty() {
                        out.chunks.insert(path.clone(), changed);
                    }
                }
            }
            _ => {
                out.nodes.insert(path.clone(), (x.cloned(), y.cloned()));
            }
        }
    }
    Ok(out)
}

fn attributes(n: &NodeSnapshot) -> Map<String, Value> {
    serde_json::from_slice::<Value>(&n.user_data)
        .ok()
        .and_then(|v| v.get("attributes").and_then(|a| a.as_object()).cloned())
        .unwrap_or_default()
}

fn changed_attributes(a: &NodeSnapshot, b: &NodeSnapshot) -> Vec<String> {
    let (x, y) = (attributes(a), attributes(b));
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    keys.into_iter()
        .filter(|k| x.get(*k) != y.get(*k))
        .cloned()
        .collect()
}

impl Repo {
    /// The history ending at `rev`, newest first (at most `limit` commits).
    pub async fn log(&self, rev: &str, limit: Option<usize>) -> Result<Vec<CommitInfo>> {
        let r = self.resolve(rev).await?;
        let mut out: Vec<CommitInfo> = self
            .ancestry(&r.id)
            .await?
            .iter()
            .map(CommitInfo::from_snapshot)
            .collect();
        if let Some(n) = limit {
            out.truncate(n);
        }
        Ok(out)
    }

    /// One commit.
    pub async fn commit_info(&self, id: &SnapshotId) -> Result<CommitInfo> {
        let info = self
            .inner
            .ancestry(&icechunk::repository::VersionInfo::SnapshotId(id.clone()))
            .await
            .map_err(engine(format!("reading commit {id}")))?;
        futures::pin_mut!(info);
        match futures::StreamExt::next(&mut info).await {
            Some(Ok(i)) => Ok(CommitInfo::from_snapshot(&i)),
            Some(Err(e)) => Err(engine(format!("reading commit {id}"))(e)),
            None => Err(super::RepoError::RevNotFound {
                rev: id.to_string(),
                hint: "no such commit".into(),
            }),
        }
    }

    /// The side record of a commit (chunks written with digests, cells written), if any.
    pub async fn record(&self, info: &CommitInfo) -> Result<Option<serde_json::Value>> {
        let Some(key) = info.extra.get(keys::RECORD).and_then(|v| v.as_str()) else {
            return Ok(None);
        };
        let storage = self.inner.storage();
        let ctx = self.inner.storage_context();
        let (stream, _) = storage
            .get_object_range(&ctx, key, None)
            .await
            .map_err(engine(format!("reading record {key}")))?;
        let parts: Vec<bytes::Bytes> = futures::TryStreamExt::try_collect(stream)
            .await
            .map_err(engine(format!("reading record {key}")))?;
        let v: serde_json::Value = serde_json::from_slice(&parts.concat()).map_err(|e| {
            super::RepoError::Invalid(format!("record {key} of commit {}: {e}", info.id))
        })?;
        Ok(Some(v))
    }

    /// Differences between two resolved commits.
    pub async fn diff_ids(&self, from: &SnapshotId, to: &SnapshotId) -> Result<DiffReport> {
        let a = self.session_at(from).await?;
        let b = self.session_at(to).await?;
        let ch = changes(&a, &b).await?;
        let mut r = DiffReport {
            from: from.to_string(),
            to: to.to_string(),
            ..Default::default()
        };
        for (path, (x, y)) in &ch.nodes {
            let p = path.to_string();
            let is_array = |n: &NodeSnapshot| matches!(n.node_data, NodeData::Array { .. });
            match (x, y) {
                (None, Some(y)) if is_array(y) => r.arrays_added.push(p),
                (None, Some(_)) => r.groups_added.push(p),
                (Some(x), None) if is_array(x) => r.arrays_removed.push(p),
                (Some(_), None) => r.groups_removed.push(p),
                (Some(x), Some(y)) => {
                    let change = NodeChange {
                        path: p,
                        attributes: changed_attributes(x, y),
                    };
                    if is_array(y) {
                        r.arrays_changed.push(change)
                    } else {
                        r.groups_changed.push(change)
                    }
                }
                (None, None) => {}
            }
        }
        for (path, chunks) in ch.chunks {
            let coords: Vec<Vec<u32>> = chunks.keys().map(|c| c.0.clone()).collect();
            r.chunk_counts.insert(path.to_string(), coords.len());
            r.chunks.insert(path.to_string(), coords);
        }
        // chunks of added arrays count as changed too
        for p in r.arrays_added.clone() {
            if let Ok(path) = Path::new(&p) {
                if let Ok(node) = b.get_array(&path).await {
                    let c = cas::array_chunks(&b, &node)
                        .await
                        .map_err(engine(format!("reading chunks of {p}")))?;
                    if !c.is_empty() {
                        r.chunk_counts.insert(p.clone(), c.len());
                        r.chunks.insert(p, c.keys().map(|k| k.0.clone()).collect());
                    }
                }
            }
        }
        Ok(r)
    }

    /// Differences between two revisions.
    pub async fn diff(&self, from: &str, to: &str) -> Result<DiffReport> {
        let a = self.resolve(from).await?;
        let b = self.resolve(to).await?;
        self.diff_ids(&a.id, &b.id).await
    }
}
