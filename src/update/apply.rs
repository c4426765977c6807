//! Applying a node's plan: coordinate arrays and composed components first, then each data
//! variable in bands of whole chunk rows (memory holds one band of an array, spec/017), and the
//! cell record of what was written (spec/019).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use zarrs::array::Array;

use super::cells::CellSetBuilder;
use super::convert::Converted;
use super::dense::{
    band_chunks, dense_of, keys_of, read_band, read_dense, strides, write_chunks, write_dense,
    Dense,
};
use super::keys::{KeyIndex, Keys};
use super::layout::{
    array_path, choose_chunks_at_first_write, coord_kind, kind, open_array, store_array_metadata,
    stored_chunks, zerr, Kind, Store,
};
use super::plan::{self, NodePlan};
use super::rows::RowBlock;
use super::UpdateError;
use crate::schema::{Coord, NodeSchema, Variable};

/// The cell sets of one node's variables (variable → JSON text of its [`super::cells::CellSet`]).
pub(crate) type CellSets = BTreeMap<String, Box<serde_json::value::RawValue>>;

/// What merging one node did, for the report and the commit's records.
#[derive(Default)]
pub(crate) struct NodeOutcome {
    /// Cells written, per variable (blame).
    pub(crate) cells: CellSets,
    /// Least and greatest value per coordinate (the commit's extent).
    pub(crate) extent: Map<String, Value>,
    /// New values per coordinate.
    pub(crate) new_coords: Vec<(String, u64)>,
    /// Rows refused by step limits.
    pub(crate) rows_dropped: u64,
    /// Cells written.
    pub(crate) cells_written: u64,
    /// Time spent encoding and storing chunks.
    pub(crate) write_time: Duration,
}

/// Merge contribution `conv` (read from `source`) into `node` at `store`: plan, check, write.
/// A refused contribution writes nothing: every check runs before the first write.
pub(crate) async fn apply_node(
    store: &Arc<Store>,
    node: &NodeSchema,
    conv: &mut Converted,
    overwrite_na: bool,
    budget: usize,
    source: &str,
) -> Result<NodeOutcome, UpdateError> {
    let old_axes = plan::read_old_axes(store, node).await?;
    let mut interpolated = plan::interpolate_coords(node, conv, &old_axes)?;
    if interpolated.is_some() {
        conv.release_keys(); // the interpolated copy is merged instead
    }
    let conv: &mut Converted = match interpolated.as_mut() {
        Some(o) => o,
        None => conv,
    };
    let mut plan = plan::merge_axes(node, conv, old_axes)?;
    let mut out = NodeOutcome {
        extent: plan.extent(node),
        rows_dropped: plan.refused_rows(conv)?,
        new_coords: node
            .coords
            .iter()
            .zip(&plan.merges)
            .map(|(c, m)| (c.name().to_string(), m.added as u64))
            .collect(),
        ..Default::default()
    };
    plan::check_unused_dims(node, conv, &plan, overwrite_na, source)?;
    // the rows' positions are known: the dictionaries' values are not needed any more (a
    // retry converts the input again), which leaves the merged axis as the one copy of each
    // value while the arrays are written (spec/019)
    conv.release_keys();
    let conv: &Converted = conv;
    choose_chunks_at_first_write(store, node, &plan.merges).await?;
    write_coords(store, node, conv, &mut plan).await?;
    // variables written at the same cells (the usual table) share one set (spec/019)
    let mut digests: Vec<(String, [u8; 32])> = vec![];
    for (vi, name) in conv.var_names.iter().enumerate() {
        let v = plan::var_of(node, name)?;
        let pass = VarPass::new(node, conv, &plan, v, vi, overwrite_na)?;
        let (cellset, written) = pass
            .write(store, &array_path(&node.path, name), budget)
            .await?;
        out.cells_written += written.cells;
        out.write_time += written.time;
        let digest = cellset.digest();
        if let Some((other, _)) = digests.iter().find(|(_, d)| *d == digest) {
            let text =
                serde_json::value::to_raw_value(&json!({ "same_as": other })).map_err(zerr)?;
            out.cells.insert(name.clone(), text);
        } else if let Some(text) = cellset.to_json().map_err(zerr)? {
            // straight to JSON text: a sparse set lists every cell, and a `Value` per number
            // would take ~4x the memory
            out.cells.insert(name.clone(), text);
            digests.push((name.clone(), digest));
        }
    }
    Ok(out)
}

