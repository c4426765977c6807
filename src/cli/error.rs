//! The command line's error: every library error converts into it, keeping its source; the
//! hints that name flags are added here, not in the library.

use std::path::PathBuf;

use crate::repo::RepoError;

/// Errors of the command line (a failed or refused operation: exit 1; a usage error: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the repository layer.
    #[error("{}{}", .0, repo_hint(.0))]
    Repo(#[source] RepoError),
    /// From converting or merging a contribution, or a history operation by cells.
    #[error("{}{}", .0, update_hint(.0))]
    Update(#[source] Box<crate::update::UpdateError>),
    /// A revert, merge or cherry-pick by cells.
    #[error("{}{}", .0, history_hint(.0))]
    History(#[source] Box<crate::history::HistoryError>),
    /// A schema problem.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    /// Reading an input.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// Releasing, verifying or importing a package.
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
    /// Building the demo.
    #[error("{0}")]
    Demo(#[source] Box<crate::demo::DemoError>),
    /// The ingest service or its tokens.
    #[error("{0}")]
    Serve(#[source] crate::serve::ServeError),
    /// Reading an input file.
    #[error("cannot read '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing an output file.
    #[error("cannot write {what} to '{}': {source}{}", path.display(), write_hint(path, source))]
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
    /// A check that found problems (verify), already worded for the user.
    #[error("{0}")]
    Failed(String),
}

impl From<RepoError> for CliError {
    fn from(e: RepoError) -> Self {
        CliError::Repo(e)
    }
}

impl From<crate::update::UpdateError> for CliError {
    fn from(e: crate::update::UpdateError) -> Self {
        match e {
            crate::update::UpdateError::Repo(r) => CliError::Repo(r),
            e => CliError::Update(Box::new(e)),
        }
    }
}

impl From<crate::history::HistoryError> for CliError {
    fn from(e: crate::history::HistoryError) -> Self {
        match e {
            crate::history::HistoryError::Update(u) => u.into(),
            crate::history::HistoryError::Repo(r) => CliError::Repo(r),
            e => CliError::History(Box::new(e)),
        }
    }
}

impl From<crate::serve::ServeError> for CliError {
    fn from(e: crate::serve::ServeError) -> Self {
        match e {
            crate::serve::ServeError::Usage(u) => CliError::Usage(u),
            e => CliError::Serve(e),
        }
    }
}

impl From<crate::demo::DemoError> for CliError {
    fn from(e: crate::demo::DemoError) -> Self {
        CliError::Demo(Box::new(e))
    }
}

impl From<crate::provenance::ProvenanceError> for CliError {
    fn from(e: crate::provenance::ProvenanceError) -> Self {
        CliError::Repo(RepoError::from(e))
    }
}

impl From<crate::storage::StorageError> for CliError {
    fn from(e: crate::storage::StorageError) -> Self {
        CliError::Repo(RepoError::from(e))
    }
}

/// The flag that overrides a refusal of the repository layer, where there is one.
fn repo_hint(e: &RepoError) -> &'static str {
    match e {
        RepoError::NotInHistory { .. } => "; pass --force to move the branch anyway",
        RepoError::Unmerged { .. } => {
            "; merge or tag it first, or give --force to delete it anyway"
        }
        _ => "",
    }
}

/// The flag that changes how an update treats what it refused, where there is one.
fn update_hint(e: &crate::update::UpdateError) -> &'static str {
    match e {
        crate::update::UpdateError::BadValue { .. } => {
            " (nothing written; --on-invalid na makes such cells NA)"
        }
        _ => "",
    }
}

/// The `--strategy` that decides conflicting cells.
fn history_hint(e: &crate::history::HistoryError) -> &'static str {
    match e {
        crate::history::HistoryError::CellConflicts(r) if r.operation == "revert" => {
            "; --strategy theirs keeps the later values and reverts the rest"
        }
        crate::history::HistoryError::CellConflicts(_) => "; --strategy ours|theirs decides them",
        _ => "",
    }
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
