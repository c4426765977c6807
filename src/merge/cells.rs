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

    fn from_keys<'k>(keys: impl Iterator<Item = &'k Key> + Clone) -> DimValues {
        match keys.clone().next() {
            Some(Key::F(_)) => DimValues::F(
                keys.map(|k| if let Key::F(f) = k { f.0 } else { f64::NAN })
                    .collect(),
            ),
            Some(Key::S(_)) => DimValues::S(
                keys.map(|k| {
                    if let Key::S(s) = k {
                        s.clone()
                    } else {
                        String::new()
                    }
                })
                .collect(),
            ),
            _ => DimValues::I(
                keys.map(|k| if let Key::I(i) = k { *i } else { 0 })
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
    /// Index tuples (flattened, `dims.len()` per cell); `None` (and no `bitmap`) = every
    /// combination.
    pub tuples: Option<Vec<u32>>,
    /// Instead of `tuples` when smaller: one bit per combination of the values (C order over
    /// `values`, least significant bit first), base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<String>,
}

/// Whether a set of `cells` in a box of `combinations` is smaller as a bitmap than as tuples.
fn bitmap_is_smaller(combinations: usize, cells: usize, dims: usize) -> bool {
    // tuples in JSON: at least two characters per index; the bitmap: 4/3 characters per byte
    combinations.div_ceil(8) * 4 / 3 < cells * dims * 2
}

/// Builds a [`CellSet`] from written cells (each cell added once), given as indices into
/// per-dimension dictionaries of keys.
pub struct CellSetBuilder<'a> {
    dims: Vec<String>,
    dicts: Vec<&'a [Key]>,
    remap: Vec<Vec<u32>>,
    /// Per dimension: the dictionary indices of the values written, in order of first note.
    keys: Vec<Vec<u32>>,
    tuples: Vec<u32>,
    /// Bits of the listed cells when a bitmap is smaller than the tuples.
    bits: Option<Vec<u8>>,
    listed: usize,
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
            bits: None,
            listed: 0,
            cells: 0,
        }
    }

    /// Count one written cell and its keys without listing it: for large contributions, whose
    /// cells usually form a full grid (stored as a box). When [`CellSetBuilder::needs_tuples`]
    /// says so afterwards, list the same cells, in the same order, with `push_tuple`.
    pub fn note(&mut self, cell: impl Iterator<Item = u32>) {
        for (d, i) in cell.enumerate() {
            let slot = &mut self.remap[d][i as usize];
            if *slot == u32::MAX {
                *slot = self.keys[d].len() as u32;
                self.keys[d].push(i);
            }
        }
        self.cells += 1;
    }

    /// Whether the noted cells do not form a full grid and have not all been listed yet.
    pub fn needs_tuples(&self) -> bool {
        let full: usize = self.keys.iter().map(Vec::len).product();
        self.cells != full && self.listed < self.cells
    }

    /// List one noted cell (after [`CellSetBuilder::note`] of every cell).
    pub fn push_tuple(&mut self, cell: impl Iterator<Item = u32>) {
        if self.listed == 0 {
            let full: usize = self.keys.iter().map(Vec::len).product();
            if bitmap_is_smaller(full, self.cells, self.dims.len()) {
                self.bits = Some(vec![0; full.div_ceil(8)]);
            } else {
                self.tuples.reserve_exact(self.cells * self.dims.len());
            }
        }
        self.listed += 1;
        match &mut self.bits {
            Some(bits) => {
                let mut flat = 0usize;
                for (d, i) in cell.enumerate() {
                    flat = flat * self.keys[d].len() + self.remap[d][i as usize] as usize;
                }
                bits[flat / 8] |= 1 << (flat % 8);
            }
            None => {
                for (d, i) in cell.enumerate() {
                    self.tuples.push(self.remap[d][i as usize]);
                }
            }
        }
    }

    /// The cell set, or `None` if nothing was written.
    pub fn finish(self) -> Option<CellSet> {
        if self.cells == 0 {
            return None;
        }
        use base64::Engine as _;
        let full: usize = self.keys.iter().map(Vec::len).product();
        let bitmap = self
            .bits
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        Some(CellSet {
            dims: self.dims,
            values: self
                .keys
                .iter()
                .zip(&self.dicts)
                .map(|(k, dict)| DimValues::from_keys(k.iter().map(|&i| &dict[i as usize])))
                .collect(),
            tuples: (self.cells != full && bitmap.is_none()).then_some(self.tuples),
            bitmap,
        })
    }
}

