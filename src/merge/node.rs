//! Nodes as Zarr groups and arrays: creating them from the schema, reading them back, and the
//! `update` transaction (convert → merge axes → rewrite changed chunks → commit).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};
use zarrs::array::{data_type, Array};
use zarrs_storage::{AsyncReadableWritableListableStorageTraits, StoreKey};

use super::axis::{first_load_sorted, merge_axis, AxisMerge};
use super::convert::{self, Converted, OnInvalid};
use super::keys::{KeyIndex, KeyRef, Keys};
use super::rows::RowBlock;
use super::{Key, MergeError, Scalar};
use crate::ingest::Table;
use crate::provenance::Provenance;
use crate::repo::{Repo, RepoError};
use crate::schema::{self, DType, NodeSchema, Schema, UnitSpec, Variable};

pub(super) type Store = dyn AsyncReadableWritableListableStorageTraits;

/// How values are held in memory and stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    F64,
    I64(i64),
    Str,
}

pub(super) fn kind(v: &Variable) -> Kind {
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

pub(super) fn array_path(node: &str, name: &str) -> String {
    if node.is_empty() {
        format!("/{name}")
    } else {
        format!("/{node}/{name}")
    }
}

fn group_path(node: &str) -> String {
    if node.is_empty() {
        "/".into()
    } else {
        format!("/{node}")
    }
}

fn zerr(e: impl std::fmt::Display) -> MergeError {
    MergeError::Invalid(format!(
        "array store: {}",
        crate::repo::one_line(&e.to_string())
    ))
}

fn var_attrs(v: &Variable) -> Map<String, Value> {
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
const PROVISIONAL_CHUNK: u64 = 1024;

fn chunk_of(node: &NodeSchema, dim: &str) -> u64 {
    node.coord(dim)
        .and_then(|c| c.chunk_size)
        .unwrap_or(PROVISIONAL_CHUNK)
}

/// Elements of 8 bytes in about 1 MiB: the chunk budget of merge-semantics §1.
const CHUNK_BUDGET: u64 = (1 << 20) / 8;

/// The chunk length of every dimension of a node at its first write, when some coordinate has
/// no `chunk_size` (spec/025): an unsorted dimension with n ≤ 1024 distinct values gets n rounded
/// up to a power of two (≥ 16); the other unset dimensions share the rest of the budget
/// (a power of two, ≥ 64); given sizes are kept. `distinct[i]`: values of coordinate i.
fn auto_chunks(node: &NodeSchema, distinct: &[usize]) -> Vec<u64> {
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
async fn choose_chunks_at_first_write(
    store: &Arc<Store>,
    node: &NodeSchema,
    merges: &[AxisMerge],
) -> Result<(), MergeError> {
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
pub(super) fn stored_chunks(arr: &Array<Store>) -> Result<Vec<u64>, MergeError> {
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
fn normalize_named_configurations(meta: &mut Value) {
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
fn fill_value_attribute(meta: &mut Value, array_name: &str) {
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
enum IntStore {
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
enum Stored {
    F64,
    Str,
    /// Integers, stored as this type with this fill value (the NA marker on disk).
    Int(IntStore, i64),
}

/// What a variable's array stores (spec/024): integers and bools in their own Zarr type; the fill
/// value is the `na_value`, else the type's marker ([`convert::int_na_marker`]).
fn storage(v: &Variable) -> Stored {
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
pub(super) fn coord_kind(c: &schema::Coord) -> Kind {
    if c.composed.is_empty() {
        kind(&c.var)
    } else {
        Kind::I64(i64::MIN)
    }
}

/// What a coordinate's array stores: a composed coordinate holds int64 keys.
fn coord_storage(c: &schema::Coord) -> Stored {
    if c.composed.is_empty() {
        storage(&c.var)
    } else {
        Stored::Int(IntStore::I64, i64::MIN)
    }
}

/// A coordinate array's attributes: a composed one names its components and has no unit.
fn coord_attrs(c: &schema::Coord) -> Map<String, Value> {
    let mut attrs = var_attrs(&c.var);
    if !c.composed.is_empty() {
        attrs.insert("zarr_fuse_composed".into(), json!(c.composed));
        attrs.remove("units");
    }
    attrs
}

/// The integer storage and fill value of an opened array.
fn int_storage(arr: &Array<Store>) -> Result<(IntStore, i64), MergeError> {
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
trait IntElement: zarrs::array::ElementOwned + Copy + Send + Sync + 'static {
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
fn metadata_json(arr: &Array<Store>) -> Result<Value, MergeError> {
    let meta = arr.metadata_opt(&zarrs::array::ArrayMetadataOptions::default());
    let mut v = serde_json::to_value(&meta).map_err(zerr)?;
    normalize_named_configurations(&mut v);
    let path = arr.path().as_str();
    fill_value_attribute(&mut v, path.rsplit('/').next().unwrap_or(path));
    Ok(v)
}

fn metadata_key(array_path: &str) -> Result<StoreKey, MergeError> {
    StoreKey::new(format!("{}/zarr.json", array_path.trim_matches('/')).trim_start_matches('/'))
        .map_err(zerr)
}

/// Store an array's metadata (`zarr.json`) in the form every reader accepts ([`metadata_json`]).
async fn store_array_metadata(arr: &Array<Store>) -> Result<(), MergeError> {
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
) -> Result<(Option<crate::repo::CommitOutcome>, Vec<String>), MergeError> {
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
const ZSTD_LEVEL: i32 = 1;

async fn create_array(
    store: &Arc<Store>,
    path: &str,
    k: Stored,
    dims: &[String],
    chunks: Vec<u64>,
    attrs: Map<String, Value>,
) -> Result<(), MergeError> {
    create_array_shaped(store, path, k, dims, chunks, attrs, vec![0u64; dims.len()]).await
}

async fn create_array_shaped(
    store: &Arc<Store>,
    path: &str,
    k: Stored,
    dims: &[String],
    chunks: Vec<u64>,
    attrs: Map<String, Value>,
    shape: Vec<u64>,
) -> Result<(), MergeError> {
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
) -> Result<(), MergeError> {
    store_group(store, schema, node, schema_yaml).await?;
    create_node_arrays(store, node, &|d| chunk_of(node, d)).await
}

/// Store a node's group: its ATTRS plus `zarr_fuse.node_schema`, and at the root the schema text
/// and digest.
async fn store_group(
    store: &Arc<Store>,
    schema: &Schema,
    node: &NodeSchema,
    schema_yaml: Option<&str>,
) -> Result<(), MergeError> {
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
async fn create_node_arrays(
    store: &Arc<Store>,
    node: &NodeSchema,
    chunk: &dyn Fn(&str) -> u64,
) -> Result<(), MergeError> {
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
) -> Result<crate::repo::CommitOutcome, MergeError> {
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

/// What changed between two versions of a variable that evolution does not allow, if anything.
fn incompatible(old: &Variable, new: &Variable) -> Option<String> {
    if old.coords != new.coords {
        return Some(format!("coords {:?} → {:?}", old.coords, new.coords));
    }
    if old.dtype != new.dtype {
        return Some(format!(
            "type {} → {}",
            old.dtype.map(|d| d.name()).unwrap_or("inferred".into()),
            new.dtype.map(|d| d.name()).unwrap_or("inferred".into())
        ));
    }
    if old.to_json()["unit"] != new.to_json()["unit"] {
        return Some(format!(
            "unit {} → {}",
            old.to_json()["unit"],
            new.to_json()["unit"]
        ));
    }
    None
}

/// Apply an allowed schema change as one commit: new nodes, variables and coordinates; ATTRS,
/// description and attrs changes. Refused (naming the variable and what changed): removing a
/// node, variable or coordinate, changing coords, type or unit, a coordinate's sorted, composed
/// or chunk_size.
pub async fn apply_schema(
    repo: &Repo,
    branch: &str,
    text: &str,
    file: &str,
    mut prov: Provenance,
) -> Result<crate::repo::CommitOutcome, MergeError> {
    let new = schema::load_str(text, file)?;
    let tx = repo.transaction(branch).await?;
    let store: Arc<Store> = tx.store();
    let old = stored_schema(&store).await?;
    let refuse = |what: String| {
        MergeError::Invalid(format!(
            "{file}: incompatible schema change refused: {what}"
        ))
    };
    for on in old.root.walk() {
        let Some(nn) = new.node(&on.path) else {
            return Err(refuse(format!("node '{}' was removed", on.path)));
        };
        for oc in &on.coords {
            let Some(nc) = nn.coord(oc.name()) else {
                return Err(refuse(format!(
                    "coordinate '{}' of node '{}' was removed",
                    oc.name(),
                    on.path
                )));
            };
            if oc.sorted != nc.sorted
                || oc.composed != nc.composed
                || oc.chunk_size != nc.chunk_size
            {
                return Err(refuse(format!(
                    "coordinate '{}' of node '{}': sorted/composed/chunk_size changed",
                    oc.name(),
                    on.path
                )));
            }
            if let Some(why) = incompatible(&oc.var, &nc.var) {
                return Err(refuse(format!(
                    "coordinate '{}' of node '{}': {why}",
                    oc.name(),
                    on.path
                )));
            }
        }
        for ov in &on.vars {
            let Some(nv) = nn.var(&ov.name) else {
                return Err(refuse(format!(
                    "variable '{}' of node '{}' was removed",
                    ov.name, on.path
                )));
            };
            if let Some(why) = incompatible(ov, nv) {
                return Err(refuse(format!(
                    "variable '{}' of node '{}': {why}",
                    ov.name, on.path
                )));
            }
        }
    }
    for nn in new.root.walk() {
        match old.node(&nn.path) {
            None => create_node(&store, &new, nn, None).await?,
            Some(on) => {
                let yaml = nn.path.is_empty().then_some(text);
                store_group(&store, &new, nn, yaml).await?;
                evolve_node(&store, on, nn).await?;
            }
        }
    }
    prov.schema_blake3 = Some(new.digest());
    if prov.source.is_none() {
        prov.source = Some(file.to_string());
    }
    Ok(tx.commit(prov).await?)
}

/// The allowed changes of an existing node `on` to `nn` (checked before): new coordinates and
/// variables get arrays (a new variable the current length and stored chunk length of each
/// existing dimension), and changed descriptions or attrs are stored.
async fn evolve_node(
    store: &Arc<Store>,
    on: &NodeSchema,
    nn: &NodeSchema,
) -> Result<(), MergeError> {
    // length and stored chunk length of each existing coordinate
    let lengths: HashMap<String, (u64, u64)> = {
        let mut m = HashMap::new();
        for c in &on.coords {
            let a = open_array(store, &array_path(&on.path, c.name())).await?;
            let chunk = stored_chunks(&a)?.first().copied();
            m.insert(
                c.name().to_string(),
                (a.shape()[0], chunk.unwrap_or(PROVISIONAL_CHUNK)),
            );
        }
        m
    };
    for c in &nn.coords {
        if on.coord(c.name()).is_none() {
            create_array(
                store,
                &array_path(&nn.path, c.name()),
                coord_storage(c),
                &[c.name().to_string()],
                vec![chunk_of(nn, c.name())],
                coord_attrs(c),
            )
            .await?;
        }
    }
    for v in &nn.vars {
        let path = array_path(&nn.path, &v.name);
        if on.var(&v.name).is_none() {
            let chunks = v
                .coords
                .iter()
                .map(|d| match lengths.get(d) {
                    Some((_, c)) if nn.coord(d).is_some_and(|c| c.chunk_size.is_none()) => *c,
                    _ => chunk_of(nn, d),
                })
                .collect();
            let shape = v
                .coords
                .iter()
                .map(|d| lengths.get(d).map_or(0, |l| l.0))
                .collect();
            create_array_shaped(
                store,
                &path,
                storage(v),
                &v.coords,
                chunks,
                var_attrs(v),
                shape,
            )
            .await?;
        } else {
            // description / attrs changes
            let mut a = Array::async_open(Arc::clone(store), &path)
                .await
                .map_err(zerr)?;
            let want = var_attrs(v);
            let mut have = a.attributes().clone();
            have.remove("_FillValue"); // derived from the fill value at each write
            if have != want {
                *a.attributes_mut() = want;
                store_array_metadata(&a).await?;
            }
        }
    }
    Ok(())
}

/// The schema stored in the repository (root group attributes).
pub async fn stored_schema(store: &Arc<Store>) -> Result<Schema, MergeError> {
    let key = StoreKey::new("zarr.json").map_err(zerr)?;
    let bytes = store
        .get(&key)
        .await
        .map_err(zerr)?
        .ok_or_else(|| MergeError::NoSchema("/".into()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(zerr)?;
    let yaml = v
        .pointer("/attributes/zarr_fuse/schema_yaml")
        .and_then(Value::as_str)
        .ok_or_else(|| MergeError::NoSchema("/".into()))?;
    Ok(schema::load_str(yaml, "<stored schema>")?)
}

/// In-memory dense array.
#[derive(Clone, Debug)]
pub(super) enum Dense {
    F(Vec<f64>),
    I(Vec<i64>, i64),
    S(Vec<String>),
}

impl Dense {
    pub(super) fn na(k: Kind, n: usize) -> Dense {
        match k {
            Kind::F64 => Dense::F(vec![f64::NAN; n]),
            Kind::I64(na) => Dense::I(vec![na; n], na),
            Kind::Str => Dense::S(vec![String::new(); n]),
        }
    }
    pub(super) fn len(&self) -> usize {
        match self {
            Dense::F(v) => v.len(),
            Dense::I(v, _) => v.len(),
            Dense::S(v) => v.len(),
        }
    }
    /// Every value, as scalars.
    pub(super) fn scalars(&self) -> Vec<Scalar> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    pub(super) fn get(&self, i: usize) -> Scalar {
        match self {
            Dense::F(v) if v[i].is_nan() => Scalar::Na,
            Dense::F(v) => Scalar::F(v[i]),
            Dense::I(v, na) if v[i] == *na => Scalar::Na,
            Dense::I(v, _) => Scalar::I(v[i]),
            Dense::S(v) if v[i].is_empty() => Scalar::Na,
            Dense::S(v) => Scalar::S(v[i].clone()),
        }
    }
    pub(super) fn set(&mut self, i: usize, s: &Scalar) {
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
    fn set_value(&mut self, i: usize, src: &convert::Values, r: usize) {
        match (self, src) {
            (Dense::F(a), convert::Values::F(b)) => a[i] = b[r],
            (Dense::I(a, na), convert::Values::I(b)) => a[i] = b[r].unwrap_or(*na),
            (me, src) => me.set(i, &src.get(r)),
        }
    }
    /// Whether cell `i` holds what `set_value(i, src, r)` would write.
    fn same_as(&self, i: usize, src: &convert::Values, r: usize) -> bool {
        match (self, src) {
            (Dense::F(a), convert::Values::F(b)) => {
                a[i] == b[r] || (a[i].is_nan() && b[r].is_nan())
            }
            (Dense::I(a, na), convert::Values::I(b)) => a[i] == b[r].unwrap_or(*na),
            (me, src) => me.get(i) == src.get(r),
        }
    }
    pub(super) fn copy_from(&mut self, i: usize, src: &Dense, j: usize) {
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
pub(super) async fn read_dense(
    store: &Arc<Store>,
    path: &str,
    k: Kind,
) -> Result<(Array<Store>, Dense), MergeError> {
    let arr = open_array(store, path).await?;
    let shape = arr.shape().to_vec();
    let len0 = shape.first().copied().unwrap_or(1);
    let d = read_band(&arr, &shape, 0, len0, k).await?;
    Ok((arr, d))
}

/// Rows of the chunk at `start` with shape `cshape` (C order) that lie inside `shape`, as
/// (offset in the chunk, offset in the array, length).
fn chunk_rows(shape: &[u64], start: &[u64], cshape: &[u64]) -> Vec<(usize, usize, usize)> {
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
fn scatter<T: Clone>(
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
fn gather<T: Clone>(v: &[T], shape: &[u64], start: &[u64], cshape: &[u64], fill: &T) -> Vec<T> {
    let n: usize = cshape.iter().product::<u64>() as usize;
    let mut out = vec![fill.clone(); n];
    for (c, a, len) in chunk_rows(shape, start, cshape) {
        out[c..c + len].clone_from_slice(&v[a..a + len]);
    }
    out
}

/// The chunk coordinates of chunk number `flat` (C order) in a grid of shape `grid`.
fn chunk_index(flat: u64, grid: &[u64]) -> Vec<u64> {
    let mut idx = vec![0u64; grid.len()];
    let mut r = flat;
    for d in (0..grid.len()).rev() {
        idx[d] = r % grid[d];
        r /= grid[d];
    }
    idx
}

pub(super) fn strides(shape: &[u64]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as usize;
    }
    s
}

/// Chunks encoded and stored at once (their I/O overlaps; memory stays bounded).
const CHUNKS_IN_FLIGHT: usize = 8;

/// Write the chunks of `arr` (resized to `shape`) selected by `dirty`.
pub(super) async fn write_dense(
    arr: &mut Array<Store>,
    shape: Vec<u64>,
    data: &Dense,
    dirty: &dyn Fn(&[u64], &[u64]) -> bool,
) -> Result<(), MergeError> {
    if arr.shape() != shape.as_slice() {
        arr.set_shape(shape.clone()).map_err(zerr)?;
        store_array_metadata(arr).await?;
    }
    let len0 = shape.first().copied().unwrap_or(1);
    let todo = band_chunks(arr, &shape, 0, len0, dirty)?;
    write_chunks(arr, &shape, 0, data, todo).await
}

/// An array of the transaction, without reading its chunks.
pub(super) async fn open_array(store: &Arc<Store>, path: &str) -> Result<Array<Store>, MergeError> {
    Array::async_open(Arc::clone(store), path)
        .await
        .map_err(|e| {
            MergeError::Invalid(format!(
                "array {path}: {}",
                crate::repo::one_line(&e.to_string())
            ))
        })
}

/// A chunk to write: (chunk index, start, chunk shape).
type ChunkAt = (Vec<u64>, Vec<u64>, Vec<u64>);

/// The chunks of `arr` (shape `shape`) whose first-dimension positions lie in `[lo, hi)` and
/// that `dirty` selects.
fn band_chunks(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    dirty: &dyn Fn(&[u64], &[u64]) -> bool,
) -> Result<Vec<ChunkAt>, MergeError> {
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
async fn write_chunks(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    data: &Dense,
    todo: Vec<ChunkAt>,
) -> Result<(), MergeError> {
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
async fn read_band(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    k: Kind,
) -> Result<Dense, MergeError> {
    Ok(match k {
        Kind::F64 => Dense::F(read_band_of(arr, shape, lo, hi, f64::NAN).await?),
        Kind::I64(na) => Dense::I(read_ints(arr, shape, lo, hi, na).await?, na),
        Kind::Str => Dense::S(read_band_of(arr, shape, lo, hi, String::new()).await?),
    })
}

/// Integer cells of a band as i64, whatever the stored type; the stored fill value reads as
/// `na` (a bool array has no NA: false is a value).
async fn read_ints(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    na: i64,
) -> Result<Vec<i64>, MergeError> {
    async fn wide<T: IntElement>(
        arr: &Array<Store>,
        shape: &[u64],
        (lo, hi): (u64, u64),
        fill: i64,
        na: Option<i64>,
    ) -> Result<Vec<i64>, MergeError> {
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
async fn store_ints(
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

async fn read_band_of<T>(
    arr: &Array<Store>,
    shape: &[u64],
    lo: u64,
    hi: u64,
    fill: T,
) -> Result<Vec<T>, MergeError>
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
            Ok::<_, MergeError>((start, cshape, chunk))
        })
        .buffer_unordered(CHUNKS_IN_FLIGHT);
    while let Some(r) = reads.next().await {
        let (start, cshape, chunk) = r?;
        // the band is a flat range of the array in C order
        scatter(&mut out, from, shape, &start, &cshape, &chunk);
    }
    Ok(out)
}

pub(super) fn keys_of(d: Dense) -> Keys {
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
pub(super) fn dense_of(k: Kind, axis: &Keys) -> Dense {
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

/// A coordinate value in JSON (the extent of an update, spec/011).
fn key_json(k: KeyRef) -> Value {
    match k {
        KeyRef::I(i) => json!(i),
        KeyRef::F(f) => json!(f),
        KeyRef::S(s) => json!(s),
    }
}

fn key_scalar(k: KeyRef) -> Scalar {
    match k {
        KeyRef::I(i) => Scalar::I(i),
        KeyRef::F(f) => Scalar::F(f),
        KeyRef::S(s) => Scalar::S(s.to_string()),
    }
}

/// A row of an input dropped because a coordinate was NA.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DroppedRow {
    /// The input file.
    pub file: String,
    /// Its line (CSV header = 1).
    pub line: u64,
}

/// Options of `update`.
#[derive(Clone, Debug, Default)]
pub struct UpdateOptions {
    /// NA cells erase stored values.
    pub overwrite_na: bool,
    /// What to do with unusable values.
    pub on_invalid: OnInvalid,
    /// Plan and report without writing.
    pub dry_run: bool,
    /// Memory budget in bytes (`None`: [`super::rows::SPILL_OVER`]): for the converted rows of
    /// each input before they go to a temporary file, and for each band of an array being
    /// rewritten (at least one row of chunks).
    pub memory: Option<usize>,
    /// How input files are read: format, `--set`, `--rename`.
    pub input: crate::ingest::InputOptions,
}

impl UpdateOptions {
    fn budget(&self) -> usize {
        self.memory.unwrap_or(super::rows::SPILL_OVER)
    }
}

/// What an update did (the `--json` output of `zarr-fuse update`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateReport {
    /// New commit, or null.
    pub commit: Option<String>,
    /// Branch.
    pub branch: String,
    /// Rows read.
    pub rows_read: u64,
    /// Rows dropped (NA coordinate, or refused by step limits).
    pub rows_dropped: u64,
    /// The first rows dropped for an NA coordinate, by input file and line (capped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<DroppedRow>,
    /// Rows overwritten by a later duplicate.
    pub duplicates: u64,
    /// Cells made NA by --on-invalid na.
    pub invalid_to_na: u64,
    /// Cells written.
    pub cells_written: u64,
    /// New chunk objects.
    pub chunks_written: u64,
    /// Chunks that referenced identical stored bytes.
    pub chunks_deduplicated: u64,
    /// New coordinate values per dimension.
    pub new_coords: BTreeMap<String, u64>,
    /// Where the time went (not part of the JSON output).
    #[serde(skip)]
    pub timings: Timings,
    /// Attempts made: 1, or more when another writer committed first and the update was
    /// planned again on the new tip (not part of the JSON output).
    #[serde(skip)]
    pub attempts: u32,
}

/// Wall time per phase of an update (the last attempt's).
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// Parsing, unit/time conversion, range checks, duplicates.
    pub convert: std::time::Duration,
    /// Reading stored arrays, merging axes, placing cells.
    pub merge: std::time::Duration,
    /// Encoding and storing the changed chunks (the "write part").
    pub write: std::time::Duration,
    /// Committing (manifests, snapshot, side record, ref update).
    pub commit: std::time::Duration,
}

/// Position of row `r` of a contribution in a variable's grid: `pos` maps each coordinate's
/// dictionary index to its axis position, `dims` are the variable's coordinates, `st` its strides.
fn flat_cell(pos: &[Vec<u32>], b: &RowBlock, dims: &[usize], st: &[usize], i: usize) -> usize {
    dims.iter()
        .enumerate()
        .map(|(a, &d)| pos[d][b.idx[d][i] as usize] as usize * st[a])
        .sum()
}

/// Position of a dictionary value that is not on the merged axis (refused by step limits).
const OFF_AXIS: u32 = u32::MAX;

/// Where a value is on a merged axis: by binary search when the axis is sorted (no memory),
/// else by an index of positions (4 bytes a value).
enum AxisIndex {
    Sorted,
    Map(KeyIndex),
}

impl AxisIndex {
    fn new(axis: &Keys, sorted: bool) -> Self {
        if sorted && axis.is_strictly_sorted() {
            AxisIndex::Sorted
        } else {
            AxisIndex::Map(KeyIndex::of(axis))
        }
    }

    fn get(&self, axis: &Keys, k: KeyRef) -> Option<usize> {
        match self {
            AxisIndex::Sorted => axis.binary_search(k).ok(),
            AxisIndex::Map(m) => m.get(axis, k),
        }
    }
}

/// Whether every coordinate of row `i` of `b` is on the new axes (step limits may refuse keys).
fn admitted(pos: &[Vec<u32>], b: &RowBlock, i: usize) -> bool {
    pos.iter()
        .zip(&b.idx)
        .all(|(p, col)| p[col[i] as usize] != OFF_AXIS)
}

/// Values of variable `vi` at rows `a` and `b` (for an error message).
fn clash_values(
    conv: &Converted,
    vi: usize,
    a: usize,
    b: usize,
) -> Result<(Scalar, Scalar), MergeError> {
    let (mut va, mut vb) = (Scalar::Na, Scalar::Na);
    conv.rows
        .scan(Some(&only(vi, conv.var_names.len())), |start, blk| {
            for (r, out) in [(a, &mut va), (b, &mut vb)] {
                if (start..start + blk.len).contains(&r) {
                    *out = blk.vals[vi].get(r - start);
                }
            }
            Ok(())
        })?;
    Ok((va, vb))
}

/// Only variable `vi` of `n` (the columns a per-variable pass reads).
fn only(vi: usize, n: usize) -> Vec<bool> {
    (0..n).map(|j| j == vi).collect()
}

async fn apply_node(
    store: &Arc<Store>,
    node: &NodeSchema,
    conv: &mut Converted,
    opts: &UpdateOptions,
    source: &str,
    report: &mut UpdateReport,
    out: &mut NodeOutput,
) -> Result<(), MergeError> {
    let NodeOutput { cells, extent } = out;
    // 1. axes (interpolating coordinates first turn inside values into existing points)
    let mut old_axes = Vec::new();
    for c in &node.coords {
        let k = coord_kind(c);
        let (_, old) = read_dense(store, &array_path(&node.path, c.name()), k).await?;
        old_axes.push(keys_of(old));
    }
    let mut owned: Option<Converted> = None;
    for (ci, c) in node.coords.iter().enumerate() {
        if let (Some(method), true) = (c.interpolate, c.sorted) {
            let next = super::interp::interpolate(
                owned.as_ref().unwrap_or(&*conv),
                ci,
                &old_axes[ci],
                method,
            )?;
            if next.is_some() {
                owned = next;
            }
        }
    }
    if owned.is_some() {
        conv.release_keys(); // the interpolated copy is merged instead
    }
    let conv: &mut Converted = match owned.as_mut() {
        Some(o) => o,
        None => conv,
    };
    let mut merges: Vec<AxisMerge> = Vec::new();
    let mut old_len = Vec::new();
    // per coordinate: the positions found while merging (a first load of a sorted coordinate
    // sorts its dictionary in place into the axis: no copy of the values)
    let mut found_pos: Vec<Option<Vec<u32>>> = Vec::new();
    for (ci, c) in node.coords.iter().enumerate() {
        let old_keys = std::mem::take(&mut old_axes[ci]);
        old_len.push(old_keys.len());
        let first_sorted = old_keys.is_empty()
            && c.sorted
            && !matches!(c.step_limits, schema::StepLimits::Bounds(..));
        let mut found = None;
        let mut m = None;
        if first_sorted {
            match first_load_sorted(std::mem::take(&mut conv.dicts[ci])) {
                Ok((axis, pos)) => {
                    conv.keys_released = true; // this dictionary is the axis now
                    found = Some(pos);
                    m = Some(AxisMerge {
                        added: axis.len(),
                        axis,
                        dropped: Default::default(),
                        first_shift: None,
                        old: Keys::default(),
                    });
                }
                Err(dict) => conv.dicts[ci] = dict,
            }
        }
        let m = match m {
            Some(m) => m,
            None => merge_axis(c, old_keys, &conv.dicts[ci]),
        };
        found_pos.push(found);
        if m.axis.len() >= OFF_AXIS as usize {
            return Err(MergeError::Invalid(format!(
                "node '{}': coordinate '{}' would have {} values, more than {} (split the dataset into nodes)",
                node.path,
                c.name(),
                m.axis.len(),
                OFF_AXIS - 1
            )));
        }
        *report.new_coords.entry(c.name().to_string()).or_default() += m.added as u64;
        merges.push(m);
    }
    // per coordinate: axis position of each dictionary key (4 bytes a value; OFF_AXIS = not
    // admitted)
    let axis_pos: Vec<AxisIndex> = merges
        .iter()
        .zip(&node.coords)
        .map(|(m, c)| AxisIndex::new(&m.axis, c.sorted))
        .collect();
    let pos: Vec<Vec<u32>> = conv
        .dicts
        .iter()
        .zip(&axis_pos)
        .zip(&merges)
        .zip(found_pos)
        .map(|(((dict, ap), m), found)| {
            found.unwrap_or_else(|| {
                dict.iter()
                    .map(|k| ap.get(&m.axis, k).map_or(OFF_AXIS, |p| p as u32))
                    .collect()
            })
        })
        .collect();
    // per coordinate the least and greatest value the contribution may write (blame skips a
    // commit whose extent misses the cells it looks for without reading its side record)
    // (read from the merged axis at the rows' positions: a first load's dictionary is the axis)
    for ((c, p), m) in node.coords.iter().zip(&pos).zip(&merges) {
        let mut admitted = p
            .iter()
            .filter(|&&i| i != OFF_AXIS)
            .map(|&i| m.axis.get(i as usize));
        if let Some(first) = admitted.next() {
            let (lo, hi) = admitted.fold((first, first), |(lo, hi), k| (lo.min(k), hi.max(k)));
            extent.insert(c.name().to_string(), json!([key_json(lo), key_json(hi)]));
        }
    }
    let n_vars = conv.var_names.len();
    if pos.iter().any(|p| p.contains(&OFF_AXIS)) {
        let none = vec![false; n_vars];
        conv.rows.scan(Some(&none), |_, b| {
            report.rows_dropped += (0..b.len).filter(|&i| !admitted(&pos, b, i)).count() as u64;
            Ok(())
        })?;
    }
    // first position along each dim whose content may differ from before
    let first_change: Vec<u64> = merges
        .iter()
        .zip(&old_len)
        .map(|(m, &n)| m.first_shift.unwrap_or(n) as u64)
        .collect();
    let dim_index = |name: &str| node.coords.iter().position(|c| c.name() == name);
    let var_dims = |v: &Variable| -> Result<Vec<usize>, MergeError> {
        v.coords
            .iter()
            .map(|d| dim_index(d).ok_or_else(|| MergeError::Invalid(format!("dim {d}"))))
            .collect()
    };
    // a variable that does not use every coordinate must not vary along the others: checked for
    // every variable before anything is written, so a refused contribution writes nothing
    for (vi, name) in conv.var_names.iter().enumerate() {
        let v = node
            .var(name)
            .ok_or_else(|| MergeError::Invalid(format!("variable {name} missing")))?;
        let dims = var_dims(v)?;
        if dims.len() == node.coords.len() {
            continue; // rows are unique per full coordinate tuple already
        }
        let shape: Vec<u64> = dims.iter().map(|&d| merges[d].axis.len() as u64).collect();
        let st = strides(&shape);
        let n_cells = shape.iter().product::<u64>() as usize;
        // per cell: the first row (+1) that gave it a value, and that value
        let mut first: Vec<u32> = vec![0; n_cells];
        let mut seen = Dense::na(kind(v), n_cells);
        let mut clash: Option<(usize, usize)> = None;
        conv.rows
            .scan(Some(&only(vi, n_vars)), |start, b| {
                let values = &b.vals[vi];
                for i in 0..b.len {
                    if !admitted(&pos, b, i) || (values.is_na(i) && !opts.overwrite_na) {
                        continue;
                    }
                    let nf = flat_cell(&pos, b, &dims, &st, i);
                    match first[nf] {
                        0 => {
                            first[nf] = (start + i) as u32 + 1;
                            seen.set_value(nf, values, i);
                        }
                        p if !seen.same_as(nf, values, i) => {
                            // stop the scan here; the error is built below
                            clash = Some((p as usize - 1, start + i));
                            return Err(MergeError::Invalid(String::new()));
                        }
                        _ => {}
                    }
                }
                Ok(())
            })
            .or_else(|e| if clash.is_some() { Ok(()) } else { Err(e) })?;
        if let Some((prev, r)) = clash {
            let unused: Vec<String> = node
                .coords
                .iter()
                .map(|c| c.name().to_string())
                .filter(|c| !v.coords.contains(c))
                .collect();
            let values = clash_values(conv, vi, prev, r)?;
            return Err(MergeError::VariesAlongUnusedDim {
                file: source.to_string(),
                variable: name.clone(),
                detail: format!(
                    "does not use coordinate(s) {unused:?} but its values differ along them (lines {} and {}: {:?} vs {:?})",
                    conv.lines.get(prev), conv.lines.get(r), values.0, values.1
                ),
            });
        }
    }
    // the rows' positions are known: the dictionaries' values are not needed any more (a
    // retry converts the input again), which leaves the merged axis as the one copy of each
    // value while the arrays are written (spec/019)
    conv.release_keys();
    let conv: &Converted = conv;

    choose_chunks_at_first_write(store, node, &merges).await?;

    // 2. coordinate arrays and composed components
    for (ci, c) in node.coords.iter().enumerate() {
        if merges[ci].added == 0 {
            continue;
        }
        let k = coord_kind(c);
        let fc = first_change[ci];
        let m = &merges[ci];
        for comp in &c.composed {
            let v = node
                .var(comp)
                .ok_or_else(|| MergeError::Invalid(format!("component {comp} missing")))?;
            let (mut arr, old) = read_dense(store, &array_path(&node.path, comp), kind(v)).await?;
            let mut d = Dense::na(kind(v), m.axis.len());
            let old_pos = KeyIndex::of(&m.old);
            let vals = conv.components.get(comp);
            for (i, key) in m.axis.iter().enumerate() {
                match old_pos.get(&m.old, key) {
                    Some(j) if j < old.len() => d.copy_from(i, &old, j),
                    _ => {
                        if let Some(s) = vals.and_then(|v| v.get(&key.to_key())) {
                            d.set(i, s);
                        }
                    }
                }
            }
            write_dense(&mut arr, vec![m.axis.len() as u64], &d, &|s, c| {
                s[0] + c[0] > fc
            })
            .await?;
        }
        // the axis is written from its own values (lent to the array, no copy for numbers)
        let mut arr = open_array(store, &array_path(&node.path, c.name())).await?;
        let axis = std::mem::take(&mut merges[ci].axis);
        let n = axis.len() as u64;
        let (d, kept) = match (k, axis) {
            (Kind::I64(na), Keys::I(v)) => (Dense::I(v, na), None),
            (Kind::F64, Keys::F(v)) => (Dense::F(v), None),
            (k, axis) => (dense_of(k, &axis), Some(axis)),
        };
        let written = write_dense(&mut arr, vec![n], &d, &|s, c| s[0] + c[0] > fc).await;
        merges[ci].axis = kept.unwrap_or_else(|| keys_of(d));
        written?;
    }

    // 3. data variables, each in bands of whole chunk rows along its first dimension: memory
    // holds one band of the array, never the whole of it (spec/017)
    let mut digests: Vec<(String, [u8; 32])> = vec![];
    for (vi, name) in conv.var_names.iter().enumerate() {
        let v = node
            .var(name)
            .ok_or_else(|| MergeError::Invalid(format!("variable {name} missing")))?;
        let dims = var_dims(v)?;
        let k = kind(v);
        let path = array_path(&node.path, name);
        let mut arr = open_array(store, &path).await?;
        let old_shape: Vec<u64> = arr.shape().to_vec();
        let new_shape: Vec<u64> = dims.iter().map(|&d| merges[d].axis.len() as u64).collect();
        let nst = strides(&new_shape);
        let ost = strides(&old_shape);
        let total = new_shape.iter().product::<u64>() as usize;
        let old_total = old_shape.iter().product::<u64>() as usize;
        let unmoved = dims
            .iter()
            .all(|&d| merges[d].first_shift.is_none() && merges[d].added == 0);
        // per dimension: new position of each old position (ascending: axes only grow, in
        // order); `None` where every old value keeps its position (appends)
        let maps: Vec<Option<Vec<u32>>> = dims
            .iter()
            .enumerate()
            .map(|(a, &d)| {
                merges[d].first_shift.map(|_| {
                    (0..old_shape[a] as usize)
                        .map(|i| {
                            axis_pos[d]
                                .get(&merges[d].axis, merges[d].old.get(i))
                                .map_or(0, |p| p as u32)
                        })
                        .collect()
                })
            })
            .collect();
        let new_pos = |a: usize, i: usize| maps[a].as_ref().map_or(i, |m| m[i] as usize);
        let chunk = stored_chunks(&arr)?;
        let grid: Vec<u64> = new_shape
            .iter()
            .zip(&chunk)
            .map(|(n, c)| n.div_ceil(*c).max(1))
            .collect();
        let sel = only(vi, n_vars);
        let writes = |b: &RowBlock, i: usize| {
            admitted(&pos, b, i) && (!b.vals[vi].is_na(i) || opts.overwrite_na)
        };
        // which chunks the contribution writes into, and per block of rows the positions along
        // the first dimension it writes (so a band reads only the blocks that reach into it)
        let mut touched_chunks = vec![false; grid.iter().product::<u64>() as usize];
        let mut reach: Vec<(u64, u64)> = vec![];
        conv.rows.scan(Some(&sel), |_, b| {
            let mut r = (u64::MAX, 0);
            for i in (0..b.len).filter(|&i| writes(b, i)) {
                let cf = dims.iter().enumerate().fold(0u64, |cf, (a, &d)| {
                    cf * grid[a] + pos[d][b.idx[d][i] as usize] as u64 / chunk[a]
                });
                touched_chunks[cf as usize] = true;
                if let Some(&d) = dims.first() {
                    let p = pos[d][b.idx[d][i] as usize] as u64;
                    r = (r.0.min(p), r.1.max(p + 1));
                }
            }
            reach.push(r);
            Ok(())
        })?;
        let fc: Vec<u64> = dims.iter().map(|&d| first_change[d]).collect();
        let dirty = |start: &[u64], cshape: &[u64]| {
            let cf = start
                .iter()
                .zip(cshape)
                .zip(&grid)
                .fold(0u64, |acc, ((s, c), g)| acc * g + s / c);
            touched_chunks[cf as usize]
                || start
                    .iter()
                    .zip(cshape)
                    .zip(&fc)
                    .any(|((s, c), f)| s + c > *f)
        };
        if arr.shape() != new_shape.as_slice() {
            arr.set_shape(new_shape.clone()).map_err(zerr)?;
            store_array_metadata(&arr).await?;
        }
        // a variable along every coordinate gets each cell from one row at most (rows are unique
        // per coordinate tuple); one that is not may get a cell from several rows with equal
        // values (checked above): one bit per cell says "written by an earlier row"
        let unique = dims.len() == node.coords.len();
        let mut written: Vec<u64> = vec![0; if unique { 0 } else { total.div_ceil(64) }];
        // cells by position on the merged axes: a set lists its values in axis order (sorted
        // for a sorted coordinate, which then takes a byte or two a value; spec/019)
        let dicts: Vec<&Keys> = dims.iter().map(|&d| &merges[d].axis).collect();
        let mut cellset = super::cells::CellSetBuilder::new(v.coords.clone(), dicts);
        // bands of whole chunk rows along the first dimension, last band first: old cells only
        // move to higher positions, so a band never reads a chunk a band before it rewrote
        let len0 = new_shape.first().copied().unwrap_or(1);
        let rest: u64 = new_shape.iter().skip(1).product::<u64>().max(1);
        let chunk0 = chunk.first().copied().unwrap_or(1);
        let band_cells = (opts.budget() / 8) as u64;
        let band_rows = ((band_cells / rest) / chunk0).max(1) * chunk0;
        let mut bands: Vec<(u64, u64)> = (0..len0.div_ceil(band_rows))
            .map(|b| (b * band_rows, ((b + 1) * band_rows).min(len0)))
            .collect();
        bands.reverse();
        for (n0, n1) in bands {
            if total == 0 {
                break;
            }
            let todo = band_chunks(&arr, &new_shape, n0, n1, &dirty)?;
            if todo.is_empty() {
                continue;
            }
            let band_shape: Vec<u64> = std::iter::once(n1 - n0)
                .chain(new_shape.iter().skip(1).copied())
                .take(new_shape.len())
                .collect();
            let base = (n0 * rest) as usize;
            // the old cells that land in this band, at their new positions
            let (o0, o1) = if old_total == 0 {
                (0, 0)
            } else if unmoved {
                (n0, n1.min(old_shape[0]))
            } else {
                match &maps[0] {
                    None => (n0.min(old_shape[0]), n1.min(old_shape[0])),
                    Some(m0) => (
                        m0.partition_point(|&p| u64::from(p) < n0) as u64,
                        m0.partition_point(|&p| u64::from(p) < n1) as u64,
                    ),
                }
            };
            let mut data = Dense::na(k, (n1 - n0) as usize * rest as usize);
            if o1 > o0 {
                let old = read_band(&arr, &old_shape, o0, o1, k).await?;
                if unmoved {
                    data = old;
                } else {
                    let from = o0 as usize * ost[0];
                    for j in 0..old.len() {
                        let flat = from + j;
                        let mut nf = 0;
                        for a in 0..dims.len() {
                            nf += new_pos(a, (flat / ost[a]) % old_shape[a] as usize) * nst[a];
                        }
                        data.copy_from(nf - base, &old, j);
                    }
                }
            }
            // the contribution's cells in this band
            let in_band =
                |n: usize| dims.is_empty() || reach.get(n).is_some_and(|&(a, z)| a < n1 && z > n0);
            conv.rows.scan_where(Some(&sel), &in_band, |_, b| {
                let values = &b.vals[vi];
                for i in (0..b.len).filter(|&i| writes(b, i)) {
                    let nf = flat_cell(&pos, b, &dims, &nst, i);
                    if nf < base || nf >= base + data.len() {
                        continue;
                    }
                    if !unique {
                        let (word, bit) = (nf / 64, 1u64 << (nf % 64));
                        if written[word] & bit != 0 {
                            continue; // the same cell again (equal values, checked above)
                        }
                        written[word] |= bit;
                    }
                    cellset.note(dims.iter().map(|&d| pos[d][b.idx[d][i] as usize]));
                    data.set_value(nf - base, values, i);
                    report.cells_written += 1;
                }
                Ok(())
            })?;
            let t = std::time::Instant::now();
            write_chunks(&arr, &band_shape, n0, &data, todo).await?;
            report.timings.write += t.elapsed();
        }
        if cellset.needs_tuples() {
            // not a full grid: list the cells, first writer per cell in row order as above,
            // clearing each cell's bit as it is listed
            conv.rows.scan(Some(&sel), |_, b| {
                for i in (0..b.len).filter(|&i| writes(b, i)) {
                    if !unique {
                        let nf = flat_cell(&pos, b, &dims, &nst, i);
                        let (word, bit) = (nf / 64, 1u64 << (nf % 64));
                        if written[word] & bit == 0 {
                            continue;
                        }
                        written[word] &= !bit;
                    }
                    cellset.push_tuple(dims.iter().map(|&d| pos[d][b.idx[d][i] as usize]));
                }
                Ok(())
            })?;
        }
        // variables written at the same cells (the usual table) share one set (spec/019)
        let digest = cellset.digest();
        if let Some((other, _)) = digests.iter().find(|(_, d)| *d == digest) {
            let text =
                serde_json::value::to_raw_value(&json!({ "same_as": other })).map_err(zerr)?;
            cells.insert(name.clone(), text);
        } else if let Some(text) = cellset.to_json().map_err(zerr)? {
            // straight to JSON text: a sparse set lists every cell, and a `Value` per number
            // would take ~4x the memory
            cells.insert(name.clone(), text);
            digests.push((name.clone(), digest));
        }
    }
    Ok(())
}

/// The cell sets of one node's variables (variable → JSON text of its [`super::cells::CellSet`]).
type CellSets = BTreeMap<String, Box<serde_json::value::RawValue>>;

/// What merging one node records for the commit besides the data.
#[derive(Default)]
struct NodeOutput {
    /// Cells written, per variable (blame).
    cells: CellSets,
    /// Least and greatest value per coordinate (the commit's extent).
    extent: Map<String, Value>,
}

/// Rows per batch when an input file is converted while it is read.
pub const BATCH_ROWS: usize = 1 << 16;

/// Where the contributions of one update come from.
enum Inputs<'a> {
    /// Tables in memory, converted again on every attempt.
    Tables(&'a [(String, Table)]),
    /// Files, converted batch by batch while read; the conversion is kept across attempts as
    /// long as the schema it was made for is the tip's.
    Files {
        files: &'a [(String, PathBuf)],
        progress: &'a (dyn Fn(u64) + Sync),
        /// Schema digest → (source, converted) per file.
        converted: Option<(String, ConvertedInputs)>,
        /// blake3 of each file as first read (recorded in the provenance).
        digests: Vec<String>,
    },
}

/// Converted contributions: (source named in errors, converted rows) per input.
type ConvertedInputs = Vec<(String, Converted)>;

/// Convert in-memory `tables` for `schema`: one contribution per node of `groups`.
fn convert_tables(
    schema: &Schema,
    tables: &[(String, Table)],
    groups: &[(String, Vec<usize>)],
    opts: &UpdateOptions,
) -> Result<ConvertedInputs, MergeError> {
    groups
        .iter()
        .map(|(path, members)| {
            let node = super::require_node(schema, path)?;
            let mut conv = convert::Converter::new(node, opts.on_invalid).spill_over(opts.budget());
            for &i in members {
                conv.push(&tables[i].1)?;
            }
            let names: Vec<&str> = members
                .iter()
                .map(|&i| tables[i].1.source.as_str())
                .collect();
            Ok((names.join(", "), conv.finish()?))
        })
        .collect()
}

impl UpdateReport {
    /// Keep the first dropped rows of a contribution (capped over the whole update).
    fn note_dropped(&mut self, rows: &[(String, u64)]) {
        for (file, line) in rows {
            if self.dropped.len() < 2 * convert::DROPPED_LINES {
                self.dropped.push(DroppedRow {
                    file: file.clone(),
                    line: *line,
                });
            }
        }
    }
}

/// Convert `files` for `schema`, reading each batch by batch; also gives each file's blake3.
fn convert_files(
    schema: &Schema,
    files: &[(String, PathBuf)],
    opts: &UpdateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(ConvertedInputs, Vec<String>), MergeError> {
    let mut out = Vec::new();
    let mut digests = vec![String::new(); files.len()];
    for (path, members) in node_groups(files.iter().map(|(p, _)| p)) {
        let node = super::require_node(schema, &path)?;
        let mut conv = convert::Converter::new(node, opts.on_invalid).spill_over(opts.budget());
        for &i in &members {
            let file = &files[i].1;
            digests[i] = Table::read_batches_with(file, &opts.input, BATCH_ROWS, progress, |b| {
                conv.push(&b)
            })?;
        }
        let names: Vec<String> = members
            .iter()
            .map(|&i| files[i].1.display().to_string())
            .collect();
        out.push((names.join(", "), conv.finish()?));
    }
    Ok((out, digests))
}

/// The inputs' node paths, each once in order of first appearance, with the positions of the
/// inputs for it: the files of one node are one contribution to it (their rows in input order,
/// a later file's row winning over an earlier one's at the same cell), so that its cell record
/// and extent cover them all.
fn node_groups<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = vec![];
    for (i, p) in paths.enumerate() {
        match groups.iter_mut().find(|(g, _)| g == p) {
            Some((_, members)) => members.push(i),
            None => groups.push((p.clone(), vec![i])),
        }
    }
    groups
}

/// Merge `inputs` (node path, table) into `branch` as one commit, retrying on a newer tip when
/// another writer committed first.
pub async fn update(
    repo: &Repo,
    branch: &str,
    inputs: &[(String, Table)],
    prov: Provenance,
    opts: &UpdateOptions,
) -> Result<UpdateReport, MergeError> {
    update_inputs(repo, branch, Inputs::Tables(inputs), prov, opts).await
}

/// Merge the CSV/Parquet `files` (node path, file) into `branch` as one commit (as [`update`]),
/// reading each file batch by batch: memory holds one batch of text and the typed rows, never
/// the whole input. Sets the provenance's input digest (one file: its blake3; several: the
/// blake3 of their digests in order). `progress` gets the number of bytes read as it goes.
pub async fn update_files(
    repo: &Repo,
    branch: &str,
    files: &[(String, PathBuf)],
    mut prov: Provenance,
    opts: &UpdateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<UpdateReport, MergeError> {
    // convert for the tip's schema before the first attempt, so the input digest is known
    let tx = repo.transaction(branch).await?;
    let store: Arc<Store> = tx.store();
    let schema = stored_schema(&store).await?;
    drop(tx);
    let t = std::time::Instant::now();
    let (converted, digests) = convert_files(&schema, files, opts, progress)?;
    let convert_time = t.elapsed();
    prov.input_blake3 = match digests.as_slice() {
        [one] => Some(one.clone()),
        many => {
            let mut h = blake3::Hasher::new();
            for d in many {
                h.update(d.as_bytes());
            }
            Some(h.finalize().to_hex().to_string())
        }
    };
    let inputs = Inputs::Files {
        files,
        progress,
        converted: Some((schema.digest(), converted)),
        digests,
    };
    let mut report = update_inputs(repo, branch, inputs, prov, opts).await?;
    report.timings.convert += convert_time;
    Ok(report)
}

/// Reading and converting the files for longer than this makes an update plan again on the tip
/// as it is after the reading (a small file is planned on the tip it was read against: reading
/// the tip twice would cost more than the race window it closes).
const REPLAN_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

async fn update_inputs(
    repo: &Repo,
    branch: &str,
    mut inputs: Inputs<'_>,
    mut prov: Provenance,
    opts: &UpdateOptions,
) -> Result<UpdateReport, MergeError> {
    let max_attempts = 16;
    let mut attempt = 0;
    let mut reconversions = 0;
    loop {
        attempt += 1;
        let mut tx = repo.transaction(branch).await?;
        let store: Arc<Store> = tx.store();
        let schema = stored_schema(&store).await?;
        let mut report = UpdateReport {
            branch: branch.into(),
            attempts: attempt,
            ..Default::default()
        };
        let mut cells: crate::repo::CellRecord = BTreeMap::new();
        let mut extents = Map::new();
        let groups = match &inputs {
            Inputs::Tables(tables) => node_groups(tables.iter().map(|(p, _)| p)),
            Inputs::Files { files, .. } => node_groups(files.iter().map(|(p, _)| p)),
        };
        let paths: Vec<String> = groups.iter().map(|(p, _)| p.clone()).collect();
        let t = std::time::Instant::now();
        let mut fresh: ConvertedInputs;
        let contributions: &mut [(String, Converted)] = match &mut inputs {
            Inputs::Tables(tables) => {
                fresh = convert_tables(&schema, tables, &groups, opts)?;
                &mut fresh
            }
            Inputs::Files {
                files,
                progress,
                converted,
                digests,
            } => {
                let digest = schema.digest();
                let stale = |(d, c): &(String, ConvertedInputs)| {
                    *d != digest || c.iter().any(|(_, c)| c.keys_released)
                };
                if converted.as_ref().is_none_or(stale) {
                    // a retry (an attempt gives back the dictionaries), or the schema changed
                    // under us: convert the files again, for the tip's schema
                    *converted = None;
                    let (conv, again) = convert_files(&schema, files, opts, *progress)?;
                    if let Some(((_, file), _)) = files
                        .iter()
                        .zip(digests.iter().zip(&again))
                        .find(|(_, (a, b))| a != b)
                    {
                        return Err(MergeError::Invalid(format!(
                            "{}: the file changed while the update was being retried; nothing was written, run the update again",
                            file.display()
                        )));
                    }
                    *converted = Some((digest, conv));
                    if reconversions < max_attempts && t.elapsed() > REPLAN_AFTER {
                        // reading the files took a while: plan on a tip read now, not on the
                        // one this attempt started from (a shorter window for other writers)
                        reconversions += 1;
                        attempt -= 1;
                        continue;
                    }
                }
                match converted.as_mut() {
                    Some((_, c)) => c.as_mut_slice(),
                    None => &mut [],
                }
            }
        };
        report.timings.convert += t.elapsed();
        for (path, (source, conv)) in paths.iter().zip(contributions.iter_mut()) {
            let node = super::require_node(&schema, path)?;
            let t = std::time::Instant::now();
            let written_before = report.timings.write;
            report.rows_read += conv.rows_read;
            report.rows_dropped += conv.rows_dropped;
            report.note_dropped(&conv.dropped_lines);
            report.duplicates += conv.duplicates;
            report.invalid_to_na += conv.invalid_to_na;
            let mut node_out = NodeOutput::default();
            apply_node(&store, node, conv, opts, source, &mut report, &mut node_out).await?;
            let NodeOutput {
                cells: node_cells,
                extent: node_extent,
            } = node_out;
            if !node_extent.is_empty() {
                extents.insert(node.path.clone(), Value::Object(node_extent));
            }
            report.timings.merge += t.elapsed() - (report.timings.write - written_before);
            if !node_cells.is_empty() {
                cells.insert(node.path.clone(), node_cells);
            }
        }
        tx.set_cells(cells);
        let stats = tx.stats();
        report.chunks_written = stats.chunks_written + stats.chunks_inline;
        report.chunks_deduplicated = stats.chunks_deduplicated;
        if opts.dry_run {
            return Ok(report);
        }
        let mut p = prov.clone();
        p.schema_blake3 = Some(schema.digest());
        p.extent = Some(Value::Object(extents.clone()));
        for (k, v) in [
            ("rows_read", report.rows_read),
            ("rows_dropped", report.rows_dropped),
            ("duplicates", report.duplicates),
            ("invalid_to_na", report.invalid_to_na),
            ("cells_written", report.cells_written),
        ] {
            p.counts.insert(k.into(), v);
        }
        let t = std::time::Instant::now();
        let committed = tx.commit(p).await;
        report.timings.commit = t.elapsed();
        match committed {
            Ok(out) => {
                report.commit = out.commit;
                return Ok(report);
            }
            Err(RepoError::Conflict { .. }) if attempt < max_attempts => {
                // another writer changed the same chunks: re-plan on its tip
                // exponential backoff (capped) with jitter, so racing writers spread out
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::from(d.subsec_nanos()))
                    .unwrap_or(0)
                    ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9);
                let base = 10u64 * (1 << attempt.min(5));
                let wait = base + jitter % base;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                prov.time = Some(chrono::Utc::now());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

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
pub(super) async fn read_var(
    store: &Arc<Store>,
    node: &NodeSchema,
    v: &Variable,
) -> Result<(Vec<u64>, Vec<Scalar>), MergeError> {
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
) -> Result<Vec<bool>, MergeError> {
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
) -> Result<NodeData, MergeError> {
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
) -> Result<Vec<Scalar>, MergeError> {
    let c = node.coord(coord).ok_or_else(|| {
        MergeError::Invalid(format!("no coordinate '{coord}' in node '{}'", node.path))
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
async fn sorted_span(
    arr: &Array<Store>,
    shape: &[u64],
    k: Kind,
    lo: &Key,
    hi: &Key,
) -> Result<Option<(u64, u64)>, MergeError> {
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
