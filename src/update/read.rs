//! Reading nodes back: whole nodes, one variable, an axis (or the part of a sorted one in a
//! range, by binary search), and which cells hold a value.

use std::collections::HashMap;
use std::sync::Arc;

use zarrs::array::Array;

use super::dense::{read_band, read_dense, strides};
use super::layout::{array_path, coord_kind, kind, open_array, stored_schema, zerr, Kind, Store};
use super::{Key, Scalar, UpdateError};
use crate::repo::Repo;
use crate::schema::{NodeSchema, Variable};

/// A variable read back: name, dimensions, shape, values in C order.
pub type VarData = (String, Vec<String>, Vec<u64>, Vec<Scalar>);

/// A node read back: coordinates and variables with their values.
#[derive(Clone, Debug, Default)]
pub struct NodeData {
    /// Coordinate name → values (composed: the keys).
    pub coords: Vec<(String, Vec<Scalar>)>,
    /// Variable name → (dims, shape, values in C order).
    pub vars: Vec<VarData>,
}

/// One variable of `node` at a snapshot's `store`: its shape and cells in C order (NA where
/// no contribution wrote).
pub(crate) async fn read_var(
    store: &Arc<Store>,
    node: &NodeSchema,
    v: &Variable,
) -> Result<(Vec<u64>, Vec<Scalar>), UpdateError> {
    let (arr, d) = read_dense(store, &array_path(&node.path, &v.name), kind(v)).await?;
    Ok((arr.shape().to_vec(), d.scalars()))
}

/// Which of `cells` (coordinate values in the order of `var`'s dimensions) hold a value in
/// `var` of `node` at a snapshot's `store`.
pub async fn cells_with_values(
    store: &Arc<Store>,
    node: &NodeSchema,
    var: &Variable,
    cells: &[Vec<Key>],
) -> Result<Vec<bool>, UpdateError> {
    let mut at: Vec<HashMap<Key, usize>> = Vec::new();
    for d in &var.coords {
        let axis = read_axis(store, node, d, None).await?;
        at.push(
            axis.iter()
                .enumerate()
                .filter_map(|(i, s)| s.key().map(|k| (k, i)))
                .collect(),
        );
    }
    let (shape, values) = read_var(store, node, var).await?;
    let st = strides(&shape);
    Ok(cells
        .iter()
        .map(|cell| {
            let flat: Option<usize> = cell
                .iter()
                .zip(&at)
                .zip(&st)
                .map(|((k, pos), s)| pos.get(k).map(|p| p * s))
                .sum();
            flat.and_then(|f| values.get(f))
                .is_some_and(|v| !matches!(v, Scalar::Na))
        })
        .collect())
}

/// Read node `path` at commit `id`.
pub async fn read_node(
    repo: &Repo,
    id: &icechunk::format::SnapshotId,
    path: &str,
) -> Result<NodeData, UpdateError> {
    let store: Arc<Store> = repo.read_store(id).await?;
    let schema = stored_schema(&store).await?;
    let node = super::require_node(&schema, path)?;
    let mut out = NodeData::default();
    for c in &node.coords {
        let values = read_axis(&store, node, c.name(), None).await?;
        out.coords.push((c.name().to_string(), values));
    }
    for v in &node.vars {
        let (arr, d) = read_dense(&store, &array_path(&node.path, &v.name), kind(v)).await?;
        out.vars.push((
            v.name.clone(),
            v.coords.clone(),
            arr.shape().to_vec(),
            d.scalars(),
        ));
    }
    Ok(out)
}

/// The values of coordinate `coord` of `node` at a snapshot's `store`; with `range`, only those
/// in `lo..=hi`. On a sorted coordinate the range is found by binary search, reading only the
/// chunks the search visits and those of the range (blame of a few cells on a long axis).
pub async fn read_axis(
    store: &Arc<Store>,
    node: &NodeSchema,
    coord: &str,
    range: Option<(&Key, &Key)>,
) -> Result<Vec<Scalar>, UpdateError> {
    let c = node.coord(coord).ok_or_else(|| {
        UpdateError::Invalid(format!("no coordinate '{coord}' in node '{}'", node.path))
    })?;
    let k = coord_kind(c);
    let arr = open_array(store, &array_path(&node.path, c.name())).await?;
    let shape = arr.shape().to_vec();
    let n = shape.first().copied().unwrap_or(0);
    let (from, to) = match range.filter(|_| c.sorted && shape.len() == 1) {
        Some((lo, hi)) => sorted_span(&arr, &shape, k, lo, hi)
            .await?
            .unwrap_or((0, n)),
        None => (0, n),
    };
    if from >= to {
        return Ok(vec![]);
    }
    let values = read_band(&arr, &shape, from, to, k).await?.scalars();
    Ok(match range {
        Some((lo, hi)) => values
            .into_iter()
            .filter(|v| v.key().is_some_and(|x| x >= *lo && x <= *hi))
            .collect(),
        None => values,
    })
}

/// Positions `[from, to)` of the values in `lo..=hi` on a sorted 1-D axis, by binary search
/// reading one chunk per probe (`None`: an NA value on the axis, which is then not searchable).
pub(crate) async fn sorted_span(
    arr: &Array<Store>,
    shape: &[u64],
    k: Kind,
    lo: &Key,
    hi: &Key,
) -> Result<Option<(u64, u64)>, UpdateError> {
    let n = shape.first().copied().unwrap_or(0);
    let chunk = arr
        .chunk_shape(&[0])
        .map_err(zerr)?
        .first()
        .map_or(n, |x| x.get());
    let mut cache: HashMap<u64, Vec<Scalar>> = HashMap::new();
    // the first position whose value is not below `lo`, and the first above `hi`
    let mut ends = [0u64; 2];
    for (end, (bound, past)) in ends.iter_mut().zip([(lo, false), (hi, true)]) {
        let mut span = (0u64, n);
        while span.0 < span.1 {
            let mid = span.0 + (span.1 - span.0) / 2;
            let ci = mid / chunk;
            let values = match cache.entry(ci) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let to = ((ci + 1) * chunk).min(n);
                    e.insert(read_band(arr, shape, ci * chunk, to, k).await?.scalars())
                }
            };
            let Some(key) = values[(mid - ci * chunk) as usize].key() else {
                return Ok(None);
            };
            if (past && key <= *bound) || (!past && key < *bound) {
                span.0 = mid + 1;
            } else {
                span.1 = mid;
            }
        }
        *end = span.0;
    }
    Ok(Some((ends[0], ends[1])))
}
