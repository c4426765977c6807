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

/// A converted contribution.
#[derive(Debug, Default)]
pub struct Converted {
    /// Per node coordinate (schema order): the key of each kept row.
    pub coord_keys: Vec<Vec<Key>>,
    /// Per composed coordinate: component name → value by key.
    pub components: HashMap<String, HashMap<Key, Scalar>>,
    /// Per variable (schema order, components excluded): value of each kept row.
    pub vars: Vec<(String, Vec<Scalar>)>,
    /// Input line of each kept row.
    pub lines: Vec<u64>,
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
    let mut out = Converted {
        rows_read: table.rows.len() as u64,
        ..Default::default()
    };
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
    let bad = |v: &Variable, row: usize, text: &str, reason: String| MergeError::BadValue {
        file: table.source.clone(),
        line: table.lines[row],
        column: v.df_col.clone(),
        value: text.to_string(),
        reason,
    };
    // parse one cell of a variable
    let mut invalid = 0u64;
    let mut cell =
        |v: &Variable, col: usize, row: usize, is_coord: bool| -> Result<Scalar, MergeError> {
            let Some(text) = table.rows[row].get(col).and_then(|c| c.as_deref()) else {
                if !is_coord && !accepts_na(v) {
                    if on_invalid == OnInvalid::Na {
                        invalid += 1;
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
            let parsed = parse_scalar(v, text).and_then(|s| check_range(v, &s, text).map(|_| s));
            match parsed {
                Ok(s) => Ok(s),
                Err(reason) if on_invalid == OnInvalid::Na && (is_coord || accepts_na(v)) => {
                    invalid += 1;
                    let _ = reason;
                    Ok(Scalar::Na)
                }
                Err(reason) => Err(bad(v, row, text, reason)),
            }
        };
    // coordinates
    let mut keys: Vec<Vec<Option<Key>>> = Vec::new();
    let mut comp_values: Vec<HashMap<String, Vec<Scalar>>> = Vec::new();
    for c in &node.coords {
        let mut ks = Vec::with_capacity(table.rows.len());
        let mut comps: HashMap<String, Vec<Scalar>> = HashMap::new();
        if c.composed.is_empty() {
            let col = column(table, &c.var, &node.path)?;
            for row in 0..table.rows.len() {
                ks.push(cell(&c.var, col, row, true)?.key());
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
            for row in 0..table.rows.len() {
                let vals: Vec<Scalar> = parts
                    .iter()
                    .map(|(v, col)| cell(v, *col, row, true))
                    .collect::<Result<_, _>>()?;
                if vals.iter().any(|v| matches!(v, Scalar::Na)) {
                    ks.push(None);
                } else {
                    ks.push(Some(Key::I(composed_key(&vals))));
                }
                for ((v, _), val) in parts.iter().zip(vals) {
                    comps.entry(v.name.clone()).or_default().push(val);
                }
            }
        }
        keys.push(ks);
        comp_values.push(comps);
    }
    // variables
    let mut var_cols: Vec<Vec<Scalar>> = Vec::new();
    for v in &data_vars {
        let col = column(table, v, &node.path)?;
        let mut vals = Vec::with_capacity(table.rows.len());
        for row in 0..table.rows.len() {
            vals.push(cell(v, col, row, false)?);
        }
        var_cols.push(vals);
    }
    // drop rows with an NA coordinate; later duplicates win
    let mut seen: HashMap<Vec<Key>, usize> = HashMap::new();
    let mut kept: Vec<usize> = Vec::new();
    for row in 0..table.rows.len() {
        let k: Option<Vec<Key>> = keys.iter().map(|ks| ks[row].clone()).collect();
        let Some(k) = k else {
            out.rows_dropped += 1;
            continue;
        };
        match seen.get(&k) {
            Some(&slot) => {
                kept[slot] = row;
                out.duplicates += 1;
            }
            None => {
                seen.insert(k, kept.len());
                kept.push(row);
            }
        }
    }
    kept.sort_unstable();
    out.coord_keys = keys
        .iter()
        .map(|ks| kept.iter().filter_map(|&r| ks[r].clone()).collect())
        .collect();
    out.lines = kept.iter().map(|&r| table.lines[r]).collect();
    out.vars = data_vars
        .iter()
        .zip(var_cols)
        .map(|(v, vals)| {
            (
                v.name.clone(),
                kept.iter().map(|&r| vals[r].clone()).collect(),
            )
        })
        .collect();
    for (ci, c) in node.coords.iter().enumerate() {
        for (name, vals) in &comp_values[ci] {
            let m = out.components.entry(name.clone()).or_default();
            for &r in &kept {
                if let Some(k) = &keys[ci][r] {
                    m.insert(k.clone(), vals[r].clone());
                }
            }
        }
        let _ = c;
    }
    out.invalid_to_na = invalid;
    Ok(out)
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
