//! Squash: a shorter branch history that still says who wrote what (merge-semantics §5,
//! spec/029).
//!
//! Each run of contributions (updates, or earlier squash commits) older than a cutoff that fall
//! into one period (hour, day, week) becomes one commit holding the run's last state, carrying
//! the list of the contributions it folds (author, source, input blake3, time, counts, message,
//! cell record, extent). A run ends at a period boundary, at every commit a tag or another branch
//! points to, and at every commit that is not a contribution (revert, merge, cherry-pick, schema
//! change, import), which is kept. The new history is built on a temporary branch, chunk
//! references only (no chunk bytes copied), then the branch is moved with compare-and-swap; a
//! writer that committed meanwhile has its commits replayed on top and the move retried.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Datelike, Timelike, Utc};
use icechunk::format::snapshot::SnapshotInfo;
use icechunk::format::SnapshotId;
use serde::Serialize;
use serde_json::{json, Value};

use super::folded::{folded_entries, folded_leaves, made_at, FOLDED, REPLAYED_FROM};
use super::threeway::{apply, plan, Strategy};
use super::{CommitInfo, Repo, RepoError, Result};
use crate::provenance::{keys, Provenance};

/// The period a squash folds commits by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One commit per hour.
    Hour,
    /// One commit per UTC day.
    Day,
    /// One commit per ISO week.
    Week,
}

impl std::str::FromStr for Period {
    type Err = RepoError;
    fn from_str(s: &str) -> Result<Period> {
        match s {
            "hour" => Ok(Period::Hour),
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            _ => Err(RepoError::Invalid(format!(
                "--by '{s}': expected hour, day or week"
            ))),
        }
    }
}

impl Period {
    /// The name of the period `t` falls into.
    fn of(self, t: DateTime<Utc>) -> String {
        match self {
            Period::Hour => format!("{}T{:02}", t.date_naive(), t.hour()),
            Period::Day => t.date_naive().to_string(),
            Period::Week => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
        }
    }
}

/// What a squash did (or, dry run, would do).
#[derive(Clone, Debug, Serialize, Default)]
pub struct SquashReport {
    /// The branch.
    pub branch: String,
    /// Commits older than this were considered.
    pub older_than: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The runs folded, oldest first.
    pub periods: Vec<SquashedPeriod>,
    /// Contributions folded in all.
    pub commits_folded: usize,
    /// Later commits written again on top (same content and provenance, new ids).
    pub commits_replayed: usize,
    /// Commits on the branch before and after.
    pub commits_before: usize,
    /// Commits on the branch after (the same as before on a dry run or when nothing folds).
    pub commits_after: usize,
    /// The branch tip before.
    pub old_tip: String,
    /// The branch tip after (`None`: unchanged).
    pub new_tip: Option<String>,
    /// How often another writer moved the branch during the squash (its commits were replayed).
    pub retries: u32,
}

/// One folded run.
#[derive(Clone, Debug, Serialize)]
pub struct SquashedPeriod {
    /// The period's name (`2026-01-01`, `2026-01-01T05`, `2026-W01`).
    pub period: String,
    /// Contributions folded.
    pub contributions: usize,
    /// The squash commit (`None` on a dry run).
    pub commit: Option<String>,
}

/// Where a rebuilt history stands: the state of the old commit its tip holds, read once.
struct Cursor {
    session: icechunk::session::Session,
}

/// One element of the rewritten history: a commit kept as it is, or a run folded.
enum Element {
    Keep(usize),
    Fold(String, Vec<usize>),
}

/// Operations that are not contributions: a squash keeps their commits as they are.
const KEPT_OPERATIONS: [&str; 7] = [
    "init",
    "schema",
    "import",
    "repair",
    "revert",
    "merge",
    "cherry-pick",
];

/// Whether a commit is a contribution a squash may fold (an update, an earlier squash, or any
/// library operation that writes data).
fn foldable(s: &SnapshotInfo) -> bool {
    let op = s.metadata.get(keys::OPERATION).and_then(Value::as_str);
    s.parent_id.is_some()
        && op.is_some_and(|op| !KEPT_OPERATIONS.contains(&op))
        && ![keys::REVERTS, keys::MERGED_FROM, keys::CHERRY_PICKED]
            .iter()
            .any(|k| s.metadata.contains_key(*k))
}

