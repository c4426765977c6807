//! Skip pointers over the first-parent history (spec/018), so that blame does not visit every
//! commit of a long history.
//!
//! Every commit records, under the `skip` key of its metadata, its depth `d` (1 + its parent's;
//! 1 above a commit without a skip record), the id of its ancestor at depth `d - lowbit(d)` and
//! the union of the extents (spec/011) of the commits in between, itself included. Going back
//! from any commit, these blocks grow like a Fenwick tree's, so a cell that none of the newest
//! commits wrote is reached in O(log² n) steps instead of n.

use std::collections::BTreeMap;

use icechunk::format::repo_info::RepoInfo;
use icechunk::format::SnapshotId;
use serde_json::{json, Map, Value};

use crate::provenance::keys;

/// What a commit's `skip` key says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Skip {
    /// Depth along first parents, counted from the nearest ancestor without a skip record.
    pub depth: u64,
    /// The ancestor at depth `depth - lowbit(depth)`.
    pub to: SnapshotId,
    /// Union of the extents of the commits from this one down to (not including) `to`; `None`:
    /// unbounded (a merge, an import, a commit whose cells are not bounded by an extent).
    pub over: Option<Map<String, Value>>,
}

/// The lowest set bit of `d` (the size of the block ending at depth `d`).
pub(crate) fn lowbit(d: u64) -> u64 {
    d & d.wrapping_neg()
}

impl Skip {
    /// Read the skip record of a commit's metadata (`None`: it has none or it is malformed).
    pub(crate) fn of(props: &BTreeMap<String, Value>) -> Option<Skip> {
        let v = props.get(keys::SKIP)?.as_object()?;
        let depth = v.get("depth")?.as_u64().filter(|d| *d > 0)?;
        let to = SnapshotId::try_from(v.get("to")?.as_str()?).ok()?;
        let over = match v.get("over")? {
            Value::Null => None,
            Value::Object(m) => Some(m.clone()),
            _ => return None,
        };
        Some(Skip { depth, to, over })
    }

    /// The JSON written under `skip`.
    pub(crate) fn to_json(&self) -> Value {
        json!({"depth": self.depth, "to": self.to.to_string(), "over": self.over})
    }

    /// The depth of `to`.
    pub(crate) fn to_depth(&self) -> u64 {
        self.depth - lowbit(self.depth)
    }
}

