//! The plan of a node's update: the merged axes and where each row of the contribution lands on
//! them, checked before anything is written (merge-semantics §3, spec/019).

use std::ops::ControlFlow;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::axis::{first_load_sorted, merge_axis, AxisMerge};
use super::convert::Converted;
use super::dense::{keys_of, read_dense, strides, Dense};
use super::keys::{KeyIndex, KeyRef, Keys};
use super::layout::{array_path, coord_kind, kind, Store};
use super::rows::RowBlock;
use super::{Scalar, UpdateError};
use crate::schema::{self, NodeSchema, Variable};

/// Position of a dictionary value that is not on the merged axis (refused by step limits).
pub(crate) const OFF_AXIS: u32 = u32::MAX;

/// Where a value is on a merged axis: by binary search when the axis is sorted (no memory),
/// else by an index of positions (4 bytes a value).
pub(crate) enum AxisIndex {
    Sorted,
    Map(KeyIndex),
}

impl AxisIndex {
    fn new(axis: &Keys, sorted: bool) -> Self {
        if sorted && axis.is_strictly_sorted() {
            AxisIndex::Sorted
        } else {
            AxisIndex::Map(KeyIndex::of(axis))
        }
    }

    pub(crate) fn get(&self, axis: &Keys, k: KeyRef) -> Option<usize> {
        match self {
            AxisIndex::Sorted => axis.binary_search(k).ok(),
            AxisIndex::Map(m) => m.get(axis, k),
        }
    }
}

/// The merged axes of a node and the place of every row of the contribution on them.
pub(crate) struct NodePlan {
    /// Per coordinate: the merged axis, the stored one and what was added.
    pub(crate) merges: Vec<AxisMerge>,
    /// Per coordinate: how a value's position on the merged axis is found.
    pub(crate) axis_pos: Vec<AxisIndex>,
    /// Per coordinate: the axis position of each dictionary key ([`OFF_AXIS`]: not admitted).
    pub(crate) pos: Vec<Vec<u32>>,
    /// Per coordinate: the first position whose content may differ from before.
    pub(crate) first_change: Vec<u64>,
}

/// The stored axis of each coordinate of `node`.
pub(crate) async fn read_old_axes(
    store: &Arc<Store>,
    node: &NodeSchema,
) -> Result<Vec<Keys>, UpdateError> {
    let mut old_axes = Vec::new();
    for c in &node.coords {
        let (_, old) = read_dense(store, &array_path(&node.path, c.name()), coord_kind(c)).await?;
        old_axes.push(keys_of(old));
    }
    Ok(old_axes)
}

/// The contribution with the inside values of interpolating coordinates turned into existing
/// points, or `None` when no coordinate changed it.
pub(crate) fn interpolate_coords(
    node: &NodeSchema,
    conv: &Converted,
    old_axes: &[Keys],
) -> Result<Option<Converted>, UpdateError> {
    let mut owned: Option<Converted> = None;
    for (ci, c) in node.coords.iter().enumerate() {
        if let (Some(method), true) = (c.interpolate, c.sorted) {
            let from = owned.as_ref().unwrap_or(conv);
            if let Some(next) = super::interp::interpolate(from, ci, &old_axes[ci], method)? {
                owned = Some(next);
            }
        }
    }
    Ok(owned)
}

