//! Nodes as Zarr groups and arrays: the layout a schema gives (array paths, storage types, fill
//! values, attributes, chunk shapes), creating it, and the metadata every reader accepts.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use zarrs::array::{data_type, Array};
use zarrs_storage::{AsyncReadableWritableListableStorageTraits, StoreKey};

use super::axis::AxisMerge;
use super::convert;
use super::UpdateError;
use crate::provenance::Provenance;
use crate::repo::Repo;
use crate::schema::{self, DType, NodeSchema, Schema, UnitSpec, Variable};

pub(crate) type Store = dyn AsyncReadableWritableListableStorageTraits;

/// How values are held in memory and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    F64,
    I64(i64),
    Str,
}

pub(crate) fn kind(v: &Variable) -> Kind {
    match convert::stored_type(v) {
        DType::F32 | DType::F64 => Kind::F64,
        DType::Str(_) => Kind::Str,
        DType::DateTime(_) => Kind::I64(i64::MIN),
        _ => Kind::I64(
            v.na_value
                .as_ref()
                .and_then(Value::as_i64)
                .unwrap_or(i64::MIN),
        ),
    }
}

pub(crate) fn array_path(node: &str, name: &str) -> String {
    if node.is_empty() {
        format!("/{name}")
    } else {
        format!("/{node}/{name}")
    }
}

pub(crate) fn group_path(node: &str) -> String {
    if node.is_empty() {
        "/".into()
    } else {
        format!("/{node}")
    }
}

pub(crate) fn zerr(e: impl std::fmt::Display) -> UpdateError {
    UpdateError::ArrayStore(crate::repo::one_line(&e.to_string()))
}

pub(crate) fn var_attrs(v: &Variable) -> Map<String, Value> {
    let mut a = v.attrs.clone();
    match &v.unit {
        UnitSpec::Physical(u) if !u.text.is_empty() => {
            a.insert("units".into(), json!(u.text));
        }
        UnitSpec::Time { tick, .. } => {
            a.insert("units".into(), json!(tick.cf_units()));
            a.insert("calendar".into(), json!("proleptic_gregorian"));
        }
        _ => {}
    }
    if let Some(DType::DateTime(t)) = v.dtype {
        a.insert("units".into(), json!(t.cf_units()));
        a.insert("calendar".into(), json!("proleptic_gregorian"));
    }
    if let Some(d) = &v.description {
        a.insert("description".into(), json!(d));
    }
    a
}

/// Chunk length of a dimension whose `chunk_size` is not given, until the node's first write
/// chooses one ([`auto_chunks`]).
pub(crate) const PROVISIONAL_CHUNK: u64 = 1024;

pub(crate) fn chunk_of(node: &NodeSchema, dim: &str) -> u64 {
    node.coord(dim)
        .and_then(|c| c.chunk_size)
        .unwrap_or(PROVISIONAL_CHUNK)
}

/// Elements of 8 bytes in about 1 MiB: the chunk budget of merge-semantics §1.
pub(crate) const CHUNK_BUDGET: u64 = (1 << 20) / 8;

/// The chunk length of every dimension of a node at its first write, when some coordinate has
/// no `chunk_size` (spec/025): an unsorted dimension with n ≤ 1024 distinct values gets n rounded
/// up to a power of two (≥ 16); the other unset dimensions share the rest of the budget
/// (a power of two, ≥ 64); given sizes are kept. `distinct[i]`: values of coordinate i.
pub(crate) fn auto_chunks(node: &NodeSchema, distinct: &[usize]) -> Vec<u64> {
    let mut out: Vec<Option<u64>> = node.coords.iter().map(|c| c.chunk_size).collect();
    for (i, c) in node.coords.iter().enumerate() {
        let n = distinct.get(i).copied().unwrap_or(0) as u64;
        if out[i].is_none() && !c.sorted && n <= 1024 {
            out[i] = Some(n.next_power_of_two().max(16));
        }
    }
    let fixed: u64 = out.iter().flatten().product::<u64>().max(1);
    let rest = out.iter().filter(|c| c.is_none()).count() as u32;
    let share = if rest == 0 {
        0
    } else {
        let each = ((CHUNK_BUDGET / fixed).max(1) as f64).powf(1.0 / f64::from(rest));
        // the largest power of two not above the share
        let p = 1u64 << (each.max(1.0).log2().floor() as u32);
        p.max(64)
    };
    out.into_iter().map(|c| c.unwrap_or(share)).collect()
}

