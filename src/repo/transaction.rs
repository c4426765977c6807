//! A transaction: changes staged in one icechunk session, committed as one commit on one branch.
//!
//! Chunks written through [`Transaction::store`] are content-addressed ([`crate::cas`]). Commit
//! records the provenance and the snapshot content digest; when another writer committed first,
//! the change is rebased onto the new tip if the two touched disjoint chunks (the digest is then
//! recomputed), otherwise the commit fails and the branch is left as the other writer left it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use icechunk::conflicts::detector::ConflictDetector;
use icechunk::format::SnapshotId;
use icechunk::session::{Session, SessionErrorKind};
use icechunk::storage::VersionedUpdateResult;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::RwLock;

use super::{engine, Repo, RepoError, Result};
use crate::cas::{self, CasStore, CasWriter, WriteStats};
use crate::provenance::Provenance;

/// Prefix of our side records inside the repository (outside icechunk's own prefixes).
pub(super) const RECORDS_PREFIX: &str = "zarr-fuse/records";

/// The outcome of committing a transaction.
#[derive(Clone, Debug, Serialize)]
pub struct CommitOutcome {
    /// The new commit, or `None` when nothing changed.
    pub commit: Option<crate::repo::CommitId>,
    /// Branch committed to.
    pub branch: String,
    /// Chunk write counters.
    pub stats: WriteStats,
    /// Content digest of the new snapshot.
    pub content_digest: Option<String>,
    /// How many times the commit was rebased onto a newer tip.
    pub rebases: u32,
}

/// The cells a commit wrote, for its side record: node → variable → cell set as JSON text.
pub type CellRecord =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Box<RawValue>>>;

/// Changes staged for one commit on one branch.
pub struct Transaction {
    repo: Arc<icechunk::Repository>,
    branch: String,
    base: SnapshotId,
    session: Arc<RwLock<Session>>,
    writer: Arc<CasWriter>,
    /// Cell sets as JSON text (large for sparse contributions: never a `Value` tree).
    cells: Option<CellRecord>,
    extra: serde_json::Map<String, serde_json::Value>,
    /// Commit even when nothing changed (a squash writing a commit again, spec/029).
    allow_empty: bool,
}