/// Compare two extent bounds of the same kind (numbers with numbers, text with text).
fn cmp_bound(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Union of two extents (node → coordinate → `[least, greatest]`; `None`: unbounded).
///
/// A node missing from one side wrote nothing there; a coordinate missing from one side (or
/// bounds that do not compare) leaves that coordinate unbounded, so it is dropped.
pub(crate) fn union(
    a: Option<&Map<String, Value>>,
    b: Option<&Map<String, Value>>,
) -> Option<Map<String, Value>> {
    let (a, b) = (a?, b?);
    let mut out = a.clone();
    for (node, eb) in b {
        let Some(ea) = a.get(node) else {
            out.insert(node.clone(), eb.clone());
            continue;
        };
        let (Some(ea), Some(eb)) = (ea.as_object(), eb.as_object()) else {
            return None;
        };
        let mut merged = Map::new();
        for (coord, ra) in ea {
            let Some(rb) = eb.get(coord) else { continue };
            let (Some([la, ha]), Some([lb, hb])) = (
                ra.as_array().map(Vec::as_slice),
                rb.as_array().map(Vec::as_slice),
            ) else {
                continue;
            };
            let (Some(lo), Some(hi)) = (cmp_bound(la, lb), cmp_bound(ha, hb)) else {
                continue;
            };
            let lo = if lo.is_le() { la } else { lb };
            let hi = if hi.is_ge() { ha } else { hb };
            merged.insert(coord.clone(), json!([lo, hi]));
        }
        out.insert(node.clone(), Value::Object(merged));
    }
    Some(out)
}

/// How many reverts or cherry-picks of reverts are followed to find what a commit changed.
const MAX_INDIRECTION: usize = 8;

/// The extent of the cells a commit is credited with by blame, from its metadata: its own
/// `extent`; for a revert or a cherry-pick, that of the commit it reverts or picks; `None`
/// (unbounded) for merges, imports, squashes and commits whose cells are not bounded by an extent.
/// `writes_cells` says whether the commit's side record holds cells (`None`: unknown).
pub(crate) fn effective_extent(
    info: &RepoInfo,
    props: &BTreeMap<String, Value>,
    writes_cells: Option<bool>,
) -> Option<Map<String, Value>> {
    let mut props = std::borrow::Cow::Borrowed(props);
    let mut writes_cells = writes_cells;
    for _ in 0..MAX_INDIRECTION {
        let op = props.get(keys::OPERATION).and_then(Value::as_str);
        if op == Some("import")
            || props.contains_key(keys::MERGED_FROM)
            || props.contains_key(super::folded::FOLDED)
        {
            return None;
        }
        let target = [keys::REVERTS, keys::CHERRY_PICKED]
            .iter()
            .find_map(|k| props.get(*k).and_then(Value::as_str));
        if let Some(target) = target {
            let id = SnapshotId::try_from(target).ok()?;
            let snap = info.find_snapshot(&id).ok()?;
            props = std::borrow::Cow::Owned(snap.metadata);
            writes_cells = None;
            continue;
        }
        return match props.get(keys::EXTENT) {
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => None,
            None if writes_cells == Some(false) => Some(Map::new()),
            None => None,
        };
    }
    None
}

/// The skip record of a new commit on `parent` whose own effective extent is `own`.
///
/// Follows the parent's skip pointers down to depth `d - lowbit(d)`, uniting their extents.
/// When the chain is broken (a commit without a skip record, an expired commit, a depth that
/// does not fit) the new commit starts a new chain at depth 1 above its parent.
pub(crate) fn next(info: &RepoInfo, parent: &SnapshotId, own: Option<Map<String, Value>>) -> Skip {
    let restart = |own: Option<Map<String, Value>>| Skip {
        depth: 1,
        to: parent.clone(),
        over: own,
    };
    let parent_skip = info
        .find_snapshot(parent)
        .ok()
        .and_then(|s| Skip::of(&s.metadata));
    let Some(first) = parent_skip else {
        return restart(own);
    };
    let depth = first.depth + 1;
    let floor = depth - lowbit(depth);
    let mut over = own.clone();
    // walk the blocks that tile (floor, depth - 1], newest first
    let (mut d, mut id, mut sk) = (depth - 1, parent.clone(), first);
    while d > floor {
        if sk.depth != d || sk.to_depth() < floor {
            return restart(own);
        }
        over = union(over.as_ref(), sk.over.as_ref());
        d = sk.to_depth();
        id = sk.to.clone();
        if d > floor {
            match info
                .find_snapshot(&id)
                .ok()
                .and_then(|s| Skip::of(&s.metadata))
            {
                Some(next) => sk = next,
                None => return restart(own),
            }
        }
    }
    Skip {
        depth,
        to: id,
        over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(v: Value) -> Option<Map<String, Value>> {
        v.as_object().cloned()
    }

    #[test]
    fn lowbits() {
        assert_eq!(lowbit(1), 1);
        assert_eq!(lowbit(12), 4);
        assert_eq!(lowbit(16), 16);
    }

    #[test]
    fn unions_widen_bounds_and_drop_what_does_not_compare() {
        let a = ext(json!({"": {"time": [5, 9], "site": ["b", "c"]}, "x": {"t": [1, 2]}}));
        let b = ext(json!({"": {"time": [1, 7], "site": ["a", "b"], "z": [0, 1]}, "y": {}}));
        let u = union(a.as_ref(), b.as_ref()).unwrap();
        assert_eq!(
            Value::Object(u),
            json!({"": {"time": [1, 9], "site": ["a", "c"]}, "x": {"t": [1, 2]}, "y": {}})
        );
        assert_eq!(union(a.as_ref(), None), None);
        let mixed = ext(json!({"": {"time": ["a", "b"]}}));
        let u = union(a.as_ref(), mixed.as_ref()).unwrap();
        assert_eq!(u[""], json!({}));
        let f = ext(json!({"": {"time": [0.5, 10.5]}}));
        assert_eq!(
            union(a.as_ref(), f.as_ref()).unwrap()[""]["time"],
            json!([0.5, 10.5])
        );
    }
}
