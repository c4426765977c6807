//! Which cells an update wrote, by coordinate values (for blame; spec/011).
//!
//! A cell set is stored per variable as the distinct values along each of its dimensions and,
//! unless every combination was written (a "box", the common case), the list of written
//! combinations as index tuples.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Key;

/// Typed values along one dimension.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", content = "values")]
pub enum DimValues {
    /// Integers, ticks, composed keys.
    #[serde(rename = "i")]
    I(Vec<i64>),
    /// Floats.
    #[serde(rename = "f")]
    F(Vec<f64>),
    /// Strings.
    #[serde(rename = "s")]
    S(Vec<String>),
}

impl DimValues {
    /// As keys.
    pub fn keys(&self) -> Vec<Key> {
        match self {
            DimValues::I(v) => v.iter().map(|x| Key::I(*x)).collect(),
            DimValues::F(v) => v.iter().map(|x| Key::f(*x)).collect(),
            DimValues::S(v) => v.iter().map(|x| Key::S(x.clone())).collect(),
        }
    }

    fn from_keys(keys: &[Key]) -> DimValues {
        match keys.first() {
            Some(Key::F(_)) => DimValues::F(
                keys.iter()
                    .map(|k| if let Key::F(f) = k { f.0 } else { f64::NAN })
                    .collect(),
            ),
            Some(Key::S(_)) => DimValues::S(
                keys.iter()
                    .map(|k| {
                        if let Key::S(s) = k {
                            s.clone()
                        } else {
                            String::new()
                        }
                    })
                    .collect(),
            ),
            _ => DimValues::I(
                keys.iter()
                    .map(|k| if let Key::I(i) = k { *i } else { 0 })
                    .collect(),
            ),
        }
    }
}

/// The cells of one variable written by one commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CellSet {
    /// Dimension names.
    pub dims: Vec<String>,
    /// Distinct values per dimension.
    pub values: Vec<DimValues>,
    /// Index tuples (flattened, `dims.len()` per cell); `None` = every combination.
    pub tuples: Option<Vec<u32>>,
}

/// Builds a [`CellSet`] from written cells (each cell added once), given as indices into
/// per-dimension dictionaries of keys.
pub struct CellSetBuilder<'a> {
    dims: Vec<String>,
    dicts: Vec<&'a [Key]>,
    remap: Vec<Vec<u32>>,
    keys: Vec<Vec<Key>>,
    tuples: Vec<u32>,
    cells: usize,
}

impl<'a> CellSetBuilder<'a> {
    /// A builder for a variable with these dimensions and, per dimension, the keys that cells
    /// name by index.
    pub fn new(dims: Vec<String>, dicts: Vec<&'a [Key]>) -> Self {
        let n = dims.len();
        CellSetBuilder {
            remap: dicts.iter().map(|d| vec![u32::MAX; d.len()]).collect(),
            dicts,
            dims,
            keys: vec![vec![]; n],
            tuples: vec![],
            cells: 0,
        }
    }

    /// Add one written cell (its dictionary indices in dimension order); each cell once.
    pub fn add(&mut self, cell: impl Iterator<Item = u32> + Clone) {
        self.note(cell.clone());
        self.push_tuple(cell);
    }

    /// Count one written cell and its keys without listing it: for large contributions, whose
    /// cells usually form a full grid (stored as a box). When [`CellSetBuilder::needs_tuples`]
    /// says so afterwards, list the same cells, in the same order, with `push_tuple`.
    pub fn note(&mut self, cell: impl Iterator<Item = u32>) {
        for (d, i) in cell.enumerate() {
            let slot = &mut self.remap[d][i as usize];
            if *slot == u32::MAX {
                *slot = self.keys[d].len() as u32;
                self.keys[d].push(self.dicts[d][i as usize].clone());
            }
        }
        self.cells += 1;
    }

    /// Whether the noted cells do not form a full grid and have not all been listed yet.
    pub fn needs_tuples(&self) -> bool {
        let full: usize = self.keys.iter().map(Vec::len).product();
        self.cells != full && self.tuples.len() < self.cells * self.dims.len()
    }

    /// List one noted cell (after [`CellSetBuilder::note`] of every cell).
    pub fn push_tuple(&mut self, cell: impl Iterator<Item = u32>) {
        if self.tuples.capacity() == 0 {
            self.tuples.reserve_exact(self.cells * self.dims.len());
        }
        for (d, i) in cell.enumerate() {
            self.tuples.push(self.remap[d][i as usize]);
        }
    }

