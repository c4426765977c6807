//! Dense in-memory blocks of an array and their chunk I/O: reading bands of whole chunk rows,
//! writing the changed chunks several at once, integers in their stored type.

use std::sync::Arc;

use zarrs::array::Array;

use super::convert;
use super::keys::{KeyRef, Keys};
use super::layout::{
    int_storage, open_array, store_array_metadata, zerr, IntElement, IntStore, Kind, Store,
};
use super::{Scalar, UpdateError};

/// In-memory dense array.
#[derive(Clone, Debug)]
pub(crate) enum Dense {
    F(Vec<f64>),
    I(Vec<i64>, i64),
    S(Vec<String>),
}

impl Dense {
    pub(crate) fn na(k: Kind, n: usize) -> Dense {
        match k {
            Kind::F64 => Dense::F(vec![f64::NAN; n]),
            Kind::I64(na) => Dense::I(vec![na; n], na),
            Kind::Str => Dense::S(vec![String::new(); n]),
        }
    }
    pub(crate) fn len(&self) -> usize {
        match self {
            Dense::F(v) => v.len(),
            Dense::I(v, _) => v.len(),
            Dense::S(v) => v.len(),
        }
    }
    /// Every value, as scalars.
    pub(crate) fn scalars(&self) -> Vec<Scalar> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    pub(crate) fn get(&self, i: usize) -> Scalar {
        match self {
            Dense::F(v) if v[i].is_nan() => Scalar::Na,
            Dense::F(v) => Scalar::F(v[i]),
            Dense::I(v, na) if v[i] == *na => Scalar::Na,
            Dense::I(v, _) => Scalar::I(v[i]),
            Dense::S(v) if v[i].is_empty() => Scalar::Na,
            Dense::S(v) => Scalar::S(v[i].clone()),
        }
    }
    pub(crate) fn set(&mut self, i: usize, s: &Scalar) {
        match (self, s) {
            (Dense::F(v), Scalar::F(x)) => v[i] = *x,
            (Dense::F(v), Scalar::I(x)) => v[i] = *x as f64,
            (Dense::F(v), _) => v[i] = f64::NAN,
            (Dense::I(v, _), Scalar::I(x)) => v[i] = *x,
            (Dense::I(v, _), Scalar::F(x)) => v[i] = *x as i64,
            (Dense::I(v, na), _) => v[i] = *na,
            (Dense::S(v), Scalar::S(x)) => v[i].clone_from(x),
            (Dense::S(v), Scalar::Na) => v[i].clear(),
            (Dense::S(v), other) => v[i] = format!("{other:?}"),
        }
    }
    pub(crate) fn set_value(&mut self, i: usize, src: &convert::Values, r: usize) {
        match (self, src) {
            (Dense::F(a), convert::Values::F(b)) => a[i] = b[r],
            (Dense::I(a, na), convert::Values::I(b)) => a[i] = b[r].unwrap_or(*na),
            (me, src) => me.set(i, &src.get(r)),
        }
    }
    /// Whether cell `i` holds what `set_value(i, src, r)` would write.
    pub(crate) fn same_as(&self, i: usize, src: &convert::Values, r: usize) -> bool {
        match (self, src) {
            (Dense::F(a), convert::Values::F(b)) => {
                a[i] == b[r] || (a[i].is_nan() && b[r].is_nan())
            }
            (Dense::I(a, na), convert::Values::I(b)) => a[i] == b[r].unwrap_or(*na),
            (me, src) => me.get(i) == src.get(r),
        }
    }
    pub(crate) fn copy_from(&mut self, i: usize, src: &Dense, j: usize) {
        match (self, src) {
            (Dense::F(a), Dense::F(b)) => a[i] = b[j],
            (Dense::I(a, _), Dense::I(b, _)) => a[i] = b[j],
            (Dense::S(a), Dense::S(b)) => a[i].clone_from(&b[j]),
            (me, other) => {
                let s = other.get(j);
                me.set(i, &s);
            }
        }
    }
}

/// A whole array of the transaction, read chunk by chunk.
pub(crate) async fn read_dense(
    store: &Arc<Store>,
    path: &str,
    k: Kind,
) -> Result<(Array<Store>, Dense), UpdateError> {
    let arr = open_array(store, path).await?;
    let shape = arr.shape().to_vec();
    let len0 = shape.first().copied().unwrap_or(1);
    let d = read_band(&arr, &shape, 0, len0, k).await?;
    Ok((arr, d))
}