impl Repo {
    /// Squash the contributions on `branch` older than `cutoff`, one commit per `period`.
    pub async fn squash(
        &self,
        branch: &str,
        cutoff: DateTime<Utc>,
        period: Period,
        dry_run: bool,
        prov: Provenance,
    ) -> Result<SquashReport> {
        let old_tip = self.branch_tip(branch).await?;
        let mut chain = self.ancestry(&old_tip).await?;
        chain.reverse();
        let mut report = SquashReport {
            branch: branch.into(),
            older_than: cutoff.to_rfc3339(),
            dry_run,
            commits_before: chain.len(),
            commits_after: chain.len(),
            old_tip: old_tip.to_string(),
            ..Default::default()
        };
        let pinned = self.pinned_except(branch).await?;
        let elements = plan_runs(&chain, cutoff, period, &pinned);
        let Some(first) = elements.iter().position(|e| matches!(e, Element::Fold(..))) else {
            return Ok(report);
        };
        for e in &elements {
            if let Element::Fold(name, run) = e {
                report.commits_folded += run.len();
                report.periods.push(SquashedPeriod {
                    period: name.clone(),
                    contributions: run
                        .iter()
                        .map(|&i| {
                            folded_leaves(&CommitInfo::from_snapshot(&chain[i]))
                                .len()
                                .max(1)
                        })
                        .sum(),
                    commit: None,
                });
            }
        }
        report.commits_after = elements.len();
        if dry_run {
            return Ok(report);
        }
        let start = match &elements[first] {
            Element::Fold(_, run) => run[0],
            Element::Keep(i) => *i,
        };
        // the new history grows on a temporary branch from the commit before the first run
        let base = chain[start - 1].id.clone();
        let temp = format!(
            "zf-squash-{}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        self.create_branch(&temp, &base.to_string()).await?;
        let out = self
            .rebuild(&temp, &chain, &elements[first..], base, &prov, &mut report)
            .await;
        let moved = match out {
            Ok(prev) => {
                self.move_branch(branch, &temp, old_tip, prev, &mut report)
                    .await
            }
            Err(e) => Err(e),
        };
        // the temporary branch goes in every case (its commits are unreferenced then)
        let _ = self.delete_branch(&temp).await;
        moved?;
        Ok(report)
    }

    /// Commits other refs point to (a run ends there; they keep their snapshots).
    async fn pinned_except(&self, branch: &str) -> Result<BTreeSet<String>> {
        Ok(self
            .branches()
            .await?
            .into_iter()
            .filter(|b| b.name != branch)
            .chain(self.tags().await?)
            .map(|r| r.commit)
            .collect())
    }

    /// Write `elements` onto `temp`; returns where the new tip is (the old commit whose state
    /// it holds).
    async fn rebuild(
        &self,
        temp: &str,
        chain: &[SnapshotInfo],
        elements: &[Element],
        base: SnapshotId,
        prov: &Provenance,
        report: &mut SquashReport,
    ) -> Result<Cursor> {
        let mut at = Cursor {
            session: self.session_at(&base).await?,
        };
        let mut renamed: HashMap<String, String> = HashMap::new();
        let mut p = 0;
        for e in elements {
            let (target, id) = match e {
                Element::Keep(i) => {
                    let s = &chain[*i];
                    let id = self.replay(temp, &mut at, s, &renamed).await?;
                    (s, id)
                }
                Element::Fold(name, run) => {
                    let entries: Vec<Value> = run
                        .iter()
                        .flat_map(|&i| folded_entries(&chain[i]))
                        .collect();
                    let last = &chain[run[run.len() - 1]];
                    let mut sp = prov.clone();
                    sp.operation = "squash".into();
                    if sp.message.is_empty() {
                        let n = report.periods[p].contributions;
                        sp.message = format!("Squash {n} contribution(s) of {name}");
                    }
                    let id = self
                        .write_state(temp, &mut at, &last.id, &sp.message, |d| {
                            let mut props = sp.to_properties(d, None);
                            props.insert(FOLDED.into(), Value::Array(entries.clone()));
                            props
                        })
                        .await?;
                    report.periods[p].commit = Some(id.to_string());
                    p += 1;
                    (last, id)
                }
            };
            match e {
                Element::Keep(_) => {
                    renamed.insert(target.id.to_string(), id.to_string());
                }
                // a revert naming a folded commit names it by the id its entry carries
                Element::Fold(_, run) => {
                    for &i in run {
                        let c = &chain[i];
                        if let Some(first) = c.metadata.get(REPLAYED_FROM).and_then(Value::as_str) {
                            renamed.insert(c.id.to_string(), first.to_string());
                        }
                    }
                }
            }
        }
        Ok(at)
    }

    /// Write the state of `target` onto `temp` (whose tip holds the state of `at`) as a commit
    /// with the properties `props(content digest)`; `at` moves to `target`.
    async fn write_state(
        &self,
        temp: &str,
        at: &mut Cursor,
        target: &SnapshotId,
        message: &str,
        props: impl Fn(&str) -> BTreeMap<String, Value>,
    ) -> Result<SnapshotId> {
        let to = self.session_at(target).await?;
        let mut tx = self.transaction(temp).await?;
        tx.allow_empty();
        {
            let session = tx.session();
            let mut guard = session.write().await;
            let p = plan(&at.session, &to, &guard, Strategy::Fail, &|_| true).await?;
            apply(&p, &mut guard).await?;
        }
        *at = Cursor { session: to };
        let out = tx.commit_with(message, None, |d, _| props(d)).await?;
        let id = out.commit.ok_or_else(|| {
            RepoError::Invalid(format!(
                "squash: commit {target} changes nothing on the rebuilt history; nothing was changed"
            ))
        })?;
        super::threeway::snapshot_id(&id)
    }

    /// Write commit `s` again onto `temp` with its own provenance (references to rewritten
    /// commits renamed).
    async fn replay(
        &self,
        temp: &str,
        at: &mut Cursor,
        s: &SnapshotInfo,
        renamed: &HashMap<String, String>,
    ) -> Result<SnapshotId> {
        let mut props = s.metadata.clone();
        props.remove(keys::SKIP);
        for k in [keys::REVERTS, keys::MERGE_BASE] {
            if let Some(new) = props
                .get(k)
                .and_then(Value::as_str)
                .and_then(|old| renamed.get(old))
            {
                props.insert(k.to_string(), json!(new));
            }
        }
        // the id it had first (a commit replayed again keeps naming its original)
        props
            .entry(REPLAYED_FROM.to_string())
            .or_insert_with(|| json!(s.id.to_string()));
        self.write_state(temp, at, &s.id, &s.message, |d| {
            let mut p = props.clone();
            p.insert(keys::CONTENT_DIGEST.into(), json!(d));
            p
        })
        .await
    }

    /// Move `branch` from `old_tip` to the tip of `temp` by compare-and-swap; commits another
    /// writer added meanwhile are replayed onto `temp` first.
    async fn move_branch(
        &self,
        branch: &str,
        temp: &str,
        mut old_tip: SnapshotId,
        mut at: Cursor,
        report: &mut SquashReport,
    ) -> Result<()> {
        loop {
            let new_tip = self.branch_tip(temp).await?;
            match self
                .inner
                .reset_branch(branch, &new_tip, Some(&old_tip))
                .await
            {
                Ok(_) => {
                    report.new_tip = Some(new_tip.to_string());
                    return Ok(());
                }
                Err(_) if report.retries < 50 => {
                    report.retries += 1;
                    let now = self.branch_tip(branch).await?;
                    let mut added = self.ancestry_until(&now, |c| c.id == old_tip).await?;
                    if added.last().is_none_or(|c| c.id != old_tip) {
                        return Err(RepoError::Conflict {
                            branch: branch.into(),
                            detail: "the branch was reset during the squash".into(),
                        });
                    }
                    added.pop();
                    added.reverse();
                    for s in &added {
                        self.replay(temp, &mut at, s, &HashMap::new()).await?;
                        report.commits_replayed += 1;
                        report.commits_after += 1;
                    }
                    old_tip = now;
                }
                Err(e) => return Err(super::engine(format!("moving '{branch}'"))(e)),
            }
        }
    }
}

/// Split `chain` (oldest first) into commits kept and runs folded.
fn plan_runs(
    chain: &[SnapshotInfo],
    cutoff: DateTime<Utc>,
    period: Period,
    pinned: &BTreeSet<String>,
) -> Vec<Element> {
    let mut out: Vec<Element> = vec![];
    let mut run: Option<(String, Vec<usize>)> = None;
    let close = |run: &mut Option<(String, Vec<usize>)>, out: &mut Vec<Element>| {
        if let Some((name, r)) = run.take() {
            if r.len() > 1 {
                out.push(Element::Fold(name, r));
            } else {
                out.extend(r.into_iter().map(Element::Keep));
            }
        }
    };
    for (i, s) in chain.iter().enumerate() {
        let t = made_at(s);
        if foldable(s) && t < cutoff {
            let name = period.of(t);
            if run.as_ref().is_some_and(|(n, _)| *n != name) {
                close(&mut run, &mut out);
            }
            run.get_or_insert_with(|| (name, vec![])).1.push(i);
        } else {
            close(&mut run, &mut out);
            out.push(Element::Keep(i));
        }
        if pinned.contains(&s.id.to_string()) {
            close(&mut run, &mut out);
        }
    }
    close(&mut run, &mut out);
    out
}
