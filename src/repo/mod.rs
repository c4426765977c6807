//! The versioned store: a repository in icechunk's format plus our provenance, content
//! addressing, history operations and retention.
//!
//! Every write goes through a [`Transaction`] (one commit on one branch); everything that reads
//! takes a revision resolved by [`Repo::resolve`].

mod commit_id;
mod folded;
mod gc;
mod history;
mod refs;
pub(crate) mod retry;
pub(crate) mod skip;
mod squash;
mod threeway;
mod transaction;

use std::sync::Arc;

use icechunk::format::SnapshotId;
use icechunk::{Repository, RepositoryConfig};

use crate::storage::{Location, StorageError};

pub use commit_id::CommitId;
pub(crate) use folded::entries_of;
pub use folded::{entries, folded, folded_leaves, FOLDED};
pub use gc::{GcReport, KEEP_REPO_BACKUPS};
pub use history::{CommitInfo, DiffReport, NodeChange};
pub use refs::{glob, parse_time, validate_ref_name, RefInfo, Resolved};
pub use squash::{Period, SquashReport, SquashedPeriod};
pub(crate) use threeway::{
    apply as apply_chunk_plan, changed_paths, plan as chunk_plan, restore_by_reference, snapshot_id,
};
pub use threeway::{ChunkConflict, Strategy};
pub use transaction::{CellRecord, CommitOutcome, Transaction};

/// Errors of repository operations. Each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// There is no repository at the location.
    #[error(
        "'{0}' is not a zarr-fuse repository (create one with `zarr-fuse init {0} --schema FILE`)"
    )]
    NotARepository(String),
    /// `init` on a location that already holds something.
    #[error("'{0}' already exists and is not empty; choose a new location")]
    AlreadyExists(String),
    /// A revision did not resolve.
    #[error("revision '{rev}' not found: {hint}")]
    RevNotFound {
        /// The revision given.
        rev: String,
        /// What exists instead.
        hint: String,
    },
    /// A commit-id prefix matches several commits.
    #[error("revision '{rev}' is ambiguous; it matches {}", candidates.join(", "))]
    AmbiguousRev {
        /// The prefix given.
        rev: String,
        /// The matching commit ids.
        candidates: Vec<String>,
    },
    /// A branch that does not exist.
    #[error("branch '{0}' does not exist (see `zarr-fuse branch <REPO> list`)")]
    NoSuchBranch(String),
    /// Deleting a branch would lose commits no other branch or tag reaches.
    #[error(
        "branch '{branch}' has {commits} commit(s) that no other branch or tag reaches (tip {tip})"
    )]
    Unmerged {
        /// The branch.
        branch: String,
        /// How many of its commits only it reaches.
        commits: usize,
        /// Its tip.
        tip: String,
    },
    /// Merging a branch into itself.
    #[error("cannot merge branch '{0}' into itself")]
    MergeIntoItself(String),
    /// A branch that already exists.
    #[error("branch '{0}' already exists")]
    BranchExists(String),
    /// A tag that exists or existed.
    #[error(
        "tag '{0}' already exists or existed; tags are immutable and their names are never reused"
    )]
    TagExists(String),
    /// A name that is not allowed for a branch or tag.
    #[error("invalid {kind} name '{name}': {reason}")]
    InvalidName {
        /// branch or tag
        kind: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Reset to a commit outside the branch history without --force.
    #[error("commit {commit} is not in the history of branch '{branch}'")]
    NotInHistory {
        /// The target commit.
        commit: String,
        /// The branch.
        branch: String,
    },
    /// Another writer moved the branch in a way that cannot be rebased.
    #[error("conflict on branch '{branch}': {detail}; nothing was written, re-run the operation")]
    Conflict {
        /// The branch.
        branch: String,
        /// What collided.
        detail: String,
    },
    /// Revert, merge or cherry-pick found conflicting changes.
    #[error("{operation} refused, nothing written: {} conflict(s): {}", conflicts.len(), threeway::describe(conflicts))]
    Conflicts {
        /// revert, merge or cherry-pick
        operation: &'static str,
        /// The conflicts.
        conflicts: Vec<ChunkConflict>,
    },
    /// Invalid argument value.
    #[error("{0}")]
    Invalid(String),
    /// Provenance problem (author, meta).
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceError),
    /// An error from the icechunk engine (or a storage layer below it), with the operation
    /// that failed; the engine's typed error is kept as the source.
    #[error("{op}: {message}")]
    Engine {
        /// What we were doing.
        op: String,
        /// The engine's message, on one line.
        message: String,
        /// The engine's error (e.g. `icechunk::repository::RepositoryError`; downcast to act on
        /// its kind).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl RepoError {
    /// An engine error with the operation that failed, keeping it as the source.
    pub fn from_engine<E: std::error::Error + Send + Sync + 'static>(op: &str, e: E) -> RepoError {
        engine(op)(e)
    }
}

/// Result of repository operations.
pub type Result<T> = std::result::Result<T, RepoError>;

/// Wrap an engine error with the operation that failed (its message on one line), keeping it
/// as the source.
pub(crate) fn engine<E: std::error::Error + Send + Sync + 'static>(
    op: impl Into<String>,
) -> impl FnOnce(E) -> RepoError {
    let op = op.into();
    move |e| RepoError::Engine {
        op,
        message: one_line(&e.to_string()),
        source: Some(Box::new(e)),
    }
}