/// At a node's first write (every axis empty before it), arrays of dimensions without a given
/// `chunk_size` get their chunk shape from [`auto_chunks`]: the node's arrays, still empty, are
/// created again with it. Afterwards the shape is read from the arrays and never changes.
pub(crate) async fn choose_chunks_at_first_write(
    store: &Arc<Store>,
    node: &NodeSchema,
    merges: &[AxisMerge],
) -> Result<(), UpdateError> {
    let first = merges.iter().all(|m| m.old.is_empty());
    if !first || node.coords.iter().all(|c| c.chunk_size.is_some()) || merges.is_empty() {
        return Ok(());
    }
    let distinct: Vec<usize> = merges.iter().map(|m| m.axis.len()).collect();
    let chunks = auto_chunks(node, &distinct);
    let by_dim = |d: &str| {
        node.coords
            .iter()
            .position(|c| c.name() == d)
            .map_or(PROVISIONAL_CHUNK, |i| chunks[i])
    };
    create_node_arrays(store, node, &by_dim).await
}

/// Chunk shape of an array as stored.
pub(crate) fn stored_chunks(arr: &Array<Store>) -> Result<Vec<u64>, UpdateError> {
    Ok(arr
        .chunk_shape(&vec![0; arr.dimensionality()])
        .map_err(zerr)?
        .iter()
        .map(|x| x.get())
        .collect())
}

/// Every named configuration of array metadata in the object form `{"name", "configuration"}`
/// (codecs, chunk grid, chunk key encoding): zarrs writes a codec without configuration as a bare
/// string (Zarr 3.1's short form), which zarr-python 3.4 refuses (spec/024).
pub(crate) fn normalize_named_configurations(meta: &mut Value) {
    let object_form = |v: &mut Value| {
        if let Value::String(name) = v {
            *v = json!({"name": name.clone(), "configuration": {}});
        } else if let Some(o) = v.as_object_mut() {
            o.entry("configuration").or_insert_with(|| json!({}));
        }
    };
    if let Some(codecs) = meta.get_mut("codecs").and_then(Value::as_array_mut) {
        codecs.iter_mut().for_each(object_form);
    }
    for key in ["chunk_grid", "chunk_key_encoding"] {
        if let Some(v) = meta.get_mut(key) {
            object_form(v);
        }
    }
}

/// xarray masks NA cells of integer (and datetime) arrays only through the `_FillValue`
/// attribute: for Zarr v3 it does not take the array's `fill_value` as a mask. Set from the
/// array's own fill value, so that it is right for arrays written before (spec/024).
pub(crate) fn fill_value_attribute(meta: &mut Value, array_name: &str) {
    // a coordinate array (1-D along itself) never holds NA: a `_FillValue` would only make
    // xarray decode its integers as floats
    let is_coordinate = meta
        .get("dimension_names")
        .and_then(Value::as_array)
        .is_some_and(|d| d.len() == 1 && d[0].as_str() == Some(array_name));
    if is_coordinate {
        return;
    }
    let is_int = meta
        .get("data_type")
        .and_then(Value::as_str)
        .and_then(IntStore::from_name)
        .is_some_and(|s| s != IntStore::Bool);
    let fill = meta.get("fill_value").cloned();
    if let (true, Some(fill), Some(attrs)) = (
        is_int,
        fill,
        meta.get_mut("attributes").and_then(Value::as_object_mut),
    ) {
        attrs.insert("_FillValue".into(), fill);
    }
}

/// How integer cells (held as i64 in memory) are stored: the Zarr data type of the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntStore {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl IntStore {
    fn from_name(name: &str) -> Option<IntStore> {
        Some(match name {
            "int8" => IntStore::I8,
            "int16" => IntStore::I16,
            "int32" => IntStore::I32,
            "int64" => IntStore::I64,
            "uint8" => IntStore::U8,
            "uint16" => IntStore::U16,
            "uint32" => IntStore::U32,
            "uint64" => IntStore::U64,
            "bool" => IntStore::Bool,
            _ => return None,
        })
    }

    /// The storage of a schema type (datetimes: int64 ticks).
    fn of(d: DType) -> IntStore {
        match d {
            DType::Int(8) => IntStore::I8,
            DType::Int(16) => IntStore::I16,
            DType::Int(32) => IntStore::I32,
            DType::UInt(8) => IntStore::U8,
            DType::UInt(16) => IntStore::U16,
            DType::UInt(32) => IntStore::U32,
            DType::UInt(64) => IntStore::U64,
            DType::Bool => IntStore::Bool,
            _ => IntStore::I64,
        }
    }
}

