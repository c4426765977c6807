//! Which cells an update wrote, by coordinate values (for blame; spec/011).
//!
//! A cell set is stored per variable as the distinct values along each of its dimensions and,
//! unless every combination was written (a "box", the common case), the list of written
//! combinations as index tuples.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::keys::{KeyRef, Keys};
use super::Key;

/// Typed values along one dimension.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", content = "values")]
pub(crate) enum DimValues {
    /// Floats.
    #[serde(rename = "f")]
    F(Vec<f64>),
    /// Integers, ticks, composed keys.
    #[serde(rename = "i")]
    I(Vec<i64>),
    /// Strings.
    #[serde(rename = "s")]
    S(Vec<String>),
    /// Strictly increasing integers as runs `[first, step, count]` (step > 0, count > 0; each
    /// run starts above the last value of the one before): a regular time series is one run.
    #[serde(rename = "r")]
    Runs(Vec<[i64; 3]>),
    /// Strictly increasing integers, base64 (standard, padded) of LEB128 varints: the first
    /// value zigzag-encoded, then each difference to the value before (> 0). Irregular time
    /// stamps take one or two bytes each instead of ~11 characters.
    #[serde(rename = "d")]
    Deltas(String),
}

impl DimValues {
    /// As keys (`None` for runs and deltas: see [`DimIndex`]).
    pub(crate) fn keys(&self) -> Option<Vec<Key>> {
        match self {
            DimValues::I(v) => Some(v.iter().map(|x| Key::I(*x)).collect()),
            DimValues::F(v) => Some(v.iter().map(|x| Key::f(*x)).collect()),
            DimValues::S(v) => Some(v.iter().map(|x| Key::S(x.clone())).collect()),
            DimValues::Runs(_) | DimValues::Deltas(_) => None,
        }
    }

    /// The values at positions `at` of `keys`.
    fn from_keys(keys: &Keys, at: impl Iterator<Item = usize> + Clone) -> DimValues {
        match keys {
            Keys::I(v) => DimValues::I(at.map(|i| v[i]).collect()),
            Keys::F(v) => DimValues::F(at.map(|i| v[i]).collect()),
            Keys::S(v) => DimValues::S(at.map(|i| v[i].clone()).collect()),
            Keys::K(_) => match at.clone().next().map(|i| keys.get(i)) {
                Some(KeyRef::F(_)) => DimValues::F(
                    at.map(|i| match keys.get(i) {
                        KeyRef::F(f) => f,
                        _ => f64::NAN,
                    })
                    .collect(),
                ),
                Some(KeyRef::S(_)) => DimValues::S(
                    at.map(|i| match keys.get(i) {
                        KeyRef::S(s) => s.to_string(),
                        _ => String::new(),
                    })
                    .collect(),
                ),
                _ => DimValues::I(
                    at.map(|i| match keys.get(i) {
                        KeyRef::I(x) => x,
                        _ => 0,
                    })
                    .collect(),
                ),
            },
        }
    }
}

/// The cells of one variable written by one commit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct CellSet {
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
/// per-dimension dictionaries of keys. What it holds per dictionary value is one bit ("some
/// written cell has it"); a value's index in the set is its rank among the used values, so the
/// values are listed in dictionary order.
pub(crate) struct CellSetBuilder<'a> {
    dims: Vec<String>,
    dicts: Vec<&'a Keys>,
    /// Per dimension: bit i = dictionary value i is in a written cell.
    used: Vec<Vec<u64>>,
    /// Per dimension: number of values used.
    count: Vec<usize>,
    /// Per dimension: values used before each word of `used` (built to list tuples).
    rank: Vec<Vec<u32>>,
    tuples: Vec<u32>,
    /// Bits of the listed cells when a bitmap is smaller than the tuples.
    bits: Option<Vec<u8>>,
    listed: usize,
    cells: usize,
}

impl<'a> CellSetBuilder<'a> {
    /// A builder for a variable with these dimensions and, per dimension, the keys that cells
    /// name by index.
    pub(crate) fn new(dims: Vec<String>, dicts: Vec<&'a Keys>) -> Self {
        let n = dims.len();
        CellSetBuilder {
            used: dicts
                .iter()
                .map(|d| vec![0; d.len().div_ceil(64)])
                .collect(),
            dicts,
            dims,
            count: vec![0; n],
            rank: vec![],
            tuples: vec![],
            bits: None,
            listed: 0,
            cells: 0,
        }
    }

