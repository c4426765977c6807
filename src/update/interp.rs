//! `interpolate: linear|nearest` on a sorted coordinate (merge-semantics.md §3): contribution
//! values strictly inside the stored axis are interpolated onto the existing points within the
//! contribution's own range instead of being inserted; values beyond the stored range stay.

use std::collections::{BTreeMap, HashMap};

use super::convert::{Converted, Values};
use super::keys::{KeyRef, Keys};
use super::rows::{RowBlock, Rows};
use super::{Key, Scalar, UpdateError};
use crate::schema::Interpolate;

fn num(k: &Key) -> Option<f64> {
    match k {
        Key::I(i) => Some(*i as f64),
        Key::F(f) => Some(f.0),
        Key::S(_) => None,
    }
}

fn value_at(points: &[(f64, Scalar)], p: f64, method: Interpolate) -> Scalar {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Scalar::Na;
    };
    if p < first.0 || p > last.0 {
        return Scalar::Na;
    }
    let numeric = |s: &Scalar| match s {
        Scalar::F(x) => Some(*x),
        Scalar::I(x) => Some(*x as f64),
        _ => None,
    };
    let idx = points.partition_point(|(x, _)| *x < p);
    if let Some((x, v)) = points.get(idx) {
        if *x == p {
            return v.clone();
        }
    }
    // idx > 0 and idx < len here: p is strictly between points[idx-1] and points[idx]
    let (a, b) = (&points[idx - 1], &points[idx]);
    match (method, numeric(&a.1), numeric(&b.1)) {
        (Interpolate::Linear, Some(ya), Some(yb)) => {
            Scalar::F(ya + (yb - ya) * (p - a.0) / (b.0 - a.0))
        }
        _ => {
            if p - a.0 <= b.0 - p {
                a.1.clone()
            } else {
                b.1.clone()
            }
        }
    }
}

/// Replace the rows of `conv` whose coordinate `ci` lies strictly inside `old` by rows on the
/// existing points of `old`, interpolated per group of the other coordinates; `None` when no row
/// lies inside. Works on the rows in memory (interpolated nodes hold small contributions).
pub(super) fn interpolate(
    conv: &Converted,
    ci: usize,
    old: &Keys,
    method: Interpolate,
) -> Result<Option<Converted>, UpdateError> {
    let end = |k: Option<KeyRef>| k.and_then(|k| num(&k.to_key()));
    let (Some(lo), Some(hi)) = (end(old.first()), end(old.last())) else {
        return Ok(None);
    };
    let is_inside = |k: &Key| num(k).is_some_and(|x| x > lo && x < hi);
    if !conv.dicts[ci].iter().any(|k| is_inside(&k.to_key())) {
        return Ok(None);
    }
    let old: Vec<Key> = old.iter().map(KeyRef::to_key).collect();
    let b = conv.rows.to_block()?;
    let rows = b.len;
    let n_coords = conv.dicts.len();
    let key = |d: usize, r: usize| conv.key(d, b.idx[d][r]).to_key();
    let inside: Vec<bool> = (0..rows).map(|r| is_inside(&key(ci, r))).collect();
    let mut keys: Vec<Vec<Key>> = vec![vec![]; n_coords];
    let mut vals_out: Vec<Values> = b.vals.iter().map(Values::empty_like).collect();
    let mut lines = super::convert::Lines::default();
    let mut push = |row_keys: Vec<Key>, vals: Vec<Scalar>, line: u64| {
        for (d, k) in row_keys.into_iter().enumerate() {
            keys[d].push(k);
        }
        for (v, s) in vals.into_iter().enumerate() {
            vals_out[v].push(s);
        }
        lines.push(line);
    };
    // rows outside stay as they are
    for r in (0..rows).filter(|r| !inside[*r]) {
        let row_keys = (0..n_coords).map(|d| key(d, r)).collect();
        let vals = b.vals.iter().map(|v| v.get(r)).collect();
        push(row_keys, vals, conv.lines.get(r));
    }
    // inside rows: grouped by the other coordinates
    let mut groups: BTreeMap<Vec<Key>, Vec<usize>> = BTreeMap::new();
    for r in (0..rows).filter(|r| inside[*r]) {
        let g: Vec<Key> = (0..n_coords)
            .filter(|d| *d != ci)
            .map(|d| key(d, r))
            .collect();
        groups.entry(g).or_default().push(r);
    }
    let old_x: Vec<(f64, &Key)> = old.iter().filter_map(|k| num(k).map(|x| (x, k))).collect();
    for (g, members) in groups {
        let xs: Vec<f64> = members.iter().filter_map(|&r| num(&key(ci, r))).collect();
        let (xmin, xmax) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        let per_var: Vec<Vec<(f64, Scalar)>> = b
            .vals
            .iter()
            .map(|vals| {
                let mut p: Vec<(f64, Scalar)> = members
                    .iter()
                    .filter(|&&r| !vals.is_na(r))
                    .filter_map(|&r| num(&key(ci, r)).map(|x| (x, vals.get(r))))
                    .collect();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                p
            })
            .collect();
        for (p, k) in old_x.iter().filter(|(x, _)| *x >= xmin && *x <= xmax) {
            let mut row_keys = Vec::with_capacity(n_coords);
            let mut other = g.iter();
            for d in 0..n_coords {
                row_keys.push(if d == ci {
                    (*k).clone()
                } else {
                    other.next().cloned().unwrap_or(Key::I(0))
                });
            }
            let vals = per_var
                .iter()
                .map(|pts| value_at(pts, *p, method))
                .collect();
            push(row_keys, vals, conv.lines.get(members[0]));
        }
    }
    // dictionary-encode the new rows
    let mut dicts = Vec::with_capacity(n_coords);
    let mut idx = Vec::with_capacity(n_coords);
    for col in keys {
        let mut map: HashMap<Key, u32> = HashMap::new();
        let mut dict = vec![];
        let ids = col
            .into_iter()
            .map(|k| {
                *map.entry(k).or_insert_with_key(|k| {
                    dict.push(k.clone());
                    (dict.len() - 1) as u32
                })
            })
            .collect();
        dicts.push(dict.into_iter().collect::<Keys>());
        idx.push(ids);
    }
    Ok(Some(Converted {
        dicts,
        components: conv.components.clone(),
        var_names: conv.var_names.clone(),
        rows: Rows::in_memory(RowBlock {
            len: lines.len(),
            idx,
            vals: vals_out,
        }),
        lines,
        rows_read: conv.rows_read,
        rows_dropped: conv.rows_dropped,
        dropped_lines: conv.dropped_lines.clone(),
        duplicates: conv.duplicates,
        invalid_to_na: conv.invalid_to_na,
        keys_released: false,
    }))
}