/// The stored element type and fill value of an array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stored {
    F64,
    Str,
    /// Integers, stored as this type with this fill value (the NA marker on disk).
    Int(IntStore, i64),
}

/// What a variable's array stores (spec/024): integers and bools in their own Zarr type; the fill
/// value is the `na_value`, else the type's marker ([`convert::int_na_marker`]).
pub(crate) fn storage(v: &Variable) -> Stored {
    match kind(v) {
        Kind::F64 => Stored::F64,
        Kind::Str => Stored::Str,
        Kind::I64(na) => {
            let d = convert::stored_type(v);
            let fill = match (IntStore::of(d), &v.na_value) {
                // a bool array has no NA marker: unwritten cells read false
                (IntStore::Bool, _) => 0,
                (_, Some(_)) => na,
                (_, None) => convert::int_na_marker(d).unwrap_or(na),
            };
            Stored::Int(IntStore::of(d), fill)
        }
    }
}

/// How a coordinate's values are held: a composed coordinate's are int64 keys.
pub(crate) fn coord_kind(c: &schema::Coord) -> Kind {
    if c.composed.is_empty() {
        kind(&c.var)
    } else {
        Kind::I64(i64::MIN)
    }
}

/// What a coordinate's array stores: a composed coordinate holds int64 keys.
pub(crate) fn coord_storage(c: &schema::Coord) -> Stored {
    if c.composed.is_empty() {
        storage(&c.var)
    } else {
        Stored::Int(IntStore::I64, i64::MIN)
    }
}

/// A coordinate array's attributes: a composed one names its components and has no unit.
pub(crate) fn coord_attrs(c: &schema::Coord) -> Map<String, Value> {
    let mut attrs = var_attrs(&c.var);
    if !c.composed.is_empty() {
        attrs.insert("zarr_fuse_composed".into(), json!(c.composed));
        attrs.remove("units");
    }
    attrs
}

/// The integer storage and fill value of an opened array.
pub(crate) fn int_storage(arr: &Array<Store>) -> Result<(IntStore, i64), UpdateError> {
    let meta = serde_json::to_value(arr.metadata()).map_err(zerr)?;
    let st = meta
        .get("data_type")
        .and_then(Value::as_str)
        .and_then(IntStore::from_name)
        .ok_or_else(|| zerr(format!("array {}: not an integer array", arr.path())))?;
    let fill = match meta.get("fill_value") {
        Some(Value::Bool(b)) => i64::from(*b),
        Some(v) => v.as_i64().unwrap_or(i64::MIN),
        None => i64::MIN,
    };
    Ok((st, fill))
}

/// An integer element type of storage.
pub(crate) trait IntElement:
    zarrs::array::ElementOwned + Copy + Send + Sync + 'static
{
    fn wide(self) -> i64;
    fn narrow(x: i64) -> Self;
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl IntElement for $t {
            fn wide(self) -> i64 {
                self as i64
            }
            fn narrow(x: i64) -> Self {
                x as $t
            }
        }
    )*};
}
int_element!(i8, i16, i32, i64, u8, u16, u32, u64);

impl IntElement for bool {
    fn wide(self) -> i64 {
        i64::from(self)
    }
    fn narrow(x: i64) -> Self {
        x != 0
    }
}

/// An array's metadata as we store it: zarrs', with every named configuration in object form and
/// `_FillValue` for integer arrays.
pub(crate) fn metadata_json(arr: &Array<Store>) -> Result<Value, UpdateError> {
    let meta = arr.metadata_opt(&zarrs::array::ArrayMetadataOptions::default());
    let mut v = serde_json::to_value(&meta).map_err(zerr)?;
    normalize_named_configurations(&mut v);
    let path = arr.path().as_str();
    fill_value_attribute(&mut v, path.rsplit('/').next().unwrap_or(path));
    Ok(v)
}

pub(crate) fn metadata_key(array_path: &str) -> Result<StoreKey, UpdateError> {
    StoreKey::new(format!("{}/zarr.json", array_path.trim_matches('/')).trim_start_matches('/'))
        .map_err(zerr)
}