    /// Count one written cell and its keys without listing it: for large contributions, whose
    /// cells usually form a full grid (stored as a box). When [`CellSetBuilder::needs_tuples`]
    /// says so afterwards, list the same cells, in the same order, with `push_tuple`.
    pub(crate) fn note(&mut self, cell: impl Iterator<Item = u32>) {
        for (d, i) in cell.enumerate() {
            let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
            let w = &mut self.used[d][word];
            if *w & bit == 0 {
                *w |= bit;
                self.count[d] += 1;
            }
        }
        self.cells += 1;
    }

    /// Whether the noted cells do not form a full grid and have not all been listed yet.
    pub(crate) fn needs_tuples(&self) -> bool {
        let full: usize = self.count.iter().product();
        self.cells != full && self.listed < self.cells
    }

    /// Index of dictionary value `i` of dimension `d` among the values used.
    fn index(&self, d: usize, i: u32) -> usize {
        let (word, bit) = (i as usize / 64, i % 64);
        let below = self.used[d][word] & ((1u64 << bit) - 1);
        self.rank[d][word] as usize + below.count_ones() as usize
    }

    /// List one noted cell (after [`CellSetBuilder::note`] of every cell).
    pub(crate) fn push_tuple(&mut self, cell: impl Iterator<Item = u32>) {
        if self.listed == 0 {
            self.rank = self
                .used
                .iter()
                .map(|words| {
                    let mut total = 0u32;
                    words
                        .iter()
                        .map(|w| {
                            let before = total;
                            total += w.count_ones();
                            before
                        })
                        .collect()
                })
                .collect();
            let full: usize = self.count.iter().product();
            if bitmap_is_smaller(full, self.cells, self.dims.len()) {
                self.bits = Some(vec![0; full.div_ceil(8)]);
            } else {
                self.tuples.reserve_exact(self.cells * self.dims.len());
            }
        }
        self.listed += 1;
        if self.bits.is_some() {
            let mut flat = 0usize;
            for (d, i) in cell.enumerate() {
                flat = flat * self.count[d] + self.index(d, i);
            }
            if let Some(bits) = &mut self.bits {
                bits[flat / 8] |= 1 << (flat % 8);
            }
        } else {
            for (d, i) in cell.enumerate() {
                let x = self.index(d, i) as u32;
                self.tuples.push(x);
            }
        }
    }

    /// A digest of the cells noted and listed: two variables of a node with the same digest
    /// were written at the same cells.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"zarr-fuse/cells/v1");
        h.update(&(self.cells as u64).to_le_bytes());
        for (d, used) in self.dims.iter().zip(&self.used) {
            h.update(&(d.len() as u64).to_le_bytes());
            h.update(d.as_bytes());
            h.update(&(used.len() as u64).to_le_bytes());
            used.iter().for_each(|w| {
                h.update(&w.to_le_bytes());
            });
        }
        h.update(&(self.tuples.len() as u64).to_le_bytes());
        self.tuples.iter().for_each(|t| {
            h.update(&t.to_le_bytes());
        });
        if let Some(bits) = &self.bits {
            h.update(b"bits");
            h.update(bits);
        }
        *h.finalize().as_bytes()
    }

    /// The cell set as JSON text ([`CellSet`]'s form), or `None` if nothing was written:
    /// serialized from the dictionaries (no copy of the values) into a buffer of its size,
    /// integers that increase regularly as runs.
    pub(crate) fn to_json(&self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        if self.cells == 0 {
            return Ok(None);
        }
        use base64::Engine as _;
        let full: usize = self.count.iter().product();
        let bitmap = self
            .bits
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        let view = CellSetView {
            dims: &self.dims,
            values: self
                .used
                .iter()
                .zip(&self.dicts)
                .map(|(used, keys)| DimView { keys, used })
                .collect(),
            tuples: (self.cells != full && bitmap.is_none()).then_some(&self.tuples[..]),
            bitmap,
        };
        let buf = crate::json::to_vec_exact(&view)?;
        let text = String::from_utf8(buf).map_err(serde::ser::Error::custom)?;
        RawValue::from_string(text).map(Some)
    }

    /// The cell set, or `None` if nothing was written.
    #[cfg(test)]
    pub(crate) fn finish(self) -> Option<CellSet> {
        if self.cells == 0 {
            return None;
        }
        use base64::Engine as _;
        let full: usize = self.count.iter().product();
        let bitmap = self
            .bits
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        Some(CellSet {
            values: self
                .used
                .iter()
                .zip(&self.dicts)
                .map(|(used, dict)| DimValues::from_keys(dict, set_bits(used)))
                .collect(),
            dims: self.dims,
            tuples: (self.cells != full && bitmap.is_none()).then_some(self.tuples),
            bitmap,
        })
    }
}

