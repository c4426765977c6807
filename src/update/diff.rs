//! What differs between two revisions, by cells and coordinate values (spec/027): per variable,
//! how many cells changed, were added (NA before) or set to NA, and boxes of the coordinate values
//! they lie in. The chunk-level diff of the repository says which arrays to read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use super::layout::{stored_schema, Store};
use super::read::{read_axis, read_var};
use super::{Key, Scalar, UpdateError};
use crate::repo::{DiffReport, Repo};
use crate::schema::{DType, NodeSchema, Variable};

/// Boxes listed per variable at most; the total is always given.
pub(crate) const MAX_BOXES: usize = 20;

/// Cells that differ, per node path and variable.
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct CellDiff {
    /// Node path (`""` = root) → variable → what differs.
    pub nodes: BTreeMap<String, BTreeMap<String, VarDiff>>,
}

/// What differs in one variable.
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct VarDiff {
    /// Cells with a value in both revisions, different.
    pub changed: u64,
    /// Cells with a value only in the newer revision.
    pub added: u64,
    /// Cells with a value only in the older revision.
    pub set_na: u64,
    /// Boxes of coordinate values holding those cells (the first 20).
    pub boxes: Vec<CellBox>,
    /// How many boxes there are in all.
    pub boxes_total: usize,
}

/// Cells in a box of coordinate values: per dimension (in the variable's order) the first and
/// last value, inclusive and adjacent on the newer revision's axis.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CellBox {
    /// The box's extent per dimension.
    pub coords: Vec<BoxSide>,
    /// Cells in the box that differ.
    pub cells: u64,
}

/// One dimension of a [`CellBox`]. A composed coordinate's values are given by its components
/// (`{"latitude": 50.1, "longitude": 14.2}`), a datetime's as ISO text.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BoxSide {
    /// The dimension.
    pub dim: String,
    /// Its first value in the box.
    pub first: Value,
    /// Its last value in the box.
    pub last: Value,
}

impl CellDiff {
    /// Whether no cell differs.
    pub fn is_empty(&self) -> bool {
        self.nodes.values().all(BTreeMap::is_empty)
    }
}

/// What changed between two revisions, as `diff` and `show` report it: the arrays, groups and
/// chunk counts (chunk indices only when asked for) and, where the revisions have a schema, the
/// cells by coordinate values.
#[derive(Clone, Debug, Serialize)]
pub struct Changes {
    /// Arrays, groups and chunk counts.
    #[serde(flatten)]
    pub chunks: DiffReport,
    /// Cells that differ per node and variable (`None`: the older revision has no schema).
    pub cells: Option<CellDiff>,
}

impl Repo {
    /// What changed from `from` to `to`; `chunk_indices`: keep the changed chunks' indices.
    pub async fn changes(
        &self,
        from: &icechunk::format::SnapshotId,
        to: &icechunk::format::SnapshotId,
        chunk_indices: bool,
    ) -> Result<Changes, UpdateError> {
        let mut d = self.diff_ids(from, to).await?;
        // a revision without a zarr-fuse schema (the repository's root commit) has no cells
        let cells = match cell_diff(self, from, to, &d).await {
            Ok(c) => Some(c),
            Err(UpdateError::NoSchema(_)) => None,
            Err(e) => return Err(e),
        };
        if !chunk_indices {
            d.chunks.clear();
        }
        Ok(Changes { chunks: d, cells })
    }

    /// The commit `rev` names and what it changed from its first parent (`None`: the root).
    pub async fn show(
        &self,
        rev: &str,
        chunk_indices: bool,
    ) -> Result<(crate::repo::CommitInfo, Option<Changes>), UpdateError> {
        let res = self.resolve(rev).await?;
        let info = self.commit_info(&res.id).await?;
        let changes = match info.parents.first() {
            Some(p) => Some(self.changes(p.snapshot(), &res.id, chunk_indices).await?),
            None => None,
        };
        Ok((info, changes))
    }
}

