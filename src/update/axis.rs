//! Merging a coordinate axis (merge-semantics.md §3): sorted union with insertion, append for
//! unsorted and composed coordinates, `no_new`, and `[min, max]` step limits with gap filling.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::keys::{KeyIndex, KeyRef, Keys};
use super::Key;
use crate::schema::{Coord, StepLimits};

/// The merged axis of one coordinate.
#[derive(Debug, Clone)]
pub(crate) struct AxisMerge {
    /// The resulting axis.
    pub axis: Keys,
    /// Values added (contribution values and gap-filling points).
    pub added: usize,
    /// Position of the first value that is not where it was (insertion before stored values),
    /// `None` when the old values keep their positions.
    pub first_shift: Option<usize>,
    /// The stored axis before the merge.
    pub old: Keys,
}

fn num(k: &Key) -> Option<f64> {
    match k {
        Key::I(i) => Some(*i as f64),
        Key::F(f) => Some(f.0),
        Key::S(_) => None,
    }
}

fn between(a: &Key, b: &Key, i: usize, n: usize) -> Key {
    match (a, b) {
        (Key::I(x), Key::I(y)) => {
            Key::I(x + ((y - x) as i128 * i as i128 / (n as i128 + 1)) as i64)
        }
        _ => {
            let (x, y) = (num(a).unwrap_or(0.0), num(b).unwrap_or(0.0));
            Key::f(x + (y - x) * i as f64 / (n as f64 + 1.0))
        }
    }
}

/// Merge `new` (contribution values in row order, duplicates allowed) into `old` (the stored
/// axis, sorted for a sorted coordinate). A sorted axis is merged by sorting the new values
/// (8 bytes a value for numbers), an unsorted one with an index of positions (4 bytes a value);
/// only step limits with bounds go through a tree of keys.
pub(crate) fn merge_axis(coord: &Coord, old: Keys, new: &Keys) -> AxisMerge {
    if matches!(coord.step_limits, StepLimits::Bounds(..)) && coord.sorted {
        return merge_bounded(coord, old, new);
    }
    let no_new = coord.step_limits == StepLimits::NoNew && !old.is_empty();
    let fresh = if coord.sorted {
        sorted_fresh(&old, new)
    } else {
        fresh_in_order(&old, new)
    };
    if no_new {
        return AxisMerge {
            axis: old.clone(),
            added: 0,
            first_shift: None,
            old,
        };
    }
    let added = fresh.len();
    let axis = if old.is_empty() {
        fresh // a first load: the new values are the axis (no second copy)
    } else if coord.sorted {
        sorted_union(&old, &fresh)
    } else {
        let mut axis = if old.is_empty() {
            fresh.with_capacity_like(added)
        } else {
            old.with_capacity_like(old.len() + added)
        };
        old.iter()
            .chain(fresh.iter())
            .for_each(|k| axis.push_ref(k));
        axis
    };
    let first_shift = (0..old.len()).position(|i| old.get(i) != axis.get(i));
    AxisMerge {
        axis,
        added,
        first_shift,
        old,
    }
}

/// A first load of a sorted numeric coordinate: the contribution's dictionary `dict` (distinct
/// values) becomes the axis, sorted in place, and the axis position of each dictionary value is
/// returned by dictionary index. At the peak 16 bytes a value (values, order, positions) instead
/// of 20 for a sorted copy next to the dictionary and positions found by binary search. Gives
/// `dict` back unchanged for strings, mixed kinds or repeated values.
pub(crate) fn first_load_sorted(dict: Keys) -> Result<(Keys, Vec<u32>), Keys> {
    fn go<T: Copy>(
        mut v: Vec<T>,
        cmp: impl Fn(&T, &T) -> Ordering,
    ) -> Result<(Vec<T>, Vec<u32>), Vec<T>> {
        if v.len() >= u32::MAX as usize {
            return Err(v);
        }
        let mut order: Vec<u32> = (0..v.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| cmp(&v[a as usize], &v[b as usize]));
        if order
            .windows(2)
            .any(|w| cmp(&v[w[0] as usize], &v[w[1] as usize]) != Ordering::Less)
        {
            return Err(v);
        }
        let mut pos = vec![0u32; v.len()];
        for (r, &i) in order.iter().enumerate() {
            pos[i as usize] = r as u32;
        }
        drop(order);
        v.sort_unstable_by(cmp);
        Ok((v, pos))
    }
    match dict {
        Keys::I(v) => go(v, i64::cmp)
            .map(|(v, p)| (Keys::I(v), p))
            .map_err(Keys::I),
        Keys::F(v) => go(v, f64::total_cmp)
            .map(|(v, p)| (Keys::F(v), p))
            .map_err(Keys::F),
        other => Err(other),
    }
}

/// The distinct values of `new` not in `old` (sorted), in order.
fn sorted_fresh(old: &Keys, new: &Keys) -> Keys {
    let absent = |k: KeyRef| old.binary_search(k).is_err();
    match new {
        Keys::I(v) => {
            let mut f = v.clone();
            f.sort_unstable();
            f.dedup();
            f.retain(|x| absent(KeyRef::I(*x)));
            Keys::I(f)
        }
        Keys::F(v) => {
            let mut f = v.clone();
            f.sort_unstable_by(f64::total_cmp);
            f.dedup_by(|a, b| a.total_cmp(b) == Ordering::Equal);
            f.retain(|x| absent(KeyRef::F(*x)));
            Keys::F(f)
        }
        _ => {
            let mut f: Vec<Key> = new.iter().map(KeyRef::to_key).collect();
            f.sort();
            f.dedup();
            f.retain(|k| absent(k.as_ref()));
            f.into_iter().collect()
        }
    }
}