    /// The cell set, or `None` if nothing was written.
    pub fn finish(self) -> Option<CellSet> {
        if self.cells == 0 {
            return None;
        }
        let full: usize = self.keys.iter().map(Vec::len).product();
        Some(CellSet {
            dims: self.dims,
            values: self.keys.iter().map(|k| DimValues::from_keys(k)).collect(),
            tuples: (self.cells != full).then_some(self.tuples),
        })
    }
}

/// Tests cell membership in a [`CellSet`].
pub struct CellMatcher {
    per_dim: Vec<HashMap<Key, u32>>,
    tuples: Option<std::collections::HashSet<Vec<u32>>>,
}

impl CellMatcher {
    /// From a stored cell set (JSON).
    pub fn from_json(v: &Value) -> Option<CellMatcher> {
        let set: CellSet = serde_json::from_value(v.clone()).ok()?;
        let per_dim = set
            .values
            .iter()
            .map(|d| {
                d.keys()
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| (k, i as u32))
                    .collect()
            })
            .collect();
        let n = set.dims.len().max(1);
        let tuples = set
            .tuples
            .map(|t| t.chunks(n).map(<[u32]>::to_vec).collect());
        Some(CellMatcher { per_dim, tuples })
    }

    /// Whether the cell (keys in the variable's dimension order) is in the set.
    pub fn contains(&self, cell: &[Key]) -> bool {
        let mut idx = Vec::with_capacity(cell.len());
        for (d, k) in cell.iter().enumerate() {
            match self.per_dim.get(d).and_then(|m| m.get(k)) {
                Some(i) => idx.push(*i),
                None => return false,
            }
        }
        self.tuples.as_ref().is_none_or(|t| t.contains(&idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_and_sparse_sets() {
        let ts: Vec<Key> = (0..3).map(Key::I).collect();
        let ss: Vec<Key> = ["a", "b", "d"]
            .iter()
            .map(|s| Key::S(s.to_string()))
            .collect();
        let mut b = CellSetBuilder::new(vec!["t".into(), "s".into()], vec![&ts, &ss]);
        for t in 0..3 {
            for s in 0..2 {
                b.add([t, s].into_iter());
            }
        }
        let set = b.finish().unwrap();
        assert!(set.tuples.is_none(), "a full product is stored as a box");
        let m = CellMatcher::from_json(&serde_json::to_value(&set).unwrap()).unwrap();
        assert!(m.contains(&[Key::I(2), Key::S("b".into())]));
        assert!(!m.contains(&[Key::I(3), Key::S("b".into())]));

        let mut b = CellSetBuilder::new(vec!["t".into(), "s".into()], vec![&ts, &ss]);
        b.add([0, 2].into_iter());
        b.add([1, 0].into_iter());
        let set = b.finish().unwrap();
        assert!(set.tuples.is_some());
        let m = CellMatcher::from_json(&serde_json::to_value(&set).unwrap()).unwrap();
        assert!(m.contains(&[Key::I(1), Key::S("a".into())]));
        assert!(
            !m.contains(&[Key::I(0), Key::S("a".into())]),
            "sparse sets are exact"
        );
    }

    #[test]
    fn noting_then_listing_equals_adding() {
        let ts: Vec<Key> = (0..4).map(Key::I).collect();
        let ss: Vec<Key> = (0..3).map(|i| Key::S(format!("s{i}"))).collect();
        let cells = [[3u32, 1], [0, 2], [1, 1], [0, 0]];
        let mut one = CellSetBuilder::new(vec!["t".into(), "s".into()], vec![&ts, &ss]);
        let mut two = CellSetBuilder::new(vec!["t".into(), "s".into()], vec![&ts, &ss]);
        for c in cells {
            one.add(c.into_iter());
            two.note(c.into_iter());
        }
        assert!(two.needs_tuples());
        for c in cells {
            two.push_tuple(c.into_iter());
        }
        assert!(!two.needs_tuples());
        let (a, b) = (one.finish().unwrap(), two.finish().unwrap());
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
        // a full grid needs no list
        let mut full = CellSetBuilder::new(vec!["t".into()], vec![&ts]);
        for t in 0..4 {
            full.note([t].into_iter());
        }
        assert!(!full.needs_tuples());
        assert!(full.finish().unwrap().tuples.is_none());
    }
}