/// Write the coordinate arrays (and composed components) whose axis grew.
async fn write_coords(
    store: &Arc<Store>,
    node: &NodeSchema,
    conv: &Converted,
    plan: &mut NodePlan,
) -> Result<(), UpdateError> {
    for (ci, c) in node.coords.iter().enumerate() {
        if plan.merges[ci].added == 0 {
            continue;
        }
        let fc = plan.first_change[ci];
        for comp in &c.composed {
            write_component(store, node, conv, &plan.merges[ci], comp, fc).await?;
        }
        let axis = std::mem::take(&mut plan.merges[ci].axis);
        plan.merges[ci].axis = write_axis(store, node, c, axis, fc).await?;
    }
    Ok(())
}

/// Write a coordinate's axis from its own values (lent to the array, no copy for numbers);
/// gives the axis back.
async fn write_axis(
    store: &Arc<Store>,
    node: &NodeSchema,
    c: &Coord,
    axis: Keys,
    fc: u64,
) -> Result<Keys, UpdateError> {
    let mut arr = open_array(store, &array_path(&node.path, c.name())).await?;
    let n = axis.len() as u64;
    let (d, kept) = match (coord_kind(c), axis) {
        (Kind::I64(na), Keys::I(v)) => (Dense::I(v, na), None),
        (Kind::F64, Keys::F(v)) => (Dense::F(v), None),
        (k, axis) => (dense_of(k, &axis), Some(axis)),
    };
    let written = write_dense(&mut arr, vec![n], &d, &|s, c| s[0] + c[0] > fc).await;
    let axis = kept.unwrap_or_else(|| keys_of(d));
    written.map(|()| axis)
}

/// Write component `comp` of a composed coordinate along its merged axis `m`: stored values
/// keep theirs, new keys take the contribution's.
async fn write_component(
    store: &Arc<Store>,
    node: &NodeSchema,
    conv: &Converted,
    m: &super::axis::AxisMerge,
    comp: &str,
    fc: u64,
) -> Result<(), UpdateError> {
    let v = plan::var_of(node, comp)?;
    let (mut arr, old) = read_dense(store, &array_path(&node.path, comp), kind(v)).await?;
    let mut d = Dense::na(kind(v), m.axis.len());
    let old_pos = KeyIndex::of(&m.old);
    let vals = conv.components.get(comp);
    for (i, key) in m.axis.iter().enumerate() {
        match old_pos.get(&m.old, key) {
            Some(j) if j < old.len() => d.copy_from(i, &old, j),
            _ => {
                if let Some(s) = vals.and_then(|v| v.get(&key.to_key())) {
                    d.set(i, s);
                }
            }
        }
    }
    write_dense(&mut arr, vec![m.axis.len() as u64], &d, &|s, c| {
        s[0] + c[0] > fc
    })
    .await
}

/// What writing one variable did.
struct Written {
    cells: u64,
    time: Duration,
}

/// The chunks a contribution writes into (flat, C order) and, per block of rows, the range of
/// first-dimension positions it reaches.
type Touched = (Vec<bool>, Vec<(u64, u64)>);

/// One data variable's pass over the contribution: its grid before and after the merge.
struct VarPass<'a> {
    conv: &'a Converted,
    plan: &'a NodePlan,
    var: &'a Variable,
    vi: usize,
    /// The variable's coordinates (positions in the node's).
    dims: Vec<usize>,
    /// Whether each cell gets a value from one row at most (the variable uses every coordinate).
    unique: bool,
    overwrite_na: bool,
    /// The columns a pass reads: this variable's.
    sel: Vec<bool>,
    new_shape: Vec<u64>,
    nst: Vec<usize>,
}

