//! Merging a coordinate axis (merge-semantics.md §3): sorted union with insertion, append for
//! unsorted and composed coordinates, `no_new`, and `[min, max]` step limits with gap filling.

use std::collections::{BTreeSet, HashSet};

use super::Key;
use crate::schema::{Coord, StepLimits};

/// The merged axis of one coordinate.
#[derive(Debug, Clone)]
pub struct AxisMerge {
    /// The resulting axis.
    pub axis: Vec<Key>,
    /// Contribution values that were not admitted (their rows lose their cells).
    pub dropped: HashSet<Key>,
    /// Values added (contribution values and gap-filling points).
    pub added: usize,
    /// Position of the first value that is not where it was (insertion before stored values),
    /// `None` when the old values keep their positions.
    pub first_shift: Option<usize>,
    /// The stored axis before the merge.
    pub old: Vec<Key>,
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
/// axis, sorted for a sorted coordinate).
pub fn merge_axis(coord: &Coord, old: Vec<Key>, new: &[Key]) -> AxisMerge {
    let old_set: HashSet<&Key> = old.iter().collect();
    let mut seen: HashSet<&Key> = HashSet::new();
    let mut fresh: Vec<&Key> = new
        .iter()
        .filter(|k| !old_set.contains(k) && seen.insert(k))
        .collect();
    drop((old_set, seen));
    let mut dropped = HashSet::new();
    if coord.step_limits == StepLimits::NoNew && !old.is_empty() {
        dropped.extend(fresh.drain(..).cloned());
    }
    if !coord.sorted {
        let added = fresh.len();
        let mut axis = old.clone();
        axis.extend(fresh.into_iter().cloned());
        return AxisMerge {
            axis,
            dropped,
            added,
            first_shift: None,
            old,
        };
    }
    if !matches!(coord.step_limits, StepLimits::Bounds(..)) {
        // sorted union of two sorted lists, no tree
        fresh.sort();
        let added = fresh.len();
        let mut axis = Vec::with_capacity(old.len() + added);
        let mut fresh = fresh.into_iter().peekable();
        for k in &old {
            while let Some(f) = fresh.next_if(|f| *f < k) {
                axis.push(f.clone());
            }
            axis.push(k.clone());
        }
        axis.extend(fresh.cloned());
        let first_shift = old.iter().zip(&axis).position(|(a, b)| a != b);
        return AxisMerge {
            axis,
            dropped,
            added,
            first_shift,
            old,
        };
    }
    let mut fresh: Vec<Key> = fresh.into_iter().cloned().collect();
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
                if close {
                    dropped.insert(k);
                } else {
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
        axis,
        dropped,
        added,
        first_shift,
        old,
    }
}
