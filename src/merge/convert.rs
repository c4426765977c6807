//! Contribution → typed columns (merge-semantics.md §2): parse, convert units and times, check
//! ranges, drop rows with NA coordinates, resolve duplicates (later row wins), build composed keys.

use std::collections::HashMap;

use super::{Key, MergeError, Scalar};
use crate::ingest::Table;
use crate::schema::{Coord, DType, NodeSchema, Range, UnitSpec, Variable};
use crate::time::{parse_instant, to_ticks, Tick};

/// What to do with a value that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Reject the whole contribution.
    #[default]
    Error,
    /// Make the cell NA and count it.
    Na,
}

/// One coordinate of a converted contribution, dictionary-encoded: the distinct keys in order of
/// first appearance and, per kept row, the index of its key.
#[derive(Debug, Clone, Default)]
pub struct CoordColumn {
    /// Distinct keys, in order of first appearance among the kept rows.
    pub dict: Vec<Key>,
    /// Per kept row: index into `dict`.
    pub idx: Vec<u32>,
}

impl CoordColumn {
    /// The key of kept row `r`.
    pub fn key(&self, r: usize) -> &Key {
        &self.dict[self.idx[r] as usize]
    }

    /// Encode keys given row by row.
    pub fn from_keys(keys: Vec<Key>) -> CoordColumn {
        let mut map: HashMap<Key, u32> = HashMap::new();
        let mut out = CoordColumn::default();
        for k in keys {
            let i = match map.get(&k) {
                Some(i) => *i,
                None => {
                    let i = out.dict.len() as u32;
                    map.insert(k.clone(), i);
                    out.dict.push(k);
                    i
                }
            };
            out.idx.push(i);
        }
        out
    }
}

/// The values of one variable, one per kept row, typed by the stored type.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Floats; NaN is NA.
    F(Vec<f64>),
    /// Integers and ticks.
    I(Vec<Option<i64>>),
    /// Strings.
    S(Vec<Option<String>>),
}

impl Values {
    fn for_type(d: DType, n: usize) -> Values {
        if d.is_integer() || matches!(d, DType::DateTime(_)) {
            Values::I(Vec::with_capacity(n))
        } else if matches!(d, DType::Str(_)) {
            Values::S(Vec::with_capacity(n))
        } else {
            Values::F(Vec::with_capacity(n))
        }
    }

    fn reserve_exact(&mut self, n: usize) {
        match self {
            Values::F(v) => v.reserve_exact(n),
            Values::I(v) => v.reserve_exact(n),
            Values::S(v) => v.reserve_exact(n),
        }
    }

    /// Values of the same kind as `self`, empty.
    pub fn empty_like(&self) -> Values {
        match self {
            Values::F(_) => Values::F(vec![]),
            Values::I(_) => Values::I(vec![]),
            Values::S(_) => Values::S(vec![]),
        }
    }