/// Rows of the chunk at `start` with shape `cshape` (C order) that lie inside `shape`, as
/// (offset in the chunk, offset in the array, length).
pub(crate) fn chunk_rows(
    shape: &[u64],
    start: &[u64],
    cshape: &[u64],
) -> Vec<(usize, usize, usize)> {
    let nd = shape.len();
    if nd == 0 {
        return vec![(0, 0, 1)];
    }
    let st = strides(shape);
    let last = nd - 1;
    let row_len = cshape[last] as usize;
    let valid = shape[last].saturating_sub(start[last]).min(cshape[last]) as usize;
    let mut rows = Vec::new();
    let mut idx = vec![0u64; nd]; // odometer over all but the last dimension
    let mut chunk_off = 0usize;
    loop {
        if (0..last).all(|d| start[d] + idx[d] < shape[d]) && valid > 0 {
            let off: usize = (0..last)
                .map(|d| (start[d] + idx[d]) as usize * st[d])
                .sum::<usize>()
                + start[last] as usize;
            rows.push((chunk_off, off, valid));
        }
        chunk_off += row_len;
        let mut d = last;
        loop {
            if d == 0 {
                return rows;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < cshape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Copy a decoded chunk into `dst`, which holds the flat positions `from..from + dst.len()` of
/// an array of shape `shape` (C order): what lies outside is left out.
pub(crate) fn scatter<T: Clone>(
    dst: &mut [T],
    from: usize,
    shape: &[u64],
    start: &[u64],
    cshape: &[u64],
    chunk: &[T],
) {
    let to = from + dst.len();
    for (c, a, n) in chunk_rows(shape, start, cshape) {
        let (a0, a1) = (a.max(from), (a + n).min(to));
        if a0 < a1 {
            if let Some(src) = chunk.get(c + (a0 - a)..c + (a1 - a)) {
                dst[a0 - from..a1 - from].clone_from_slice(src);
            }
        }
    }
}

/// Copy the part of `v` (C order, `shape`) that chunk `start`/`cshape` covers into a chunk
/// buffer; positions beyond `shape` get `fill`.
pub(crate) fn gather<T: Clone>(
    v: &[T],
    shape: &[u64],
    start: &[u64],
    cshape: &[u64],
    fill: &T,
) -> Vec<T> {
    let n: usize = cshape.iter().product::<u64>() as usize;
    let mut out = vec![fill.clone(); n];
    for (c, a, len) in chunk_rows(shape, start, cshape) {
        out[c..c + len].clone_from_slice(&v[a..a + len]);
    }
    out
}

/// The chunk coordinates of chunk number `flat` (C order) in a grid of shape `grid`.
pub(crate) fn chunk_index(flat: u64, grid: &[u64]) -> Vec<u64> {
    let mut idx = vec![0u64; grid.len()];
    let mut r = flat;
    for d in (0..grid.len()).rev() {
        idx[d] = r % grid[d];
        r /= grid[d];
    }
    idx
}

pub(crate) fn strides(shape: &[u64]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as usize;
    }
    s
}

/// Chunks encoded and stored at once (their I/O overlaps; memory stays bounded).
pub(crate) const CHUNKS_IN_FLIGHT: usize = 8;

/// Write the chunks of `arr` (resized to `shape`) selected by `dirty`.
pub(crate) async fn write_dense(
    arr: &mut Array<Store>,
    shape: Vec<u64>,
    data: &Dense,
    dirty: &(dyn Fn(&[u64], &[u64]) -> bool + Sync),
) -> Result<(), UpdateError> {
    if arr.shape() != shape.as_slice() {
        arr.set_shape(shape.clone()).map_err(zerr)?;
        store_array_metadata(arr).await?;
    }
    let len0 = shape.first().copied().unwrap_or(1);
    let todo = band_chunks(arr, &shape, 0, len0, dirty)?;
    write_chunks(arr, &shape, 0, data, todo).await
}

/// A chunk to write: (chunk index, start, chunk shape).
pub(crate) type ChunkAt = (Vec<u64>, Vec<u64>, Vec<u64>);

/// The chunks of `arr` (shape `shape`) whose first-dimension positions lie in `[lo, hi)` and
/// that `dirty` selects.
pub(crate) fn band_chunks(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    dirty: &(dyn Fn(&[u64], &[u64]) -> bool + Sync),
) -> Result<Vec<ChunkAt>, UpdateError> {
    if shape.contains(&0) {
        return Ok(vec![]);
    }
    let cshape: Vec<u64> = arr
        .chunk_shape(&vec![0; shape.len()])
        .map_err(zerr)?
        .iter()
        .map(|x| x.get())
        .collect();
    let mut grid: Vec<u64> = shape
        .iter()
        .zip(&cshape)
        .map(|(n, c)| n.div_ceil(*c))
        .collect();
    let first = cshape.first().map_or(0, |c| lo / c);
    if let (Some(g), Some(c)) = (grid.first_mut(), cshape.first()) {
        *g = hi.div_ceil(*c) - first;
    }
    let mut out = vec![];
    for flat in 0..grid.iter().product::<u64>() {
        let mut idx = chunk_index(flat, &grid);
        if let Some(i) = idx.first_mut() {
            *i += first;
        }
        let start: Vec<u64> = idx.iter().zip(&cshape).map(|(i, c)| i * c).collect();
        if dirty(&start, &cshape) {
            out.push((idx, start, cshape.clone()));
        }
    }
    Ok(out)
}

/// Store `todo` (chunks inside the band of `data`, which holds positions `[lo, lo + shape[0])`
/// of the first dimension, C order), several at once.
pub(crate) async fn write_chunks(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    data: &Dense,
    todo: Vec<ChunkAt>,
) -> Result<(), UpdateError> {
    use futures::{StreamExt, TryStreamExt};
    let ints = match data {
        Dense::I(..) => Some(int_storage(arr)?),
        _ => None,
    };
    futures::stream::iter(todo)
        .map(|(idx, mut start, cshape)| async move {
            if let Some(s) = start.first_mut() {
                *s -= lo;
            }
            match data {
                Dense::F(v) => {
                    let c = gather(v, shape, &start, &cshape, &f64::NAN);
                    arr.async_store_chunk(&idx, c).await
                }
                Dense::I(v, na) => {
                    let c = gather(v, shape, &start, &cshape, na);
                    match ints {
                        Some((IntStore::I64, fill)) if fill == *na => {
                            arr.async_store_chunk(&idx, c).await
                        }
                        Some((st, fill)) => store_ints(arr, &idx, c, st, fill, *na).await,
                        None => arr.async_store_chunk(&idx, c).await,
                    }
                }
                Dense::S(v) => {
                    let c = gather(v, shape, &start, &cshape, &String::new());
                    arr.async_store_chunk(&idx, c).await
                }
            }
            .map_err(zerr)
        })
        .buffer_unordered(CHUNKS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Positions `[lo, hi)` of the first dimension (all of the others) of `arr` as stored with
/// shape `shape` — possibly smaller than the array's current shape — read chunk by chunk (whole
/// chunks: one object read each, decoded once, several in flight).
pub(crate) async fn read_band(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    k: Kind,
) -> Result<Dense, UpdateError> {
    Ok(match k {
        Kind::F64 => Dense::F(read_band_of(arr, shape, lo, hi, f64::NAN).await?),
        Kind::I64(na) => Dense::I(read_ints(arr, shape, lo, hi, na).await?, na),
        Kind::Str => Dense::S(read_band_of(arr, shape, lo, hi, String::new()).await?),
    })
}

/// Integer cells of a band as i64, whatever the stored type; the stored fill value reads as
/// `na` (a bool array has no NA: false is a value).
pub(crate) async fn read_ints(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    na: i64,
) -> Result<Vec<i64>, UpdateError> {
    async fn wide<T: IntElement>(
        arr: &Array<Store>,
        shape: &[u64],
        (lo, hi): (u64, u64),
        fill: i64,
        na: Option<i64>,
    ) -> Result<Vec<i64>, UpdateError> {
        let v = read_band_of(arr, shape, lo, hi, T::narrow(fill)).await?;
        Ok(v.into_iter()
            .map(|x| match (x.wide(), na) {
                (w, Some(na)) if w == fill => na,
                (w, _) => w,
            })
            .collect())
    }
    let (st, fill) = int_storage(arr)?;
    let (r, m) = ((lo, hi), Some(na));
    match st {
        IntStore::I64 if fill == na => read_band_of(arr, shape, lo, hi, na).await,
        IntStore::I64 => wide::<i64>(arr, shape, r, fill, m).await,
        IntStore::I32 => wide::<i32>(arr, shape, r, fill, m).await,
        IntStore::I16 => wide::<i16>(arr, shape, r, fill, m).await,
        IntStore::I8 => wide::<i8>(arr, shape, r, fill, m).await,
        IntStore::U64 => wide::<u64>(arr, shape, r, fill, m).await,
        IntStore::U32 => wide::<u32>(arr, shape, r, fill, m).await,
        IntStore::U16 => wide::<u16>(arr, shape, r, fill, m).await,
        IntStore::U8 => wide::<u8>(arr, shape, r, fill, m).await,
        IntStore::Bool => wide::<bool>(arr, shape, r, fill, None).await,
    }
}

/// Store a chunk of i64 cells as the array's own integer type (`na` as its fill value).
pub(crate) async fn store_ints(
    arr: &Array<Store>,
    idx: &[u64],
    c: Vec<i64>,
    st: IntStore,
    fill: i64,
    na: i64,
) -> Result<(), zarrs::array::ArrayError> {
    fn narrow<T: IntElement>(c: Vec<i64>, fill: i64, na: i64) -> Vec<T> {
        c.into_iter()
            .map(|x| T::narrow(if x == na { fill } else { x }))
            .collect()
    }
    match st {
        IntStore::I64 => arr.async_store_chunk(idx, narrow::<i64>(c, fill, na)).await,
        IntStore::I32 => arr.async_store_chunk(idx, narrow::<i32>(c, fill, na)).await,
        IntStore::I16 => arr.async_store_chunk(idx, narrow::<i16>(c, fill, na)).await,
        IntStore::I8 => arr.async_store_chunk(idx, narrow::<i8>(c, fill, na)).await,
        IntStore::U64 => arr.async_store_chunk(idx, narrow::<u64>(c, fill, na)).await,
        IntStore::U32 => arr.async_store_chunk(idx, narrow::<u32>(c, fill, na)).await,
        IntStore::U16 => arr.async_store_chunk(idx, narrow::<u16>(c, fill, na)).await,
        IntStore::U8 => arr.async_store_chunk(idx, narrow::<u8>(c, fill, na)).await,
        IntStore::Bool => {
            arr.async_store_chunk(idx, narrow::<bool>(c, fill, na))
                .await
        }
    }
}

pub(crate) async fn read_band_of<T>(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    fill: T,
) -> Result<Vec<T>, UpdateError>
where
    T: zarrs::array::ElementOwned + Clone + Send + Sync,
{
    use futures::StreamExt;
    let rest: u64 = shape.iter().skip(1).product();
    let (from, to) = ((lo * rest) as usize, (hi * rest) as usize);
    let mut out = vec![fill; to - from];
    let todo = band_chunks(arr, shape, lo, hi, &|_, _| true)?;
    let mut reads = futures::stream::iter(todo)
        .map(|(idx, start, cshape)| async move {
            let chunk = arr
                .async_retrieve_chunk::<Vec<T>>(&idx)
                .await
                .map_err(zerr)?;
            Ok::<_, UpdateError>((start, cshape, chunk))
        })
        .buffer_unordered(CHUNKS_IN_FLIGHT);
    while let Some(r) = reads.next().await {
        let (start, cshape, chunk) = r?;
        // the band is a flat range of the array in C order
        scatter(&mut out, from, shape, &start, &cshape, &chunk);
    }
    Ok(out)
}

pub(crate) fn keys_of(d: Dense) -> Keys {
    match d {
        Dense::F(v) => Keys::F(
            v.into_iter()
                .map(|x| if x == 0.0 { 0.0 } else { x })
                .collect(),
        ),
        Dense::I(v, _) => Keys::I(v),
        Dense::S(v) => Keys::S(v),
    }
}

/// A coordinate axis as an array of kind `k`.
pub(crate) fn dense_of(k: Kind, axis: &Keys) -> Dense {
    match (k, axis) {
        (Kind::I64(na), Keys::I(v)) => Dense::I(v.clone(), na),
        (Kind::F64, Keys::F(v)) => Dense::F(v.clone()),
        _ => {
            let mut d = Dense::na(k, axis.len());
            for (i, key) in axis.iter().enumerate() {
                d.set(i, &key_scalar(key));
            }
            d
        }
    }
}

pub(crate) fn key_scalar(k: KeyRef) -> Scalar {
    match k {
        KeyRef::I(i) => Scalar::I(i),
        KeyRef::F(f) => Scalar::F(f),
        KeyRef::S(s) => Scalar::S(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_scatter_round_trip_with_edge_chunks() {
        // a 5 x 3 array in chunks of 2 x 2: edge chunks stick out on both dimensions
        let shape = [5u64, 3];
        let v: Vec<i64> = (0..15).collect();
        let mut back = vec![-1i64; 15];
        for (ci, cj) in [(0u64, 0u64), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)] {
            let start = [ci * 2, cj * 2];
            let chunk = gather(&v, &shape, &start, &[2, 2], &-9);
            assert_eq!(chunk.len(), 4);
            // what sticks out is the fill value, the rest the array's values in C order
            for (k, x) in chunk.iter().enumerate() {
                let (i, j) = (start[0] + k as u64 / 2, start[1] + k as u64 % 2);
                let want = if i < 5 && j < 3 {
                    (i * 3 + j) as i64
                } else {
                    -9
                };
                assert_eq!(*x, want, "chunk {ci},{cj} element {k}");
            }
            scatter(&mut back, 0, &shape, &start, &[2, 2], &chunk);
        }
        assert_eq!(back, v);
        assert_eq!(chunk_index(5, &[3, 2]), vec![2, 1]);
    }
}