/// Merge each coordinate's stored axis with the contribution's values and place every
/// dictionary key on the merged axis. A first load of a sorted coordinate sorts its dictionary
/// in place into the axis (no copy of the values).
pub(crate) fn merge_axes(
    node: &NodeSchema,
    conv: &mut Converted,
    old_axes: Vec<Keys>,
) -> Result<NodePlan, UpdateError> {
    let mut merges: Vec<AxisMerge> = Vec::new();
    let mut found_pos: Vec<Option<Vec<u32>>> = Vec::new();
    let mut first_change = Vec::new();
    for ((ci, c), old_keys) in node.coords.iter().enumerate().zip(old_axes) {
        let old_len = old_keys.len();
        let first_sorted = old_keys.is_empty()
            && c.sorted
            && !matches!(c.step_limits, schema::StepLimits::Bounds(..));
        let mut loaded = None;
        if first_sorted {
            match first_load_sorted(std::mem::take(&mut conv.dicts[ci])) {
                Ok((axis, pos)) => {
                    conv.keys_released = true; // this dictionary is the axis now
                    let m = AxisMerge {
                        added: axis.len(),
                        axis,
                        first_shift: None,
                        old: Keys::default(),
                    };
                    loaded = Some((m, pos));
                }
                Err(dict) => conv.dicts[ci] = dict,
            }
        }
        let (m, found) = match loaded {
            Some((m, pos)) => (m, Some(pos)),
            None => (merge_axis(c, old_keys, &conv.dicts[ci]), None),
        };
        if m.axis.len() >= OFF_AXIS as usize {
            return Err(UpdateError::TooManyValues {
                node: node.path.clone(),
                coord: c.name().to_string(),
                values: m.axis.len(),
                limit: OFF_AXIS as usize - 1,
            });
        }
        first_change.push(m.first_shift.unwrap_or(old_len) as u64);
        found_pos.push(found);
        merges.push(m);
    }
    let axis_pos: Vec<AxisIndex> = merges
        .iter()
        .zip(&node.coords)
        .map(|(m, c)| AxisIndex::new(&m.axis, c.sorted))
        .collect();
    let pos: Vec<Vec<u32>> = conv
        .dicts
        .iter()
        .zip(&axis_pos)
        .zip(&merges)
        .zip(found_pos)
        .map(|(((dict, ap), m), found)| {
            found.unwrap_or_else(|| {
                dict.iter()
                    .map(|k| ap.get(&m.axis, k).map_or(OFF_AXIS, |p| p as u32))
                    .collect()
            })
        })
        .collect();
    Ok(NodePlan {
        merges,
        axis_pos,
        pos,
        first_change,
    })
}

impl NodePlan {
    /// Per coordinate the least and greatest value the contribution may write (blame skips a
    /// commit whose extent misses the cells it looks for without reading its side record).
    pub(crate) fn extent(&self, node: &NodeSchema) -> Map<String, Value> {
        let mut extent = Map::new();
        for ((c, p), m) in node.coords.iter().zip(&self.pos).zip(&self.merges) {
            let mut admitted = p
                .iter()
                .filter(|&&i| i != OFF_AXIS)
                .map(|&i| m.axis.get(i as usize));
            if let Some(first) = admitted.next() {
                let (lo, hi) = admitted.fold((first, first), |(lo, hi), k| (lo.min(k), hi.max(k)));
                extent.insert(c.name().to_string(), json!([key_json(lo), key_json(hi)]));
            }
        }
        extent
    }

    /// Rows with a coordinate value that is not on the merged axes (refused by step limits).
    pub(crate) fn refused_rows(&self, conv: &Converted) -> Result<u64, UpdateError> {
        let mut refused = 0;
        if self.pos.iter().any(|p| p.contains(&OFF_AXIS)) {
            let none = vec![false; conv.var_names.len()];
            conv.rows.scan(Some(&none), |_, b| {
                refused += (0..b.len).filter(|&i| !self.admitted(b, i)).count() as u64;
                Ok(())
            })?;
        }
        Ok(refused)
    }

    /// Whether every coordinate of row `i` of `b` is on the merged axes.
    pub(crate) fn admitted(&self, b: &RowBlock, i: usize) -> bool {
        self.pos
            .iter()
            .zip(&b.idx)
            .all(|(p, col)| p[col[i] as usize] != OFF_AXIS)
    }

    /// Position of row `i` of `b` in a grid along coordinates `dims` with strides `st`.
    pub(crate) fn flat_cell(&self, b: &RowBlock, dims: &[usize], st: &[usize], i: usize) -> usize {
        dims.iter()
            .enumerate()
            .map(|(a, &d)| self.at(b, d, i) as usize * st[a])
            .sum()
    }

    /// Position of row `i` of `b` on the merged axis of coordinate `d`.
    pub(crate) fn at(&self, b: &RowBlock, d: usize, i: usize) -> u32 {
        self.pos[d][b.idx[d][i] as usize]
    }

    /// Lengths of the merged axes of coordinates `dims`.
    pub(crate) fn shape(&self, dims: &[usize]) -> Vec<u64> {
        dims.iter()
            .map(|&d| self.merges[d].axis.len() as u64)
            .collect()
    }
}

/// The positions in `node.coords` of the coordinates of `v`.
pub(crate) fn var_dims(node: &NodeSchema, v: &Variable) -> Result<Vec<usize>, UpdateError> {
    v.coords
        .iter()
        .map(|d| {
            node.coords
                .iter()
                .position(|c| c.name() == d)
                .ok_or_else(|| {
                    UpdateError::NotInSchema(format!("coordinate '{d}' of variable '{}'", v.name))
                })
        })
        .collect()
}

