//! The update driver: converts the inputs, merges each node's contribution, commits, and plans
//! again on the new tip when another writer committed first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use super::apply::apply_node;
use super::convert::{self, Converted, OnInvalid};
use super::layout::{stored_schema, Store};
use super::UpdateError;
use crate::ingest::Table;
use crate::provenance::Provenance;
use crate::repo::retry::{backoff, MAX_ATTEMPTS};
use crate::repo::{Repo, RepoError};
use crate::schema::Schema;

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
    /// Memory budget in bytes (`None`: 64 MiB): for the converted rows of
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
    pub commit: Option<crate::repo::CommitId>,
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

/// Rows per batch when an input file is converted while it is read.
pub const BATCH_ROWS: usize = 1 << 16;

/// Where the contributions of one update come from.
pub(crate) enum Inputs<'a> {
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
pub(crate) type ConvertedInputs = Vec<(String, Converted)>;

/// Convert in-memory `tables` for `schema`: one contribution per node of `groups`.
pub(crate) fn convert_tables(
    schema: &Schema,
    tables: &[(String, Table)],
    groups: &[(String, Vec<usize>)],
    opts: &UpdateOptions,
) -> Result<ConvertedInputs, UpdateError> {
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
pub(crate) fn convert_files(
    schema: &Schema,
    files: &[(String, PathBuf)],
    opts: &UpdateOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(ConvertedInputs, Vec<String>), UpdateError> {
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
pub(crate) fn node_groups<'a>(
    paths: impl Iterator<Item = &'a String>,
) -> Vec<(String, Vec<usize>)> {
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
) -> Result<UpdateReport, UpdateError> {
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
) -> Result<UpdateReport, UpdateError> {
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
pub(crate) const REPLAN_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

pub(crate) async fn update_inputs(
    repo: &Repo,
    branch: &str,
    mut inputs: Inputs<'_>,
    mut prov: Provenance,
    opts: &UpdateOptions,
) -> Result<UpdateReport, UpdateError> {
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
        let inputs_groups = inputs.groups();
        let t = Instant::now();
        let replan_allowed = reconversions < MAX_ATTEMPTS;
        let mut fresh: ConvertedInputs = vec![];
        let contributions = match inputs.converted(&schema, opts, replan_allowed, &mut fresh)? {
            Some(c) => c,
            None => {
                // reading the files took a while: plan on a tip read now, not on the one this
                // attempt started from (a shorter window for other writers)
                reconversions += 1;
                attempt -= 1;
                continue;
            }
        };
        report.timings.convert += t.elapsed();
        let paths: Vec<&str> = inputs_groups.iter().map(|(p, _)| p.as_str()).collect();
        let (cells, extents) =
            apply_nodes(&store, &schema, &paths, contributions, opts, &mut report).await?;
        tx.set_cells(cells);
        let stats = tx.stats();
        report.chunks_written = stats.chunks_written + stats.chunks_inline;
        report.chunks_deduplicated = stats.chunks_deduplicated;
        if opts.dry_run {
            return Ok(report);
        }
        let p = commit_provenance(&prov, &schema, extents, &report);
        let t = Instant::now();
        let committed = tx.commit(p).await;
        report.timings.commit = t.elapsed();
        match committed {
            Ok(out) => {
                report.commit = out.commit;
                return Ok(report);
            }
            Err(RepoError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                // another writer changed the same chunks: re-plan on its tip
                tokio::time::sleep(backoff(attempt)).await;
                prov.time = Some(chrono::Utc::now());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl<'a> Inputs<'a> {
    /// The node paths of the inputs, each with the positions of its inputs ([`node_groups`]).
    fn groups(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            Inputs::Tables(tables) => node_groups(tables.iter().map(|(p, _)| p)),
            Inputs::Files { files, .. } => node_groups(files.iter().map(|(p, _)| p)),
        }
    }

    /// The contributions converted for `schema`: tables are converted into `fresh`; files are
    /// converted again when the schema changed or an attempt gave back their dictionaries.
    /// `None` when that conversion took long enough that the update should plan on a newer
    /// tip (only when `replan` allows it).
    fn converted<'s>(
        &'s mut self,
        schema: &Schema,
        opts: &UpdateOptions,
        replan: bool,
        fresh: &'s mut ConvertedInputs,
    ) -> Result<Option<&'s mut [(String, Converted)]>, UpdateError> {
        let (files, progress, converted, digests) = match self {
            Inputs::Tables(tables) => {
                let groups = node_groups(tables.iter().map(|(p, _)| p));
                *fresh = convert_tables(schema, tables, &groups, opts)?;
                return Ok(Some(fresh.as_mut_slice()));
            }
            Inputs::Files {
                files,
                progress,
                converted,
                digests,
            } => (files, progress, converted, digests),
        };
        let t = Instant::now();
        let digest = schema.digest();
        let stale = |(d, c): &(String, ConvertedInputs)| {
            *d != digest || c.iter().any(|(_, c)| c.keys_released)
        };
        if converted.as_ref().is_none_or(stale) {
            // a retry (an attempt gives back the dictionaries), or the schema changed under us:
            // convert the files again, for the tip's schema
            *converted = None;
            let (conv, again) = convert_files(schema, files, opts, *progress)?;
            if let Some(((_, file), _)) = files
                .iter()
                .zip(digests.iter().zip(&again))
                .find(|(_, (a, b))| a != b)
            {
                return Err(UpdateError::InputChanged(file.clone()));
            }
            *converted = Some((digest, conv));
            if replan && t.elapsed() > REPLAN_AFTER {
                return Ok(None);
            }
        }
        Ok(Some(match converted.as_mut() {
            Some((_, c)) => c.as_mut_slice(),
            None => &mut [],
        }))
    }
}

/// Merge each contribution into its node (they are in the order of [`node_groups`]): the cell
/// record and the extent per node, counts and timings into `report`.
pub(crate) async fn apply_nodes(
    store: &Arc<Store>,
    schema: &Schema,
    paths: &[&str],
    contributions: &mut [(String, Converted)],
    opts: &UpdateOptions,
    report: &mut UpdateReport,
) -> Result<(crate::repo::CellRecord, Map<String, Value>), UpdateError> {
    let mut cells: crate::repo::CellRecord = BTreeMap::new();
    let mut extents = Map::new();
    for (path, (source, conv)) in paths.iter().zip(contributions.iter_mut()) {
        let node = super::require_node(schema, path)?;
        let t = Instant::now();
        report.rows_read += conv.rows_read;
        report.rows_dropped += conv.rows_dropped;
        report.note_dropped(&conv.dropped_lines);
        report.duplicates += conv.duplicates;
        report.invalid_to_na += conv.invalid_to_na;
        let o = apply_node(store, node, conv, opts.overwrite_na, opts.budget(), source).await?;
        report.rows_dropped += o.rows_dropped;
        report.cells_written += o.cells_written;
        for (name, added) in o.new_coords {
            *report.new_coords.entry(name).or_default() += added;
        }
        report.timings.write += o.write_time;
        report.timings.merge += t.elapsed().saturating_sub(o.write_time);
        if !o.extent.is_empty() {
            extents.insert(node.path.clone(), Value::Object(o.extent));
        }
        if !o.cells.is_empty() {
            cells.insert(node.path.clone(), o.cells);
        }
    }
    Ok((cells, extents))
}

/// The provenance of an update's commit: the schema it was merged with, its extent and counts.
pub(crate) fn commit_provenance(
    prov: &Provenance,
    schema: &Schema,
    extents: Map<String, Value>,
    report: &UpdateReport,
) -> Provenance {
    let mut p = prov.clone();
    p.schema_blake3 = Some(schema.digest());
    p.extent = Some(Value::Object(extents));
    for (k, v) in [
        ("rows_read", report.rows_read),
        ("rows_dropped", report.rows_dropped),
        ("duplicates", report.duplicates),
        ("invalid_to_na", report.invalid_to_na),
        ("cells_written", report.cells_written),
    ] {
        p.counts.insert(k.into(), v);
    }
    p
}
