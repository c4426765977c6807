//! A column of converted cell values, one per kept row, typed by the stored type: what the
//! converter produces and the spill file stores.

use super::{Scalar, UpdateError};
use crate::schema::DType;

/// The values of one variable, one per kept row, typed by the stored type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    /// Floats; NaN is NA.
    F(Vec<f64>),
    /// Integers and ticks.
    I(Vec<Option<i64>>),
    /// Strings.
    S(Vec<Option<String>>),
}

impl Values {
    pub(crate) fn for_type(d: DType, n: usize) -> Values {
        if d.is_integer() || matches!(d, DType::DateTime(_)) {
            Values::I(Vec::with_capacity(n))
        } else if matches!(d, DType::Str(_)) {
            Values::S(Vec::with_capacity(n))
        } else {
            Values::F(Vec::with_capacity(n))
        }
    }

    pub(crate) fn reserve_exact(&mut self, n: usize) {
        match self {
            Values::F(v) => v.reserve_exact(n),
            Values::I(v) => v.reserve_exact(n),
            Values::S(v) => v.reserve_exact(n),
        }
    }

    /// Values of the same kind as `self`, empty.
    pub(crate) fn empty_like(&self) -> Values {
        match self {
            Values::F(_) => Values::F(vec![]),
            Values::I(_) => Values::I(vec![]),
            Values::S(_) => Values::S(vec![]),
        }
    }

    /// Append a value.
    pub(crate) fn push(&mut self, s: Scalar) {
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
    pub(crate) fn len(&self) -> usize {
        match self {
            Values::F(v) => v.len(),
            Values::I(v) => v.len(),
            Values::S(v) => v.len(),
        }
    }

    /// Value `r`.
    pub(crate) fn get(&self, r: usize) -> Scalar {
        match self {
            Values::F(v) if v[r].is_nan() => Scalar::Na,
            Values::F(v) => Scalar::F(v[r]),
            Values::I(v) => v[r].map_or(Scalar::Na, Scalar::I),
            Values::S(v) => v[r].clone().map_or(Scalar::Na, Scalar::S),
        }
    }

    /// Whether value `r` is NA.
    pub(crate) fn is_na(&self, r: usize) -> bool {
        match self {
            Values::F(v) => v[r].is_nan(),
            Values::I(v) => v[r].is_none(),
            Values::S(v) => v[r].is_none(),
        }
    }

    /// Append value `r` of `src` (of the same kind).
    pub(crate) fn push_from(&mut self, src: &Values, r: usize) {
        match (self, src) {
            (Values::F(v), Values::F(s)) => v.push(s[r]),
            (Values::I(v), Values::I(s)) => v.push(s[r]),
            (Values::S(v), Values::S(s)) => v.push(s[r].clone()),
            (me, src) => me.push(src.get(r)),
        }
    }

    /// Append all values of `src` (of the same kind).
    pub(crate) fn extend(&mut self, src: &Values) {
        match (self, src) {
            (Values::F(v), Values::F(s)) => v.extend_from_slice(s),
            (Values::I(v), Values::I(s)) => v.extend_from_slice(s),
            (Values::S(v), Values::S(s)) => v.extend_from_slice(s),
            (me, src) => (0..src.len()).for_each(|r| me.push(src.get(r))),
        }
    }

    /// Approximate bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Values::F(v) => v.len() * 8,
            Values::I(v) => v.len() * 16,
            Values::S(v) => v
                .iter()
                .map(|s| 24 + s.as_ref().map_or(0, String::len))
                .sum(),
        }
    }

    /// Append values `rows` to `buf` (the encoding [`Values::decode`] reads).
    pub(crate) fn encode(&self, buf: &mut Vec<u8>, rows: std::ops::Range<usize>) {
        match self {
            Values::F(v) => v[rows]
                .iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes())),
            Values::I(v) => {
                let v = &v[rows];
                buf.extend(v.iter().map(|x| u8::from(x.is_some())));
                v.iter()
                    .for_each(|x| buf.extend_from_slice(&x.unwrap_or(0).to_le_bytes()));
            }
            Values::S(v) => {
                for s in &v[rows] {
                    match s {
                        None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
                        Some(s) => {
                            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                            buf.extend_from_slice(s.as_bytes());
                        }
                    }
                }
            }
        }
    }

    /// Replace the values by the `n` values encoded in `buf` by [`Values::encode`].
    pub(crate) fn decode(&mut self, buf: &[u8], n: usize) -> Result<(), UpdateError> {
        let corrupt = || UpdateError::Invalid("temporary file of converted rows is corrupt".into());
        let word = |b: &[u8]| -> [u8; 8] {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            w
        };
        match self {
            Values::F(v) => {
                v.clear();
                v.extend(buf.chunks_exact(8).map(|b| f64::from_le_bytes(word(b))));
            }
            Values::I(v) => {
                v.clear();
                let (tags, words) = buf.split_at(n.min(buf.len()));
                v.extend(
                    tags.iter()
                        .zip(words.chunks_exact(8))
                        .map(|(t, b)| (*t == 1).then(|| i64::from_le_bytes(word(b)))),
                );
            }
            Values::S(v) => {
                v.clear();
                let mut at = 0;
                while at + 4 <= buf.len() {
                    let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
                    at += 4;
                    if len == u32::MAX {
                        v.push(None);
                        continue;
                    }
                    let end = at + len as usize;
                    let text = buf.get(at..end).ok_or_else(corrupt)?;
                    v.push(Some(
                        String::from_utf8(text.to_vec()).map_err(|_| corrupt())?,
                    ));
                    at = end;
                }
            }
        }
        if self.len() != n {
            return Err(corrupt());
        }
        Ok(())
    }
}
