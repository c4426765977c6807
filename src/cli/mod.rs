//! The `zarr-fuse` command line: one Args struct and one handler per command (the handlers live
//! in this module's files by family), a global `--json`, text and JSON output, progress bars.
//!
//! Exit status: 0 success, 1 refused or failed operation (reason on stderr, one line), 2 usage
//! error.

mod args;
mod error;
mod history;
mod output;
mod read;
mod refs;
mod release;
mod serve;
mod ui;
mod write;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// Versioned, schema-driven storage for scientific Zarr datasets (icechunk format).
#[derive(Parser, Debug)]
#[command(name = "zarr-fuse", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print JSON (the fields of the CLI contract).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a repository (a local directory, s3://bucket/prefix) from a schema.
    Init(write::InitArgs),
    /// Check a schema file, or show the schema stored in a repository.
    Schema {
        #[command(subcommand)]
        action: write::SchemaAction,
    },
    /// Convert and merge CSV tables into the dataset as one commit.
    Update(write::UpdateArgs),
    /// Which commit last wrote each cell of a selection (by coordinate values).
    Blame(read::BlameArgs),
    /// Write a node as a tidy long table (one row per cell with a value).
    Export(read::ExportArgs),
    /// Build a demo repository from the bundled weather schema and sample forecasts.
    Demo {
        /// Directory for the new repository (must not exist).
        dir: PathBuf,
    },
    /// Show the history, newest first.
    Log(read::LogArgs),
    /// Show one commit and what it changed.
    Show(read::ShowArgs),
    /// Differences between two revisions: per variable the cells changed, added and set to NA,
    /// and the boxes of coordinate values they lie in.
    Diff(read::DiffArgs),
    /// Create, list or delete branches.
    Branch(refs::BranchArgs),
    /// Create or list tags (tags are immutable).
    Tag(refs::TagArgs),
    /// Move a branch back to an earlier commit of its history.
    Reset(refs::ResetArgs),
    /// Undo one commit by cells: every cell it changed gets its parent's value again, unless a
    /// later commit wrote that cell (a conflict, named by coordinate values).
    Revert(history::RevertArgs),
    /// Merge a branch (or any revision) into a branch, three-way by cells.
    Merge(history::MergeArgs),
    /// Apply one commit's changes onto a branch, three-way by cells.
    CherryPick(history::CherryPickArgs),
    /// Recompute a commit's content digest from the stored bytes.
    Verify(read::VerifyArgs),
    /// Write a tag as a Zenodo package (plain Zarr v3 zip, zenodo.json, datacite.json,
    /// PROVENANCE, schema, CHECKSUMS); `release verify DIR` checks one.
    Release(release::ReleaseArgs),
    /// Create a repository (or a new branch of one) from a release package.
    Import(write::ImportArgs),
    /// Rewrite array metadata written by earlier versions in the form every reader accepts
    /// (zarr-python 3.4 refuses codecs written as bare names), as one commit.
    Repair(write::RepairArgs),
    /// Shorten a branch's history: each period's run of contributions older than DURATION becomes
    /// one commit holding the run's last state and the list of the contributions it folds (blame
    /// still names each cell's contributor). Tags and other branches keep their snapshots; `gc`
    /// then deletes the folded ones.
    Squash(history::SquashArgs),
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
    Gc(history::GcArgs),
    /// Serve the repository over HTTP: authenticated pushes into a durable queue, committed one
    /// by one under the token's identity (see `token`).
    Serve(serve::ServeArgs),
    /// Make, list or revoke the tokens of `serve`.
    Token {
        #[command(subcommand)]
        action: serve::TokenAction,
    },
}

/// Run one parsed command.
async fn run(cli: Cli) -> Result<(), CliError> {
    let json = cli.json;
    match cli.command {
        Command::Init(a) => write::init(a, json).await,
        Command::Schema { action } => write::schema(action, json).await,
        Command::Update(a) => write::update(a, json).await,
        Command::Repair(a) => write::repair(a, json).await,
        Command::Import(a) => write::import(a, json).await,
        Command::Blame(a) => read::blame(a, json).await,
        Command::Export(a) => read::export(a).await,
        Command::Log(a) => read::log(a, json).await,
        Command::Show(a) => read::show(a, json).await,
        Command::Diff(a) => read::diff(a, json).await,
        Command::Verify(a) => read::verify(a, json).await,
        Command::Branch(a) => refs::branch(a, json).await,
        Command::Tag(a) => refs::tag(a, json).await,
        Command::Reset(a) => refs::reset(a, json).await,
        Command::Revert(a) => history::revert(a, json).await,
        Command::Merge(a) => history::merge(a, json).await,
        Command::CherryPick(a) => history::cherry_pick(a, json).await,
        Command::Squash(a) => history::squash(a, json).await,
        Command::Gc(a) => history::gc(a, json).await,
        Command::Release(a) => release::release(a, json).await,
        Command::Demo { dir } => Ok(crate::demo::run(&dir).await?),
        Command::Serve(a) => serve::serve(a).await,
        Command::Token { action } => serve::token(action, json),
    }
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