/// Store an array's metadata (`zarr.json`) in the form every reader accepts ([`metadata_json`]).
pub(crate) async fn store_array_metadata(arr: &Array<Store>) -> Result<(), UpdateError> {
    let bytes = serde_json::to_vec_pretty(&metadata_json(arr)?).map_err(zerr)?;
    let key = metadata_key(arr.path().as_str())?;
    zarrs_storage::AsyncWritableStorageTraits::set(arr.storage().as_ref(), &key, bytes.into())
        .await
        .map_err(zerr)
}

/// Rewrite the metadata of every array on `branch` that is not yet in the form every reader
/// accepts (written before spec/024: codecs as bare names, no `_FillValue`), as one commit.
/// Returns the commit (`None` when nothing needed it) and the arrays rewritten.
pub async fn repair_metadata(
    repo: &Repo,
    branch: &str,
    prov: Provenance,
) -> Result<(Option<crate::repo::CommitOutcome>, Vec<String>), UpdateError> {
    let tx = repo.transaction(branch).await?;
    let store: Arc<Store> = tx.store();
    let schema = stored_schema(&store).await?;
    let mut repaired = vec![];
    for node in schema.root.walk() {
        let names = node
            .coords
            .iter()
            .map(|c| c.name())
            .chain(node.vars.iter().map(|v| v.name.as_str()));
        for name in names {
            let path = array_path(&node.path, name);
            let Some(before) = store.get(&metadata_key(&path)?).await.map_err(zerr)? else {
                continue;
            };
            let stored: Value = serde_json::from_slice(&before).unwrap_or(Value::Null);
            let arr = open_array(&store, &path).await?;
            if stored != metadata_json(&arr)? {
                store_array_metadata(&arr).await?;
                repaired.push(path);
            }
        }
    }
    if repaired.is_empty() {
        return Ok((None, repaired));
    }
    Ok((Some(tx.commit(prov).await?), repaired))
}

/// Chunks are zstd-compressed (spec/013): mostly-empty chunks of growing axes shrink to a few
/// bytes, and level 1 keeps encoding fast.
pub(crate) const ZSTD_LEVEL: i32 = 1;

pub(crate) async fn create_array(
    store: &Arc<Store>,
    path: &str,
    k: Stored,
    dims: &[String],
    chunks: Vec<u64>,
    attrs: Map<String, Value>,
) -> Result<(), UpdateError> {
    create_array_shaped(store, path, k, dims, chunks, attrs, vec![0u64; dims.len()]).await
}

pub(crate) async fn create_array_shaped(
    store: &Arc<Store>,
    path: &str,
    k: Stored,
    dims: &[String],
    chunks: Vec<u64>,
    attrs: Map<String, Value>,
    shape: Vec<u64>,
) -> Result<(), UpdateError> {
    use zarrs::array::ArrayBuilder as B;
    let mut b = match k {
        Stored::F64 => B::new(shape, chunks, data_type::float64(), f64::NAN),
        Stored::Str => B::new(shape, chunks, data_type::string(), ""),
        Stored::Int(st, fill) => match st {
            IntStore::I8 => B::new(shape, chunks, data_type::int8(), fill as i8),
            IntStore::I16 => B::new(shape, chunks, data_type::int16(), fill as i16),
            IntStore::I32 => B::new(shape, chunks, data_type::int32(), fill as i32),
            IntStore::I64 => B::new(shape, chunks, data_type::int64(), fill),
            IntStore::U8 => B::new(shape, chunks, data_type::uint8(), fill as u8),
            IntStore::U16 => B::new(shape, chunks, data_type::uint16(), fill as u16),
            IntStore::U32 => B::new(shape, chunks, data_type::uint32(), fill as u32),
            IntStore::U64 => B::new(shape, chunks, data_type::uint64(), fill as u64),
            IntStore::Bool => B::new(
                shape,
                chunks,
                data_type::bool(),
                zarrs::array::FillValue::from(fill != 0),
            ),
        },
    };
    b.dimension_names(Some(dims.to_vec()));
    b.bytes_to_bytes_codecs(vec![Arc::new(
        zarrs::array::codec::bytes_to_bytes::zstd::ZstdCodec::new(ZSTD_LEVEL, false),
    )]);
    b.attributes(attrs);
    store_array_metadata(&b.build(Arc::clone(store), path).map_err(zerr)?).await
}

