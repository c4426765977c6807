//! Who contributed what: `blame` by coordinate values and `export` of the tidy long table.
//!
//! Blame walks the history of a revision newest first and attributes each selected cell to the
//! first commit whose cell record contains it (spec/011). Merge commits are followed into the
//! merged branch (so contributions keep their original authors); a revert and the commit it
//! reverts are passed over (the value is the earlier one); a cherry-pick is credited with the
//! cells of the commit it picked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use icechunk::format::SnapshotId;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::provenance::keys;
use crate::repo::skip::{lowbit, Skip};
use crate::repo::{CommitInfo, Repo};
use crate::schema::{DType, NodeSchema, Schema};
use crate::time::{format_ticks, parse_instant, to_ticks, Zone};
use crate::update::cells::CellMatcher;
use crate::update::{read_node, Key, NodeData, Scalar, UpdateError};

/// One `--where DIM=VALUE` or `DIM=FROM..TO` filter.
#[derive(Clone, Debug)]
pub struct Where {
    /// Dimension.
    pub dim: String,
    /// Lower (or only) value, as text.
    pub from: String,
    /// Upper value for a range.
    pub to: Option<String>,
}

impl Where {
    /// Parse `DIM=VALUE` or `DIM=FROM..TO`.
    pub fn parse(s: &str) -> Result<Where, UpdateError> {
        let (dim, v) = s.split_once('=').ok_or_else(|| {
            UpdateError::BadSelection(format!("selection '{s}' is not DIM=VALUE or DIM=FROM..TO"))
        })?;
        let (from, to) = match v.split_once("..") {
            Some((a, b)) => (a.to_string(), Some(b.to_string())),
            None => (v.to_string(), None),
        };
        Ok(Where {
            dim: dim.trim().to_string(),
            from,
            to,
        })
    }
}