/// Positions of the set bits, ascending.
fn set_bits(words: &[u64]) -> impl Iterator<Item = usize> + Clone + '_ {
    words.iter().enumerate().flat_map(|(w, &word)| {
        (0..64)
            .filter(move |b| word & (1u64 << b) != 0)
            .map(move |b| w * 64 + b)
    })
}

/// Where the values of one dimension of a stored cell set are: a value → index map, or runs
/// searched by value (never expanded: a record cannot make blame allocate its runs' length).
enum DimIndex {
    Map(HashMap<Key, u32>),
    /// Strictly increasing integers (position = index).
    Sorted(Vec<i64>),
    /// (first, step, count, index of first), ascending.
    Runs(Vec<(i64, i64, u64, u64)>),
}

impl DimIndex {
    fn of(d: &DimValues) -> Option<(DimIndex, usize)> {
        if let DimValues::Deltas(text) = d {
            let values = decode_deltas(text)?;
            let n = values.len();
            return (n <= u32::MAX as usize).then_some((DimIndex::Sorted(values), n));
        }
        let DimValues::Runs(runs) = d else {
            let keys = d.keys()?;
            let n = keys.len();
            let map = keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i as u32))
                .collect();
            return Some((DimIndex::Map(map), n));
        };
        let mut out = Vec::with_capacity(runs.len());
        let mut total = 0u64;
        let mut last: Option<i64> = None;
        for &[first, step, count] in runs {
            if step <= 0 || count <= 0 || last.is_some_and(|l| first <= l) {
                return None;
            }
            let end = step
                .checked_mul(count - 1)
                .and_then(|d| first.checked_add(d))?;
            out.push((first, step, count as u64, total));
            total = total
                .checked_add(count as u64)
                .filter(|t| *t <= u64::from(u32::MAX))?;
            last = Some(end);
        }
        Some((DimIndex::Runs(out), total as usize))
    }

    fn get(&self, k: &Key) -> Option<u32> {
        match (self, k) {
            (DimIndex::Map(m), k) => m.get(k).copied(),
            (DimIndex::Sorted(v), Key::I(x)) => v.binary_search(x).ok().map(|i| i as u32),
            (DimIndex::Runs(runs), Key::I(x)) => {
                let r = runs
                    .partition_point(|(first, ..)| first <= x)
                    .checked_sub(1)?;
                let (first, step, count, at) = runs[r];
                let off = (*x as i128 - first as i128) / step as i128;
                let hit = (*x as i128 - first as i128) % step as i128 == 0 && (off as u64) < count;
                hit.then(|| (at + off as u64) as u32)
            }
            _ => None,
        }
    }
}

/// The cells a commit's side `record` says it wrote in variable `var` of node `node` (a
/// variable written at the same cells as another names it, spec/019).
pub(crate) fn recorded(record: &Value, node: &str, var: &str) -> Option<CellMatcher> {
    let pointer = |s: &str| s.replace('~', "~0").replace('/', "~1");
    let at = |var: &str| record.pointer(&format!("/cells/{}/{}", pointer(node), pointer(var)));
    let mut v = at(var);
    if let Some(other) = v.and_then(|v| v.get("same_as")).and_then(Value::as_str) {
        v = at(other);
    }
    v.and_then(CellMatcher::from_json)
}

/// Tests cell membership in a [`CellSet`].
pub(crate) struct CellMatcher {
    per_dim: Vec<DimIndex>,
    sizes: Vec<usize>,
    tuples: Option<std::collections::HashSet<Vec<u32>>>,
    bits: Option<Vec<u8>>,
}

impl CellMatcher {
    /// From a stored cell set (JSON).
    pub(crate) fn from_json(v: &Value) -> Option<CellMatcher> {
        let set: CellSet = serde_json::from_value(v.clone()).ok()?;
        let (per_dim, sizes) = set
            .values
            .iter()
            .map(DimIndex::of)
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .unzip();
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
            sizes,
            tuples,
            bits,
        })
    }

    /// Whether the cell (keys in the variable's dimension order) is in the set.
    pub(crate) fn contains(&self, cell: &[Key]) -> bool {
        let mut idx = Vec::with_capacity(cell.len());
        for (d, k) in cell.iter().enumerate() {
            match self.per_dim.get(d).and_then(|m| m.get(k)) {
                Some(i) => idx.push(i),
                None => return false,
            }
        }
        if let Some(bits) = &self.bits {
            let flat = idx.iter().zip(&self.sizes).fold(0usize, |acc, (i, n)| {
                acc.wrapping_mul(*n).wrapping_add(*i as usize)
            });
            return bits
                .get(flat / 8)
                .is_some_and(|b| b & (1 << (flat % 8)) != 0);
        }
        self.tuples.as_ref().is_none_or(|t| t.contains(&idx))
    }
}

