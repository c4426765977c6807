//! The `zarr-fuse` command line: clap commands, text and `--json` output, progress bars.
//!
//! Exit status: 0 success, 1 refused or failed operation (reason on stderr), 2 usage error.

mod output;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;
use zarrs_storage::AsyncReadableStorageTraits;

use crate::merge::history::{self, HistoryOptions, HistoryReport, Resolve};
use crate::provenance::{parse_meta, resolve_author, Provenance};
use crate::repo::{Repo, RepoError};
use crate::storage::Location;

/// Versioned, schema-driven storage for scientific Zarr datasets (icechunk format).
#[derive(Parser, Debug)]
#[command(name = "zarr-fuse", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a repository (a local directory, s3://bucket/prefix) from a schema.
    Init {
        /// Repository location.
        repo: String,
        /// Dataset schema (YAML).
        #[arg(long)]
        schema: PathBuf,
        /// Author of the initial commit.
        #[arg(long)]
        author: Option<String>,
        /// Schema warnings (obsolete forms, ignored keys, unknown units) are errors.
        #[arg(long)]
        strict: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a schema file, or show the schema stored in a repository.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Convert and merge CSV tables into the dataset as one commit.
    Update {
        /// Repository location.
        repo: String,
        /// Input files (for the node of `--node PATH`, else the root), or NODE=FILE pairs.
        inputs: Vec<String>,
        /// `PATH`: the node the positional files go to (`/`-separated; root = `/`); or
        /// `PATH=FILE`, repeatable: that file for that node. All inputs make one commit.
        #[arg(long, value_name = "PATH|PATH=FILE")]
        node: Vec<String>,
        /// Branch.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Author.
        #[arg(long)]
        author: Option<String>,
        /// Commit message.
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Source (URI or name) recorded with the commit (default: the file names).
        #[arg(long)]
        source: Option<String>,
        /// Free metadata key=value.
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// NA cells erase stored values.
        #[arg(long)]
        overwrite_na: bool,
        /// Unusable values: reject the contribution (error) or make them NA (na).
        #[arg(long, default_value = "error", value_parser = ["error", "na"])]
        on_invalid: String,
        /// Input format (default: by extension: .csv .txt, .parquet .pq, .json .ndjson .geojson).
        #[arg(long, value_parser = ["csv", "parquet", "json", "yrno"])]
        format: Option<String>,
        /// Add a constant column to every input row (a station id, a location), repeatable.
        #[arg(long = "set", value_name = "COL=VALUE")]
        set: Vec<String>,
        /// Rename an input column before converting, repeatable.
        #[arg(long = "rename", value_name = "FROM=TO")]
        rename: Vec<String>,
        /// Report without writing.
        #[arg(long)]
        dry_run: bool,
        /// Memory budget in MiB: converted rows of each input beyond it go to a temporary file
        /// in TMPDIR (which must be on disk, not a tmpfs, to save memory), and arrays are
        /// rewritten in bands of about this size.
        #[arg(long, value_name = "MIB", default_value_t = 64)]
        memory: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which commit last wrote each cell of a selection (by coordinate values).
    Blame {
        /// Repository location.
        repo: String,
        /// Node path (`/` = root).
        #[arg(long, default_value = "/")]
        node: String,
        /// Variable.
        #[arg(long)]
        var: String,
        /// Revision (default: main).
        #[arg(long)]
        at: Option<String>,
        /// DIM=VALUE or DIM=FROM..TO (repeatable).
        #[arg(long = "where")]
        wheres: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a node as a tidy long table (one row per cell with a value).
    Export {
        /// Repository location.
        repo: String,
        /// Node path (`/` = root).
        #[arg(long, default_value = "/")]
        node: String,
        /// Revision (default: main).
        #[arg(long)]
        at: Option<String>,
        /// DIM=VALUE or DIM=FROM..TO (repeatable).
        #[arg(long = "where")]
        wheres: Vec<String>,
        /// Output format.
        #[arg(long, default_value = "csv", value_parser = ["csv", "json", "parquet"])]
        format: String,
        /// Output file (default: standard output).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Build a demo repository from the bundled weather schema and sample forecasts.
    Demo {
        /// Directory for the new repository (must not exist).
        dir: PathBuf,
    },
    /// Show the history, newest first.
    Log {
        /// Repository location.
        repo: String,
        /// Revision (default: main).
        rev: Option<String>,
        /// Revision, as an option (same as REV).
        #[arg(long = "at", conflicts_with = "rev")]
        at: Option<String>,
        /// At most N commits.
        #[arg(short = 'n', long)]
        max_count: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one commit and what it changed.
    Show {
        /// Repository location.
        repo: String,
        /// Revision.
        rev: String,
        /// Also list the indices of the changed chunks.
        #[arg(long)]
        chunks: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Differences between two revisions: per variable the cells changed, added and set to NA,
    /// and the boxes of coordinate values they lie in.
    Diff {
        /// Repository location.
        repo: String,
        /// From revision.
        rev_a: String,
        /// To revision.
        rev_b: String,
        /// Also list the indices of the changed chunks.
        #[arg(long)]
        chunks: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create, list or delete branches.
    Branch {
        /// Repository location.
        repo: String,
        #[command(subcommand)]
        action: BranchAction,
    },
    /// Create or list tags (tags are immutable).
    Tag {
        /// Repository location.
        repo: String,
        #[command(subcommand)]
        action: TagAction,
    },
    /// Move a branch back to an earlier commit of its history.
    Reset {
        /// Repository location.
        repo: String,
        /// Branch to move.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Target revision.
        rev: String,
        /// Allow a target outside the branch history.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Undo one commit by cells: every cell it changed gets its parent's value again, unless a
    /// later commit wrote that cell (a conflict, named by coordinate values).
    Revert {
        /// Repository location.
        repo: String,
        /// Commit to revert.
        commit: String,
        #[command(flatten)]
        w: WriteArgs,
        /// `theirs`: keep the later values of conflicting cells and revert the rest.
        #[arg(long, value_parser = ["theirs"])]
        strategy: Option<String>,
        /// Show what would change; commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Merge a branch (or any revision) into a branch, three-way by cells.
    Merge {
        /// Repository location.
        repo: String,
        /// Source revision.
        source: String,
        /// Target branch.
        #[arg(long, default_value = "main")]
        into: String,
        /// Author.
        #[arg(long)]
        author: Option<String>,
        /// Commit message.
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Free metadata.
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// Decide cells changed differently on both sides: `ours` keeps the target's value,
        /// `theirs` takes the source's.
        #[arg(long, value_parser = ["ours", "theirs"])]
        strategy: Option<String>,
        /// Show what would change; commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply one commit's changes onto a branch, three-way by cells.
    CherryPick {
        /// Repository location.
        repo: String,
        /// Commit to apply.
        commit: String,
        #[command(flatten)]
        w: WriteArgs,
        /// Decide conflicting cells: `ours` keeps the branch's value, `theirs` takes the commit's.
        #[arg(long, value_parser = ["ours", "theirs"])]
        strategy: Option<String>,
        /// Show what would change; commit nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Recompute a commit's content digest from the stored bytes.
    Verify {
        /// Repository location.
        repo: String,
        /// Revision (default: main).
        rev: Option<String>,
        /// Revision, as an option (same as REV).
        #[arg(long = "at", conflicts_with = "rev")]
        at: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a tag as a Zenodo package (plain Zarr v3 zip, zenodo.json, datacite.json,
    /// PROVENANCE, schema, CHECKSUMS); `release verify DIR` checks one.
    Release(ReleaseArgs),
    /// Create a repository (or a new branch of one) from a release package.
    Import {
        /// Repository location (created when absent).
        repo: String,
        /// Package directory.
        dir: PathBuf,
        /// Branch to create (required when the repository exists; default main for a new one).
        #[arg(long)]
        branch: Option<String>,
        /// Author.
        #[arg(long)]
        author: Option<String>,
        /// Commit message.
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite array metadata written by earlier versions in the form every reader accepts
    /// (zarr-python 3.4 refuses codecs written as bare names), as one commit.
    Repair {
        /// Repository location.
        repo: String,
        /// Branch.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Author.
        #[arg(long)]
        author: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shorten a branch's history: each period's run of contributions older than DURATION becomes
    /// one commit holding the run's last state and the list of the contributions it folds (blame
    /// still names each cell's contributor). Tags and other branches keep their snapshots; `gc`
    /// then deletes the folded ones.
    Squash {
        /// Repository location.
        repo: String,
        /// Branch to squash.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Only contributions older than this (e.g. 7d, 12h, 0s).
        #[arg(long)]
        older_than: String,
        /// One commit per hour, day (UTC) or ISO week.
        #[arg(long, value_parser = ["hour", "day", "week"])]
        by: String,
        /// Author of the squash commits.
        #[arg(long)]
        author: Option<String>,
        /// Report without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete what no branch or tag needs; keeps every commit's provenance unless told.
    ///
    /// Deleted, for what is older than --older-than: chunks, manifests, snapshots and transaction
    /// logs that no branch or tag reaches, icechunk's repo-object backups under `overwritten/`
    /// except the newest 8, and temporary files of crashed writers. Kept: every commit in the
    /// history of a branch or tag, with its data and provenance (blame keeps naming who wrote
    /// each cell), and every object younger than the cut-off (a concurrent writer is safe).
    /// With --drop-provenance, old commits that are no branch's or tag's tip are expired too:
    /// they leave `log`, and blame reports their cells as written "before the history horizon".
    /// To shorten history and keep provenance, `squash` first: gc then deletes what it folded.
    Gc {
        /// Repository location.
        repo: String,
        /// Only touch what is older than this (e.g. 7d, 12h, 0s).
        #[arg(long, default_value = "7d")]
        older_than: String,
        /// Also expire old commits that are no ref's tip, destroying their audit information
        /// (who wrote which cells).
        #[arg(long)]
        drop_provenance: bool,
        /// Report without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `release REPO TAG --out DIR`, or `release verify DIR [--repo REPO]`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct ReleaseArgs {
    #[command(subcommand)]
    action: Option<ReleaseAction>,
    /// Repository location.
    repo: Option<String>,
    /// Tag to release.
    tag: Option<String>,
    /// Output directory (must be absent or empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One `.zarr.zip` (default) or a `.zarr` directory.
    #[arg(long, default_value = "zip", value_parser = ["zip", "dir"])]
    format: String,
    /// Metadata file (YAML or JSON) overriding the schema's root ATTRS: title, description,
    /// creators, contributors, keywords, license, funding, related_identifiers, ...
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ReleaseAction {
    /// Recompute every checksum and the content digest of a package; with --repo also compare
    /// it with the tag in that repository.
    Verify {
        /// Package directory.
        dir: PathBuf,
        /// Repository the package should equal a tag of.
        #[arg(long)]
        repo: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct WriteArgs {
    /// Branch to write to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Author, `Name <email>` (default: ZF_AUTHOR, then git config).
    #[arg(long)]
    author: Option<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Free metadata, key=value (repeatable).
    #[arg(long = "meta")]
    meta: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum SchemaAction {
    /// Validate a schema file without a repository.
    Check {
        /// Schema file.
        file: PathBuf,
        /// Warnings (obsolete forms, ignored keys, unknown units) are errors.
        #[arg(long)]
        strict: bool,
    },
    /// Commit an allowed schema change (new nodes, variables, coordinates; ATTRS, descriptions).
    Apply {
        /// Repository location.
        repo: String,
        /// New schema file.
        file: PathBuf,
        /// Branch.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Author.
        #[arg(long)]
        author: Option<String>,
        /// Commit message.
        #[arg(short = 'm', long)]
        message: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the schema stored in a repository.
    Show {
        /// Repository location.
        repo: String,
        /// Revision.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum BranchAction {
    /// Create a branch.
    Create {
        /// Branch name.
        name: String,
        /// Where it starts (default: main).
        #[arg(long, default_value = "main")]
        from: String,
    },
    /// List branches.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a branch; refused when it has commits no other branch or tag reaches.
    Delete {
        /// Branch name.
        name: String,
        /// Delete it even when its own commits would then be reached by no ref (gc may then
        /// expire them).
        #[arg(long, short = 'D')]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TagAction {
    /// Create a tag.
    Create {
        /// Tag name.
        name: String,
        /// Revision to tag (default: main).
        #[arg(long, default_value = "main")]
        at: String,
        /// Tag message.
        #[arg(short = 'm', long)]
        message: Option<String>,
    },
    /// List tags.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Errors of the command line (a failed or refused operation: exit 1).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the repository layer.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Reading an input file.
    #[error("cannot read '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output file.
    #[error(
        "cannot write {what} to '{path}': {source}{}",
        write_hint(path, source)
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A usage error (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// Anything else, already worded for the user.
    #[error("{0}")]
    Other(String),
}

/// The (node, file) pairs of an update: `--node PATH=FILE` pairs, positional `PATH=FILE` pairs,
/// and positional files for the one `--node PATH` (else the root).
fn update_inputs(nodes: &[String], inputs: &[String]) -> Result<Vec<(String, PathBuf)>, CliError> {
    let pair = |s: &str| match s.split_once('=') {
        Some((n, f)) if !std::path::Path::new(s).exists() => {
            Some((n.trim_matches('/').to_string(), PathBuf::from(f)))
        }
        _ => None,
    };
    let mut files = vec![];
    let mut plain: Vec<&str> = vec![];
    for n in nodes {
        match n.contains('=').then(|| pair(n)).flatten() {
            Some(p) => files.push(p),
            None => plain.push(n),
        }
    }
    if plain.len() > 1 {
        return Err(CliError::Usage(format!(
            "--node PATH given {} times ({}); give one node for the positional files, or --node PATH=FILE pairs",
            plain.len(),
            plain.join(", ")
        )));
    }
    let default = plain.first().map(|n| n.trim_matches('/')).unwrap_or("");
    for input in inputs {
        files.push(pair(input).unwrap_or_else(|| (default.to_string(), input.into())));
    }
    if files.is_empty() {
        return Err(CliError::Usage(
            "the following required arguments were not provided: <INPUTS> (FILE... or NODE=FILE...), or --node PATH=FILE".into(),
        ));
    }
    Ok(files)
}

/// What to do about a failed write, where the reason suggests it.
fn write_hint(path: &std::path::Path, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => match path.parent() {
            Some(d) if !d.as_os_str().is_empty() && !d.exists() => {
                format!(
                    " (the directory '{}' does not exist; create it first)",
                    d.display()
                )
            }
            _ => String::new(),
        },
        std::io::ErrorKind::IsADirectory => " (that is a directory; name a file)".into(),
        _ => String::new(),
    }
}

/// The chunk-level diff with the cells that differ (by coordinate values); chunk indices only
/// when asked for.
async fn diff_with_cells(
    r: &Repo,
    a: &icechunk::format::SnapshotId,
    b: &icechunk::format::SnapshotId,
    chunks: bool,
) -> Result<output::Diff, CliError> {
    let mut d = r.diff_ids(a, b).await?;
    // a revision without a zarr-fuse schema (the repository's root commit) has no cells to name
    let cells = match crate::merge::cell_diff(r, a, b, &d).await {
        Ok(c) => Some(c),
        Err(crate::merge::MergeError::NoSchema(_)) => None,
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    if !chunks {
        d.chunks.clear();
    }
    Ok(output::Diff { chunks: d, cells })
}

/// `K=V` arguments of a repeatable option.
fn pairs(args: &[String], flag: &str, form: &str) -> Result<Vec<(String, String)>, CliError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(CliError::Usage(format!("{flag} '{a}': expected {form}"))),
        })
        .collect()
}

/// Removes what a failed `init` created at a local path (the path is left as it was).
struct InitGuard {
    created: Option<PathBuf>,
    existing: Option<PathBuf>,
}

impl InitGuard {
    fn new(location: &Location) -> InitGuard {
        let mut g = InitGuard {
            created: None,
            existing: None,
        };
        if let Location::Local(p) = location {
            match std::fs::read_dir(p).map(|mut d| d.next().is_none()) {
                Ok(true) => g.existing = Some(p.clone()),
                Ok(false) => {}
                Err(_) => g.created = Some(p.clone()),
            }
        }
        g
    }

    /// The init succeeded.
    fn keep(mut self) {
        self.created = None;
        self.existing = None;
    }
}

impl Drop for InitGuard {
    fn drop(&mut self) {
        if let Some(p) = &self.created {
            let _ = std::fs::remove_dir_all(p);
        }
        if let Some(p) = &self.existing {
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    let path = e.path();
                    let _ = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                }
            }
        }
    }
}

fn provenance(
    author: Option<&str>,
    operation: &str,
    message: Option<String>,
    meta: &[String],
) -> Result<Provenance, CliError> {
    let author = resolve_author(author).map_err(RepoError::from)?;
    let mut p = Provenance::new(author, operation, message.unwrap_or_default());
    p.meta = parse_meta(meta).map_err(RepoError::from)?;
    Ok(p)
}

async fn release_cmd(a: ReleaseArgs) -> Result<(), CliError> {
    let fail = |e: crate::release::ReleaseError| CliError::Other(e.to_string());
    if let Some(ReleaseAction::Verify { dir, repo, json }) = a.action {
        let pb = progress_bar(0, "verifying");
        let tick = |n: u64| {
            if let Some(pb) = &pb {
                pb.inc_length(n);
                pb.inc(n);
            }
        };
        let mut report = crate::release::verify(&dir, &tick).map_err(fail)?;
        if let Some(pb) = pb {
            pb.finish_and_clear();
        }
        if let Some(repo) = repo {
            let r = open(&repo).await?;
            crate::release::verify_with_repo(&mut report, &r)
                .await
                .map_err(fail)?;
        }
        output::release_verify(&report, json);
        if !report.ok {
            return Err(CliError::Other(format!(
                "{} does not verify: {} problem(s)",
                dir.display(),
                report.problems.len()
            )));
        }
        return Ok(());
    }
    let (Some(repo), Some(tag), Some(out)) = (a.repo, a.tag, a.out) else {
        return Err(CliError::Other(
            "usage: zarr-fuse release <REPO> <TAG> --out DIR [--format zip|dir] [--meta FILE], or zarr-fuse release verify DIR [--repo REPO]".into(),
        ));
    };
    let r = open(&repo).await?;
    let opts = crate::release::ReleaseOptions {
        out,
        format: if a.format == "dir" {
            crate::release::Format::Dir
        } else {
            crate::release::Format::Zip
        },
        meta: a.meta,
    };
    let pb = progress_bar(0, "packaging chunks");
    let tick = |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    };
    let report = crate::release::release(&r, &tag, &opts, &tick).await;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    output::release(&report.map_err(fail)?, a.json);
    Ok(())
}

/// Parse `7d`, `12h`, `30m`, `0s`, or anything humantime accepts.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, CliError> {
    humantime::parse_duration(s)
        .map_err(|e| CliError::Other(format!("--older-than '{s}': {e} (e.g. 7d, 12h, 0s)")))
}

async fn open(repo: &str) -> Result<Repo, CliError> {
    Ok(Repo::open(&Location::parse(repo).map_err(RepoError::from)?).await?)
}

fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
    {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    Some(pb)
}

fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let sp = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        sp.set_style(style);
    }
    sp.set_message(what.to_string());
    sp.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(sp)
}

/// The time `--older-than DURATION` means: now minus the duration.
fn cutoff_of(older_than: &str) -> Result<chrono::DateTime<chrono::Utc>, CliError> {
    let d = parse_duration(older_than)?;
    Ok(chrono::Utc::now()
        - chrono::Duration::from_std(d)
            .map_err(|e| CliError::Other(format!("--older-than: {e}")))?)
}

/// `--strategy` and `--dry-run` of revert, merge and cherry-pick (revert's `theirs` keeps the
/// later values; merge's `ours` keeps the target's, `theirs` takes the source's).
fn history_options(revert: bool, strategy: Option<&str>, dry_run: bool) -> HistoryOptions {
    HistoryOptions {
        resolve: match strategy {
            Some("ours") => Resolve::KeepTarget,
            Some("theirs") if revert => Resolve::KeepTarget,
            Some("theirs") => Resolve::TakeSource,
            _ => Resolve::Fail,
        },
        dry_run,
    }
}

/// Print what a revert, merge or cherry-pick did; a refusal prints its report as JSON too.
fn print_history(
    out: Result<HistoryReport, crate::merge::MergeError>,
    json: bool,
) -> Result<(), CliError> {
    let report = match out {
        Ok(r) => r,
        Err(crate::merge::MergeError::CellConflicts(r)) => {
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            return Err(CliError::Other(r.refusal()));
        }
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    output::history(&report);
    Ok(())
}

fn print_write(json: bool, commit: &Option<String>, extra: serde_json::Value) {
    if json {
        let mut v = json!({ "commit": commit });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{v}");
    } else {
        match commit {
            Some(c) => println!("{c}"),
            None => println!("nothing changed; no commit made"),
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init {
            repo,
            schema,
            author,
            strict,
            json,
        } => {
            let bytes = std::fs::read(&schema).map_err(|source| CliError::Read {
                path: schema.clone(),
                source,
            })?;
            let text = String::from_utf8(bytes).map_err(|_| {
                CliError::Other(format!(
                    "{}: the schema is not UTF-8 text",
                    schema.display()
                ))
            })?;
            let parsed = crate::schema::load_str(&text, &schema.display().to_string())
                .map_err(|e| CliError::Other(e.to_string()))?;
            for w in &parsed.warnings {
                eprintln!("{w}");
            }
            if strict {
                parsed
                    .strict()
                    .map_err(|e| CliError::Other(e.to_string()))?;
            }
            let prov = provenance(
                author.as_deref(),
                "init",
                Some("Initialise repository".into()),
                &[],
            )?;
            let location = Location::parse(&repo).map_err(RepoError::from)?;
            let guard = InitGuard::new(&location);
            let r = Repo::init(&location).await?;
            let out = crate::merge::init_dataset(&r, &text, &schema.display().to_string(), prov)
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
            guard.keep();
            print_write(json, &out.commit, json!({}));
        }
        Command::Schema { action } => match action {
            SchemaAction::Check { file, strict } => {
                let mut s =
                    crate::schema::load_file(&file).map_err(|e| CliError::Other(e.to_string()))?;
                for w in &s.warnings {
                    eprintln!("{w}");
                }
                if strict {
                    s = s.strict().map_err(|e| CliError::Other(e.to_string()))?;
                }
                let nodes = s.root.walk().len();
                println!(
                    "{}: OK ({nodes} node(s), schema blake3 {})",
                    file.display(),
                    s.digest()
                );
            }
            SchemaAction::Apply {
                repo,
                file,
                branch,
                author,
                message,
                json,
            } => {
                let text = std::fs::read_to_string(&file).map_err(|source| CliError::Read {
                    path: file.clone(),
                    source,
                })?;
                let prov = provenance(
                    author.as_deref(),
                    "schema",
                    Some(
                        message.unwrap_or_else(|| format!("Schema change from {}", file.display())),
                    ),
                    &[],
                )?;
                let r = open(&repo).await?;
                let out = crate::merge::apply_schema(
                    &r,
                    &branch,
                    &text,
                    &file.display().to_string(),
                    prov,
                )
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
                print_write(json, &out.commit, json!({"branch": branch}));
            }
            SchemaAction::Show { repo, at } => {
                let r = open(&repo).await?;
                let id = r.resolve(at.as_deref().unwrap_or("main")).await?.id;
                let store: std::sync::Arc<
                    dyn zarrs_storage::AsyncReadableWritableListableStorageTraits,
                > = r.read_store(&id).await?;
                let key = zarrs_storage::StoreKey::new("zarr.json")
                    .map_err(|e| CliError::Other(e.to_string()))?;
                let bytes = store
                    .get(&key)
                    .await
                    .map_err(|e| CliError::Other(e.to_string()))?
                    .unwrap_or_default();
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                match v
                    .pointer("/attributes/zarr_fuse/schema_yaml")
                    .and_then(|y| y.as_str())
                {
                    Some(y) => print!("{y}"),
                    None => {
                        return Err(CliError::Other(format!(
                            "{repo}: no zarr-fuse schema stored at {id}"
                        )))
                    }
                }
            }
        },
        Command::Update {
            repo,
            inputs,
            node,
            branch,
            author,
            message,
            source,
            meta,
            overwrite_na,
            on_invalid,
            format,
            set,
            rename,
            dry_run,
            memory,
            json,
        } => {
            let mut prov = provenance(author.as_deref(), "update", message, &meta)?;
            let files = update_inputs(&node, &inputs)?;
            let total: u64 = files
                .iter()
                .map(|(_, f)| crate::ingest::Table::input_len(f))
                .sum();
            let pb = progress_bar(total, "reading and converting inputs");
            if let (Some(pb), Ok(style)) = (
                &pb,
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}",
                ),
            ) {
                pb.set_style(style);
            }
            prov.source = Some(source.unwrap_or_else(|| inputs.join(" ")));
            if prov.message.is_empty() {
                prov.message = format!("Update from {}", prov.source.clone().unwrap_or_default());
            }
            let opts = crate::merge::UpdateOptions {
                overwrite_na,
                on_invalid: if on_invalid == "na" {
                    crate::merge::OnInvalid::Na
                } else {
                    crate::merge::OnInvalid::Error
                },
                dry_run,
                memory: Some(memory.saturating_mul(1 << 20)),
                input: crate::ingest::InputOptions {
                    format: format.as_deref().map(|f| match f {
                        "parquet" => crate::ingest::InputFormat::Parquet,
                        "json" => crate::ingest::InputFormat::Json,
                        "yrno" => crate::ingest::InputFormat::Yrno,
                        _ => crate::ingest::InputFormat::Csv,
                    }),
                    set: pairs(&set, "--set", "COL=VALUE")?,
                    rename: pairs(&rename, "--rename", "FROM=TO")?,
                },
            };
            let opened = std::time::Instant::now();
            let r = open(&repo).await?;
            let open_time = opened.elapsed();
            let progress = |n: u64| {
                if let Some(pb) = &pb {
                    // a retry reads the files again: the bar stays full
                    pb.set_position((pb.position() + n).min(total));
                    if pb.position() >= total {
                        pb.set_message("merging and committing");
                    }
                }
            };
            let report =
                crate::merge::update_files(&r, &branch, &files, prov, &opts, &progress).await;
            if let Some(pb) = &pb {
                pb.finish_and_clear();
            }
            let report = report.map_err(|e| CliError::Other(e.to_string()))?;
            if std::env::var_os("ZF_TIMINGS").is_some() {
                // a diagnostic for the forecast benchmark (scripts/bench-forecast-cli.py)
                let t = &report.timings;
                let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
                eprintln!(
                    "timings_ms: start {:.2} open {:.2} convert {:.2} read+plan {:.2} write {:.2} commit {:.2}",
                    ms(opened.duration_since(*START.get_or_init(std::time::Instant::now))),
                    ms(open_time),
                    ms(t.convert),
                    ms(t.merge),
                    ms(t.write),
                    ms(t.commit)
                );
            }
            if report.attempts > 1 {
                eprintln!(
                    "note: other writers committed first; the update was planned again on the new tip ({} attempts)",
                    report.attempts
                );
            }
            if json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                match &report.commit {
                    Some(c) => println!("{c}"),
                    None if dry_run => println!("dry run: nothing written"),
                    None => println!("nothing changed; no commit made"),
                }
                eprintln!(
                    "rows read {}, dropped {}, duplicates {}, cells written {}, chunks written {} (deduplicated {})",
                    report.rows_read, report.rows_dropped, report.duplicates, report.cells_written, report.chunks_written, report.chunks_deduplicated
                );
                if !report.dropped.is_empty() {
                    let at: Vec<String> = report
                        .dropped
                        .iter()
                        .map(|d| format!("{}:{}", d.file, d.line))
                        .collect();
                    eprintln!("dropped for an NA coordinate (first): {}", at.join(", "));
                }
            }
        }
        Command::Blame {
            repo,
            node,
            var,
            at,
            wheres,
            json,
        } => {
            let r = open(&repo).await?;
            let wheres = wheres
                .iter()
                .map(|w| crate::audit::Where::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Other(e.to_string()))?;
            let recs =
                crate::audit::blame(&r, &node, &var, at.as_deref().unwrap_or("main"), &wheres)
                    .await
                    .map_err(|e| CliError::Other(e.to_string()))?;
            output::blame(&recs, json);
        }
        Command::Export {
            repo,
            node,
            at,
            wheres,
            format,
            output: out,
        } => {
            let r = open(&repo).await?;
            let wheres = wheres
                .iter()
                .map(|w| crate::audit::Where::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CliError::Other(e.to_string()))?;
            let fmt = match format.as_str() {
                "json" => crate::audit::Format::Json,
                "parquet" => crate::audit::Format::Parquet,
                _ => crate::audit::Format::Csv,
            };
            let mut buf: Vec<u8> = Vec::new();
            let rows = crate::audit::export(
                &r,
                &node,
                at.as_deref().unwrap_or("main"),
                &wheres,
                fmt,
                &mut buf,
            )
            .await
            .map_err(|e| CliError::Other(e.to_string()))?;
            match out {
                Some(path) => {
                    // write beside, then rename: a failed export leaves no partial file
                    let tmp = path.with_extension("zf-partial");
                    std::fs::write(&tmp, &buf)
                        .and_then(|_| std::fs::rename(&tmp, &path))
                        .map_err(|source| {
                            let _ = std::fs::remove_file(&tmp);
                            CliError::Write {
                                path: path.clone(),
                                what: format!("the {rows}-row export"),
                                source,
                            }
                        })?;
                    eprintln!("wrote {rows} row(s) to {}", path.display());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&buf)
                        .map_err(|e| CliError::Other(e.to_string()))?;
                }
            }
        }
        Command::Demo { dir } => crate::demo::run(&dir).await?,
        Command::Log {
            repo,
            rev,
            at,
            max_count,
            json,
        } => {
            let r = open(&repo).await?;
            let log = r
                .log(rev.or(at).as_deref().unwrap_or("main"), max_count)
                .await?;
            output::log(&log, json);
        }
        Command::Show {
            repo,
            rev,
            chunks,
            json,
        } => {
            let r = open(&repo).await?;
            let res = r.resolve(&rev).await?;
            let info = r.commit_info(&res.id).await?;
            let diff = match info.parents.first() {
                Some(p) => {
                    let p = icechunk::format::SnapshotId::try_from(p.as_str())
                        .map_err(|e| CliError::Other(e.to_string()))?;
                    Some(diff_with_cells(&r, &p, &res.id, chunks).await?)
                }
                None => None,
            };
            output::show(&info, diff.as_ref(), json);
        }
        Command::Diff {
            repo,
            rev_a,
            rev_b,
            chunks,
            json,
        } => {
            let r = open(&repo).await?;
            let (a, b) = (r.resolve(&rev_a).await?, r.resolve(&rev_b).await?);
            let d = diff_with_cells(&r, &a.id, &b.id, chunks).await?;
            output::diff(&d, json);
        }
        Command::Branch { repo, action } => {
            let r = open(&repo).await?;
            match action {
                BranchAction::Create { name, from } => {
                    let id = r.create_branch(&name, &from).await?;
                    println!("{id}");
                }
                BranchAction::List { json } => output::refs(&r.branches().await?, json),
                BranchAction::Delete { name, force } => {
                    let deleted = if force {
                        r.delete_branch(&name).await
                    } else {
                        r.delete_merged_branch(&name).await
                    };
                    match deleted {
                        Err(e @ RepoError::Unmerged { .. }) => {
                            return Err(CliError::Other(format!(
                                "{e}; merge or tag it first, or give --force to delete it anyway"
                            )))
                        }
                        other => other?,
                    }
                    println!("deleted branch {name}");
                }
            }
        }
        Command::Tag { repo, action } => {
            let r = open(&repo).await?;
            match action {
                TagAction::Create { name, at, message } => {
                    let id = r.create_tag(&name, &at, message.as_deref()).await?;
                    println!("{id}");
                }
                TagAction::List { json } => output::refs(&r.tags().await?, json),
            }
        }
        Command::Reset {
            repo,
            branch,
            rev,
            force,
            json,
        } => {
            let r = open(&repo).await?;
            let id = r.reset(&branch, &rev, force).await?;
            if json {
                println!("{}", json!({"branch": branch, "commit": id.to_string()}));
            } else {
                println!("{id}");
            }
        }
        Command::Revert {
            repo,
            commit,
            w,
            strategy,
            dry_run,
        } => {
            let prov = provenance(w.author.as_deref(), "revert", w.message, &w.meta)?;
            let r = open(&repo).await?;
            let opts = history_options(true, strategy.as_deref(), dry_run);
            let out = history::revert(&r, &commit, &w.branch, &opts, prov).await;
            print_history(out, w.json)?;
        }
        Command::Merge {
            repo,
            source,
            into,
            author,
            message,
            meta,
            strategy,
            dry_run,
            json,
        } => {
            let prov = provenance(author.as_deref(), "merge", message, &meta)?;
            let r = open(&repo).await?;
            let opts = history_options(false, strategy.as_deref(), dry_run);
            print_history(history::merge(&r, &source, &into, &opts, prov).await, json)?;
        }
        Command::CherryPick {
            repo,
            commit,
            w,
            strategy,
            dry_run,
        } => {
            let prov = provenance(w.author.as_deref(), "cherry-pick", w.message, &w.meta)?;
            let r = open(&repo).await?;
            let opts = history_options(false, strategy.as_deref(), dry_run);
            let out = history::cherry_pick(&r, &commit, &w.branch, &opts, prov).await;
            print_history(out, w.json)?;
        }
        Command::Verify {
            repo,
            rev,
            at,
            json,
        } => {
            let rev = rev.or(at);
            let r = open(&repo).await?;
            let pb = progress_bar(0, "verifying chunks");
            let tick = |n: u64| {
                if let Some(pb) = &pb {
                    pb.inc_length(n);
                    pb.inc(n);
                }
            };
            let report = r.verify(rev.as_deref().unwrap_or("main"), &tick).await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            output::verify(&report, json);
            if !report.ok {
                return Err(CliError::Other(format!(
                    "verify failed for {}: {} bad chunk(s){}",
                    report.commit,
                    report.bad_chunks.len(),
                    if report
                        .recorded_digest
                        .as_deref()
                        .is_some_and(|d| d != report.computed_digest)
                    {
                        ", content digest differs from the recorded one"
                    } else {
                        ""
                    }
                )));
            }
        }
        Command::Release(args) => release_cmd(args).await?,
        Command::Import {
            repo,
            dir,
            branch,
            author,
            message,
            json,
        } => {
            let prov = provenance(author.as_deref(), "import", message, &[])?;
            let location = Location::parse(&repo).map_err(RepoError::from)?;
            let sp = spinner("importing");
            let r = crate::release::import::import(&location, &dir, branch.as_deref(), prov).await;
            if let Some(sp) = sp {
                sp.finish_and_clear();
            }
            let r = r.map_err(|e| CliError::Other(e.to_string()))?;
            output::import(&r, json);
        }
        Command::Repair {
            repo,
            branch,
            author,
            json,
        } => {
            let prov = provenance(
                author.as_deref(),
                "repair",
                Some("Array metadata in the form every Zarr reader accepts".into()),
                &[],
            )?;
            let r = open(&repo).await?;
            let (out, arrays) = crate::merge::repair_metadata(&r, &branch, prov)
                .await
                .map_err(|e| CliError::Other(e.to_string()))?;
            let commit = out.and_then(|o| o.commit);
            if !json {
                for a in &arrays {
                    eprintln!("repaired {a}");
                }
            }
            print_write(json, &commit, json!({"branch": branch, "arrays": arrays}));
        }
        Command::Squash {
            repo,
            branch,
            older_than,
            by,
            author,
            dry_run,
            json,
        } => {
            let cutoff = cutoff_of(&older_than)?;
            let prov = provenance(author.as_deref(), "squash", None, &[])?;
            let r = open(&repo).await?;
            let report = r
                .squash(&branch, cutoff, by.parse()?, dry_run, prov)
                .await?;
            output::squash(&report, json);
        }
        Command::Gc {
            repo,
            older_than,
            drop_provenance,
            dry_run,
            json,
        } => {
            let cutoff = cutoff_of(&older_than)?;
            let r = open(&repo).await?;
            let pb = progress_bar(1, "collecting garbage");
            let report = r.collect_garbage(cutoff, dry_run, drop_provenance).await?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            output::gc(&report, json);
        }
    }
    Ok(())
}

/// Output into a closed pipe (`zarr-fuse log --json | head`) ends the process quietly, as for
/// other Unix tools, instead of a panic in `println!` (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default has no preconditions; it runs once at
    // start, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// When `main` began (for the `ZF_TIMINGS` diagnostic).
static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Run the command line; returns the process exit status.
pub fn main() -> i32 {
    START.get_or_init(std::time::Instant::now);
    // The engine's own diagnostics (e.g. icechunk's warning about its local storage, which we do
    // not use for writing) must not leak into our one-line error contract.
    let _ = tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return code;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zarr-fuse: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(run(cli));
    // background tasks of the storage layers (none hold data we wait for: every write was
    // awaited) are not joined at exit
    rt.shutdown_background();
    if std::env::var_os("ZF_TIMINGS").is_some() {
        if let Some(start) = START.get() {
            eprintln!(
                "timings_ms: total {:.2}",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
    match result {
        Ok(()) => 0,
        Err(e @ CliError::Usage(_)) => {
            eprintln!("zarr-fuse: error: {e}");
            2
        }
        Err(e) => {
            eprintln!(
                "zarr-fuse: error: {}",
                crate::repo::one_line(&e.to_string())
            );
            1
        }
    }
}