impl<'a> VarPass<'a> {
    fn new(
        node: &NodeSchema,
        conv: &'a Converted,
        plan: &'a NodePlan,
        var: &'a Variable,
        vi: usize,
        overwrite_na: bool,
    ) -> Result<Self, UpdateError> {
        let dims = plan::var_dims(node, var)?;
        let new_shape = plan.shape(&dims);
        Ok(VarPass {
            conv,
            plan,
            var,
            vi,
            unique: dims.len() == node.coords.len(),
            dims,
            overwrite_na,
            sel: plan::only(vi, conv.var_names.len()),
            nst: strides(&new_shape),
            new_shape,
        })
    }

    /// Whether row `i` of `b` writes a cell of this variable.
    fn writes(&self, b: &RowBlock, i: usize) -> bool {
        self.plan.admitted(b, i) && (!b.vals[self.vi].is_na(i) || self.overwrite_na)
    }

    /// The cell of row `i` of `b` as positions on the merged axes.
    fn cell<'b>(&'b self, b: &'b RowBlock, i: usize) -> impl Iterator<Item = u32> + 'b {
        self.dims.iter().map(move |&d| self.plan.at(b, d, i))
    }

    /// Per dimension: the new position of each old position (ascending: axes only grow, in
    /// order); `None` where every old value keeps its position (appends).
    fn moves(&self, old_shape: &[u64]) -> Vec<Option<Vec<u32>>> {
        let plan = self.plan;
        self.dims
            .iter()
            .enumerate()
            .map(|(a, &d)| {
                let m = &plan.merges[d];
                m.first_shift.map(|_| {
                    (0..old_shape[a] as usize)
                        .map(|i| {
                            plan.axis_pos[d]
                                .get(&m.axis, m.old.get(i))
                                .map_or(0, |p| p as u32)
                        })
                        .collect()
                })
            })
            .collect()
    }

    /// Which chunks (flat, C order in `grid`) the contribution writes into, and per block of
    /// rows the positions along the first dimension it writes (so a band reads only the blocks
    /// that reach into it).
    fn touched(&self, grid: &[u64], chunk: &[u64]) -> Result<Touched, UpdateError> {
        let mut touched = vec![false; grid.iter().product::<u64>() as usize];
        let mut reach: Vec<(u64, u64)> = vec![];
        self.conv.rows.scan(Some(&self.sel), |_, b| {
            let mut r = (u64::MAX, 0);
            for i in (0..b.len).filter(|&i| self.writes(b, i)) {
                let cf = self
                    .cell(b, i)
                    .enumerate()
                    .fold(0u64, |cf, (a, p)| cf * grid[a] + u64::from(p) / chunk[a]);
                touched[cf as usize] = true;
                if let Some(&d) = self.dims.first() {
                    let p = u64::from(self.plan.at(b, d, i));
                    r = (r.0.min(p), r.1.max(p + 1));
                }
            }
            reach.push(r);
            Ok(())
        })?;
        Ok((touched, reach))
    }