/// The runs of a strictly increasing integer sequence, if writing them is shorter than the
/// values; `None` as soon as it cannot be.
fn runs_of(values: impl Iterator<Item = i64>) -> Option<Vec<[i64; 3]>> {
    let mut runs: Vec<[i64; 3]> = vec![];
    let mut n = 0usize;
    let mut prev: Option<i64> = None;
    for x in values {
        n += 1;
        match (prev, runs.last_mut()) {
            (Some(p), _) if x <= p => return None,
            (Some(p), Some(r)) if r[2] == 1 => {
                r[1] = x - p;
                r[2] = 2;
            }
            (Some(p), Some(r)) if x - p == r[1] => r[2] += 1,
            _ => runs.push([x, 1, 1]),
        }
        prev = Some(x);
        if runs.len() > 16 && runs.len() * 2 > n {
            return None; // runs of fewer than two values on average: a list is shorter
        }
    }
    // a run is three numbers
    (runs.len() * 3 < n).then_some(runs)
}

/// [`DimValues::Deltas`] text of a strictly increasing sequence (`None` if it is not).
fn encode_deltas(values: impl Iterator<Item = i64>) -> Option<String> {
    fn leb(out: &mut Vec<u8>, mut x: u64) {
        while x >= 0x80 {
            out.push((x as u8) | 0x80);
            x >>= 7;
        }
        out.push(x as u8);
    }
    let mut bytes = vec![];
    let mut prev: Option<i64> = None;
    for x in values {
        match prev {
            None => leb(&mut bytes, ((x << 1) ^ (x >> 63)) as u64),
            Some(p) if x > p => leb(&mut bytes, (i128::from(x) - i128::from(p)) as u64),
            Some(_) => return None,
        }
        prev = Some(x);
    }
    use base64::Engine as _;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The values of [`DimValues::Deltas`] text; `None` if it is malformed (bad base64, a varint
/// longer than 64 bits, a difference that is not positive or leaves the i64 range).
fn decode_deltas(text: &str) -> Option<Vec<i64>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let mut x: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *bytes.get(at)?;
            at += 1;
            if shift == 63 && b > 1 {
                return None;
            }
            x |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
        let v = match out.last() {
            None => ((x >> 1) as i64) ^ -((x & 1) as i64),
            Some(&p) if x > 0 => i64::try_from(i128::from(p) + i128::from(x)).ok()?,
            Some(_) => return None,
        };
        out.push(v);
    }
    Some(out)
}

/// A sequence serialized from an iterator, without collecting it.
struct SeqOf<F>(F);

impl<F, I> Serialize for SeqOf<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// One dimension of a builder's cell set, serialized as [`DimValues`] straight from the
/// dictionary.
struct DimView<'b> {
    keys: &'b Keys,
    used: &'b [u64],
}

impl Serialize for DimView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let at = || set_bits(self.used);
        if let Keys::K(_) = self.keys {
            // (coordinates have one kind of value; kept exact if not)
            return DimValues::from_keys(self.keys, at()).serialize(s);
        }
        let mut m = s.serialize_map(Some(2))?;
        match self.keys {
            Keys::I(v) => {
                if let Some(runs) = runs_of(at().map(|i| v[i])) {
                    m.serialize_entry("kind", "r")?;
                    m.serialize_entry("values", &runs)?;
                } else if let Some(text) = encode_deltas(at().map(|i| v[i])) {
                    m.serialize_entry("kind", "d")?;
                    m.serialize_entry("values", &text)?;
                } else {
                    m.serialize_entry("kind", "i")?;
                    m.serialize_entry("values", &SeqOf(|| at().map(|i| v[i])))?;
                }
            }
            Keys::F(v) => {
                m.serialize_entry("kind", "f")?;
                m.serialize_entry("values", &SeqOf(|| at().map(|i| v[i])))?;
            }
            Keys::S(v) => {
                m.serialize_entry("kind", "s")?;
                m.serialize_entry("values", &SeqOf(|| at().map(|i| v[i].as_str())))?;
            }
            Keys::K(_) => {}
        }
        m.end()
    }
}

