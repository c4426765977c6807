//! Schema evolution: the changes a stored dataset's schema allows, applied as one commit.

use std::collections::HashMap;
use std::sync::Arc;

use zarrs::array::Array;

use super::layout::{
    array_path, chunk_of, coord_attrs, coord_storage, create_array, create_array_shaped,
    create_node, open_array, storage, store_array_metadata, store_group, stored_chunks,
    stored_schema, var_attrs, zerr, Store, PROVISIONAL_CHUNK,
};
use super::UpdateError;
use crate::provenance::Provenance;
use crate::repo::Repo;
use crate::schema::{self, NodeSchema, Variable};

/// What changed between two versions of a variable that evolution does not allow, if anything.
pub(crate) fn incompatible(old: &Variable, new: &Variable) -> Option<String> {
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
) -> Result<crate::repo::CommitOutcome, UpdateError> {
    let new = schema::load_str(text, file)?;
    let tx = repo.transaction(branch).await?;
    let store: Arc<Store> = tx.store();
    let old = stored_schema(&store).await?;
    let refuse = |what: String| UpdateError::SchemaChangeRefused {
        file: file.to_string(),
        what,
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
pub(crate) async fn evolve_node(
    store: &Arc<Store>,
    on: &NodeSchema,
    nn: &NodeSchema,
) -> Result<(), UpdateError> {
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
