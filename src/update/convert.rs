//! Contribution → typed columns (merge-semantics.md §2): parse, convert units and times, check
//! ranges, drop rows with NA coordinates, resolve duplicates (later row wins), build composed keys.

use std::collections::HashMap;

use super::keys::{DictIndex, KeyRef, Keys};
use super::rows::{RowBlock, Rows, SPILL_OVER};
pub(crate) use super::values::Values;
use super::{Key, Scalar, UpdateError};
use crate::ingest::Table;
use crate::schema::{DType, NodeSchema, Range, UnitSpec, Variable};
use crate::time::{parse_instant, to_ticks};

/// What to do with a value that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Reject the whole contribution.
    #[default]
    Error,
    /// Make the cell NA and count it.
    Na,
}

/// The input line of each row, stored as runs of consecutive lines (a CSV without multi-line
/// cells is one run per stretch of kept rows): a few bytes per contribution instead of eight per
/// row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lines {
    /// (first row, its line) of each run.
    runs: Vec<(u32, u64)>,
    len: usize,
}

impl Lines {
    /// Append the line of the next row.
    pub(crate) fn push(&mut self, line: u64) {
        if self.len == 0 || self.get(self.len - 1) + 1 != line {
            self.runs.push((self.len as u32, line));
        }
        self.len += 1;
    }

    /// The line of row `r` (`r` < [`Lines::len`]).
    pub(crate) fn get(&self, r: usize) -> u64 {
        let i = self.runs.partition_point(|&(start, _)| start as usize <= r);
        let (start, line) = self.runs[i.saturating_sub(1)];
        line + (r - start as usize) as u64
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.len
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
pub(crate) struct Converted {
    /// Per node coordinate (schema order): the distinct keys of the kept rows, in order of first
    /// appearance; the rows hold indices into these.
    pub dicts: Vec<Keys>,
    /// Per composed coordinate: component name → value by key.
    pub components: HashMap<String, HashMap<Key, Scalar>>,
    /// The variables (schema order, components excluded) whose values the rows hold.
    pub var_names: Vec<String>,
    /// The kept rows (unique per coordinate tuple, no NA coordinate).
    pub rows: Rows,
    /// Input line of each kept row.
    pub lines: Lines,
    /// Rows read.
    pub rows_read: u64,
    /// Rows dropped for an NA coordinate.
    pub rows_dropped: u64,
    /// Input file and line of the first dropped rows (at most [`DROPPED_LINES`]).
    pub dropped_lines: Vec<(String, u64)>,
    /// Rows overwritten by a later row with the same coordinates.
    pub duplicates: u64,
    /// Cells made NA by `--on-invalid na`.
    pub invalid_to_na: u64,
    /// The dictionaries were given back ([`Converted::release_keys`]): only the rows are left.
    pub keys_released: bool,
}

impl Converted {
    /// Give back the dictionaries' values (8 bytes or more a distinct coordinate value) once
    /// the rows' positions on the merged axes are known; a retry converts the input again.
    pub(crate) fn release_keys(&mut self) {
        for d in &mut self.dicts {
            *d = d.with_capacity_like(0);
        }
        self.keys_released = true;
    }

    /// The key of coordinate `ci` at dictionary index `i`.
    pub(crate) fn key(&self, ci: usize, i: u32) -> KeyRef<'_> {
        self.dicts[ci].get(i as usize)
    }
}

/// The stored type of a variable, given what the schema says (inference: see spec/010).
pub(crate) fn stored_type(v: &Variable) -> DType {
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
        (_, _, DType::Bool) => parse_bool(text)
            .map(|b| Scalar::I(i64::from(b)))
            .ok_or_else(|| format!("'{text}' is not a bool (true/false, 1/0, yes/no)")),
        (UnitSpec::None, UnitSpec::None, d) if d.is_integer() && is_integer_text(text) => {
            // exact: integers beyond 2^53 do not survive a trip through f64
            let (lo, hi) = int_bounds(d);
            match text.trim().parse::<i64>() {
                Ok(i) if (i as f64) >= lo && (i as f64) <= hi => not_the_marker(v, d, i, text),
                _ => Err(format!("'{text}' does not fit type {}", d.name())),
            }
        }
        (src, dst, d) => {
            let x: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a number"))?;
            if x.is_nan() && !d.is_integer() {
                return Ok(Scalar::Na);
            }
            if !x.is_finite() && d.is_integer() {
                return Err(format!(
                    "'{text}' is not a finite number (type {})",
                    d.name()
                ));
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
                not_the_marker(v, d, y as i64, text)
            } else {
                Ok(Scalar::F(y))
            }
        }
    }
}