    /// Rewrite the variable's array at `path` band by band; gives its cell set.
    async fn write(
        &self,
        store: &Arc<Store>,
        path: &str,
        budget: usize,
    ) -> Result<(CellSetBuilder<'a>, Written), UpdateError> {
        let mut arr = open_array(store, path).await?;
        let old_shape: Vec<u64> = arr.shape().to_vec();
        let chunk = stored_chunks(&arr)?;
        let grid: Vec<u64> = self
            .new_shape
            .iter()
            .zip(&chunk)
            .map(|(n, c)| n.div_ceil(*c).max(1))
            .collect();
        let (touched, reach) = self.touched(&grid, &chunk)?;
        let fc: Vec<u64> = self
            .dims
            .iter()
            .map(|&d| self.plan.first_change[d])
            .collect();
        let dirty = |start: &[u64], cshape: &[u64]| {
            let cf = start
                .iter()
                .zip(cshape)
                .zip(&grid)
                .fold(0u64, |acc, ((s, c), g)| acc * g + s / c);
            touched[cf as usize]
                || start
                    .iter()
                    .zip(cshape)
                    .zip(&fc)
                    .any(|((s, c), f)| s + c > *f)
        };
        if arr.shape() != self.new_shape.as_slice() {
            arr.set_shape(self.new_shape.clone()).map_err(zerr)?;
            store_array_metadata(&arr).await?;
        }
        let total = self.new_shape.iter().product::<u64>() as usize;
        let mut band = Band {
            pass: self,
            arr: &arr,
            maps: self.moves(&old_shape),
            old_shape,
            reach,
            // one bit per cell says "written by an earlier row" (spec/019): a variable that
            // does not use every coordinate may get a cell from several rows with equal values
            written: vec![0; if self.unique { 0 } else { total.div_ceil(64) }],
            // cells by position on the merged axes: a set lists its values in axis order
            cellset: CellSetBuilder::new(
                self.var.coords.clone(),
                self.dims
                    .iter()
                    .map(|&d| &self.plan.merges[d].axis)
                    .collect(),
            ),
            out: Written {
                cells: 0,
                time: Duration::ZERO,
            },
        };
        if total > 0 {
            for (n0, n1) in self.bands(&chunk, budget) {
                let todo = band_chunks(&arr, &self.new_shape, n0, n1, &dirty)?;
                if !todo.is_empty() {
                    band.rewrite(n0, n1, todo).await?;
                }
            }
        }
        if band.cellset.needs_tuples() {
            band.list_tuples()?;
        }
        Ok((band.cellset, band.out))
    }

    /// Bands of whole chunk rows along the first dimension within `budget` bytes, last band
    /// first: old cells only move to higher positions, so a band never reads a chunk a band
    /// before it rewrote.
    fn bands(&self, chunk: &[u64], budget: usize) -> Vec<(u64, u64)> {
        let len0 = self.new_shape.first().copied().unwrap_or(1);
        let rest: u64 = self.new_shape.iter().skip(1).product::<u64>().max(1);
        let chunk0 = chunk.first().copied().unwrap_or(1);
        let band_rows = (((budget / 8) as u64 / rest) / chunk0).max(1) * chunk0;
        let mut bands: Vec<(u64, u64)> = (0..len0.div_ceil(band_rows))
            .map(|b| (b * band_rows, ((b + 1) * band_rows).min(len0)))
            .collect();
        bands.reverse();
        bands
    }
}

/// The state of a variable's rewrite across its bands.
struct Band<'p, 'a> {
    pass: &'p VarPass<'a>,
    arr: &'p Array<Store>,
    old_shape: Vec<u64>,
    maps: Vec<Option<Vec<u32>>>,
    reach: Vec<(u64, u64)>,
    written: Vec<u64>,
    cellset: CellSetBuilder<'a>,
    out: Written,
}

impl Band<'_, '_> {
    /// Rewrite chunks `todo` of positions `[n0, n1)` of the first dimension: the old cells that
    /// land there at their new positions, then the contribution's cells.
    async fn rewrite(
        &mut self,
        n0: u64,
        n1: u64,
        todo: Vec<(Vec<u64>, Vec<u64>, Vec<u64>)>,
    ) -> Result<(), UpdateError> {
        let p = self.pass;
        let rest: u64 = p.new_shape.iter().skip(1).product::<u64>().max(1);
        let band_shape: Vec<u64> = std::iter::once(n1 - n0)
            .chain(p.new_shape.iter().skip(1).copied())
            .take(p.new_shape.len())
            .collect();
        let base = (n0 * rest) as usize;
        let mut data = self
            .old_cells(n0, n1, base, (n1 - n0) as usize * rest as usize)
            .await?;
        self.place_cells(n0, n1, base, &mut data)?;
        let t = Instant::now();
        write_chunks(self.arr, &band_shape, n0, &data, todo).await?;
        self.out.time += t.elapsed();
        Ok(())
    }

