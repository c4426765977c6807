//! The lists of contributions a commit stands for: a squash commit's `folded` list (spec/029)
//! and a merge record's `merged` list, read back as commits for log and blame.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use icechunk::format::snapshot::SnapshotInfo;
use serde_json::{json, Value};

use super::CommitInfo;
use crate::provenance::keys;

/// Snapshot property of a squash commit: the contributions it folds, oldest first.
pub const FOLDED: &str = "folded";

/// Snapshot property of a commit a squash wrote again: the id it was first committed as.
pub(crate) const REPLAYED_FROM: &str = "replayed_from";

/// The time a contribution was made: its provenance time, else when it was committed.
pub(crate) fn made_at(s: &SnapshotInfo) -> DateTime<Utc> {
    s.metadata
        .get(keys::TIME)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(s.flushed_at, |t| t.with_timezone(&Utc))
}

/// The entry of one commit in a squash commit's list (an earlier squash commit keeps its own
/// list inside: a revert of it still names it).
pub(crate) fn folded_entries(s: &SnapshotInfo) -> Vec<Value> {
    let m = &s.metadata;
    let get = |k: &str| m.get(k).cloned().unwrap_or(Value::Null);
    // a commit an earlier squash wrote again is named by the id it was first committed as
    let original = m.get(REPLAYED_FROM).and_then(Value::as_str);
    json!({
        "id": original.map_or_else(|| s.id.to_string(), str::to_string),
        "snapshot": original.map(|_| s.id.to_string()),
        "message": s.message,
        "author": get(keys::AUTHOR),
        "time": made_at(s).to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "operation": get(keys::OPERATION),
        "source": get(keys::SOURCE),
        "input_blake3": get(keys::INPUT_BLAKE3),
        "schema_blake3": get(keys::SCHEMA_BLAKE3),
        "counts": get(keys::COUNTS),
        "meta": get(keys::META),
        "record": get(keys::RECORD),
        "extent": get(keys::EXTENT),
        "reverts": get(keys::REVERTS),
        "merged_from": get(keys::MERGED_FROM),
        "merge_base": get(keys::MERGE_BASE),
        "cherry_picked": get(keys::CHERRY_PICKED),
        "folded": get(FOLDED),
    })
    .as_object()
    .map(|o| {
        // nulls are left out
        let o: serde_json::Map<String, Value> = o
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vec![Value::Object(o)]
    })
    .unwrap_or_default()
}

/// The folded contributions of a commit as commits (newest first), for blame and log.
pub fn folded(info: &CommitInfo) -> Vec<CommitInfo> {
    match info.extra.get(FOLDED).and_then(Value::as_array) {
        Some(list) => entries(list),
        None => vec![],
    }
}

/// The contributions a commit folds, nested squash commits expanded (newest first).
pub fn folded_leaves(info: &CommitInfo) -> Vec<CommitInfo> {
    folded(info)
        .into_iter()
        .flat_map(|f| {
            let inner = folded_leaves(&f);
            if inner.is_empty() {
                vec![f]
            } else {
                inner
            }
        })
        .collect()
}

/// The entries of the history `chain` (oldest first) as a list (oldest first) that
/// [`entries`] reads back: a squash commit's own list is flattened.
pub(crate) fn entries_of(chain: &[SnapshotInfo]) -> Vec<Value> {
    chain.iter().flat_map(folded_entries).collect()
}

/// Commit entries (`folded` of a squash commit, `merged` of a merge's record; oldest first) as
/// commits, newest first.
pub fn entries(list: &[Value]) -> Vec<CommitInfo> {
    list.iter()
        .rev()
        .filter_map(|e| {
            let o = e.as_object()?;
            let id: super::CommitId = o.get("id")?.as_str()?.parse().ok()?;
            let time = o
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
            let message = o.get("message").and_then(Value::as_str).unwrap_or("");
            let mut props: BTreeMap<String, Value> = BTreeMap::new();
            for (k, key) in [
                ("author", keys::AUTHOR),
                ("operation", keys::OPERATION),
                ("source", keys::SOURCE),
                ("input_blake3", keys::INPUT_BLAKE3),
                ("schema_blake3", keys::SCHEMA_BLAKE3),
                ("counts", keys::COUNTS),
                ("meta", keys::META),
                ("record", keys::RECORD),
                ("extent", keys::EXTENT),
                ("snapshot", "snapshot"),
                ("reverts", keys::REVERTS),
                ("merged_from", keys::MERGED_FROM),
                ("merge_base", keys::MERGE_BASE),
                ("cherry_picked", keys::CHERRY_PICKED),
                ("folded", FOLDED),
            ] {
                if let Some(v) = o.get(k) {
                    props.insert(key.to_string(), v.clone());
                }
            }
            Some(CommitInfo::from_parts(id, vec![], time, message, &props))
        })
        .collect()
}