/// The cells that differ between `from` and `to`, for the arrays `chunks` names as changed (and
/// every variable along a coordinate whose array changed).
pub async fn cell_diff(
    repo: &Repo,
    from: &icechunk::format::SnapshotId,
    to: &icechunk::format::SnapshotId,
    chunks: &DiffReport,
) -> Result<CellDiff, UpdateError> {
    let (sa, sb) = (repo.read_store(from).await?, repo.read_store(to).await?);
    let (sa, sb): (Arc<Store>, Arc<Store>) = (sa, sb);
    let schema_b = stored_schema(&sb).await?;
    let schema_a = stored_schema(&sa).await.ok();
    let touched: HashSet<&str> = chunks
        .chunk_counts
        .keys()
        .map(String::as_str)
        .chain(chunks.arrays_added.iter().map(String::as_str))
        .chain(chunks.arrays_changed.iter().map(|c| c.path.as_str()))
        .collect();
    let path_of = |node: &NodeSchema, name: &str| {
        if node.path.is_empty() {
            format!("/{name}")
        } else {
            format!("/{}/{name}", node.path)
        }
    };
    let mut out = CellDiff::default();
    for node in schema_b.root.walk() {
        let moved: HashSet<&str> = node
            .coords
            .iter()
            .map(|c| c.name())
            .filter(|c| touched.contains(path_of(node, c).as_str()))
            .collect();
        let old_node = schema_a.as_ref().and_then(|s| s.node(&node.path));
        for v in &node.vars {
            let hit = touched.contains(path_of(node, &v.name).as_str())
                || v.coords.iter().any(|d| moved.contains(d.as_str()));
            if !hit {
                continue;
            }
            let old = old_node
                .filter(|n| n.var(&v.name).is_some())
                .map(|on| (on, &sa));
            let d = var_diff(node, v, &sb, old).await?;
            if d.changed + d.added + d.set_na > 0 {
                out.nodes
                    .entry(node.path.clone())
                    .or_default()
                    .insert(v.name.clone(), d);
            }
        }
    }
    Ok(out)
}

type Old<'a> = Option<(&'a NodeSchema, &'a Arc<Store>)>;

async fn var_diff(
    node: &NodeSchema,
    v: &Variable,
    store: &Arc<Store>,
    old: Old<'_>,
) -> Result<VarDiff, UpdateError> {
    let mut axes = Vec::new();
    for d in &v.coords {
        axes.push(read_axis(store, node, d, None).await?);
    }
    let (shape, cells) = read_var(store, node, v).await?;
    // per dimension: the older revision's position of each newer position (axes only grow)
    let (old_shape, old_cells, maps) = match old {
        Some((on, os)) => {
            let mut maps = Vec::new();
            for (d, axis) in v.coords.iter().zip(&axes) {
                let before = read_axis(os, on, d, None).await.unwrap_or_default();
                let at: HashMap<Key, usize> = before
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.key().map(|k| (k, i)))
                    .collect();
                maps.push(
                    axis.iter()
                        .map(|s| s.key().and_then(|k| at.get(&k).copied()))
                        .collect::<Vec<_>>(),
                );
            }
            let ov = on.var(&v.name).unwrap_or(v);
            let (s, c) = read_var(os, on, ov).await?;
            (s, c, maps)
        }
        None => (vec![], vec![], vec![]),
    };
    let ost = strides(&old_shape);
    let nst = strides(&shape);
    let mut out = VarDiff::default();
    let mut hits: Vec<Vec<usize>> = Vec::new();
    let mut idx = vec![0usize; shape.len()];
    for (flat, b) in cells.iter().enumerate() {
        for (a, n) in idx.iter_mut().enumerate() {
            *n = flat / nst[a] % shape[a] as usize;
        }
        let a = if maps.is_empty() {
            None
        } else {
            idx.iter()
                .enumerate()
                .map(|(d, &i)| maps[d][i].map(|p| p * ost[d]))
                .sum::<Option<usize>>()
                .and_then(|f| old_cells.get(f))
        };
        let a = a.unwrap_or(&Scalar::Na);
        let differs = match (a, b) {
            (Scalar::Na, Scalar::Na) => false,
            (Scalar::Na, _) => {
                out.added += 1;
                true
            }
            (_, Scalar::Na) => {
                out.set_na += 1;
                true
            }
            (x, y) if x != y => {
                out.changed += 1;
                true
            }
            _ => false,
        };
        if differs && hits.len() < 1_000_000 {
            hits.push(idx.clone());
        }
    }
    let mut labels = Vec::new();
    for (d, axis) in v.coords.iter().zip(axes) {
        labels.push(axis_labels(store, node, d, axis).await?);
    }
    let labels: Vec<&[Value]> = labels.iter().map(Vec::as_slice).collect();
    (out.boxes, out.boxes_total) = labelled_boxes(hits, &v.coords, &labels);
    Ok(out)
}

/// The boxes of the positions `hits` (the first [`MAX_BOXES`]) named by the coordinate values
/// `labels` of each dimension `dims`, and how many boxes there are.
pub(crate) fn labelled_boxes(
    hits: Vec<Vec<usize>>,
    dims: &[String],
    labels: &[&[Value]],
) -> (Vec<CellBox>, usize) {
    let boxes = boxes_of(hits);
    let total = boxes.len();
    let listed = boxes
        .into_iter()
        .take(MAX_BOXES)
        .map(|(lo, hi, cells)| CellBox {
            coords: dims
                .iter()
                .enumerate()
                .map(|(d, name)| BoxSide {
                    dim: name.clone(),
                    first: labels[d][lo[d]].clone(),
                    last: labels[d][hi[d]].clone(),
                })
                .collect(),
            cells,
        })
        .collect();
    (listed, total)
}