    /// Append a value.
    pub fn push(&mut self, s: Scalar) {
        match (self, s) {
            (Values::F(v), Scalar::F(x)) => v.push(x),
            (Values::F(v), Scalar::I(x)) => v.push(x as f64),
            (Values::F(v), _) => v.push(f64::NAN),
            (Values::I(v), Scalar::I(x)) => v.push(Some(x)),
            (Values::I(v), Scalar::F(x)) => v.push(Some(x as i64)),
            (Values::I(v), _) => v.push(None),
            (Values::S(v), Scalar::S(x)) => v.push(Some(x)),
            (Values::S(v), Scalar::Na) => v.push(None),
            (Values::S(v), other) => v.push(Some(format!("{other:?}"))),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::F(v) => v.len(),
            Values::I(v) => v.len(),
            Values::S(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `r`.
    pub fn get(&self, r: usize) -> Scalar {
        match self {
            Values::F(v) if v[r].is_nan() => Scalar::Na,
            Values::F(v) => Scalar::F(v[r]),
            Values::I(v) => v[r].map_or(Scalar::Na, Scalar::I),
            Values::S(v) => v[r].clone().map_or(Scalar::Na, Scalar::S),
        }
    }

    /// Whether value `r` is NA.
    pub fn is_na(&self, r: usize) -> bool {
        match self {
            Values::F(v) => v[r].is_nan(),
            Values::I(v) => v[r].is_none(),
            Values::S(v) => v[r].is_none(),
        }
    }

    /// Whether values `a` and `b` are equal (NA equals NA).
    pub fn same(&self, a: usize, b: usize) -> bool {
        match self {
            Values::F(v) => v[a] == v[b] || (v[a].is_nan() && v[b].is_nan()),
            Values::I(v) => v[a] == v[b],
            Values::S(v) => v[a] == v[b],
        }
    }

    /// Keep the rows `kept` (ascending), in place.
    fn retain_rows(&mut self, kept: &[u32]) {
        match self {
            Values::F(v) => compact(v, kept, |x| x),
            Values::I(v) => compact(v, kept, |x| x),
            Values::S(v) => {
                for (i, &r) in kept.iter().enumerate() {
                    v.swap(i, r as usize);
                }
                v.truncate(kept.len());
                v.shrink_to_fit();
            }
        }
    }
}

/// The input line of each row, stored as runs of consecutive lines (a CSV without multi-line
/// cells is one run per stretch of kept rows): a few bytes per contribution instead of eight per
/// row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    /// (first row, its line) of each run.
    runs: Vec<(u32, u64)>,
    len: usize,
}

impl Lines {
    /// Append the line of the next row.
    pub fn push(&mut self, line: u64) {
        if self.len == 0 || self.get(self.len - 1) + 1 != line {
            self.runs.push((self.len as u32, line));
        }
        self.len += 1;
    }

    /// The line of row `r` (`r` < [`Lines::len`]).
    pub fn get(&self, r: usize) -> u64 {
        let i = self.runs.partition_point(|&(start, _)| start as usize <= r);
        let (start, line) = self.runs[i.saturating_sub(1)];
        line + (r - start as usize) as u64
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lines of rows `kept` (ascending).
    fn select(&self, kept: &[u32]) -> Lines {
        let mut out = Lines::default();
        for &r in kept {
            out.push(self.get(r as usize));
        }
        out
    }
}

impl FromIterator<u64> for Lines {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut out = Lines::default();
        for l in iter {
            out.push(l);
        }
        out
    }
}

/// A converted contribution.
#[derive(Debug, Default)]
pub struct Converted {
    /// Per node coordinate (schema order): the key of each kept row.
    pub coords: Vec<CoordColumn>,
    /// Per composed coordinate: component name → value by key.
    pub components: HashMap<String, HashMap<Key, Scalar>>,
    /// Per variable (schema order, components excluded): value of each kept row.
    pub vars: Vec<(String, Values)>,
    /// Input line of each kept row.
    pub lines: Lines,
    /// Rows read.
    pub rows_read: u64,
    /// Rows dropped for an NA coordinate.
    pub rows_dropped: u64,
    /// Rows overwritten by a later row with the same coordinates.
    pub duplicates: u64,
    /// Cells made NA by `--on-invalid na`.
    pub invalid_to_na: u64,
}

/// The stored type of a variable, given what the schema says (inference: see spec/010).
pub fn stored_type(v: &Variable) -> DType {
    v.dtype.unwrap_or(DType::F64)
}

fn parse_scalar(v: &Variable, text: &str) -> Result<Scalar, String> {
    let dtype = stored_type(v);
    match (&v.source_unit, &v.unit, dtype) {
        (
            UnitSpec::Time {
                tick: stick, tz, ..
            },
            UnitSpec::Time { tick, .. },
            _,
        ) => {
            let nanos = parse_instant(text, tz, *stick)?;
            Ok(Scalar::I(to_ticks(nanos, *tick)))
        }
        (_, _, DType::DateTime(tick)) => {
            let nanos = parse_instant(text, &crate::time::Zone::utc(), tick)?;
            Ok(Scalar::I(to_ticks(nanos, tick)))
        }
        (_, _, DType::Str(n)) => {
            if text.chars().count() > n {
                return Err(format!(
                    "'{text}' is longer than {n} characters (type str[{n}])"
                ));
            }
            Ok(Scalar::S(text.to_string()))
        }
        (src, dst, d) => {
            let x: f64 = text
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?;
            if !x.is_finite() {
                return Err(format!("'{text}' is not a finite number"));
            }
            let y = match (src, dst) {
                (UnitSpec::Physical(s), UnitSpec::Physical(t)) => {
                    s.converter(t).map_err(|e| e.to_string())?(x)
                }
                _ => x,
            };
            if d.is_integer() {
                if y.fract() != 0.0 {
                    return Err(format!("'{text}' is not an integer (type {})", d.name()));
                }
                let (lo, hi) = int_bounds(d);
                if y < lo || y > hi {
                    return Err(format!("'{text}' does not fit type {}", d.name()));
                }
                Ok(Scalar::I(y as i64))
            } else {
                Ok(Scalar::F(y))
            }
        }
    }
}

fn int_bounds(d: DType) -> (f64, f64) {
    match d {
        DType::Bool => (0.0, 1.0),
        DType::Int(b) => (
            -(2f64.powi(i32::from(b) - 1)),
            2f64.powi(i32::from(b) - 1) - 1.0,
        ),
        DType::UInt(b) => (0.0, 2f64.powi(i32::from(b)) - 1.0),
        _ => (f64::MIN, f64::MAX),
    }
}

fn check_range(v: &Variable, s: &Scalar, text: &str) -> Result<(), String> {
    match (&v.range, s) {
        (Range::Interval(a, b), Scalar::F(x)) if x < a || x > b => {
            Err(format!("{text} is outside the range [{a}, {b}]"))
        }
        (Range::Interval(a, b), Scalar::I(x)) if (*x as f64) < *a || (*x as f64) > *b => {
            Err(format!("{text} is outside the range [{a}, {b}]"))
        }
        (Range::Discrete(allowed), _) => {
            let ok = allowed.iter().any(|a| match (a, s) {
                (serde_json::Value::String(t), Scalar::S(x)) => t == x,
                (serde_json::Value::Number(n), Scalar::F(x)) => n.as_f64() == Some(*x),
                (serde_json::Value::Number(n), Scalar::I(x)) => n.as_i64() == Some(*x),
                (serde_json::Value::String(t), _) => t == text,
                _ => false,
            });
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "{text} is not one of the allowed values {}",
                    serde_json::Value::Array(allowed.clone())
                ))
            }
        }
        _ => Ok(()),
    }
}

