//! Retention: expire old snapshots no branch or tag needs, then delete unreachable objects.

use std::collections::BTreeSet;
use std::num::{NonZeroU16, NonZeroUsize};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use icechunk::ops::expiration::{expire, ExpiredRefAction};
use icechunk::ops::gc::{garbage_collect, GCConfig};
use serde::Serialize;

use super::{engine, Repo, RepoError, Result};

/// What `gc` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Serialize, Default)]
pub struct GcReport {
    /// Cut-off time: only snapshots and objects older than this are touched.
    pub older_than: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Snapshots released from history (dry run: that would be).
    pub snapshots_expired: usize,
    /// Whether expired snapshots' provenance was given up (`--drop-provenance`).
    pub provenance_dropped: bool,
    /// Old snapshots not expired because their provenance is kept (without `--drop-provenance`).
    pub snapshots_kept_for_provenance: usize,
    /// Snapshot files deleted.
    pub snapshots_deleted: u64,
    /// Manifest files deleted.
    pub manifests_deleted: u64,
    /// Chunk objects deleted.
    pub chunks_deleted: u64,
    /// Transaction logs deleted.
    pub transaction_logs_deleted: u64,
    /// Bytes deleted.
    pub bytes_deleted: u64,
    /// icechunk's backups of the repo object (`overwritten/repo*`) deleted: every one older than
    /// the cut-off except the newest [`KEEP_REPO_BACKUPS`] (spec/026).
    pub repo_backups_deleted: u64,
    /// Their bytes.
    pub repo_backup_bytes_deleted: u64,
    /// Temporary files of crashed or disk-full writers deleted (local repositories).
    pub temp_files_deleted: u64,
}

/// The newest repo-object backups gc keeps: only icechunk's ops log reads them, following each
/// repo object's link to the one it replaced, and it ends quietly at the first missing one
/// (spec/026); a few keep the latest operations in that log.
pub const KEEP_REPO_BACKUPS: usize = 8;

fn nz16(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

fn nzu(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl Repo {
    /// Expire snapshots older than `cutoff` that no branch or tag tip is, and delete objects
    /// older than `cutoff` that no retained snapshot reaches.
    ///
    /// Objects younger than the cut-off are never deleted, so a writer whose transaction is
    /// shorter than `now - cutoff` is safe (spec/004-content-addressing.md).
    ///
    /// This drops the provenance of the expired commits (blame then reports their cells as
    /// written "before the history horizon"); [`Repo::collect_garbage`] can keep it.
    pub async fn gc(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<GcReport> {
        self.collect_garbage(cutoff, dry_run, true).await
    }

    /// [`Repo::gc`]; without `drop_provenance`, no snapshot is expired (every commit in the
    /// history of a branch or tag keeps its provenance and blame keeps naming it: spec/026), and
    /// only what no branch or tag reaches, old repo-object backups and stale temporary files go.
    pub async fn collect_garbage(
        &self,
        cutoff: DateTime<Utc>,
        dry_run: bool,
        drop_provenance: bool,
    ) -> Result<GcReport> {
        let am = Arc::clone(self.inner.asset_manager());
        let cfg = self.inner.config();
        let mut report = GcReport {
            older_than: cutoff.to_rfc3339(),
            dry_run,
            provenance_dropped: drop_provenance,
            ..Default::default()
        };
        if dry_run || !drop_provenance {
            // what expiry would release: old commits that are not a ref tip and not the root
            let tips: BTreeSet<String> = self
                .branches()
                .await?
                .into_iter()
                .chain(self.tags().await?)
                .map(|r| r.commit)
                .collect();
            let expirable = self
                .all_commits()
                .await?
                .iter()
                .filter(|c| {
                    c.flushed_at < cutoff
                        && c.parent_id.is_some()
                        && !tips.contains(&c.id.to_string())
                })
                .count();
            if drop_provenance {
                report.snapshots_expired = expirable;
            } else {
                report.snapshots_kept_for_provenance = expirable;
            }
        } else {
            let res = expire(
                Arc::clone(&am),
                cutoff,
                ExpiredRefAction::Ignore,
                ExpiredRefAction::Ignore,
                Some(cfg.repo_update_retries()),
                cfg.num_updates_per_repo_info_file(),
            )
            .await
            .map_err(engine("expiring snapshots"))?;
            report.snapshots_expired = res.released_snapshots.len();
        }
        let gc_cfg = GCConfig::clean_all(
            cutoff,
            cutoff,
            None,
            nz16(500),
            nzu(256 << 20),
            nzu(1 << 30),
            nz16(8),
            nz16(32),
            nz16(10),
            None,
            dry_run,
        );
        let summary = garbage_collect(
            am,
            &gc_cfg,
            Some(cfg.repo_update_retries()),
            cfg.num_updates_per_repo_info_file(),
        )
        .await
        .map_err(engine("collecting garbage"))?;
        report.snapshots_deleted = summary.snapshots_deleted;
        report.manifests_deleted = summary.manifests_deleted;
        report.chunks_deleted = summary.chunks_deleted;
        report.transaction_logs_deleted = summary.transaction_logs_deleted;
        report.bytes_deleted = summary.bytes_deleted;
        (
            report.repo_backups_deleted,
            report.repo_backup_bytes_deleted,
        ) = self.prune_repo_backups(cutoff, dry_run).await?;
        if let crate::storage::Location::Local(root) = self.location() {
            let t = std::time::SystemTime::from(cutoff);
            report.temp_files_deleted =
                crate::storage::local::remove_temp_files_older_than(root, t, dry_run)
                    .map_err(|e| RepoError::Invalid(format!("removing temporary files: {e}")))?
                    as u64;
        }
        Ok(report)
    }

    /// Delete the repo-object backups under `overwritten/` older than `cutoff`, except the newest
    /// [`KEEP_REPO_BACKUPS`]; returns their number and bytes.
    async fn prune_repo_backups(&self, cutoff: DateTime<Utc>, dry_run: bool) -> Result<(u64, u64)> {
        use futures::{StreamExt, TryStreamExt};
        let am = self.inner.asset_manager();
        let storage = am.storage();
        let ctx = am.storage_context();
        let mut backups: Vec<_> = storage
            .list_objects(&ctx, BACKUPS)
            .await
            .map_err(engine("listing repo-object backups"))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(engine("listing repo-object backups"))?
            .into_iter()
            .filter(|b| b.id.starts_with("repo"))
            .collect();
        backups.sort_by_key(|b| std::cmp::Reverse(b.created_at));
        let old: Vec<(String, u64)> = backups
            .into_iter()
            .skip(KEEP_REPO_BACKUPS)
            .filter(|b| b.created_at < cutoff)
            .map(|b| (b.id, b.size_bytes))
            .collect();
        let (n, bytes) = (old.len() as u64, old.iter().map(|(_, s)| s).sum::<u64>());
        if !dry_run && n > 0 {
            storage
                .delete_objects(&ctx, BACKUPS, futures::stream::iter(old).boxed())
                .await
                .map_err(engine("deleting repo-object backups"))?;
        }
        Ok((n, bytes))
    }
}

/// Where icechunk keeps the copies of objects it overwrote.
const BACKUPS: &str = "overwritten";
