//! `interpolate: linear|nearest` on a sorted coordinate (merge-semantics.md §3): contribution
//! values strictly inside the stored axis are interpolated onto the existing points within the
//! contribution's own range instead of being inserted; values beyond the stored range stay.

use std::collections::BTreeMap;

use super::convert::{Converted, CoordColumn, Values};
use super::{Key, Scalar};
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
/// existing points of `old`, interpolated per group of the other coordinates.
pub fn interpolate(conv: &Converted, ci: usize, old: &[Key], method: Interpolate) -> Converted {
    let (Some(lo), Some(hi)) = (old.first().and_then(num), old.last().and_then(num)) else {
        return clone(conv);
    };
    let rows = conv.lines.len();
    let inside: Vec<bool> = (0..rows)
        .map(|r| num(conv.coords[ci].key(r)).is_some_and(|x| x > lo && x < hi))
        .collect();
    if !inside.iter().any(|b| *b) {
        return clone(conv);
    }
    let mut keys: Vec<Vec<Key>> = vec![vec![]; conv.coords.len()];
    let mut vars: Vec<(String, Values)> = conv
        .vars
        .iter()
        .map(|(n, v)| (n.clone(), v.empty_like()))
        .collect();
    let mut lines = super::convert::Lines::default();
    let mut push = |row_keys: Vec<Key>, vals: Vec<Scalar>, line: u64| {
        for (d, k) in row_keys.into_iter().enumerate() {
            keys[d].push(k);
        }
        for (v, s) in vals.into_iter().enumerate() {
            vars[v].1.push(s);
        }
        lines.push(line);
    };
    // rows outside stay as they are
    for r in (0..rows).filter(|r| !inside[*r]) {
        let row_keys = conv.coords.iter().map(|c| c.key(r).clone()).collect();
        let vals = conv.vars.iter().map(|(_, v)| v.get(r)).collect();
        push(row_keys, vals, conv.lines.get(r));
    }
    // inside rows: grouped by the other coordinates
    let mut groups: BTreeMap<Vec<Key>, Vec<usize>> = BTreeMap::new();
    for r in (0..rows).filter(|r| inside[*r]) {
        let g: Vec<Key> = conv
            .coords
            .iter()
            .enumerate()
            .filter(|(d, _)| *d != ci)
            .map(|(_, c)| c.key(r).clone())
            .collect();
        groups.entry(g).or_default().push(r);
    }
    let old_x: Vec<(f64, &Key)> = old.iter().filter_map(|k| num(k).map(|x| (x, k))).collect();
    for (g, members) in groups {
        let xs: Vec<f64> = members
            .iter()
            .filter_map(|&r| num(conv.coords[ci].key(r)))
            .collect();
        let (xmin, xmax) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        let per_var: Vec<Vec<(f64, Scalar)>> = conv
            .vars
            .iter()
            .map(|(_, vals)| {
                let mut p: Vec<(f64, Scalar)> = members
                    .iter()
                    .filter(|&&r| !vals.is_na(r))
                    .filter_map(|&r| num(conv.coords[ci].key(r)).map(|x| (x, vals.get(r))))
                    .collect();
                p.sort_by(|a, b| a.0.total_cmp(&b.0));
                p
            })
            .collect();
        for (p, key) in old_x.iter().filter(|(x, _)| *x >= xmin && *x <= xmax) {
            let mut row_keys = Vec::with_capacity(conv.coords.len());
            let mut other = g.iter();
            for d in 0..conv.coords.len() {
                row_keys.push(if d == ci {
                    (*key).clone()
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
    Converted {
        coords: keys.into_iter().map(CoordColumn::from_keys).collect(),
        vars,
        lines,
        ..clone_counts(conv)
    }
}

fn clone_counts(c: &Converted) -> Converted {
    Converted {
        components: c.components.clone(),
        rows_read: c.rows_read,
        rows_dropped: c.rows_dropped,
        duplicates: c.duplicates,
        invalid_to_na: c.invalid_to_na,
        ..Default::default()
    }
}

fn clone(c: &Converted) -> Converted {
    Converted {
        coords: c.coords.clone(),
        vars: c.vars.clone(),
        lines: c.lines.clone(),
        ..clone_counts(c)
    }
}