/// icechunk errors carry a multi-line span trace after "context:"; keep the message, on one
/// line, and add what to do for the S3 failures users meet most.
pub(crate) fn one_line(msg: &str) -> String {
    let head = msg.split("\ncontext:").next().unwrap_or(msg);
    let mut line = head.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = line.to_lowercase();
    let hint = if [
        "dispatch failure",
        "connection refused",
        "dns error",
        "timed out",
    ]
    .iter()
    .any(|k| lower.contains(k))
    {
        Some("cannot reach the S3 endpoint; check ZF_S3_ENDPOINT_URL and the network")
    } else if [
        "invalidaccesskeyid",
        "signaturedoesnotmatch",
        "accessdenied",
        "forbidden",
    ]
    .iter()
    .any(|k| lower.contains(k))
    {
        Some("access denied; check ZF_S3_ACCESS_KEY and ZF_S3_SECRET_KEY")
    } else if lower.contains("nosuchbucket") {
        Some("the bucket does not exist; create it first")
    } else {
        None
    };
    if let Some(h) = hint {
        line.push_str(" (");
        line.push_str(h);
        line.push(')');
    }
    line
}

/// A zarr-fuse repository.
pub struct Repo {
    location: Location,
    inner: Arc<Repository>,
}

/// Repository metadata key of the repository's identity.
pub const REPOSITORY_ID_KEY: &str = "zarr_fuse.repository_id";

fn config(location: &Location) -> RepositoryConfig {
    RepositoryConfig {
        storage: location.storage_settings(),
        ..RepositoryConfig::default()
    }
}

impl Repo {
    /// Create a new, empty repository (one root commit on `main`).
    pub async fn init(location: &Location) -> Result<Repo> {
        let storage = location.open_storage().await?;
        let exists = Repository::exists(Arc::clone(&storage), location.storage_settings())
            .await
            .map_err(engine(format!("checking {location}")))?;
        if exists {
            return Err(RepoError::AlreadyExists(location.to_string()));
        }
        if let Location::Local(path) = location {
            if path
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
            {
                return Err(RepoError::AlreadyExists(location.to_string()));
            }
        }
        let repo = Repository::create(storage)
            .config(config(location))
            .execute()
            .await
            .map_err(engine(format!("creating repository at {location}")))?;
        // an identity for this repository: icechunk's first commit has the same id everywhere
        let seed = format!(
            "{location}\0{}\0{}\0{:?}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
            std::time::Instant::now()
        );
        let id = blake3::hash(seed.as_bytes()).to_hex()[..32].to_string();
        let mut props = std::collections::BTreeMap::new();
        props.insert(REPOSITORY_ID_KEY.to_string(), serde_json::json!(id));
        repo.update_metadata(&props)
            .await
            .map_err(engine(format!("recording the identity of {location}")))?;
        Ok(Repo {
            location: location.clone(),
            inner: Arc::new(repo),
        })
    }

    /// The random identity recorded when the repository was created (spec/015), if any
    /// (repositories created by other tools or before it was introduced have none).
    pub async fn repository_id(&self) -> Result<Option<String>> {
        Ok(self
            .metadata()
            .await?
            .get(REPOSITORY_ID_KEY)
            .and_then(|v| v.as_str())
            .map(str::to_string))
    }

    /// Open an existing repository.
    pub async fn open(location: &Location) -> Result<Repo> {
        if let Location::Local(path) = location {
            if !path.join("repo").is_file() {
                return Err(RepoError::NotARepository(location.to_string()));
            }
        }
        let storage = location.open_storage().await?;
        let exists = Repository::exists(Arc::clone(&storage), location.storage_settings())
            .await
            .map_err(engine(format!("opening {location}")))?;
        if !exists {
            return Err(RepoError::NotARepository(location.to_string()));
        }
        let repo = Repository::open(storage)
            .config(config(location))
            .execute()
            .await
            .map_err(engine(format!("opening {location}")))?;
        Ok(Repo {
            location: location.clone(),
            inner: Arc::new(repo),
        })
    }

    /// The repository-level metadata (tag records, identity).
    pub(crate) async fn metadata(
        &self,
    ) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
        self.inner
            .get_metadata()
            .await
            .map_err(engine("reading repository metadata"))
    }

    /// Open a repository from a location string.
    pub async fn open_str(location: &str) -> Result<Repo> {
        Repo::open(&Location::parse(location)?).await
    }

    /// Where the repository lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The icechunk repository underneath.
    pub fn icechunk(&self) -> &Arc<Repository> {
        &self.inner
    }

    /// A read-only icechunk session at a resolved commit.
    pub async fn session_at(&self, id: &SnapshotId) -> Result<icechunk::session::Session> {
        crate::cas::snapshot_session(&self.inner, id)
            .await
            .map_err(|message| RepoError::Engine {
                op: format!("reading commit {id}"),
                message,
                source: None,
            })
    }

    /// Begin a transaction on `branch`.
    pub async fn transaction(&self, branch: &str) -> Result<Transaction> {
        Transaction::begin(self, branch).await
    }
}

impl Repo {
    /// Verify the commit `rev`: recompute its content digest from the stored bytes.
    pub async fn verify(
        &self,
        rev: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<crate::cas::VerifyReport> {
        let r = self.resolve(rev).await?;
        let info = self.commit_info(&r.id).await?;
        crate::cas::verify(&self.inner, &r.id, info.content_digest, progress)
            .await
            .map_err(|message| RepoError::Engine {
                op: format!("verifying {}", r.id),
                message,
                source: None,
            })
    }
}

impl Repo {
    /// A read-only zarrs store at a resolved commit (open arrays with `zarrs::array::Array::async_open`).
    pub async fn read_store(&self, id: &SnapshotId) -> Result<Arc<crate::cas::CasStore>> {
        let session = Arc::new(tokio::sync::RwLock::new(self.session_at(id).await?));
        let writer = Arc::new(crate::cas::CasWriter::new(
            Arc::clone(&self.inner),
            id.clone(),
        ));
        Ok(Arc::new(crate::cas::CasStore::new(session, writer)))
    }
}