/// Create the group and arrays of `node` (and record its schema in the group attributes).
pub async fn create_node(
    store: &Arc<Store>,
    schema: &Schema,
    node: &NodeSchema,
    schema_yaml: Option<&str>,
) -> Result<(), UpdateError> {
    store_group(store, schema, node, schema_yaml).await?;
    create_node_arrays(store, node, &|d| chunk_of(node, d)).await
}

/// Store a node's group: its ATTRS plus `zarr_fuse.node_schema`, and at the root the schema text
/// and digest.
pub(crate) async fn store_group(
    store: &Arc<Store>,
    schema: &Schema,
    node: &NodeSchema,
    schema_yaml: Option<&str>,
) -> Result<(), UpdateError> {
    let mut attrs = node.attrs.clone();
    let mut zf = Map::new();
    zf.insert("node_schema".into(), node.to_json());
    if let Some(y) = schema_yaml {
        zf.insert("schema_yaml".into(), json!(y));
        zf.insert("schema_blake3".into(), json!(schema.digest()));
    }
    attrs.insert("zarr_fuse".into(), Value::Object(zf));
    let mut g = zarrs::group::GroupBuilder::new();
    g.attributes(attrs);
    g.build(Arc::clone(store), &group_path(&node.path))
        .map_err(zerr)?
        .async_store_metadata()
        .await
        .map_err(zerr)
}

/// Create (or create again, while empty) the arrays of `node` with chunk length `chunk(dim)`.
pub(crate) async fn create_node_arrays(
    store: &Arc<Store>,
    node: &NodeSchema,
    chunk: &(dyn Fn(&str) -> u64 + Sync),
) -> Result<(), UpdateError> {
    for c in &node.coords {
        create_array(
            store,
            &array_path(&node.path, c.name()),
            coord_storage(c),
            &[c.name().to_string()],
            vec![chunk(c.name())],
            coord_attrs(c),
        )
        .await?;
    }
    for v in &node.vars {
        let chunks = v.coords.iter().map(|d| chunk(d)).collect();
        create_array(
            store,
            &array_path(&node.path, &v.name),
            storage(v),
            &v.coords,
            chunks,
            var_attrs(v),
        )
        .await?;
    }
    Ok(())
}

/// Create the node tree of `schema_text` in a new repository as its first data commit.
pub async fn init_dataset(
    repo: &Repo,
    schema_text: &str,
    file: &str,
    mut prov: Provenance,
) -> Result<crate::repo::CommitOutcome, UpdateError> {
    let parsed = schema::load_str(schema_text, file)?;
    prov.schema_blake3 = Some(parsed.digest());
    if prov.source.is_none() {
        prov.source = Some(file.to_string());
    }
    let tx = repo.transaction("main").await?;
    let store: Arc<Store> = tx.store();
    for (i, node) in parsed.root.walk().into_iter().enumerate() {
        create_node(&store, &parsed, node, (i == 0).then_some(schema_text)).await?;
    }
    Ok(tx.commit(prov).await?)
}

/// An array of the transaction, without reading its chunks.
pub(crate) async fn open_array(
    store: &Arc<Store>,
    path: &str,
) -> Result<Array<Store>, UpdateError> {
    Array::async_open(Arc::clone(store), path)
        .await
        .map_err(|e| {
            UpdateError::Invalid(format!(
                "array {path}: {}",
                crate::repo::one_line(&e.to_string())
            ))
        })
}

/// The schema stored in the repository (root group attributes).
pub async fn stored_schema(store: &Arc<Store>) -> Result<Schema, UpdateError> {
    let key = StoreKey::new("zarr.json").map_err(zerr)?;
    let bytes = store
        .get(&key)
        .await
        .map_err(zerr)?
        .ok_or_else(|| UpdateError::NoSchema("/".into()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(zerr)?;
    let yaml = v
        .get("attributes")
        .and_then(Value::as_object)
        .and_then(schema_text)
        .ok_or_else(|| UpdateError::NoSchema("/".into()))?;
    Ok(schema::load_str(yaml, "<stored schema>")?)
}

/// The schema text in the attributes of a dataset's root group (`zarr_fuse.schema_yaml`).
pub fn schema_text(attributes: &Map<String, Value>) -> Option<&str> {
    attributes.get("zarr_fuse")?.get("schema_yaml")?.as_str()
}