impl Transaction {
    pub(crate) async fn begin(repo: &Repo, branch: &str) -> Result<Transaction> {
        // one repository read: a missing branch shows up as the session's ref error
        let session = match repo.inner.writable_session(branch).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), icechunk::repository::RepositoryErrorKind::Ref(_)) => {
                return Err(RepoError::NoSuchBranch(branch.to_string()))
            }
            Err(e) => return Err(engine(format!("starting a transaction on '{branch}'"))(e)),
        };
        let base = session.snapshot_id().clone();
        let writer = Arc::new(CasWriter::new(Arc::clone(&repo.inner), base.clone()));
        Ok(Transaction {
            repo: Arc::clone(&repo.inner),
            branch: branch.to_string(),
            base,
            session: Arc::new(RwLock::new(session)),
            writer,
            cells: None,
            extra: serde_json::Map::new(),
            allow_empty: false,
        })
    }

    /// The branch this transaction commits to.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The commit the transaction started from.
    pub fn base(&self) -> &SnapshotId {
        &self.base
    }

    /// A zarrs store over the staged state (reads see staged changes).
    pub fn store(&self) -> Arc<CasStore> {
        Arc::new(CasStore::new(
            Arc::clone(&self.session),
            Arc::clone(&self.writer),
        ))
    }

    /// The icechunk session (for operations that work on chunk references directly).
    pub fn session(&self) -> Arc<RwLock<Session>> {
        Arc::clone(&self.session)
    }

    /// Chunk write counters so far (without the list of chunks written, which only the
    /// commit's side record needs).
    pub fn stats(&self) -> WriteStats {
        self.writer.counts()
    }

    /// Store one encoded chunk content-addressed (for writers that encode chunks themselves).
    pub async fn write_chunk(&self, array: &str, coords: Vec<u32>, bytes: Bytes) -> Result<()> {
        let path = icechunk::format::Path::new(array)
            .map_err(|e| RepoError::Invalid(format!("array path '{array}': {e}")))?;
        self.writer
            .write_chunk(
                &self.session,
                path,
                icechunk::format::ChunkIndices(coords),
                bytes,
            )
            .await
            .map_err(|message| RepoError::Engine {
                op: format!("writing a chunk of {array}"),
                message: super::one_line(&message),
                source: None,
            })
    }

    /// Record which cells this transaction writes (node → variable → cell set), for blame.
    /// Stored in the commit's side record (spec/011).
    pub fn set_cells(&mut self, cells: CellRecord) {
        self.cells = Some(cells);
    }

    /// Keep `value` under `key` in the commit's side record (e.g. an import's source history).
    pub fn set_record_field(&mut self, key: &str, value: serde_json::Value) {
        self.extra.insert(key.to_string(), value);
    }

    /// Commit even when nothing is staged (history rewriting keeps every commit).
    pub(crate) fn allow_empty(&mut self) {
        self.allow_empty = true;
    }

    /// Whether anything is staged.
    pub async fn has_changes(&self) -> bool {
        self.session.read().await.has_uncommitted_changes()
    }

    /// Commit the staged changes with `prov`. Returns `commit: None` when nothing changed.
    pub async fn commit(self, prov: Provenance) -> Result<CommitOutcome> {
        let message = prov.message.clone();
        self.commit_with(&message, Some(prov), |_, _| BTreeMap::new())
            .await
    }

    /// Commit with the snapshot properties `props(content digest, record key)` made by the
    /// caller (history rewriting, spec/029: a replayed commit keeps its provenance), or those of
    /// `prov` when given.
    pub(crate) async fn commit_with(
        self,
        message: &str,
        prov: Option<Provenance>,
        props: impl Fn(&str, Option<&str>) -> BTreeMap<String, serde_json::Value>,
    ) -> Result<CommitOutcome> {
        // the list of chunks written moves into the side record (not copied: one entry per chunk)
        let stats = self.writer.take_stats();
        let mut outcome = CommitOutcome {
            commit: None,
            branch: self.branch.clone(),
            stats: stats.counts(),
            content_digest: None,
            rebases: 0,
        };
        let mut session = self.session.write().await;
        if !session.has_uncommitted_changes() && !self.allow_empty {
            return Ok(outcome);
        }
        let status = session
            .status()
            .await
            .map_err(engine("computing the change set"))?;
        if status.new_groups.is_empty()
            && status.new_arrays.is_empty()
            && status.deleted_groups.is_empty()
            && status.deleted_arrays.is_empty()
            && status.updated_groups.is_empty()
            && status.updated_arrays.is_empty()
            && status.updated_chunks.values().all(|c| c.is_empty())
            && status.moved_nodes.is_empty()
            && !self.allow_empty
        {
            return Ok(outcome);
        }
        let mut prov = prov;
        if let Some(prov) = prov.as_mut() {
            for (k, v) in [
                ("chunks_written", stats.chunks_written),
                ("chunks_deduplicated", stats.chunks_deduplicated),
                ("chunks_unchanged", stats.chunks_unchanged),
                ("chunks_inline", stats.chunks_inline),
                ("bytes_written", stats.bytes_written),
            ] {
                prov.counts.entry(k.to_string()).or_insert(v);
            }
        }
        let record = write_record(&self.repo, &stats, self.cells.as_ref(), &self.extra).await?;
        drop(stats);
        let message = message.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let digest = cas::content_digest(&session)
                .await
                .map_err(engine("computing the content digest"))?;
            let mut props = match &prov {
                Some(prov) => prov.to_properties(&digest, record.as_deref()),
                None => props(&digest, record.as_deref()),
            };
            let skip = self.skip_record(&session, &props).await;
            props.insert(crate::provenance::keys::SKIP.into(), skip);
            let res = session
                .commit(message.clone())
                .properties(props)
                .allow_empty(self.allow_empty)
                .execute()
                .await;
            match res {
                Ok(id) => {
                    outcome.commit = Some(super::CommitId::from(id));
                    outcome.content_digest = Some(digest);
                    return Ok(outcome);
                }
                Err(e)
                    if matches!(e.kind(), SessionErrorKind::Conflict { .. })
                        && attempt < super::retry::MAX_ATTEMPTS =>
                {
                    // another writer moved the branch: rebase onto its tip if the changes are disjoint
                    match session.rebase(&ConflictDetector).await {
                        Ok(()) => {
                            outcome.rebases += 1;
                            tokio::time::sleep(super::retry::backoff(attempt)).await;
                        }
                        Err(e) => {
                            return Err(RepoError::Conflict {
                                branch: self.branch.clone(),
                                detail: rebase_detail(&e),
                            })
                        }
                    }
                }
                Err(e) if matches!(e.kind(), SessionErrorKind::Conflict { .. }) => {
                    return Err(RepoError::Conflict {
                        branch: self.branch.clone(),
                        detail: format!("still losing the race after {attempt} attempts"),
                    })
                }
                Err(e) => return Err(engine(format!("committing to '{}'", self.branch))(e)),
            }
        }
    }

    /// The skip record (spec/018) of a commit with `props` on the session's current parent.
    /// Without the snapshot list (a storage error) the commit still goes ahead: its record then
    /// starts a new chain and bounds nothing, which blame walks commit by commit.
    async fn skip_record(
        &self,
        session: &Session,
        props: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> serde_json::Value {
        let parent = session.snapshot_id();
        let skip = match self.repo.asset_manager().fetch_repo_info().await {
            Ok((info, _)) => {
                let own = super::skip::effective_extent(&info, props, Some(self.cells.is_some()));
                super::skip::next(&info, parent, own)
            }
            Err(_) => super::skip::Skip {
                depth: 1,
                to: parent.clone(),
                over: None,
            },
        };
        skip.to_json()
    }
}