/// How users name the values of an axis: datetimes as ISO text, a composed coordinate's keys by
/// their components.
pub(crate) async fn axis_labels(
    store: &Arc<Store>,
    node: &NodeSchema,
    dim: &str,
    axis: Vec<Scalar>,
) -> Result<Vec<Value>, UpdateError> {
    let Some(c) = node.coord(dim) else {
        return Ok(axis.iter().map(|s| value_json(s, None)).collect());
    };
    if c.composed.is_empty() {
        let tick = match c.var.dtype {
            Some(DType::DateTime(t)) => Some(t),
            _ => None,
        };
        return Ok(axis.iter().map(|s| value_json(s, tick)).collect());
    }
    let mut parts = Vec::new();
    for comp in &c.composed {
        match node.var(comp) {
            Some(v) => parts.push((comp.clone(), read_var(store, node, v).await?.1)),
            None => return Ok(axis.iter().map(|s| value_json(s, None)).collect()),
        }
    }
    Ok((0..axis.len())
        .map(|i| {
            let o: serde_json::Map<String, Value> = parts
                .iter()
                .map(|(n, vals)| {
                    (
                        n.clone(),
                        vals.get(i).map_or(Value::Null, |s| value_json(s, None)),
                    )
                })
                .collect();
            Value::Object(o)
        })
        .collect())
}

fn strides(shape: &[u64]) -> Vec<usize> {
    let mut st = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        st[d] = st[d + 1] * shape[d + 1] as usize;
    }
    st
}

fn value_json(s: &Scalar, tick: Option<crate::time::Tick>) -> Value {
    match (s, tick) {
        (Scalar::I(i), Some(t)) => json!(crate::time::format_ticks(*i, t)),
        (Scalar::I(i), None) => json!(i),
        (Scalar::F(f), _) => json!(f),
        (Scalar::S(x), _) => json!(x),
        (Scalar::Na, _) => Value::Null,
    }
}

/// Boxes (first index, last index, cells) covering the positions `hits` (in C order): runs along
/// the first dimension for each position of the others, then runs of equal ranges merged along
/// the second dimension.
fn boxes_of(hits: Vec<Vec<usize>>) -> Vec<(Vec<usize>, Vec<usize>, u64)> {
    if hits.is_empty() {
        return vec![];
    }
    let nd = hits[0].len();
    if nd == 0 {
        return vec![(vec![], vec![], hits.len() as u64)];
    }
    // runs along dimension 0 per tuple of the others
    let mut by_rest: BTreeMap<Vec<usize>, Vec<usize>> = BTreeMap::new();
    for h in hits {
        by_rest.entry(h[1..].to_vec()).or_default().push(h[0]);
    }
    let mut runs: Vec<(Vec<usize>, Vec<usize>, u64)> = Vec::new();
    for (rest, mut firsts) in by_rest {
        firsts.sort_unstable();
        let mut start = firsts[0];
        let mut prev = start;
        for &f in firsts.iter().skip(1).chain(std::iter::once(&usize::MAX)) {
            if f != prev + 1 {
                let lo = std::iter::once(start).chain(rest.iter().copied()).collect();
                let hi = std::iter::once(prev).chain(rest.iter().copied()).collect();
                runs.push((lo, hi, (prev - start + 1) as u64));
                start = f;
            }
            prev = f;
        }
    }
    if nd < 2 {
        return runs;
    }
    // merge along dimension 1: same range on dimension 0 and on dimensions 2.., adjacent on 1
    runs.sort_by(|a, b| {
        (a.0[0], a.1[0], &a.0[2..], a.0[1]).cmp(&(b.0[0], b.1[0], &b.0[2..], b.0[1]))
    });
    let mut out: Vec<(Vec<usize>, Vec<usize>, u64)> = Vec::new();
    for r in runs {
        if let Some(last) = out.last_mut() {
            let same = last.0[0] == r.0[0] && last.1[0] == r.1[0] && last.0[2..] == r.0[2..];
            if same && last.1[1] + 1 == r.0[1] {
                last.1[1] = r.1[1];
                last.2 += r.2;
                continue;
            }
        }
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::boxes_of;

    #[test]
    fn boxes_merge_runs_along_the_first_two_dimensions() {
        // times 2..=4 at sites 0..=2, and one cell at (9, 5)
        let mut hits = vec![];
        for t in 2..=4 {
            for s in 0..=2 {
                hits.push(vec![t, s]);
            }
        }
        hits.push(vec![9, 5]);
        let b = boxes_of(hits);
        assert_eq!(
            b,
            vec![(vec![2, 0], vec![4, 2], 9), (vec![9, 5], vec![9, 5], 1)]
        );
        assert!(boxes_of(vec![]).is_empty());
        assert_eq!(boxes_of(vec![vec![1], vec![2], vec![4]]).len(), 2);
    }
}
