//! Commands that create a dataset or add to it: `init`, `schema`, `update`, `repair`, `import`.

use std::path::PathBuf;

use serde_json::json;
use zarrs_storage::AsyncReadableStorageTraits;

use super::args::{self, BranchArg, CommitArgs, InputFormatArg, OnInvalidArg};
use super::ui::{open, print_write, progress_bar, spinner};
use super::{output, CliError};
use crate::repo::{Repo, RepoError};
use crate::storage::Location;

/// `init`: create a repository from a schema.
#[derive(clap::Args, Debug)]
pub(crate) struct InitArgs {
    /// Repository location.
    repo: String,
    /// Dataset schema (YAML).
    #[arg(long)]
    schema: PathBuf,
    #[command(flatten)]
    commit: CommitArgs,
    /// Schema warnings (obsolete forms, ignored keys, unknown units) are errors.
    #[arg(long)]
    strict: bool,
}

/// `init`.
pub(crate) async fn init(a: InitArgs, json: bool) -> Result<(), CliError> {
    let bytes = std::fs::read(&a.schema).map_err(|source| CliError::Read {
        path: a.schema.clone(),
        source,
    })?;
    let file = a.schema.display().to_string();
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::Usage(format!("{file}: the schema is not UTF-8 text")))?;
    let parsed = crate::schema::load_str(&text, &file)?;
    for w in &parsed.warnings {
        eprintln!("{w}");
    }
    if a.strict {
        parsed.strict()?;
    }
    let prov = a
        .commit
        .provenance("init", Some("Initialise repository".into()))?;
    let location = Location::parse(&a.repo).map_err(RepoError::from)?;
    let guard = InitGuard::new(&location);
    let r = Repo::init(&location).await?;
    let out = r.init_dataset(&text, &file, prov).await?;
    guard.keep();
    print_write(json, &out.commit, json!({}));
    Ok(())
}

/// `schema check|apply|show`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum SchemaAction {
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
        #[command(flatten)]
        branch: BranchArg,
        #[command(flatten)]
        commit: CommitArgs,
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