/// The distinct values of `new` not in `old`, in order of first appearance.
fn fresh_in_order(old: &Keys, new: &Keys) -> Keys {
    let old_ix = KeyIndex::of(old);
    let mut fresh = new.with_capacity_like(0);
    let mut fresh_ix = KeyIndex::default();
    for k in new.iter() {
        if old_ix.get(old, k).is_none() && fresh_ix.get(&fresh, k).is_none() {
            fresh.push_ref(k);
            fresh_ix.insert(&fresh, fresh.len() - 1);
        }
    }
    fresh
}

/// Union of two sorted lists without common values.
fn sorted_union(old: &Keys, fresh: &Keys) -> Keys {
    if let (Keys::I(a), Keys::I(b)) = (old, fresh) {
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i] < b[j] {
                out.push(a[i]);
                i += 1;
            } else {
                out.push(b[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        return Keys::I(out);
    }
    let mut out = if old.is_empty() {
        fresh.with_capacity_like(fresh.len())
    } else {
        old.with_capacity_like(old.len() + fresh.len())
    };
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < fresh.len() {
        if j == fresh.len() || (i < old.len() && old.get(i) < fresh.get(j)) {
            out.push_ref(old.get(i));
            i += 1;
        } else {
            out.push_ref(fresh.get(j));
            j += 1;
        }
    }
    out
}

/// A sorted axis with `[min, max]` step limits: new values closer than `min` to a neighbour are
/// refused, gaps wider than `max` are filled.
fn merge_bounded(coord: &Coord, old_keys: Keys, new_keys: &Keys) -> AxisMerge {
    let old: Vec<Key> = old_keys.iter().map(KeyRef::to_key).collect();
    let fresh: Vec<Key> = sorted_fresh(&old_keys, new_keys)
        .iter()
        .map(KeyRef::to_key)
        .collect();
    let mut fresh = fresh;
    let mut result: BTreeSet<Key> = old.iter().cloned().collect();
    let mut added = 0;
    match coord.step_limits {
        StepLimits::Bounds(min, _) => {
            fresh.sort();
            for k in fresh {
                let Some(x) = num(&k) else {
                    result.insert(k);
                    added += 1;
                    continue;
                };
                let below = result.range(..k.clone()).next_back().and_then(num);
                let above = result.range(k.clone()..).next().and_then(num);
                let close =
                    below.is_some_and(|b| x - b < min) || above.is_some_and(|a| a - x < min);
                if !close {
                    result.insert(k);
                    added += 1;
                }
            }
        }
        _ => {
            added += fresh.len();
            result.extend(fresh);
        }
    }
    let mut axis: Vec<Key> = result.into_iter().collect();
    if let StepLimits::Bounds(_, max) = coord.step_limits {
        let mut filled = Vec::with_capacity(axis.len());
        for w in axis.windows(2) {
            filled.push(w[0].clone());
            if let (Some(a), Some(b)) = (num(&w[0]), num(&w[1])) {
                if b - a > max {
                    let n = ((b - a) / max).ceil() as usize - 1;
                    for i in 1..=n {
                        filled.push(between(&w[0], &w[1], i, n));
                        added += 1;
                    }
                }
            }
        }
        if let Some(last) = axis.last() {
            filled.push(last.clone());
        }
        axis = filled;
    }
    let first_shift = old.iter().zip(&axis).position(|(a, b)| a != b);
    AxisMerge {
        axis: axis.into_iter().collect(),
        added,
        first_shift,
        old: old_keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_load_sorts_in_place_and_maps_every_value() {
        // a scrambled dictionary (distinct values), as a contribution's first appearance order
        let dict: Vec<i64> = (0..1000i64).map(|i| (i * 7919) % 1000 - 500).collect();
        let (axis, pos) = first_load_sorted(Keys::I(dict.clone())).unwrap();
        let Keys::I(sorted) = &axis else {
            panic!("kind changed")
        };
        assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sorted.len(), dict.len());
        for (i, v) in dict.iter().enumerate() {
            assert_eq!(sorted[pos[i] as usize], *v, "dictionary index {i}");
        }
        // the same axis as the general merge of a first load
        assert_eq!(sorted_fresh(&Keys::I(vec![]), &Keys::I(dict)), axis);

        let floats = vec![2.5, -0.5, 1e9, -3.0];
        let (axis, pos) = first_load_sorted(Keys::F(floats.clone())).unwrap();
        assert_eq!(axis, Keys::F(vec![-3.0, -0.5, 2.5, 1e9]));
        assert_eq!(pos, vec![2, 1, 3, 0]);
        // repeated values or strings: given back as they were
        assert_eq!(
            first_load_sorted(Keys::I(vec![3, 1, 3])).unwrap_err(),
            Keys::I(vec![3, 1, 3])
        );
        let s = Keys::S(vec!["b".into(), "a".into()]);
        assert_eq!(first_load_sorted(s.clone()).unwrap_err(), s);
    }
}