/// The schema of variable `name` of `node`.
pub(crate) fn var_of<'a>(node: &'a NodeSchema, name: &str) -> Result<&'a Variable, UpdateError> {
    node.var(name).ok_or_else(|| {
        UpdateError::NotInSchema(format!("variable '{name}' of node '{}'", node.path))
    })
}

/// A variable that does not use every coordinate must not vary along the others: checked for
/// every variable before anything is written, so a refused contribution writes nothing.
pub(crate) fn check_unused_dims(
    node: &NodeSchema,
    conv: &Converted,
    plan: &NodePlan,
    overwrite_na: bool,
    source: &str,
) -> Result<(), UpdateError> {
    for (vi, name) in conv.var_names.iter().enumerate() {
        let v = var_of(node, name)?;
        let dims = var_dims(node, v)?;
        if dims.len() == node.coords.len() {
            continue; // rows are unique per full coordinate tuple already
        }
        let Some((prev, r)) = first_clash(conv, plan, v, vi, &dims, overwrite_na)? else {
            continue;
        };
        let unused: Vec<String> = node
            .coords
            .iter()
            .map(|c| c.name().to_string())
            .filter(|c| !v.coords.contains(c))
            .collect();
        let values = clash_values(conv, vi, prev, r)?;
        return Err(UpdateError::VariesAlongUnusedDim {
            file: source.to_string(),
            variable: name.clone(),
            detail: format!(
                "does not use coordinate(s) {unused:?} but its values differ along them (lines {} and {}: {:?} vs {:?})",
                conv.lines.get(prev), conv.lines.get(r), values.0, values.1
            ),
        });
    }
    Ok(())
}

/// The first two rows that give one cell of `v` (along `dims` only) different values.
fn first_clash(
    conv: &Converted,
    plan: &NodePlan,
    v: &Variable,
    vi: usize,
    dims: &[usize],
    overwrite_na: bool,
) -> Result<Option<(usize, usize)>, UpdateError> {
    let shape = plan.shape(dims);
    let st = strides(&shape);
    let n_cells = shape.iter().product::<u64>() as usize;
    // per cell: the first row (+1) that gave it a value, and that value
    let mut first: Vec<u32> = vec![0; n_cells];
    let mut seen = Dense::na(kind(v), n_cells);
    conv.rows.scan_until(
        Some(&only(vi, conv.var_names.len())),
        &|_| true,
        |start, b| {
            let values = &b.vals[vi];
            for i in 0..b.len {
                if !plan.admitted(b, i) || (values.is_na(i) && !overwrite_na) {
                    continue;
                }
                let nf = plan.flat_cell(b, dims, &st, i);
                match first[nf] {
                    0 => {
                        first[nf] = (start + i) as u32 + 1;
                        seen.set_value(nf, values, i);
                    }
                    p if !seen.same_as(nf, values, i) => {
                        return Ok(ControlFlow::Break((p as usize - 1, start + i)));
                    }
                    _ => {}
                }
            }
            Ok(ControlFlow::Continue(()))
        },
    )
}

/// Values of variable `vi` at rows `a` and `b` (for an error message).
fn clash_values(
    conv: &Converted,
    vi: usize,
    a: usize,
    b: usize,
) -> Result<(Scalar, Scalar), UpdateError> {
    let (mut va, mut vb) = (Scalar::Na, Scalar::Na);
    conv.rows
        .scan(Some(&only(vi, conv.var_names.len())), |start, blk| {
            for (r, out) in [(a, &mut va), (b, &mut vb)] {
                if (start..start + blk.len).contains(&r) {
                    *out = blk.vals[vi].get(r - start);
                }
            }
            Ok(())
        })?;
    Ok((va, vb))
}

/// Only variable `vi` of `n` (the columns a per-variable pass reads).
pub(crate) fn only(vi: usize, n: usize) -> Vec<bool> {
    (0..n).map(|j| j == vi).collect()
}

/// A coordinate value in JSON (the extent of an update, spec/011).
fn key_json(k: KeyRef) -> Value {
    match k {
        KeyRef::I(i) => json!(i),
        KeyRef::F(f) => json!(f),
        KeyRef::S(s) => json!(s),
    }
}