/// `schema`.
pub(crate) async fn schema(action: SchemaAction, json: bool) -> Result<(), CliError> {
    match action {
        SchemaAction::Check { file, strict } => {
            let mut s = crate::schema::load_file(&file)?;
            for w in &s.warnings {
                eprintln!("{w}");
            }
            if strict {
                s = s.strict()?;
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
            commit,
        } => {
            let text = std::fs::read_to_string(&file).map_err(|source| CliError::Read {
                path: file.clone(),
                source,
            })?;
            let default = format!("Schema change from {}", file.display());
            let prov = commit.provenance("schema", Some(default))?;
            let r = open(&repo).await?;
            let out = crate::update::apply_schema(
                &r,
                &branch.branch,
                &text,
                &file.display().to_string(),
                prov,
            )
            .await?;
            print_write(json, &out.commit, json!({"branch": branch.branch}));
        }
        SchemaAction::Show { repo, at } => {
            let r = open(&repo).await?;
            let id = r.resolve(at.as_deref().unwrap_or("main")).await?.id;
            let store = r.read_store(&id).await?;
            let key = zarrs_storage::StoreKey::new("zarr.json")
                .map_err(|e| RepoError::from_engine("reading the root group", e))?;
            let bytes = store
                .get(&key)
                .await
                .map_err(|e| RepoError::from_engine("reading the root group", e))?
                .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            match v
                .get("attributes")
                .and_then(|a| a.as_object())
                .and_then(crate::update::schema_text)
            {
                Some(y) => print!("{y}"),
                None => {
                    return Err(CliError::Failed(format!(
                        "{repo}: no zarr-fuse schema stored at {id}"
                    )))
                }
            }
        }
    }
    Ok(())
}

/// `update`: convert and merge inputs as one commit.
#[derive(clap::Args, Debug)]
pub(crate) struct UpdateArgs {
    /// Repository location.
    repo: String,
    /// Input files (for the node of `--node PATH`, else the root), or NODE=FILE pairs.
    #[arg(value_parser = args::input)]
    inputs: Vec<args::Input>,
    /// `PATH`: the node the positional files go to (`/`-separated; root = `/`); or
    /// `PATH=FILE`, repeatable: that file for that node. All inputs make one commit.
    #[arg(long, value_name = "PATH|PATH=FILE", value_parser = args::input)]
    node: Vec<args::Input>,
    #[command(flatten)]
    branch: BranchArg,
    #[command(flatten)]
    commit: CommitArgs,
    /// Source (URI or name) recorded with the commit (default: the file names).
    #[arg(long)]
    source: Option<String>,
    /// NA cells erase stored values.
    #[arg(long)]
    overwrite_na: bool,
    /// Unusable values: reject the contribution (error) or make them NA (na).
    #[arg(long, value_enum, default_value_t = OnInvalidArg::Error)]
    on_invalid: OnInvalidArg,
    /// Input format (default: by extension: .csv .txt, .parquet .pq, .json .ndjson .geojson).
    #[arg(long, value_enum)]
    format: Option<InputFormatArg>,
    /// Add a constant column to every input row (a station id, a location), repeatable.
    #[arg(long = "set", value_name = "COL=VALUE")]
    set: Vec<String>,
    /// Rename an input column before converting, repeatable.
    #[arg(long = "rename", value_name = "FROM=TO")]
    rename: Vec<String>,
    /// Report without writing.
    #[arg(long)]
    dry_run: bool,
    /// Update a branch the repository records as protected (`branch protect`).
    #[arg(long)]
    force_protected: bool,
    /// Memory budget in MiB: converted rows of each input beyond it go to a temporary file
    /// in TMPDIR (which must be on disk, not a tmpfs, to save memory), and arrays are
    /// rewritten in bands of about this size.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory: usize,
}

/// `update`.
pub(crate) async fn update(a: UpdateArgs, json: bool) -> Result<(), CliError> {
    let mut prov = a.commit.provenance("update", None)?;
    let files = args::update_files(&a.node, &a.inputs)?;
    let names: Vec<&str> = a.inputs.iter().map(|i| i.raw.as_str()).collect();
    prov.source = Some(a.source.clone().unwrap_or_else(|| names.join(" ")));
    if prov.message.is_empty() {
        prov.message = format!("Update from {}", prov.source.clone().unwrap_or_default());
    }
    let opts = crate::update::UpdateOptions {
        overwrite_na: a.overwrite_na,
        on_invalid: a.on_invalid.into(),
        dry_run: a.dry_run,
        memory: Some(a.memory.saturating_mul(1 << 20)),
        input: crate::ingest::InputOptions {
            format: a.format.map(Into::into),
            set: args::pairs(&a.set, "--set", "COL=VALUE")?,
            rename: args::pairs(&a.rename, "--rename", "FROM=TO")?,
        },
    };
    let total: u64 = files
        .iter()
        .map(|(_, f)| crate::ingest::Table::input_len(f))
        .sum();
    let pb = progress_bar(total, "reading and converting inputs");
    if let (Some(pb), Ok(style)) = (
        &pb,
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}"),
    ) {
        pb.set_style(style);
    }
    let opened = std::time::Instant::now();
    let r = open(&a.repo).await?;
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
    let report = r
        .update(&a.branch.branch)
        .files(files)
        .options(opts)
        .provenance(prov)
        .progress(&progress)
        .force_protected(a.force_protected)
        .commit()
        .await;
    super::ui::finish(pb);
    let report = report?;
    if std::env::var_os("ZF_TIMINGS").is_some() {
        print_timings(&report.timings, opened, open_time);
    }
    if report.attempts > 1 {
        eprintln!(
            "note: other writers committed first; the update was planned again on the new tip ({} attempts)",
            report.attempts
        );
    }
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    match &report.commit {
        Some(c) => println!("{c}"),
        None if a.dry_run => println!("dry run: nothing written"),
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
    Ok(())
}

/// The `ZF_TIMINGS` diagnostic of the forecast benchmark (scripts/bench-forecast-cli.py).
fn print_timings(
    t: &crate::update::Timings,
    opened: std::time::Instant,
    open_time: std::time::Duration,
) {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "timings_ms: start {:.2} open {:.2} convert {:.2} read+plan {:.2} write {:.2} commit {:.2}",
        ms(opened.duration_since(*super::START.get_or_init(std::time::Instant::now))),
        ms(open_time),
        ms(t.convert),
        ms(t.merge),
        ms(t.write),
        ms(t.commit)
    );
}

/// `repair`: rewrite old array metadata in the form every reader accepts.
#[derive(clap::Args, Debug)]
pub(crate) struct RepairArgs {
    /// Repository location.
    repo: String,
    #[command(flatten)]
    branch: BranchArg,
    #[command(flatten)]
    commit: CommitArgs,
}

/// `repair`.
pub(crate) async fn repair(a: RepairArgs, json: bool) -> Result<(), CliError> {
    let default = "Array metadata in the form every Zarr reader accepts";
    let prov = a.commit.provenance("repair", Some(default.into()))?;
    let r = open(&a.repo).await?;
    let (out, arrays) = crate::update::repair_metadata(&r, &a.branch.branch, prov).await?;
    let commit = out.and_then(|o| o.commit);
    if !json {
        for a in &arrays {
            eprintln!("repaired {a}");
        }
    }
    print_write(
        json,
        &commit,
        json!({"branch": a.branch.branch, "arrays": arrays}),
    );
    Ok(())
}

/// `import`: a repository (or a new branch of one) from a release package.
#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// Repository location (created when absent).
    repo: String,
    /// Package directory.
    dir: PathBuf,
    /// Branch to create (required when the repository exists; default main for a new one).
    #[arg(long)]
    branch: Option<String>,
    #[command(flatten)]
    commit: CommitArgs,
}

/// `import`.
pub(crate) async fn import(a: ImportArgs, json: bool) -> Result<(), CliError> {
    let prov = a.commit.provenance("import", None)?;
    let location = Location::parse(&a.repo).map_err(RepoError::from)?;
    let sp = spinner("importing");
    let r = crate::release::import::import(&location, &a.dir, a.branch.as_deref(), prov).await;
    super::ui::finish(sp);
    output::import(&r?, json);
    Ok(())
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
