//! Revisions, branches, tags and checkpoint rollback.
//!
//! A REV is a branch, a tag, a full commit id, a unique prefix of one (at least 6 characters),
//! or `BRANCH@<ISO time>` (the branch's state at that time). Branches win over tags over ids.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use icechunk::format::snapshot::SnapshotInfo;
use icechunk::format::SnapshotId;
use icechunk::repository::{RepositoryErrorKind, VersionInfo};
use serde::Serialize;
use serde_json::json;

use super::{engine, Repo, RepoError, Result};

/// Minimum length of a commit-id prefix.
pub(super) const MIN_PREFIX: usize = 6;

/// A resolved revision.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The commit.
    pub id: SnapshotId,
    /// How it was named.
    pub label: String,
}

/// A branch or tag and the commit it points at.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RefInfo {
    /// Name.
    pub name: String,
    /// Commit id.
    pub commit: String,
}

/// A time in a REV (`BRANCH@<ISO time>`): RFC 3339, or an ISO date/time without an offset read
/// as UTC ([`crate::time::parse_utc`]).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    crate::time::parse_utc(s)
}

/// Check a branch or tag name.
pub fn validate_ref_name(kind: &'static str, name: &str) -> Result<()> {
    let bad = |reason: &str| RepoError::InvalidName {
        kind,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.starts_with('-') || name.starts_with('/') || name.ends_with('/') {
        return Err(bad("must not start with '-' or '/' or end with '/'"));
    }
    if name.contains("..") || name.contains('@') {
        return Err(bad("must not contain '..' or '@'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return Err(bad(&format!(
            "character '{c}' is not allowed (use letters, digits, '.', '_', '-', '/')"
        )));
    }
    Ok(())
}

fn is_kind(
    err: &icechunk::repository::RepositoryError,
    f: impl Fn(&RepositoryErrorKind) -> bool,
) -> bool {
    f(err.kind())
}

impl Repo {
    /// The tip of `branch`.
    pub async fn branch_tip(&self, branch: &str) -> Result<SnapshotId> {
        match self.inner.lookup_branch(branch).await {
            Ok(id) => Ok(id),
            Err(e) if is_kind(&e, |k| matches!(k, RepositoryErrorKind::Ref(_))) => {
                Err(RepoError::NoSuchBranch(branch.to_string()))
            }
            Err(e) => Err(engine(format!("looking up branch '{branch}'"))(e)),
        }
    }

    /// All branches, sorted by name.
    pub async fn branches(&self) -> Result<Vec<RefInfo>> {
        let names = self
            .inner
            .list_branches()
            .await
            .map_err(engine("listing branches"))?;
        let mut out = Vec::new();
        for name in names {
            let id = self
                .inner
                .lookup_branch(&name)
                .await
                .map_err(engine(format!("branch '{name}'")))?;
            out.push(RefInfo {
                name,
                commit: id.to_string(),
            });
        }
        Ok(out)
    }

    /// All tags, sorted by name.
    pub async fn tags(&self) -> Result<Vec<RefInfo>> {
        let names = self
            .inner
            .list_tags()
            .await
            .map_err(engine("listing tags"))?;
        let mut out = Vec::new();
        for name in names {
            let id = self
                .inner
                .lookup_tag(&name)
                .await
                .map_err(engine(format!("tag '{name}'")))?;
            out.push(RefInfo {
                name,
                commit: id.to_string(),
            });
        }
        Ok(out)
    }