    /// The old cells that land in `[n0, n1)` (flat from `base`), at their new positions (NA
    /// elsewhere).
    async fn old_cells(
        &self,
        n0: u64,
        n1: u64,
        base: usize,
        len: usize,
    ) -> Result<Dense, UpdateError> {
        let (p, old_shape) = (self.pass, &self.old_shape);
        let k = kind(p.var);
        let old_total = old_shape.iter().product::<u64>();
        let unmoved = p
            .dims
            .iter()
            .all(|&d| p.plan.merges[d].first_shift.is_none() && p.plan.merges[d].added == 0);
        let (o0, o1) = if old_total == 0 {
            (0, 0)
        } else if unmoved {
            (n0, n1.min(old_shape[0]))
        } else {
            match &self.maps[0] {
                None => (n0.min(old_shape[0]), n1.min(old_shape[0])),
                Some(m0) => (
                    m0.partition_point(|&x| u64::from(x) < n0) as u64,
                    m0.partition_point(|&x| u64::from(x) < n1) as u64,
                ),
            }
        };
        if o1 <= o0 {
            return Ok(Dense::na(k, len));
        }
        let old = read_band(self.arr, old_shape, o0, o1, k).await?;
        if unmoved {
            return Ok(old);
        }
        let mut data = Dense::na(k, len);
        let ost = strides(old_shape);
        let from = o0 as usize * ost[0];
        let new_pos = |a: usize, i: usize| self.maps[a].as_ref().map_or(i, |m| m[i] as usize);
        for j in 0..old.len() {
            let flat = from + j;
            let nf: usize = (0..p.dims.len())
                .map(|a| new_pos(a, (flat / ost[a]) % old_shape[a] as usize) * p.nst[a])
                .sum();
            data.copy_from(nf - base, &old, j);
        }
        Ok(data)
    }

    /// The contribution's cells in the band at flat positions `[base, base + data.len())`.
    fn place_cells(
        &mut self,
        n0: u64,
        n1: u64,
        base: usize,
        data: &mut Dense,
    ) -> Result<(), UpdateError> {
        let p = self.pass;
        let reach = &self.reach;
        let in_band =
            |n: usize| p.dims.is_empty() || reach.get(n).is_some_and(|&(a, z)| a < n1 && z > n0);
        let (written, cellset, out) = (&mut self.written, &mut self.cellset, &mut self.out);
        p.conv.rows.scan_where(Some(&p.sel), &in_band, |_, b| {
            let values = &b.vals[p.vi];
            for i in (0..b.len).filter(|&i| p.writes(b, i)) {
                let nf = p.plan.flat_cell(b, &p.dims, &p.nst, i);
                if nf < base || nf >= base + data.len() {
                    continue;
                }
                if !p.unique {
                    let (word, bit) = (nf / 64, 1u64 << (nf % 64));
                    if written[word] & bit != 0 {
                        continue; // the same cell again (equal values, checked in the plan)
                    }
                    written[word] |= bit;
                }
                cellset.note(p.cell(b, i));
                data.set_value(nf - base, values, i);
                out.cells += 1;
            }
            Ok(())
        })
    }

    /// Not a full grid: list the cells, first writer per cell in row order as when they were
    /// placed, clearing each cell's bit as it is listed.
    fn list_tuples(&mut self) -> Result<(), UpdateError> {
        let p = self.pass;
        let (written, cellset) = (&mut self.written, &mut self.cellset);
        p.conv.rows.scan(Some(&p.sel), |_, b| {
            for i in (0..b.len).filter(|&i| p.writes(b, i)) {
                if !p.unique {
                    let nf = p.plan.flat_cell(b, &p.dims, &p.nst, i);
                    let (word, bit) = (nf / 64, 1u64 << (nf % 64));
                    if written[word] & bit == 0 {
                        continue;
                    }
                    written[word] &= !bit;
                }
                cellset.push_tuple(p.cell(b, i));
            }
            Ok(())
        })
    }
}