/// Whether a variable accepts NA cells.
pub fn accepts_na(v: &Variable) -> bool {
    !stored_type(v).is_integer() || v.na_value.is_some()
}

/// The composed key: first 8 bytes of blake3 over a canonical encoding of the component values.
pub fn composed_key(values: &[Scalar]) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"zarr-fuse/composed/v1");
    for v in values {
        match v {
            Scalar::F(x) => {
                h.update(b"f");
                // -0.0 and 0.0 are the same location
                h.update(&(if *x == 0.0 { 0.0f64 } else { *x }).to_le_bytes());
            }
            Scalar::I(x) => {
                h.update(b"i");
                h.update(&x.to_le_bytes());
            }
            Scalar::S(s) => {
                h.update(b"s");
                h.update(&(s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Scalar::Na => {
                h.update(b"n");
            }
        }
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    i64::from_le_bytes(b)
}

fn column(table: &Table, v: &Variable, node: &str) -> Result<usize, MergeError> {
    table
        .column(&v.df_col)
        .ok_or_else(|| MergeError::MissingColumn {
            file: table.source.clone(),
            column: v.df_col.clone(),
            variable: v.name.clone(),
            node: node.to_string(),
            available: table.columns.clone(),
        })
}

/// Convert `table` for `node`.
pub fn convert(
    table: &Table,
    node: &NodeSchema,
    on_invalid: OnInvalid,
) -> Result<Converted, MergeError> {
    let mut c = Converter::new(node, on_invalid);
    c.push(table)?;
    Ok(c.finish())
}

const NA: u32 = u32::MAX;

/// Converts a contribution batch by batch, so that only one batch of input text is held at a
/// time: what is kept per row is typed (a dictionary index per coordinate, a value per variable,
/// the input line). [`Converter::finish`] then drops rows with an NA coordinate and resolves
/// duplicates over the whole contribution.
pub struct Converter<'n> {
    node: &'n NodeSchema,
    on_invalid: OnInvalid,
    data_vars: Vec<&'n Variable>,
    /// Per coordinate: distinct keys in order of first appearance (any row) and per row its index.
    coords: Vec<CoordColumn>,
    by_key: Vec<HashMap<Key, u32>>,
    /// Per coordinate: component name → value per row (composed coordinates only).
    comp_values: Vec<HashMap<String, Vec<Scalar>>>,
    var_cols: Vec<Values>,
    lines: Lines,
    invalid: u64,
}

impl<'n> Converter<'n> {
    /// A converter for `node`.
    pub fn new(node: &'n NodeSchema, on_invalid: OnInvalid) -> Self {
        let components: Vec<&str> = node
            .coords
            .iter()
            .flat_map(|c| c.composed.iter().map(String::as_str))
            .collect();
        let data_vars: Vec<&Variable> = node
            .vars
            .iter()
            .filter(|v| !components.contains(&v.name.as_str()))
            .collect();
        Converter {
            node,
            on_invalid,
            coords: vec![CoordColumn::default(); node.coords.len()],
            by_key: vec![HashMap::new(); node.coords.len()],
            comp_values: vec![HashMap::new(); node.coords.len()],
            var_cols: data_vars
                .iter()
                .map(|v| Values::for_type(stored_type(v), 0))
                .collect(),
            data_vars,
            lines: Lines::default(),
            invalid: 0,
        }
    }

    /// Convert the rows of one batch (any batch may be empty; every batch has the same columns).
    pub fn push(&mut self, table: &Table) -> Result<(), MergeError> {
        let node = self.node;
        let on_invalid = self.on_invalid;
        let n_rows = table.n_rows();
        if self.lines.len() + n_rows >= NA as usize {
            return Err(MergeError::Invalid(format!(
                "{}: more than {} rows in one contribution; split it into several updates",
                table.source,
                NA - 1
            )));
        }
        let bad = |v: &Variable, row: usize, text: &str, reason: String| MergeError::BadValue {
            file: table.source.clone(),
            line: table.lines[row],
            column: v.df_col.clone(),
            value: text.to_string(),
            reason,
        };
        // parse one cell of a variable
        let invalid = &mut self.invalid;
        let mut cell =
            |v: &Variable, col: usize, row: usize, is_coord: bool| -> Result<Scalar, MergeError> {
                let Some(text) = table.cell(row, col) else {
                    if !is_coord && !accepts_na(v) {
                        if on_invalid == OnInvalid::Na {
                            *invalid += 1;
                        }
                        return Err(bad(
                            v,
                            row,
                            "",
                            format!("NA in integer variable '{}' that has no na_value", v.name),
                        ));
                    }
                    return Ok(Scalar::Na);
                };
                let parsed =
                    parse_scalar(v, text).and_then(|s| check_range(v, &s, text).map(|_| s));
                match parsed {
                    Ok(s) => Ok(s),
                    Err(_) if on_invalid == OnInvalid::Na && (is_coord || accepts_na(v)) => {
                        *invalid += 1;
                        Ok(Scalar::Na)
                    }
                    Err(reason) => Err(bad(v, row, text, reason)),
                }
            };
        // coordinates, dictionary-encoded (NA = u32::MAX); a text seen before in this batch is
        // not parsed again
        for (ci, c) in node.coords.iter().enumerate() {
            let col_out = &mut self.coords[ci];
            let by_key = &mut self.by_key[ci];
            // exact: no doubling overshoot on inputs larger than memory (glibc grows big blocks
            // with mremap, without copying)
            col_out.idx.reserve_exact(n_rows);
            let mut intern = |col_out: &mut CoordColumn, k: Option<Key>| -> u32 {
                let Some(k) = k else { return NA };
                *by_key.entry(k).or_insert_with_key(|k| {
                    col_out.dict.push(k.clone());
                    (col_out.dict.len() - 1) as u32
                })
            };
            if c.composed.is_empty() {
                let col = column(table, &c.var, &node.path)?;
                let mut by_text: HashMap<&str, u32> = HashMap::new();
                for row in 0..n_rows {
                    let text = table.cell(row, col);
                    if let Some(i) = text.and_then(|t| by_text.get(t)) {
                        col_out.idx.push(*i);
                        continue;
                    }
                    let i = intern(col_out, cell(&c.var, col, row, true)?.key());
                    if let (Some(t), true) = (text, i != NA) {
                        by_text.insert(t, i);
                    }
                    col_out.idx.push(i);
                }
            } else {
                let parts: Vec<(&Variable, usize)> = c
                    .composed
                    .iter()
                    .map(|n| {
                        let v = node
                            .var(n)
                            .ok_or_else(|| MergeError::Invalid(format!("component {n} missing")))?;
                        Ok((v, column(table, v, &node.path)?))
                    })
                    .collect::<Result<_, MergeError>>()?;
                let comps = &mut self.comp_values[ci];
                for row in 0..n_rows {
                    let vals: Vec<Scalar> = parts
                        .iter()
                        .map(|(v, col)| cell(v, *col, row, true))
                        .collect::<Result<_, _>>()?;
                    let key = (!vals.iter().any(|v| matches!(v, Scalar::Na)))
                        .then(|| Key::I(composed_key(&vals)));
                    let i = intern(col_out, key);
                    col_out.idx.push(i);
                    for ((v, _), val) in parts.iter().zip(vals) {
                        comps.entry(v.name.clone()).or_default().push(val);
                    }
                }
            }
        }
        // variables
        for (v, vals) in self.data_vars.iter().zip(self.var_cols.iter_mut()) {
            let col = column(table, v, &node.path)?;
            vals.reserve_exact(n_rows);
            for row in 0..n_rows {
                vals.push(cell(v, col, row, false)?);
            }
        }
        for &l in &table.lines {
            self.lines.push(l);
        }
        Ok(())
    }

    /// Rows converted so far.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Drop rows with an NA coordinate, resolve duplicates (later rows win) and give the result.
    pub fn finish(self) -> Converted {
        let Converter {
            data_vars,
            coords,
            comp_values,
            var_cols,
            lines,
            invalid,
            ..
        } = self;
        let n_rows = lines.len();
        let mut out = Converted {
            rows_read: n_rows as u64,
            invalid_to_na: invalid,
            ..Default::default()
        };
        let kept = dedup(&coords, n_rows, &mut out);
        // re-encode the coordinates over the kept rows; the dictionary keeps the order of first
        // appearance in the contribution (rows without an NA coordinate, duplicates included),
        // which is the order new values of unsorted coordinates are appended in
        let complete = |r: usize| coords.iter().all(|c| c.idx[r] != NA);
        let remaps: Vec<(Vec<u32>, Vec<Key>)> = coords
            .iter()
            .map(|c| {
                let mut remap = vec![NA; c.dict.len()];
                let mut dict = vec![];
                for r in (0..n_rows).filter(|&r| complete(r)) {
                    let old = c.idx[r] as usize;
                    if remap[old] == NA {
                        remap[old] = dict.len() as u32;
                        dict.push(c.dict[old].clone());
                    }
                }
                (remap, dict)
            })
            .collect();
        for (ci, comps) in comp_values.iter().enumerate() {
            for (name, vals) in comps {
                let m = out.components.entry(name.clone()).or_default();
                for &r in &kept {
                    let i = coords[ci].idx[r as usize];
                    if i != NA {
                        m.insert(
                            coords[ci].dict[i as usize].clone(),
                            vals[r as usize].clone(),
                        );
                    }
                }
            }
        }
        drop(comp_values);
        // keep the selected rows in place: no second copy of the columns
        out.coords = coords
            .into_iter()
            .zip(remaps)
            .map(|(mut c, (remap, dict))| {
                compact(&mut c.idx, &kept, |i| remap[i as usize]);
                CoordColumn { dict, idx: c.idx }
            })
            .collect();
        out.lines = lines.select(&kept);
        out.vars = data_vars
            .iter()
            .zip(var_cols)
            .map(|(v, mut vals)| {
                vals.retain_rows(&kept);
                (v.name.clone(), vals)
            })
            .collect();
        out
    }
}

/// Keep the rows `kept` (ascending) of `v` in place, mapping each kept value with `f`.
fn compact<T: Copy>(v: &mut Vec<T>, kept: &[u32], f: impl Fn(T) -> T) {
    for (i, &r) in kept.iter().enumerate() {
        v[i] = f(v[r as usize]);
    }
    v.truncate(kept.len());
    v.shrink_to_fit();
}

/// The rows to keep, in input order: rows with an NA coordinate are dropped, and of rows with
/// equal coordinates the last one wins (counted in `out`).
fn dedup(coords: &[CoordColumn], n_rows: usize, out: &mut Converted) -> Vec<u32> {
    // a row's cell as one number when the dictionary product fits, else as an index tuple
    let product = coords
        .iter()
        .try_fold(1u64, |acc, c| acc.checked_mul(c.dict.len().max(1) as u64));
    let flat = |r: usize| -> Option<u64> {
        coords.iter().try_fold(0u64, |acc, c| {
            let i = c.idx[r];
            (i != NA).then(|| acc * c.dict.len().max(1) as u64 + u64::from(i))
        })
    };
    // rows are numbered in u32 (Converter::push refuses more)
    let mut last: Vec<u32> = Vec::with_capacity(n_rows);
    let rows = 0..n_rows as u32;
    match product {
        // dense: a direct table of the last row per cell
        Some(p) if p <= (4 * n_rows as u64).max(1 << 16) => {
            let mut slot = vec![NA; p as usize];
            for r in rows {
                let Some(f) = flat(r as usize) else {
                    out.rows_dropped += 1;
                    continue;
                };
                if slot[f as usize] != NA {
                    out.duplicates += 1;
                }
                slot[f as usize] = r;
            }
            last.extend(slot.into_iter().filter(|&r| r != NA));
        }
        Some(_) => {
            let mut seen: HashMap<u64, u32> = HashMap::with_capacity(n_rows);
            for r in rows {
                let Some(f) = flat(r as usize) else {
                    out.rows_dropped += 1;
                    continue;
                };
                if seen.insert(f, r).is_some() {
                    out.duplicates += 1;
                }
            }
            last.extend(seen.into_values());
        }
        None => {
            let mut seen: HashMap<Vec<u32>, u32> = HashMap::with_capacity(n_rows);
            for r in rows {
                let k: Vec<u32> = coords.iter().map(|c| c.idx[r as usize]).collect();
                if k.contains(&NA) {
                    out.rows_dropped += 1;
                    continue;
                }
                if seen.insert(k, r).is_some() {
                    out.duplicates += 1;
                }
            }
            last.extend(seen.into_values());
        }
    }
    last.sort_unstable();
    last
}

/// Whether `c` holds datetimes.
pub fn is_time(c: &Coord) -> bool {
    matches!(c.var.dtype, Some(DType::DateTime(_)))
}

/// Tick of a datetime variable.
pub fn tick_of(v: &Variable) -> Option<Tick> {
    match v.dtype {
        Some(DType::DateTime(t)) => Some(t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn lines_are_runs_of_consecutive_numbers() {
        // a multi-line cell (7 → 9) and dropped rows make new runs
        let given = [2u64, 3, 4, 5, 6, 7, 9, 10, 11, 30, 12];
        let lines: Lines = given.iter().copied().collect();
        assert_eq!(lines.len(), given.len());
        assert_eq!(lines.runs.len(), 4);
        for (r, l) in given.iter().enumerate() {
            assert_eq!(lines.get(r), *l, "row {r}");
        }
        let kept = lines.select(&[0, 1, 5, 6, 9, 10]);
        let got: Vec<u64> = (0..kept.len()).map(|r| kept.get(r)).collect();
        assert_eq!(got, [2, 3, 7, 9, 30, 12]);
    }
}