    /// Every commit reachable from a branch or tag, newest first per ref, without duplicates.
    pub(crate) async fn all_commits(&self) -> Result<Vec<SnapshotInfo>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let refs = self.branches().await?.into_iter().chain(self.tags().await?);
        for r in refs {
            let id = SnapshotId::try_from(r.commit.as_str())
                .map_err(|e| RepoError::Invalid(e.to_string()))?;
            for info in self.ancestry(&id).await? {
                if !seen.insert(info.id.to_string()) {
                    break;
                }
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The history ending at `id`, newest first.
    pub(crate) async fn ancestry(&self, id: &SnapshotId) -> Result<Vec<SnapshotInfo>> {
        self.inner
            .ancestry(&VersionInfo::SnapshotId(id.clone()))
            .await
            .map_err(engine(format!("reading history of {id}")))?
            .try_collect()
            .await
            .map_err(engine(format!("reading history of {id}")))
    }

    /// The history ending at `id`, newest first, up to and including the first commit for which
    /// `stop` is true (the whole history if none is).
    pub(crate) async fn ancestry_until(
        &self,
        id: &SnapshotId,
        stop: impl Fn(&SnapshotInfo) -> bool,
    ) -> Result<Vec<SnapshotInfo>> {
        let stream = self
            .inner
            .ancestry(&VersionInfo::SnapshotId(id.clone()))
            .await
            .map_err(engine(format!("reading history of {id}")))?;
        futures::pin_mut!(stream);
        let mut out = Vec::new();
        while let Some(info) = futures::StreamExt::next(&mut stream).await {
            let info = info.map_err(engine(format!("reading history of {id}")))?;
            let done = stop(&info);
            out.push(info);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// Resolve a revision.
    pub async fn resolve(&self, rev: &str) -> Result<Resolved> {
        let rev = rev.trim();
        if rev.is_empty() {
            return Err(RepoError::Invalid("empty revision".into()));
        }
        // a full commit id: read its snapshot object directly — O(1), no ref listing and no
        // history scan (spec/005: full-length ids are checked before names)
        if rev.len() == 20 {
            let upper = rev.to_ascii_uppercase();
            if let Ok(sid) = SnapshotId::try_from(upper.as_str()) {
                if self
                    .inner
                    .asset_manager()
                    .fetch_snapshot(&sid)
                    .await
                    .is_ok()
                {
                    return Ok(Resolved {
                        id: sid,
                        label: format!("commit {upper}"),
                    });
                }
            }
        }
        let branches = self
            .inner
            .list_branches()
            .await
            .map_err(engine("listing branches"))?;
        if branches.contains(rev) {
            return Ok(Resolved {
                id: self.branch_tip(rev).await?,
                label: format!("branch {rev}"),
            });
        }
        if let Some((branch, time)) = rev.rsplit_once('@') {
            let Some(at) = parse_time(time) else {
                return Err(RepoError::RevNotFound {
                    rev: rev.into(),
                    hint: format!(
                        "'{time}' is not an ISO-8601 time (e.g. {branch}@2026-01-31T12:00:00Z)"
                    ),
                });
            };
            if !branches.contains(branch) {
                return Err(RepoError::NoSuchBranch(branch.to_string()));
            }
            // the newest commit on the branch made at or before `at`
            let tip = self.branch_tip(branch).await?;
            let found = self
                .ancestry(&tip)
                .await?
                .into_iter()
                .find(|c| c.flushed_at <= at);
            return match found {
                Some(c) => Ok(Resolved {
                    id: c.id,
                    label: format!("{branch} at {}", at.to_rfc3339()),
                }),
                None => Err(RepoError::RevNotFound {
                    rev: rev.into(),
                    hint: format!(
                        "branch '{branch}' has no commit at or before {}",
                        at.to_rfc3339()
                    ),
                }),
            };
        }
        let tags = self
            .inner
            .list_tags()
            .await
            .map_err(engine("listing tags"))?;
        if tags.contains(rev) {
            let id = self
                .inner
                .lookup_tag(rev)
                .await
                .map_err(engine(format!("tag '{rev}'")))?;
            return Ok(Resolved {
                id,
                label: format!("tag {rev}"),
            });
        }
        let upper = rev.to_ascii_uppercase();
        let looks_like_id =
            upper.len() >= MIN_PREFIX && upper.chars().all(|c| c.is_ascii_alphanumeric());
        if looks_like_id {
            let matches: BTreeSet<String> = self
                .all_commits()
                .await?
                .into_iter()
                .map(|c| c.id.to_string())
                .filter(|id| id.starts_with(&upper))
                .collect();
            match matches.len() {
                1 => {
                    let id = matches.into_iter().next().unwrap_or_default();
                    let sid = SnapshotId::try_from(id.as_str())
                        .map_err(|e| RepoError::Invalid(e.to_string()))?;
                    return Ok(Resolved {
                        id: sid,
                        label: format!("commit {id}"),
                    });
                }
                0 => {}
                _ => {
                    return Err(RepoError::AmbiguousRev {
                        rev: rev.into(),
                        candidates: matches.into_iter().collect(),
                    })
                }
            }
            // an exact id of a commit no ref reaches (e.g. after reset) is still readable
            if let Ok(sid) = SnapshotId::try_from(upper.as_str()) {
                if self.ancestry(&sid).await.is_ok() {
                    return Ok(Resolved {
                        id: sid,
                        label: format!("commit {upper}"),
                    });
                }
            }
        }
        let mut hint = format!(
            "no branch, tag or commit of that name; branches: {}",
            join(&branches)
        );
        if !tags.is_empty() {
            hint.push_str(&format!("; tags: {}", join(&tags)));
        }
        if upper.len() < MIN_PREFIX && upper.chars().all(|c| c.is_ascii_alphanumeric()) {
            hint.push_str(&format!(
                "; commit-id prefixes need at least {MIN_PREFIX} characters"
            ));
        }
        Err(RepoError::RevNotFound {
            rev: rev.into(),
            hint,
        })
    }

    /// Create branch `name` at `from`.
    pub async fn create_branch(&self, name: &str, from: &str) -> Result<SnapshotId> {
        validate_ref_name("branch", name)?;
        let target = self.resolve(from).await?;
        if self
            .inner
            .list_branches()
            .await
            .map_err(engine("listing branches"))?
            .contains(name)
        {
            return Err(RepoError::BranchExists(name.into()));
        }
        self.inner
            .create_branch(name, &target.id)
            .await
            .map_err(|e| {
                if e.to_string().to_lowercase().contains("already exists") {
                    RepoError::BranchExists(name.into())
                } else {
                    engine(format!("creating branch '{name}'"))(e)
                }
            })?;
        Ok(target.id)
    }

    /// Delete branch `name` unless it has commits that no other branch or tag reaches
    /// ([`RepoError::Unmerged`]); [`Repo::delete_branch`] deletes it anyway.
    pub async fn delete_merged_branch(&self, name: &str) -> Result<()> {
        let tip = self.branch_tip(name).await?;
        let mut reached: BTreeSet<String> = BTreeSet::new();
        let others = self
            .branches()
            .await?
            .into_iter()
            .filter(|b| b.name != name);
        for r in others.chain(self.tags().await?) {
            let id = SnapshotId::try_from(r.commit.as_str())
                .map_err(|e| RepoError::Invalid(e.to_string()))?;
            for info in self.ancestry(&id).await? {
                if !reached.insert(info.id.to_string()) {
                    break;
                }
            }
        }
        let mut only_here = 0;
        for info in self.ancestry(&tip).await? {
            if reached.contains(&info.id.to_string()) {
                break;
            }
            only_here += 1;
        }
        if only_here > 0 {
            return Err(RepoError::Unmerged {
                branch: name.to_string(),
                commits: only_here,
                tip: tip.to_string(),
            });
        }
        self.delete_branch(name).await
    }

    /// Delete branch `name` (its commits stay readable until gc).
    pub async fn delete_branch(&self, name: &str) -> Result<()> {
        if name == "main" {
            return Err(RepoError::Invalid("branch 'main' cannot be deleted".into()));
        }
        self.branch_tip(name).await?;
        self.inner
            .delete_branch(name)
            .await
            .map_err(engine(format!("deleting branch '{name}'")))
    }

    /// Create the immutable tag `name` at `at`, with an optional message.
    ///
    /// Every tag name ever created is recorded in the repository metadata, so a tag that was
    /// deleted (by us or another tool) cannot be created again under the same name.
    pub async fn create_tag(
        &self,
        name: &str,
        at: &str,
        message: Option<&str>,
    ) -> Result<SnapshotId> {
        validate_ref_name("tag", name)?;
        let target = self.resolve(at).await?;
        let meta = self.metadata().await?;
        if meta.contains_key(&tag_key(name)) {
            return Err(RepoError::TagExists(name.into()));
        }
        match self.inner.create_tag(name, &target.id).await {
            Ok(()) => {}
            Err(e)
                if is_kind(&e, |k| matches!(k, RepositoryErrorKind::Ref(_)))
                    || e.to_string().contains("exist") =>
            {
                return Err(RepoError::TagExists(name.into()))
            }
            Err(e) => return Err(engine(format!("creating tag '{name}'"))(e)),
        }
        let mut props = std::collections::BTreeMap::new();
        props.insert(
            tag_key(name),
            json!({"commit": target.id.to_string(), "message": message, "time": chrono::Utc::now().to_rfc3339()}),
        );
        self.inner
            .update_metadata(&props)
            .await
            .map_err(engine(format!("recording tag '{name}'")))?;
        Ok(target.id)
    }

    /// Delete tag `name`; its name stays reserved.
    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        self.inner
            .delete_tag(name)
            .await
            .map_err(engine(format!("deleting tag '{name}'")))
    }

    /// The message given when tag `name` was created.
    pub async fn tag_message(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .metadata()
            .await?
            .get(&tag_key(name))
            .and_then(|v| v.get("message"))
            .and_then(|v| v.as_str())
            .map(str::to_string))
    }

    /// Move `branch` back to `rev`. Refused for a commit outside the branch history unless
    /// `force`; refused if another writer moves the branch meanwhile.
    pub async fn reset(&self, branch: &str, rev: &str, force: bool) -> Result<SnapshotId> {
        let tip = self.branch_tip(branch).await?;
        let target = self.resolve(rev).await?;
        let in_history = self
            .ancestry_until(&tip, |c| c.id == target.id)
            .await?
            .last()
            .is_some_and(|c| c.id == target.id);
        if !force && !in_history {
            return Err(RepoError::NotInHistory {
                commit: target.id.to_string(),
                branch: branch.into(),
            });
        }
        self.inner
            .reset_branch(branch, &target.id, Some(&tip))
            .await
            .map_err(|e| {
                if is_kind(&e, |k| matches!(k, RepositoryErrorKind::Conflict { .. })) {
                    RepoError::Conflict {
                        branch: branch.into(),
                        detail: "another writer moved the branch".into(),
                    }
                } else {
                    engine(format!("resetting '{branch}'"))(e)
                }
            })?;
        Ok(target.id)
    }
}

/// Repository-metadata key: the protected branches (names or globs, spec/031).
const PROTECTED_KEY: &str = "zarr_fuse.protected";

impl Repo {
    /// The protected branches recorded in the repository (names or `*` globs): `update`
    /// refuses them unless forced; they change by merge, revert, reset or tag.
    pub async fn protected(&self) -> Result<Vec<String>> {
        Ok(self
            .metadata()
            .await?
            .get(PROTECTED_KEY)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default())
    }

    /// Whether `branch` is protected in the repository.
    pub async fn is_protected(&self, branch: &str) -> Result<bool> {
        Ok(self.protected().await?.iter().any(|p| glob(p, branch)))
    }

    /// Record `patterns` as protected (added to those already recorded); the whole list.
    pub async fn protect(&self, patterns: &[String]) -> Result<Vec<String>> {
        let mut all = self.protected().await?;
        for p in patterns {
            if p.is_empty() {
                return Err(RepoError::Invalid("an empty branch pattern".into()));
            }
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        self.write_protected(&all).await?;
        Ok(all)
    }

    /// Remove `pattern` from the protected branches; the remaining list.
    pub async fn unprotect(&self, pattern: &str) -> Result<Vec<String>> {
        let mut all = self.protected().await?;
        let before = all.len();
        all.retain(|p| p != pattern);
        if all.len() == before {
            return Err(RepoError::Invalid(format!(
                "'{pattern}' is not protected (protected: {})",
                all.join(", ")
            )));
        }
        self.write_protected(&all).await?;
        Ok(all)
    }

    async fn write_protected(&self, all: &[String]) -> Result<()> {
        let mut props = std::collections::BTreeMap::new();
        props.insert(PROTECTED_KEY.to_string(), json!(all));
        self.inner
            .update_metadata(&props)
            .await
            .map_err(engine("recording the protected branches"))?;
        Ok(())
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.find('*') {
        None => pattern == name,
        Some(i) => {
            let (head, tail) = (&pattern[..i], &pattern[i + 1..]);
            name.starts_with(head)
                && (head.len()..=name.len())
                    .any(|j| name.is_char_boundary(j) && glob(tail, &name[j..]))
        }
    }
}

/// Repository-metadata key recording that tag `name` was created.
fn tag_key(name: &str) -> String {
    format!("zarr_fuse.tag/{name}")
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert!(parse_time("2026-01-02T03:04:05Z").is_some());
        assert!(parse_time("2026-01-02T03:04:05+01:00").is_some());
        assert_eq!(
            parse_time("2026-01-02").map(|t| t.to_rfc3339()),
            Some("2026-01-02T00:00:00+00:00".into())
        );
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn names() {
        assert!(validate_ref_name("branch", "kalman/v2").is_ok());
        assert!(validate_ref_name("branch", "a b").is_err());
        assert!(validate_ref_name("branch", "a@b").is_err());
        assert!(validate_ref_name("tag", "").is_err());
    }
}