/// Parse a coordinate value given on the command line into a key of that coordinate.
fn key_of(node: &NodeSchema, dim: &str, text: &str) -> Result<Key, UpdateError> {
    let c = node.coord(dim).ok_or_else(|| {
        UpdateError::BadSelection(format!(
            "'{dim}' is not a coordinate of node '{}'; coordinates: {}",
            node.path,
            node.coords
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let bad = |why: String| UpdateError::BadSelection(format!("selection {dim}={text}: {why}"));
    if !c.composed.is_empty() {
        return text
            .parse::<i64>()
            .map(Key::I)
            .map_err(|_| bad("select a composed coordinate by its key".into()));
    }
    match c.var.dtype {
        Some(DType::DateTime(t)) => Ok(Key::I(to_ticks(
            parse_instant(text, &Zone::utc(), t).map_err(bad)?,
            t,
        ))),
        Some(DType::Str(_)) => Ok(Key::S(text.to_string())),
        Some(d) if d.is_integer() => text
            .parse::<i64>()
            .map(Key::I)
            .map_err(|_| bad("not an integer".into())),
        _ => text
            .parse::<f64>()
            .map(Key::f)
            .map_err(|_| bad("not a number".into())),
    }
}

fn scalar_key(s: &Scalar) -> Option<Key> {
    s.key()
}

fn display(node: &NodeSchema, dim: &str, k: &Key) -> Value {
    let tick = node.coord(dim).and_then(|c| match c.var.dtype {
        Some(DType::DateTime(t)) => Some(t),
        _ => None,
    });
    match (k, tick) {
        (Key::I(i), Some(t)) => json!(format_ticks(*i, t)),
        (Key::I(i), None) => json!(i),
        (Key::F(f), _) => json!(f.0),
        (Key::S(s), _) => json!(s),
    }
}

/// The selected values of each dimension of `dims`.
fn select(
    node: &NodeSchema,
    data: &NodeData,
    dims: &[String],
    wheres: &[Where],
) -> Result<Vec<Vec<Key>>, UpdateError> {
    for w in wheres {
        if !dims.contains(&w.dim) {
            return Err(UpdateError::BadSelection(format!(
                "selection {}: not a dimension of the selected variable(s) ({})",
                w.dim,
                dims.join(", ")
            )));
        }
    }
    dims.iter()
        .map(|d| {
            let axis: Vec<Key> = data
                .coords
                .iter()
                .find(|(n, _)| n == d)
                .map(|(_, v)| v.iter().filter_map(scalar_key).collect())
                .unwrap_or_default();
            let mut keep = axis;
            for w in wheres.iter().filter(|w| &w.dim == d) {
                let lo = key_of(node, d, &w.from)?;
                match &w.to {
                    None => keep.retain(|k| *k == lo),
                    Some(hi) => {
                        let hi = key_of(node, d, hi)?;
                        keep.retain(|k| *k >= lo && *k <= hi);
                    }
                }
            }
            Ok(keep)
        })
        .collect()
}

/// One blame record.
#[derive(Clone, Debug, Serialize)]
pub struct BlameRecord {
    /// Per dimension: `[first, last]` of a contiguous run, or the list of values.
    pub selection: Map<String, Value>,
    /// The commit that last wrote these cells (`null`: never written, or written before the
    /// history horizon — gc expired the commit; `message` says which).
    pub commit: Option<String>,
    /// Its author.
    pub author: Option<String>,
    /// Its time.
    pub time: Option<String>,
    /// Its message.
    pub message: Option<String>,
}

struct Walker<'a> {
    repo: &'a Repo,
    node: String,
    var: String,
    /// The variable's dimensions (the order of a cell's keys).
    dims: Vec<String>,
    /// Cells whose history ended without a writer inside a merged branch's walk (they are not
    /// looked for further along the target's line).
    settled: std::sync::Mutex<Vec<Vec<Key>>>,
}

/// `v` as a key of the same kind as `like` (`None` when it is not one).
fn key_like(like: &Key, v: &Value) -> Option<Key> {
    match like {
        Key::I(_) => v.as_i64().map(Key::I),
        Key::F(_) => v.as_f64().map(Key::f),
        Key::S(_) => v.as_str().map(|s| Key::S(s.to_string())),
    }
}

impl Walker<'_> {
    /// Whether `extent` (spec/011; a commit's own or the union over a run of commits, spec/018)
    /// shows that none of the `open` cells were written. `None` (unbounded) excludes nothing.
    fn excludes(&self, extent: Option<&Map<String, Value>>, open: &[Vec<Key>]) -> bool {
        let Some(all) = extent else {
            return false;
        };
        let Some(ext) = all.get(&self.node) else {
            return true; // wrote nothing in this node
        };
        open.iter().all(|cell| {
            cell.iter().zip(&self.dims).any(|(k, d)| {
                let bounds = ext.get(d).and_then(Value::as_array);
                match bounds.map(|b| b.as_slice()) {
                    Some([lo, hi]) => match (key_like(k, lo), key_like(k, hi)) {
                        (Some(lo), Some(hi)) => *k < lo || *k > hi,
                        _ => false,
                    },
                    _ => false,
                }
            })
        })
    }

    /// Whether the commit's extent shows that it wrote none of the `open` cells, so its side
    /// record need not be read. Commits without an extent are read.
    fn misses(&self, info: &CommitInfo, open: &[Vec<Key>]) -> bool {
        self.excludes(
            info.extra.get(keys::EXTENT).and_then(Value::as_object),
            open,
        )
    }

    async fn cells_of(&self, info: &CommitInfo) -> Result<Option<CellMatcher>, UpdateError> {
        Ok(self.own_cells(info).await?.flatten())
    }

    /// The commits a merge merged (its record's list, newest first; empty without one).
    async fn merged_commits(&self, info: &CommitInfo) -> Result<Vec<CommitInfo>, UpdateError> {
        let rec = self.repo.record(info).await?;
        Ok(rec
            .as_ref()
            .and_then(|r| r.get(crate::history::MERGED))
            .and_then(Value::as_array)
            .map(|l| crate::repo::entries(l))
            .unwrap_or_default())
    }

    /// The cells of this variable a commit's record lists: `None` when the commit has no cell
    /// record (made by an earlier version, or a revert that restored this node chunk by chunk,
    /// spec/028), `Some(None)` when it lists none here.
    async fn own_cells(
        &self,
        info: &CommitInfo,
    ) -> Result<Option<Option<CellMatcher>>, UpdateError> {
        let Some(rec) = self.repo.record(info).await? else {
            return Ok(None);
        };
        let by_chunks = rec
            .get(crate::history::BY_CHUNKS)
            .and_then(Value::as_array)
            .is_some_and(|n| n.iter().any(|p| p.as_str() == Some(&self.node)));
        if rec.get("cells").is_none() || by_chunks {
            return Ok(None);
        }
        Ok(Some(crate::update::cells::recorded(
            &rec, &self.node, &self.var,
        )))
    }

    /// Attribute `open` cells walking from `tip` (first parents) down to `stop` (exclusive).
    ///
    /// A revert and the commit it reverts are both passed over for the cells involved: the
    /// value there is the one from before the reverted commit.
    async fn walk(
        &self,
        tip: &SnapshotId,
        stop: Option<&str>,
        open: &mut Vec<Vec<Key>>,
        found: &mut Vec<(CommitInfo, Vec<Vec<Key>>)>,
        reverted: &mut HashMap<String, Reverted>,
    ) -> Result<(), UpdateError> {
        let engine_err = |what: String| {
            move |e: icechunk::format::IcechunkFormatError| {
                UpdateError::Invalid(format!(
                    "reading history: {what}: {}",
                    crate::repo::one_line(&e.to_string())
                ))
            }
        };
        let (history, _) = self
            .repo
            .icechunk()
            .asset_manager()
            .fetch_repo_info()
            .await
            .map_err(|e| crate::repo::RepoError::from_engine("reading history", e))?;
        // a skip may land on `stop` but not below it (spec/018); a stop without a skip record is
        // the floor of every chain above it
        let stop_depth = match stop {
            None => 0,
            Some(s) => SnapshotId::try_from(s)
                .ok()
                .and_then(|id| history.find_snapshot(&id).ok())
                .map_or(u64::MAX, |snap| {
                    Skip::of(&snap.metadata).map_or(0, |k| k.depth)
                }),
        };
        let find = |id: &SnapshotId| {
            history
                .find_snapshot(id)
                .map_err(engine_err(format!("commit {id}")))
        };
        // newest first along first parents; stop as soon as every selected cell is attributed
        let mut next = Some(find(tip)?);
        while let Some(snap) = next.take() {
            if open.is_empty() || stop.is_some_and(|s| snap.id.to_string() == s) {
                break;
            }
            // jump over a run of commits whose extents all miss the open cells (not to an
            // ancestor that gc expired: then commit by commit)
            if let Some(skip) = Skip::of(&snap.metadata) {
                if lowbit(skip.depth) > 1
                    && skip.to_depth() >= stop_depth
                    && self.excludes(skip.over.as_ref(), open)
                {
                    if let Ok(to) = history.find_snapshot(&skip.to) {
                        next = Some(to);
                        continue;
                    }
                }
            }
            next = match &snap.parent_id {
                Some(parent) => Some(find(parent)?),
                None => None,
            };
            let info = CommitInfo::from_snapshot(&snap);
            if self.visit(&info, open, found, reverted).await? {
                break;
            }
        }
        Ok(())
    }

    /// Attribute `open` cells at one commit of the walk; `true` when the walk ends here (an
    /// import). A revert is never credited: the cells it restored (its record; every cell for a
    /// revert without one) hold the values from before the commit it reverted, which is passed
    /// over for them — but not for those a revert of this revert brought back. A squash commit
    /// is its folded contributions, newest first.
    async fn visit(
        &self,
        info: &CommitInfo,
        open: &mut Vec<Vec<Key>>,
        found: &mut Vec<(CommitInfo, Vec<Vec<Key>>)>,
        reverted: &mut HashMap<String, Reverted>,
    ) -> Result<bool, UpdateError> {
        if let Some(target) = info.extra.get(keys::REVERTS).and_then(Value::as_str) {
            let restored = Reverted {
                cells: self.own_cells(info).await?.map(|c| c.map(Arc::new)),
                except: reverted.get(info.id.as_str()).cloned().map(Arc::new),
            };
            reverted.insert(target.to_string(), restored);
            return Ok(false);
        }
        let passed = pass_over(reverted.get(info.id.as_str()), open);
        let folded = crate::repo::folded(info);
        let done = if folded.is_empty() {
            self.credit(info, open, found, reverted).await
        } else {
            self.visit_all(&folded, open, found, reverted).await
        };
        open.extend(passed);
        done
    }

    /// [`Walker::visit`] each of `list` (newest first).
    async fn visit_all(
        &self,
        list: &[CommitInfo],
        open: &mut Vec<Vec<Key>>,
        found: &mut Vec<(CommitInfo, Vec<Vec<Key>>)>,
        reverted: &mut HashMap<String, Reverted>,
    ) -> Result<bool, UpdateError> {
        for f in list {
            if open.is_empty() {
                break;
            }
            if Box::pin(self.visit(f, open, found, reverted)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Credit `info` with the `open` cells it wrote; `true` when the walk ends here (an import).
    async fn credit(
        &self,
        info: &CommitInfo,
        open: &mut Vec<Vec<Key>>,
        found: &mut Vec<(CommitInfo, Vec<Vec<Key>>)>,
        reverted: &mut HashMap<String, Reverted>,
    ) -> Result<bool, UpdateError> {
        // a merge: the cells it took from the merged branch (its record) are blamed as on that
        // branch's tip, the rest along first parents; a merge without a record (an earlier
        // version's, by chunks) sends every open cell along the merged branch down to the base
        if let (Some(src), Some(base)) = (
            info.extra.get(keys::MERGED_FROM).and_then(Value::as_str),
            info.extra.get(keys::MERGE_BASE).and_then(Value::as_str),
        ) {
            let src = SnapshotId::try_from(src).map_err(|e| UpdateError::Invalid(e.to_string()))?;
            if self.repo.commit_info(&src).await.is_err() {
                // the merged branch's commits were collected (branch deleted, then gc): the
                // merge's record lists them (spec/028)
                let (mut theirs, merged) = match self.own_cells(info).await? {
                    Some(Some(m)) => (
                        take_out(open, |c| m.contains(c)),
                        self.merged_commits(info).await?,
                    ),
                    // nothing taken here; or an earlier version's merge, by chunks, whose source
                    // is gone: the target's line is all there is
                    Some(None) | None => return Ok(false),
                };
                let mut on_source = reverted.clone();
                Box::pin(self.visit_all(&merged, &mut theirs, found, &mut on_source)).await?;
                // below the merge base the two histories are one (a squash of the target may
                // have folded the base: then from the merge's first parent)
                let mut below = SnapshotId::try_from(base).ok();
                if let Some(b) = &below {
                    if self.repo.commit_info(b).await.is_err() {
                        below = info
                            .parents
                            .first()
                            .and_then(|p| SnapshotId::try_from(p.as_str()).ok());
                    }
                }
                if let Some(below) = below.filter(|_| !theirs.is_empty()) {
                    Box::pin(self.walk(&below, None, &mut theirs, found, &mut on_source)).await?;
                    if let Ok(mut settled) = self.settled.lock() {
                        settled.append(&mut theirs);
                    }
                }
                // nothing else knows who wrote what is left: the merge brought it
                if !theirs.is_empty() {
                    found.push((info.clone(), theirs));
                }
                return Ok(false);
            }
            match self.own_cells(info).await? {
                Some(taken) => {
                    let Some(m) = taken else {
                        return Ok(false);
                    };
                    let mut theirs = take_out(open, |c| m.contains(c));
                    // the merged branch's own reverts apply there only
                    let mut on_source = reverted.clone();
                    Box::pin(self.walk(&src, None, &mut theirs, found, &mut on_source)).await?;
                    if let Ok(mut settled) = self.settled.lock() {
                        settled.append(&mut theirs);
                    }
                }
                None => {
                    let mut theirs = std::mem::take(open);
                    Box::pin(self.walk(&src, Some(base), &mut theirs, found, reverted)).await?;
                    open.extend(theirs);
                }
            }
            return Ok(false);
        }
        // a cherry-pick is credited with the cells it took (its record), or those of the
        // commit it picked
        let picked = info.extra.get(keys::CHERRY_PICKED).and_then(Value::as_str);
        let credited_cells = match picked {
            None if self.misses(info, open) => None,
            Some(other) => match self.own_cells(info).await? {
                Some(own) => own,
                None => {
                    let id = SnapshotId::try_from(other)
                        .map_err(|e| UpdateError::Invalid(e.to_string()))?;
                    let o = self.repo.commit_info(&id).await?;
                    self.cells_of(&o).await?
                }
            },
            None => self.cells_of(info).await?,
        };
        // an import wrote the whole dataset: what is still open came with it (spec/015)
        if info.operation.as_deref() == Some("import") {
            found.push((info.clone(), std::mem::take(open)));
            return Ok(true);
        }
        if let Some(m) = credited_cells {
            let hit = take_out(open, |c| m.contains(c));
            if !hit.is_empty() {
                found.push((info.clone(), hit));
            }
        }
        Ok(false)
    }
}

/// Take the `open` cells a later revert restored out (`r`: what it restored for this commit).
fn pass_over(r: Option<&Reverted>, open: &mut Vec<Vec<Key>>) -> Vec<Vec<Key>> {
    match r {
        Some(r) => take_out(open, |c| r.contains(c)),
        None => vec![],
    }
}

/// Take the cells `which` selects out of `open`.
fn take_out(open: &mut Vec<Vec<Key>>, which: impl Fn(&[Key]) -> bool) -> Vec<Vec<Key>> {
    let (hit, rest): (Vec<_>, Vec<_>) = open.drain(..).partition(|c| which(c));
    *open = rest;
    hit
}

/// The cells a revert restored, for the commit it reverted: its cell record (`None`: every
/// cell; `Some(None)`: none), except those a revert of that revert brought back.
#[derive(Clone)]
struct Reverted {
    cells: Option<Option<Arc<CellMatcher>>>,
    except: Option<Arc<Reverted>>,
}

impl Reverted {
    fn contains(&self, cell: &[Key]) -> bool {
        self.cells
            .as_ref()
            .is_none_or(|m| m.as_ref().is_some_and(|m| m.contains(cell)))
            && !self.except.as_ref().is_some_and(|e| e.contains(cell))
    }
}

/// Split a set of cells (keys over `dims[k..]`) into boxes: per dimension the values of the box,
/// in axis order. A box's values along a sorted dimension are adjacent on the selection's axis
/// (`pos[d]`: position of each selected value), so `[first, last]` names exactly them; along an
/// unsorted one they are listed. Values whose remaining cells are the same share a box.
fn boxes(
    pos: &[HashMap<&Key, usize>],
    sorted: &[bool],
    k: usize,
    cells: &[&[Key]],
) -> Vec<Vec<Vec<Key>>> {
    if k == pos.len() {
        return vec![vec![]];
    }
    // the rest of the cells under each value of dimension k, by position on the axis
    let mut under: BTreeMap<usize, (&Key, Vec<&[Key]>)> = BTreeMap::new();
    for c in cells {
        let p = pos[k].get(&c[0]).copied().unwrap_or(usize::MAX);
        under
            .entry(p)
            .or_insert_with(|| (&c[0], vec![]))
            .1
            .push(&c[1..]);
    }
    // values with the same rest: runs of adjacent positions (sorted) or all of them (unsorted)
    // (values, their rest, position of the last value)
    type Group<'a> = (Vec<Key>, Vec<&'a [Key]>, usize);
    let mut groups: Vec<Group> = vec![];
    let mut by_rest: HashMap<Vec<&[Key]>, usize> = HashMap::new();
    for (p, (key, mut rest)) in under {
        rest.sort();
        rest.dedup();
        let same = if sorted[k] {
            groups
                .len()
                .checked_sub(1)
                .filter(|&g| groups[g].1 == rest && groups[g].2 + 1 == p)
        } else {
            by_rest.get(&rest).copied()
        };
        match same {
            Some(g) => {
                groups[g].0.push(key.clone());
                groups[g].2 = p;
            }
            None => {
                if !sorted[k] {
                    by_rest.insert(rest.clone(), groups.len());
                }
                groups.push((vec![key.clone()], rest, p));
            }
        }
    }
    let mut out = vec![];
    for (vals, rest, _) in groups {
        for mut b in boxes(pos, sorted, k + 1, &rest) {
            b.insert(0, vals.clone());
            out.push(b);
        }
    }
    out
}

/// Describe a set of cells as selections (`sel`: the selected values per dimension, in axis
/// order): `{dim: [first, last]}` for a run of a sorted dimension, `{dim: [values]}` otherwise.
fn describe(
    node: &NodeSchema,
    dims: &[String],
    sel: &[Vec<Key>],
    cells: &[Vec<Key>],
    out: &mut Vec<Map<String, Value>>,
) {
    let pos: Vec<HashMap<&Key, usize>> = sel
        .iter()
        .map(|vals| vals.iter().enumerate().map(|(i, k)| (k, i)).collect())
        .collect();
    let sorted: Vec<bool> = dims
        .iter()
        .map(|d| node.coord(d).is_some_and(|c| c.sorted))
        .collect();
    let refs: Vec<&[Key]> = cells.iter().map(Vec::as_slice).collect();
    for b in boxes(&pos, &sorted, 0, &refs) {
        let mut m = Map::new();
        for ((d, vals), sorted) in dims.iter().zip(&b).zip(&sorted) {
            let shown: Vec<Value> = vals.iter().map(|k| display(node, d, k)).collect();
            let v = if shown.len() == 1 {
                json!([shown[0], shown[0]])
            } else if *sorted {
                json!([shown[0], shown[shown.len() - 1]])
            } else {
                Value::Array(shown)
            };
            m.insert(d.clone(), v);
        }
        out.push(m);
    }
}

type Store = std::sync::Arc<dyn zarrs_storage::AsyncReadableWritableListableStorageTraits>;

/// The schema stored at `rev`.
pub(crate) async fn schema_at(repo: &Repo, rev: &str) -> Result<Schema, UpdateError> {
    Ok(stored_at(repo, rev).await?.1)
}

/// Resolve `rev` and load the schema stored there.
async fn stored_at(
    repo: &Repo,
    rev: &str,
) -> Result<(crate::repo::Resolved, Schema, Store), UpdateError> {
    let at = repo.resolve(rev).await?;
    let store: Store = repo.read_store(&at.id).await?;
    let schema = crate::update::stored_schema(&store).await?;
    Ok((at, schema, store))
}

/// The values `--where` admits on `dim` (the intersection of its filters), if it has any.
fn where_range(
    node: &NodeSchema,
    dim: &str,
    wheres: &[Where],
) -> Result<Option<(Key, Key)>, UpdateError> {
    let mut range: Option<(Key, Key)> = None;
    for w in wheres.iter().filter(|w| w.dim == dim) {
        let lo = key_of(node, dim, &w.from)?;
        let hi = match &w.to {
            Some(t) => key_of(node, dim, t)?,
            None => lo.clone(),
        };
        range = Some(match range {
            None => (lo, hi),
            Some((a, b)) => (a.max(lo), b.min(hi)),
        });
    }
    Ok(range)
}

impl Repo {
    /// Which commit last wrote each cell of variable `var` of node `node` at revision `rev`,
    /// for the cells `wheres` selects (by coordinate values).
    pub async fn blame(
        &self,
        node: &str,
        var: &str,
        rev: &str,
        wheres: &[Where],
    ) -> Result<Vec<BlameRecord>, UpdateError> {
        blame(self, node, var, rev, wheres).await
    }
}

/// Blame `var` of `node` at `rev` over the cells selected by `wheres`.
pub async fn blame(
    repo: &Repo,
    node_path: &str,
    var: &str,
    rev: &str,
    wheres: &[Where],
) -> Result<Vec<BlameRecord>, UpdateError> {
    let (at, schema, store) = stored_at(repo, rev).await?;
    let path = node_path.trim_matches('/');
    let node = crate::update::require_node(&schema, path)?;
    let v = node.var(var).ok_or_else(|| {
        UpdateError::BadSelection(format!(
            "variable '{var}' is not in node '{node_path}'; variables: {}",
            node.vars
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    // only the selected part of each axis (spec/018: a binary search on sorted ones)
    let mut data = NodeData::default();
    for d in &v.coords {
        let range = where_range(node, d, wheres)?;
        let values =
            crate::update::read_axis(&store, node, d, range.as_ref().map(|(a, b)| (a, b))).await?;
        data.coords.push((d.clone(), values));
    }
    let sel = select(node, &data, &v.coords, wheres)?;
    // every combination of the selected values
    let mut open: Vec<Vec<Key>> = vec![vec![]];
    for vals in &sel {
        open = open
            .iter()
            .flat_map(|p| {
                vals.iter()
                    .map(move |k| [p.clone(), vec![k.clone()]].concat())
            })
            .collect();
    }
    if sel.iter().any(Vec::is_empty) {
        open.clear();
    }
    let walker = Walker {
        repo,
        node: path.to_string(),
        var: var.to_string(),
        dims: v.coords.clone(),
        settled: Default::default(),
    };
    let mut found = Vec::new();
    walker
        .walk(&at.id, None, &mut open, &mut found, &mut HashMap::new())
        .await?;
    if let Ok(mut settled) = walker.settled.lock() {
        open.append(&mut settled);
    }
    let mut out = Vec::new();
    for (info, cells) in &found {
        let mut sels = Vec::new();
        describe(node, &v.coords, &sel, cells, &mut sels);
        for s in sels {
            out.push(BlameRecord {
                selection: s,
                commit: Some(info.id.to_string()),
                author: info.author.clone(),
                time: Some(info.time_text()),
                message: Some(info.message.clone()),
            });
        }
    }
    if !open.is_empty() {
        // a cell that holds a value but that no commit left in the history wrote was written
        // before the history horizon (its commit expired by gc), not never
        let valued = crate::update::cells_with_values(&store, node, v, &open).await?;
        let (before, never): (Vec<_>, Vec<_>) =
            open.into_iter().zip(valued).partition(|(_, has)| *has);
        let horizon = if before.is_empty() {
            None
        } else {
            Some(history_horizon(repo, &at.id).await?)
        };
        for (cells, message) in [
            (
                before,
                horizon.map(|h| format!("before the history horizon ({h})")),
            ),
            (never, Some("never written".to_string())),
        ] {
            let cells: Vec<Vec<Key>> = cells.into_iter().map(|(c, _)| c).collect();
            if cells.is_empty() {
                continue;
            }
            let mut sels = Vec::new();
            describe(node, &v.coords, &sel, &cells, &mut sels);
            for s in sels {
                out.push(BlameRecord {
                    selection: s,
                    commit: None,
                    author: None,
                    time: None,
                    message: message.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// The time of the oldest commit left in the history of `id` (besides the repository's root):
/// what was written before it is beyond what the history tells.
async fn history_horizon(repo: &Repo, id: &SnapshotId) -> Result<String, UpdateError> {
    let log = repo.log(&id.to_string(), None).await?;
    let oldest = log
        .iter()
        .rev()
        .find(|c| !c.parents.is_empty())
        .or(log.last());
    Ok(oldest.map(|c| c.time_text()).unwrap_or_default())
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header.
    Csv,
    /// A JSON array of row objects.
    Json,
    /// Apache Parquet (columns typed from the values: int64, float64, utf8).
    Parquet,
}

/// Encode rows (JSON values, one type per column) as a Parquet file.
fn parquet_bytes(header: &[String], rows: &[Vec<Value>]) -> Result<Vec<u8>, UpdateError> {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let err = |e: &dyn std::fmt::Display| UpdateError::Invalid(format!("writing Parquet: {e}"));
    let mut cols: Vec<(String, ArrayRef)> = Vec::new();
    for (c, name) in header.iter().enumerate() {
        let vals: Vec<&Value> = rows.iter().map(|r| &r[c]).collect();
        let all = |f: fn(&Value) -> bool| vals.iter().all(|v| v.is_null() || f(v));
        let arr: ArrayRef = if all(|v| v.is_i64()) {
            Arc::new(Int64Array::from(
                vals.iter().map(|v| v.as_i64()).collect::<Vec<_>>(),
            ))
        } else if all(Value::is_number) {
            Arc::new(Float64Array::from(
                vals.iter().map(|v| v.as_f64()).collect::<Vec<_>>(),
            ))
        } else {
            Arc::new(StringArray::from(
                vals.iter()
                    .map(|v| match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    })
                    .collect::<Vec<_>>(),
            ))
        };
        cols.push((name.clone(), arr));
    }
    let batch = RecordBatch::try_from_iter(cols).map_err(|e| err(&e))?;
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)
        .map_err(|e| err(&e))?;
    w.write(&batch).map_err(|e| err(&e))?;
    w.close().map_err(|e| err(&e))?;
    Ok(buf)
}

/// Write the tidy long table of `node` at `rev`: one row per coordinate combination where any
/// variable has a value; columns = coordinates (composed ones as their components), then variables.
pub async fn export(
    repo: &Repo,
    node_path: &str,
    rev: &str,
    wheres: &[Where],
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, UpdateError> {
    let (at, schema, _) = stored_at(repo, rev).await?;
    let path = node_path.trim_matches('/');
    let node = crate::update::require_node(&schema, path)?;
    let data = read_node(repo, &at.id, path).await?;
    let dims: Vec<String> = node.coords.iter().map(|c| c.name().to_string()).collect();
    let sel = select(node, &data, &dims, wheres)?;
    let components: HashSet<&str> = node
        .coords
        .iter()
        .flat_map(|c| c.composed.iter().map(String::as_str))
        .collect();
    // positions of the selected keys on each axis
    let axis_pos: Vec<HashMap<Key, usize>> = dims
        .iter()
        .map(|d| {
            data.coords
                .iter()
                .find(|(n, _)| n == d)
                .map(|(_, v)| {
                    v.iter()
                        .enumerate()
                        .filter_map(|(i, s)| s.key().map(|k| (k, i)))
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    let vars: Vec<&crate::update::VarData> = data
        .vars
        .iter()
        .filter(|(n, ..)| !components.contains(n.as_str()))
        .collect();
    let mut header: Vec<String> = Vec::new();
    for c in &node.coords {
        if c.composed.is_empty() {
            header.push(c.name().to_string());
        } else {
            header.extend(c.composed.iter().cloned());
        }
    }
    header.extend(vars.iter().map(|(n, ..)| n.clone()));
    let mut sink = Sink::new(format, header)?;
    let mut idx = vec![0usize; dims.len()];
    let total: usize = sel.iter().map(Vec::len).product();
    for flat in 0..total {
        let mut r = flat;
        for d in (0..dims.len()).rev() {
            idx[d] = r % sel[d].len();
            r /= sel[d].len();
        }
        let pos: Vec<usize> = (0..dims.len())
            .map(|d| axis_pos[d][&sel[d][idx[d]]])
            .collect();
        let Some(values) = var_values(node, &dims, &vars, &pos) else {
            continue;
        };
        let mut row: Vec<Value> = Vec::new();
        for (d, c) in node.coords.iter().enumerate() {
            if c.composed.is_empty() {
                row.push(display(node, c.name(), &sel[d][idx[d]]));
            } else {
                for comp in &c.composed {
                    let s = data
                        .vars
                        .iter()
                        .find(|(n, ..)| n == comp)
                        .and_then(|(_, _, _, v)| v.get(pos[d]).cloned())
                        .unwrap_or(Scalar::Na);
                    row.push(cell_value(node, comp, &s));
                }
            }
        }
        row.extend(values);
        sink.push(row)?;
    }
    sink.finish(out)
}

/// The values of `vars` at the cell at axis positions `pos`, or `None` when the cell holds no
/// value (a row is a cell of the variables spanning every dimension; the others are broadcast).
fn var_values(
    node: &NodeSchema,
    dims: &[String],
    vars: &[&crate::update::VarData],
    pos: &[usize],
) -> Option<Vec<Value>> {
    let mut values: Vec<Value> = Vec::with_capacity(vars.len());
    let mut any = false;
    let full_dim_vars = vars.iter().any(|(_, vd, ..)| vd.len() == dims.len());
    for (name, vdims, shape, vals) in vars {
        let mut off = 0usize;
        let mut stride = 1usize;
        for (a, vd) in vdims.iter().enumerate().rev() {
            let d = dims.iter().position(|x| x == vd).unwrap_or(0);
            off += pos[d] * stride;
            stride *= shape[a] as usize;
        }
        let s = vals.get(off).cloned().unwrap_or(Scalar::Na);
        if !full_dim_vars || vdims.len() == dims.len() {
            any |= !matches!(s, Scalar::Na);
        }
        values.push(cell_value(node, name, &s));
    }
    any.then_some(values)
}

/// A cell of variable (or component) `name` as exported: datetimes as text, NA as null.
fn cell_value(node: &NodeSchema, name: &str, s: &Scalar) -> Value {
    let tick = node
        .var(name)
        .or_else(|| node.coord(name).map(|c| &c.var))
        .and_then(|v| match v.dtype {
            Some(DType::DateTime(t)) => Some(t),
            _ => None,
        });
    match (s, tick) {
        (Scalar::Na, _) => Value::Null,
        (Scalar::I(i), Some(t)) => json!(format_ticks(*i, t)),
        (Scalar::I(i), None) => json!(i),
        // JSON has no infinities: written as text, as pandas reads them back (spec/022)
        (Scalar::F(f), _) if f.is_infinite() => json!(if *f > 0.0 { "inf" } else { "-inf" }),
        (Scalar::F(f), _) => json!(f),
        (Scalar::S(x), _) => json!(x),
    }
}

/// Where exported rows go: a CSV writer, JSON records, or rows for one Parquet file.
struct Sink {
    header: Vec<String>,
    csv: Option<csv::Writer<Vec<u8>>>,
    format: Format,
    rows: Vec<Vec<Value>>,
    count: u64,
}

impl Sink {
    fn new(format: Format, header: Vec<String>) -> Result<Sink, UpdateError> {
        let mut csv = (format == Format::Csv).then(|| csv::Writer::from_writer(Vec::new()));
        if let Some(w) = csv.as_mut() {
            w.write_record(&header).map_err(export_error)?;
        }
        Ok(Sink {
            header,
            csv,
            format,
            rows: vec![],
            count: 0,
        })
    }

    fn push(&mut self, row: Vec<Value>) -> Result<(), UpdateError> {
        self.count += 1;
        match self.csv.as_mut() {
            Some(w) => {
                let text: Vec<String> = row
                    .iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                w.write_record(&text).map_err(export_error)?;
            }
            None => self.rows.push(row),
        }
        Ok(())
    }

    /// Write the export to `out`; gives the number of rows.
    fn finish(self, out: &mut dyn Write) -> Result<u64, UpdateError> {
        let io = |e: std::io::Error| export_error(e);
        match self.csv {
            Some(w) => out
                .write_all(&w.into_inner().map_err(export_error)?)
                .map_err(io)?,
            None if self.format == Format::Parquet => out
                .write_all(&parquet_bytes(&self.header, &self.rows)?)
                .map_err(io)?,
            None => {
                let records: Vec<Value> = self
                    .rows
                    .into_iter()
                    .map(|row| Value::Object(self.header.iter().cloned().zip(row).collect()))
                    .collect();
                writeln!(out, "{}", Value::Array(records)).map_err(io)?
            }
        }
        Ok(self.count)
    }
}

/// An export that could not be written.
fn export_error(e: impl std::fmt::Display) -> UpdateError {
    UpdateError::Invalid(format!("writing the export: {e}"))
}