/// Tests cell membership in a [`CellSet`].
pub struct CellMatcher {
    per_dim: Vec<HashMap<Key, u32>>,
    sizes: Vec<usize>,
    tuples: Option<std::collections::HashSet<Vec<u32>>>,
    bits: Option<Vec<u8>>,
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
        let bits = match set.bitmap {
            Some(b) => {
                use base64::Engine as _;
                Some(base64::engine::general_purpose::STANDARD.decode(b).ok()?)
            }
            None => None,
        };
        Some(CellMatcher {
            per_dim,
            sizes: set.values.iter().map(|d| d.keys().len()).collect(),
            tuples,
            bits,
        })
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
        if let Some(bits) = &self.bits {
            let flat = idx
                .iter()
                .zip(&self.sizes)
                .fold(0usize, |acc, (i, n)| acc * n + *i as usize);
            return bits
                .get(flat / 8)
                .is_some_and(|b| b & (1 << (flat % 8)) != 0);
        }
        self.tuples.as_ref().is_none_or(|t| t.contains(&idx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell set of `cells` (noted, then listed if needed).
    fn build(dims: &[&str], dicts: Vec<&[Key]>, cells: &[Vec<u32>]) -> CellSet {
        let mut b = CellSetBuilder::new(dims.iter().map(|d| d.to_string()).collect(), dicts);
        for c in cells {
            b.note(c.iter().copied());
        }
        if b.needs_tuples() {
            for c in cells {
                b.push_tuple(c.iter().copied());
            }
        }
        assert!(!b.needs_tuples());
        b.finish().unwrap()
    }

    fn matcher(set: &CellSet) -> CellMatcher {
        CellMatcher::from_json(&serde_json::to_value(set).unwrap()).unwrap()
    }

    #[test]
    fn boxes_and_sparse_sets() {
        let ts: Vec<Key> = (0..3).map(Key::I).collect();
        let ss: Vec<Key> = ["a", "b", "d"]
            .iter()
            .map(|s| Key::S(s.to_string()))
            .collect();
        let all: Vec<Vec<u32>> = (0..3)
            .flat_map(|t| (0..2).map(move |s| vec![t, s]))
            .collect();
        let set = build(&["t", "s"], vec![&ts, &ss], &all);
        assert!(
            set.tuples.is_none() && set.bitmap.is_none(),
            "a full product is a box"
        );
        let m = matcher(&set);
        assert!(m.contains(&[Key::I(2), Key::S("b".into())]));
        assert!(!m.contains(&[Key::I(3), Key::S("b".into())]));

        let set = build(&["t", "s"], vec![&ts, &ss], &[vec![0, 2], vec![1, 0]]);
        assert!(set.tuples.is_some() || set.bitmap.is_some());
        let m = matcher(&set);
        assert!(m.contains(&[Key::I(1), Key::S("a".into())]));
        assert!(m.contains(&[Key::I(0), Key::S("d".into())]));
        assert!(
            !m.contains(&[Key::I(0), Key::S("a".into())]),
            "sparse sets are exact"
        );
    }

    #[test]
    fn a_diagonal_is_a_bitmap_and_scattered_cells_are_tuples() {
        // one site per time (irregular sensor times): n of 2n combinations, a bitmap
        let n = 1000u32;
        let ts: Vec<Key> = (0..i64::from(n)).map(Key::I).collect();
        let ss: Vec<Key> = (0..2).map(|i| Key::S(format!("s{i}"))).collect();
        let cells: Vec<Vec<u32>> = (0..n).map(|t| vec![t, t % 2]).collect();
        let set = build(&["t", "s"], vec![&ts, &ss], &cells);
        assert!(set.tuples.is_none() && set.bitmap.is_some());
        let text = serde_json::to_string(&set).unwrap();
        assert!(
            text.len() < 4 * n as usize + 2_000,
            "compact: {} bytes",
            text.len()
        );
        let m = matcher(&set);
        for t in 0..i64::from(n) {
            let mine = Key::S(format!("s{}", t % 2));
            let other = Key::S(format!("s{}", (t + 1) % 2));
            assert!(m.contains(&[Key::I(t), mine]), "cell {t}");
            assert!(!m.contains(&[Key::I(t), other]), "not cell {t}");
        }
        // 100 cells on a diagonal (a 100 x 100 box of their values): tuples
        let cells: Vec<Vec<u32>> = (0..100).map(|i| vec![i * 10, i * 10]).collect();
        let set = build(&["a", "b"], vec![&ts, &ts], &cells);
        assert!(set.bitmap.is_none() && set.tuples.as_ref().is_some_and(|t| t.len() == 200));
        let m = matcher(&set);
        assert!(m.contains(&[Key::I(500), Key::I(500)]));
        assert!(!m.contains(&[Key::I(500), Key::I(0)]));
    }

    #[test]
    fn noting_then_listing_lists_the_cells_in_order() {
        let ts: Vec<Key> = (0..40).map(Key::I).collect();
        // 40 cells on a diagonal, last first: tuples in the order listed, indexing the values
        // in the order noted
        let cells: Vec<Vec<u32>> = (0..40).rev().map(|i| vec![i, i]).collect();
        let set = build(&["t", "s"], vec![&ts, &ts], &cells);
        let expected: Vec<u32> = (0..40).flat_map(|i| [i, i]).collect();
        assert_eq!(set.tuples, Some(expected));
        assert_eq!(set.values[0], DimValues::I((0..40).rev().collect()));
        // a full grid needs no list
        let mut full = CellSetBuilder::new(vec!["t".into()], vec![&ts]);
        for t in 0..40 {
            full.note([t].into_iter());
        }
        assert!(!full.needs_tuples());
        assert!(full.finish().unwrap().tuples.is_none());
    }
}