fn rebase_detail(e: &icechunk::session::SessionError) -> String {
    match e.kind() {
        SessionErrorKind::RebaseFailed { conflicts, .. } => {
            let parts: Vec<String> = conflicts
                .iter()
                .take(10)
                .map(|c| format!("{c:?}"))
                .collect();
            format!(
                "another writer changed the same data ({})",
                parts.join("; ")
            )
        }
        _ => e.to_string(),
    }
}

/// Write the side record of the chunks a commit wrote (content-addressed, create-if-absent).
async fn write_record(
    repo: &icechunk::Repository,
    stats: &WriteStats,
    cells: Option<&CellRecord>,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<String>> {
    if stats.written.is_empty() && cells.is_none() && extra.is_empty() {
        return Ok(None);
    }
    /// The record, serialized straight from its parts (the cell sets are already JSON text).
    #[derive(serde::Serialize)]
    struct Record<'a, C> {
        format: u32,
        chunks: &'a C,
        cells: Option<&'a CellRecord>,
        #[serde(flatten)]
        extra: &'a serde_json::Map<String, serde_json::Value>,
    }
    let record = Record {
        format: 1,
        chunks: &stats.written,
        cells,
        extra,
    };
    let body = crate::json::to_vec_exact(&record).map_err(|e| RepoError::Invalid(e.to_string()))?;
    let key = format!("{RECORDS_PREFIX}/{}.json", blake3::hash(&body).to_hex());
    let res = repo
        .storage()
        .put_object(
            &repo.storage_context(),
            &key,
            body.into(),
            Some("application/json"),
            vec![],
            Some(&icechunk::storage::VersionInfo::for_creation()),
        )
        .await
        .map_err(engine(format!("writing {key}")))?;
    // NotOnLatestVersion: an identical record is already stored, which is the same record
    let _ = matches!(res, VersionedUpdateResult::Updated { .. });
    Ok(Some(key))
}