/// A builder's cell set as [`CellSet`] serializes it.
#[derive(Serialize)]
struct CellSetView<'b> {
    dims: &'b [String],
    values: Vec<DimView<'b>>,
    tuples: Option<&'b [u32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bitmap: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell set of `cells` (noted, then listed if needed).
    fn build(dims: &[&str], dicts: Vec<&Keys>, cells: &[Vec<u32>]) -> CellSet {
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
        let ts: Keys = (0..3).map(Key::I).collect();
        let ss: Keys = ["a", "b", "d"]
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
        let ts: Keys = (0..i64::from(n)).map(Key::I).collect();
        let ss: Keys = (0..2).map(|i| Key::S(format!("s{i}"))).collect();
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
        let ts: Keys = (0..40).map(Key::I).collect();
        // 40 cells on a diagonal, last first: tuples in the order listed, indexing the values
        // in dictionary order (every other value of the dictionary)
        let cells: Vec<Vec<u32>> = (0..40).rev().map(|i| vec![i, 2 * i]).collect();
        let wide: Keys = (0..80).map(Key::I).collect();
        let set = build(&["t", "s"], vec![&ts, &wide], &cells);
        let expected: Vec<u32> = (0..40).rev().flat_map(|i| [i, i]).collect();
        assert_eq!(set.tuples, Some(expected));
        assert_eq!(set.values[0], DimValues::I((0..40).collect()));
        assert_eq!(
            set.values[1],
            DimValues::I((0..40).map(|i| 2 * i).collect())
        );
        // a full grid needs no list
        let mut full = CellSetBuilder::new(vec!["t".into()], vec![&ts]);
        for t in 0..40 {
            full.note([t].into_iter());
        }
        assert!(!full.needs_tuples());
        assert!(full.finish().unwrap().tuples.is_none());
    }

    /// The matcher of the builder's JSON text (as stored) and of its [`CellSet`] agree on every
    /// combination of the dictionaries' values and on values outside them.
    fn same_cells(dims: &[&str], dicts: Vec<&Keys>, cells: &[Vec<u32>]) -> String {
        let mut b =
            CellSetBuilder::new(dims.iter().map(|d| d.to_string()).collect(), dicts.clone());
        for c in cells {
            b.note(c.iter().copied());
        }
        if b.needs_tuples() {
            for c in cells {
                b.push_tuple(c.iter().copied());
            }
        }
        let text = b.to_json().unwrap().unwrap();
        let stored = CellMatcher::from_json(&serde_json::from_str(text.get()).unwrap()).unwrap();
        let reference = matcher(&b.finish().unwrap());
        let mut probe: Vec<Vec<Key>> = vec![vec![]];
        for d in &dicts {
            let mut values: Vec<Key> = d.iter().map(KeyRef::to_key).collect();
            values.extend([Key::I(-1), Key::I(1_000_001), Key::S("zz".into())]);
            probe = probe
                .into_iter()
                .flat_map(|p| {
                    values.iter().map(move |v| {
                        let mut p = p.clone();
                        p.push(v.clone());
                        p
                    })
                })
                .collect();
        }
        for cell in &probe {
            assert_eq!(
                stored.contains(cell),
                reference.contains(cell),
                "{cell:?} in {}",
                text.get()
            );
        }
        text.get().to_string()
    }

    #[test]
    fn stored_text_matches_the_same_cells_as_the_set() {
        let hourly: Keys = (0..50).map(|h| Key::I(1_000 + 3_600 * h)).collect();
        let irregular: Keys = (0..50).map(|h| Key::I(h * h)).collect();
        let sites: Keys = ["a", "b", "c"]
            .iter()
            .map(|s| Key::S(s.to_string()))
            .collect();
        let floats: Keys = (0..7).map(|x| Key::f(f64::from(x) * 0.5)).collect();
        let full: Vec<Vec<u32>> = (0..50)
            .flat_map(|t| (0..3).map(move |s| vec![t, s]))
            .collect();
        let text = same_cells(&["t", "s"], vec![&hourly, &sites], &full);
        assert!(
            text.contains(r#"{"kind":"r","values":[[1000,3600,50]]}"#),
            "{text}"
        );
        let text = same_cells(&["t", "s"], vec![&irregular, &sites], &full);
        assert!(text.contains(r#""kind":"d""#), "{text}");
        let extremes: Keys = [i64::MIN, -1, 0, 1, i64::MAX]
            .into_iter()
            .map(Key::I)
            .collect();
        let all: Vec<Vec<u32>> = (0..5).map(|t| vec![t]).collect();
        let text = same_cells(&["t"], vec![&extremes], &all);
        assert!(text.contains(r#""kind":"d""#), "{text}");
        // sparse (tuples), a diagonal (bitmap), every other hour (one run of step 7200)
        same_cells(
            &["t", "s"],
            vec![&hourly, &sites],
            &[vec![3, 1], vec![40, 2], vec![0, 0]],
        );
        let diagonal: Vec<Vec<u32>> = (0..50).map(|t| vec![t, t % 3]).collect();
        same_cells(&["t", "s"], vec![&hourly, &sites], &diagonal);
        let every_other: Vec<Vec<u32>> = (0..25).map(|t| vec![2 * t, 1]).collect();
        let text = same_cells(&["t", "s"], vec![&hourly, &sites], &every_other);
        assert!(text.contains("[[1000,7200,25]]"), "{text}");
        // values in input order that is not increasing: a plain list
        let shuffled: Keys = (0..50).map(|h| Key::I((h * 17) % 50)).collect();
        let text = same_cells(
            &["t"],
            vec![&shuffled],
            &(0..50).map(|t| vec![t]).collect::<Vec<_>>(),
        );
        assert!(text.contains(r#""kind":"i""#), "{text}");
        same_cells(
            &["x", "t"],
            vec![&floats, &hourly],
            &[vec![6, 49], vec![0, 0]],
        );
    }

    #[test]
    fn runs_are_found_by_value_and_checked_never_expanded() {
        assert_eq!(
            runs_of([1, 2, 3, 10, 20, 30, 40].into_iter()),
            Some(vec![[1, 1, 3], [10, 10, 4]])
        );
        assert_eq!(runs_of([5, 4].into_iter()), None, "not increasing");
        assert_eq!(runs_of((0..100).map(|x| x * x)), None, "too many runs");
        let set = |runs: &str| {
            CellMatcher::from_json(
                &serde_json::from_str(&format!(
                    r#"{{"dims":["t"],"values":[{{"kind":"r","values":{runs}}}],"tuples":null}}"#
                ))
                .unwrap(),
            )
        };
        let m = set("[[0,10,3],[100,1,2],[200,9223372036854775,1000]]").unwrap();
        for (x, inside) in [
            (0, true),
            (10, true),
            (20, true),
            (30, false),
            (15, false),
            (99, false),
            (101, true),
            (102, false),
            (-5, false),
        ] {
            assert_eq!(m.contains(&[Key::I(x)]), inside, "{x}");
        }
        assert!(m.contains(&[Key::I(200 + 9223372036854775 * 999)]));
        // a huge count is not allocated; malformed runs are refused
        assert!(set("[[0,1,4000000000]]").is_some());
        assert!(set("[[0,1,5000000000]]").is_none(), "beyond u32 indices");
        assert!(set("[[0,0,3]]").is_none(), "step 0");
        assert!(set("[[0,1,3],[1,1,3]]").is_none(), "overlapping");
        assert!(set("[[9223372036854775800,1,100]]").is_none(), "overflow");
        assert!(set("[[0,1,0]]").is_none(), "empty run");
    }

    #[test]
    fn deltas_round_trip_and_malformed_ones_are_refused() {
        let values = [i64::MIN, -300, -1, 0, 5, 127, 128, 1 << 40, i64::MAX];
        let text = encode_deltas(values.into_iter()).unwrap();
        assert_eq!(decode_deltas(&text), Some(values.to_vec()));
        assert_eq!(encode_deltas([3, 3].into_iter()), None, "not increasing");
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert_eq!(decode_deltas(&b64(&[4, 1, 2])), Some(vec![2, 3, 5]));
        assert_eq!(decode_deltas(&b64(&[4, 0])), None, "zero difference");
        assert_eq!(decode_deltas(&b64(&[0x80])), None, "truncated varint");
        assert_eq!(
            decode_deltas(&b64(&[0xff; 11])),
            None,
            "varint beyond 64 bits"
        );
        let max = {
            let mut b = vec![0xfe];
            b.extend([0xff; 8]);
            b.push(1);
            b
        };
        assert_eq!(decode_deltas(&b64(&max)), Some(vec![i64::MAX]));
        let mut past = max.clone();
        past.push(1);
        assert_eq!(decode_deltas(&b64(&past)), None, "beyond i64");
        assert_eq!(decode_deltas("not base64!"), None);
    }
}