fn is_integer_text(text: &str) -> bool {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Bool text as merge-semantics §2.2 lists it (any case).
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("true") || is("yes") || t == "1" {
        Some(true)
    } else if is("false") || is("no") || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// An integer value, unless it is the NA marker of its narrow type on disk (it would read back as
/// NA): then the variable needs an `na_value` to store it.
fn not_the_marker(v: &Variable, d: DType, i: i64, text: &str) -> Result<Scalar, String> {
    match int_na_marker(d) {
        Some(m) if m == i && v.na_value.is_none() => Err(format!(
            "'{text}' is the NA marker of type {} on disk; give '{}' an na_value to store it",
            d.name(),
            v.name
        )),
        _ => Ok(Scalar::I(i)),
    }
}

/// The value that marks NA on disk in an integer array of type `d` without `na_value`
/// (spec/024): the type's minimum (signed) or maximum (unsigned); none for bools and for int64,
/// whose marker is i64::MIN as in memory.
pub(crate) fn int_na_marker(d: DType) -> Option<i64> {
    match d {
        DType::Int(b) if b < 64 => Some(-(1i64 << (b - 1))),
        DType::UInt(b) if b < 64 => Some((1i64 << b) - 1),
        _ => None,
    }
}

fn int_bounds(d: DType) -> (f64, f64) {
    match d {
        DType::Bool => (0.0, 1.0),
        DType::Int(b) => (
            -(2f64.powi(i32::from(b) - 1)),
            2f64.powi(i32::from(b) - 1) - 1.0,
        ),
        // uint64 is stored as int64 for now (spec/010): values above i64::MAX do not fit
        DType::UInt(64) => (0.0, i64::MAX as f64),
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

/// How many line numbers of dropped rows a contribution reports.
pub(crate) const DROPPED_LINES: usize = 10;

/// The NA spellings read when the schema sets no `na_tokens` (merge-semantics §2.4, spec/022).
pub(crate) const DEFAULT_NA_TOKENS: [&str; 8] =
    ["NA", "N/A", "n/a", "null", "NULL", "None", "#N/A", "-NaN"];

/// Whether an input text is NA for `v`: its `na_tokens` (node or variable level) or the defaults.
/// The empty field is always NA.
pub(crate) fn is_na_text(v: &Variable, text: &str) -> bool {
    match &v.na_tokens {
        // the usual cell, a number or a time, starts with a digit: no default token does
        None if text.as_bytes().first().is_some_and(u8::is_ascii_digit) => false,
        None => {
            let t = text.trim();
            t.is_empty() || DEFAULT_NA_TOKENS.contains(&t)
        }
        Some(list) => {
            let t = text.trim();
            t.is_empty() || list.iter().any(|x| x == t)
        }
    }
}

/// Whether a variable accepts NA cells.
pub(crate) fn accepts_na(v: &Variable) -> bool {
    !stored_type(v).is_integer() || v.na_value.is_some()
}

/// The composed key: first 8 bytes of blake3 over a canonical encoding of the component values.
pub(crate) fn composed_key(values: &[Scalar]) -> i64 {
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

fn column(table: &Table, v: &Variable, node: &str) -> Result<usize, UpdateError> {
    table
        .column(&v.df_col)
        .ok_or_else(|| UpdateError::MissingColumn {
            file: table.source.clone(),
            column: v.df_col.clone(),
            variable: v.name.clone(),
            node: node.to_string(),
            available: table.columns.clone(),
        })
}

/// Convert `table` for `node`.
pub(crate) fn convert(
    table: &Table,
    node: &NodeSchema,
    on_invalid: OnInvalid,
) -> Result<Converted, UpdateError> {
    let mut c = Converter::new(node, on_invalid);
    c.push(table)?;
    c.finish()
}

const NA: u32 = u32::MAX;

/// Converts a contribution batch by batch, so that only one batch of input text is held at a
/// time: what is kept per row is typed (a dictionary index per coordinate, a value per variable,
/// the input line), in memory up to a budget and then in a temporary file ([`Rows`]).
/// [`Converter::finish`] then drops rows with an NA coordinate and resolves duplicates over the
/// whole contribution.
pub(crate) struct Converter<'n> {
    node: &'n NodeSchema,
    on_invalid: OnInvalid,
    data_vars: Vec<&'n Variable>,
    /// Per coordinate: distinct keys in order of first appearance (any row).
    dicts: Vec<Keys>,
    /// Per coordinate: how values are found in `dicts` (binary search while a dictionary only
    /// grew upwards, else a hash index of positions: the keys themselves are only in `dicts`).
    by_key: Vec<DictIndex>,
    /// Component name → value by composed key.
    components: HashMap<String, HashMap<Key, Scalar>>,
    rows: Rows,
    lines: Lines,
    /// (first row, input name) of each pushed table whose name differs from the previous one's.
    sources: Vec<(usize, String)>,
    invalid: u64,
}

impl<'n> Converter<'n> {
    /// A converter for `node`.
    pub(crate) fn new(node: &'n NodeSchema, on_invalid: OnInvalid) -> Self {
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
        let template = RowBlock {
            len: 0,
            idx: vec![vec![]; node.coords.len()],
            vals: data_vars
                .iter()
                .map(|v| Values::for_type(stored_type(v), 0))
                .collect(),
        };
        Converter {
            node,
            on_invalid,
            dicts: vec![Keys::default(); node.coords.len()],
            by_key: (0..node.coords.len())
                .map(|_| DictIndex::default())
                .collect(),
            components: HashMap::new(),
            rows: Rows::new(&template, SPILL_OVER),
            data_vars,
            lines: Lines::default(),
            sources: Vec::new(),
            invalid: 0,
        }
    }

    /// Keep at most `bytes` of typed rows in memory before moving them to a temporary file
    /// (default [`SPILL_OVER`]); must be called before the first batch.
    pub(crate) fn spill_over(mut self, bytes: usize) -> Self {
        self.rows = Rows::new(&self.rows.empty_block(), bytes);
        self
    }

    /// Convert the rows of one batch (any batch may be empty; every batch has the same columns).
    pub(crate) fn push(&mut self, table: &Table) -> Result<(), UpdateError> {
        let node = self.node;
        let on_invalid = self.on_invalid;
        let n_rows = table.n_rows();
        if self.lines.len() + n_rows >= NA as usize {
            return Err(UpdateError::TooManyRows {
                source_name: table.source.clone(),
                limit: u64::from(NA - 1),
            });
        }
        let bad = |v: &Variable, row: usize, text: &str, reason: String| UpdateError::BadValue {
            file: table.source.clone(),
            line: table.lines[row],
            column: v.df_col.clone(),
            value: text.to_string(),
            reason,
        };
        // parse one cell of a variable
        let invalid = &mut self.invalid;
        let mut cell =
            |v: &Variable, col: usize, row: usize, is_coord: bool| -> Result<Scalar, UpdateError> {
                let Some(text) = table.cell(row, col).filter(|t| !is_na_text(v, t)) else {
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
        let mut block = self.rows.empty_block();
        block.len = n_rows;
        // coordinates, dictionary-encoded (NA = u32::MAX); a text seen before in this batch is
        // not parsed again
        for (ci, c) in node.coords.iter().enumerate() {
            let col_out = &mut block.idx[ci];
            let dict = &mut self.dicts[ci];
            let by_key = &mut self.by_key[ci];
            col_out.reserve_exact(n_rows);
            let mut intern = |k: Option<Key>| -> u32 {
                let Some(k) = k else { return NA };
                if let Some(i) = by_key.get(dict, k.as_ref()) {
                    return i as u32;
                }
                let i = dict.len();
                dict.push(k);
                by_key.appended(dict, i);
                i as u32
            };
            if c.composed.is_empty() {
                let col = column(table, &c.var, &node.path)?;
                let mut by_text: HashMap<&str, u32> = HashMap::new();
                for row in 0..n_rows {
                    let text = table.cell(row, col);
                    if let Some(i) = text.and_then(|t| by_text.get(t)) {
                        col_out.push(*i);
                        continue;
                    }
                    let i = intern(cell(&c.var, col, row, true)?.key());
                    if let (Some(t), true) = (text, i != NA) {
                        by_text.insert(t, i);
                    }
                    col_out.push(i);
                }
            } else {
                let parts: Vec<(&Variable, usize)> = c
                    .composed
                    .iter()
                    .map(|n| {
                        let v = node.var(n).ok_or_else(|| {
                            UpdateError::Invalid(format!("component {n} missing"))
                        })?;
                        Ok((v, column(table, v, &node.path)?))
                    })
                    .collect::<Result<_, UpdateError>>()?;
                for row in 0..n_rows {
                    let vals: Vec<Scalar> = parts
                        .iter()
                        .map(|(v, col)| cell(v, *col, row, true))
                        .collect::<Result<_, _>>()?;
                    let key = (!vals.iter().any(|v| matches!(v, Scalar::Na)))
                        .then(|| Key::I(composed_key(&vals)));
                    let i = intern(key.clone());
                    col_out.push(i);
                    // the key is a digest of the component values: one value set per key
                    if let Some(key) = key {
                        for ((v, _), val) in parts.iter().zip(vals) {
                            self.components
                                .entry(v.name.clone())
                                .or_default()
                                .entry(key.clone())
                                .or_insert(val);
                        }
                    }
                }
            }
        }
        // variables
        for (v, vals) in self.data_vars.iter().zip(block.vals.iter_mut()) {
            let col = column(table, v, &node.path)?;
            vals.reserve_exact(n_rows);
            for row in 0..n_rows {
                vals.push(cell(v, col, row, false)?);
            }
        }
        if self
            .sources
            .last()
            .is_none_or(|(_, name)| *name != table.source)
        {
            self.sources.push((self.lines.len(), table.source.clone()));
        }
        for &l in &table.lines {
            self.lines.push(l);
        }
        self.rows.push(block)
    }

    /// Drop rows with an NA coordinate, resolve duplicates (later rows win) and give the result.
    /// Two passes over the rows: the last row of every cell, then the kept rows copied out
    /// (spilled again when they were).
    pub(crate) fn finish(self) -> Result<Converted, UpdateError> {
        let Converter {
            data_vars,
            dicts,
            components,
            rows,
            lines,
            invalid,
            by_key,
            sources,
            ..
        } = self;
        // only needed while pushing: free it before the passes (a hash map entry per distinct
        // coordinate value)
        drop(by_key);
        let mut dicts = dicts;
        dicts.iter_mut().for_each(Keys::shrink_to_fit);
        let n_rows = lines.len();
        let mut out = Converted {
            rows_read: n_rows as u64,
            invalid_to_na: invalid,
            components,
            var_names: data_vars.iter().map(|v| v.name.clone()).collect(),
            ..Default::default()
        };
        // pass 1: rows with an NA coordinate, and the last row of each cell
        let mut last = LastRow::new(&dicts, n_rows);
        let mut tuple = vec![0u32; dicts.len()];
        let none: Vec<bool> = vec![false; data_vars.len()];
        rows.scan(Some(&none), |start, b| {
            for i in 0..b.len {
                row_tuple(&mut tuple, b, i);
                if tuple.contains(&NA) {
                    out.rows_dropped += 1;
                    if out.dropped_lines.len() < DROPPED_LINES {
                        let row = start + i;
                        let at = sources.partition_point(|(first, _)| *first <= row);
                        let file = at.checked_sub(1).map(|k| sources[k].1.clone());
                        out.dropped_lines
                            .push((file.unwrap_or_default(), lines.get(row)));
                    }
                    continue;
                }
                if last.set(&tuple, (start + i) as u32) {
                    out.duplicates += 1;
                }
            }
            Ok(())
        })?;
        if out.rows_dropped == 0 && out.duplicates == 0 {
            // every row is kept and the dictionaries are unchanged (the usual clean input)
            out.dicts = dicts;
            out.rows = rows;
            out.lines = lines;
            return Ok(out);
        }
        // Without dropped rows the dictionaries stay as they are (every value appears in a kept
        // row, duplicates included, in the same order). With some, they are re-encoded over the
        // rows without an NA coordinate, in order of first appearance (duplicates included): the
        // order new values of unsorted coordinates are appended in. A pass of its own, so a
        // clean input never holds a second dictionary.
        let mut remaps: Option<Vec<Vec<u32>>> = None;
        if out.rows_dropped > 0 {
            let mut maps: Vec<Vec<u32>> = dicts.iter().map(|d| vec![NA; d.len()]).collect();
            let mut new_dicts: Vec<Keys> = dicts
                .iter()
                .map(|d| d.with_capacity_like(d.len()))
                .collect();
            rows.scan(Some(&none), |_, b| {
                for i in 0..b.len {
                    row_tuple(&mut tuple, b, i);
                    if tuple.contains(&NA) {
                        continue;
                    }
                    for ((t, remap), (dict, new)) in tuple
                        .iter()
                        .zip(&mut maps)
                        .zip(dicts.iter().zip(&mut new_dicts))
                    {
                        if remap[*t as usize] == NA {
                            remap[*t as usize] = new.len() as u32;
                            new.push_ref(dict.get(*t as usize));
                        }
                    }
                }
                Ok(())
            })?;
            new_dicts.iter_mut().for_each(Keys::shrink_to_fit);
            dicts = new_dicts;
            remaps = Some(maps);
        }
        if last.needs_rows() && out.duplicates > 0 {
            // duplicates in a dense grid: now find which row of each cell comes last
            last = last.with_rows();
            rows.scan(Some(&none), |start, b| {
                for i in 0..b.len {
                    row_tuple(&mut tuple, b, i);
                    if !tuple.contains(&NA) {
                        last.set(&tuple, (start + i) as u32);
                    }
                }
                Ok(())
            })?;
        }
        let any_duplicate = out.duplicates > 0;
        // pass 2: keep the last row of each cell, in input order
        let mut kept = Rows::new(&rows.empty_block(), rows.spill_limit());
        let mut kept_lines = Lines::default();
        rows.scan(None, |start, b| {
            let mut o = kept.empty_block();
            for i in 0..b.len {
                row_tuple(&mut tuple, b, i);
                let r = (start + i) as u32;
                if tuple.contains(&NA) || (any_duplicate && last.get(&tuple) != Some(r)) {
                    continue;
                }
                o.len += 1;
                for (d, (col, t)) in o.idx.iter_mut().zip(&tuple).enumerate() {
                    col.push(remaps.as_ref().map_or(*t, |m| m[d][*t as usize]));
                }
                for (v, src) in o.vals.iter_mut().zip(&b.vals) {
                    v.push_from(src, i);
                }
                kept_lines.push(lines.get(r as usize));
            }
            kept.push(o)
        })?;
        drop(rows);
        out.dicts = dicts;
        out.rows = kept;
        out.lines = kept_lines;
        Ok(out)
    }
}

/// The dictionary indices of row `i` of `b`, one per coordinate, into `tuple`.
fn row_tuple(tuple: &mut [u32], b: &RowBlock, i: usize) {
    for (t, col) in tuple.iter_mut().zip(&b.idx) {
        *t = col[i];
    }
}

/// The last row of each coordinate tuple. For a dictionary product small enough for a direct
/// table, the first pass only marks cells (a bit each: a clean input needs no more) and a table
/// of rows is built only when there are duplicates; else a hash map of rows.
enum LastRow {
    Seen {
        sizes: Vec<u64>,
        bits: Vec<u64>,
    },
    Dense {
        sizes: Vec<u64>,
        slot: Vec<u32>,
    },
    Flat {
        sizes: Vec<u64>,
        seen: HashMap<u64, u32>,
    },
    Tuples(HashMap<Vec<u32>, u32>),
}

impl LastRow {
    fn new(dicts: &[Keys], n_rows: usize) -> LastRow {
        let sizes: Vec<u64> = dicts.iter().map(|d| d.len().max(1) as u64).collect();
        match sizes.iter().try_fold(1u64, |acc, n| acc.checked_mul(*n)) {
            Some(p) if p <= (4 * n_rows as u64).max(1 << 16) => LastRow::Seen {
                sizes,
                bits: vec![0; p.div_ceil(64) as usize],
            },
            Some(_) => LastRow::Flat {
                sizes,
                seen: HashMap::new(),
            },
            None => LastRow::Tuples(HashMap::new()),
        }
    }

    /// Whether only cells were marked: [`LastRow::with_rows`] and a second pass give the rows.
    fn needs_rows(&self) -> bool {
        matches!(self, LastRow::Seen { .. })
    }

    /// A direct table of rows for the same cells, empty.
    fn with_rows(self) -> LastRow {
        match self {
            LastRow::Seen { sizes, bits } => {
                drop(bits);
                let p = sizes.iter().product::<u64>() as usize;
                LastRow::Dense {
                    sizes,
                    slot: vec![NA; p],
                }
            }
            other => other,
        }
    }

    fn flat(sizes: &[u64], t: &[u32]) -> u64 {
        t.iter()
            .zip(sizes)
            .fold(0u64, |acc, (i, n)| acc * n + u64::from(*i))
    }

    /// Record `r` as the last row of `t`; whether an earlier row had it.
    fn set(&mut self, t: &[u32], r: u32) -> bool {
        match self {
            LastRow::Seen { sizes, bits } => {
                let f = Self::flat(sizes, t);
                let (word, bit) = ((f / 64) as usize, 1u64 << (f % 64));
                let had = bits[word] & bit != 0;
                bits[word] |= bit;
                had
            }
            LastRow::Dense { sizes, slot } => {
                let s = &mut slot[Self::flat(sizes, t) as usize];
                std::mem::replace(s, r) != NA
            }
            LastRow::Flat { sizes, seen } => seen.insert(Self::flat(sizes, t), r).is_some(),
            LastRow::Tuples(seen) => seen.insert(t.to_vec(), r).is_some(),
        }
    }

    /// The last row of `t` (not known for cells only marked).
    fn get(&self, t: &[u32]) -> Option<u32> {
        match self {
            LastRow::Seen { .. } => None,
            LastRow::Dense { sizes, slot } => {
                Some(slot[Self::flat(sizes, t) as usize]).filter(|&r| r != NA)
            }
            LastRow::Flat { sizes, seen } => seen.get(&Self::flat(sizes, t)).copied(),
            LastRow::Tuples(seen) => seen.get(t).copied(),
        }
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
    }
}
