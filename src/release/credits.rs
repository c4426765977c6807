//! Who contributed what: every commit in a tag's history (merged branches included) and the
//! per-author totals, as `PROVENANCE.json` and `PROVENANCE.csv`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use icechunk::format::SnapshotId;
use serde::Serialize;
use serde_json::{json, Value};

use crate::provenance::keys;
use crate::repo::{CommitInfo, Repo, RepoError};

/// Per-author totals.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuthorCredit {
    /// `Name <email>`.
    pub author: String,
    /// Commits of any kind.
    pub commits: u64,
    /// Contributions (update commits).
    pub contributions: u64,
    /// Of those, how many were later reverted.
    pub reverted: u64,
    /// Cells written by the contributions that stand (not reverted).
    pub cells: u64,
    /// Input rows read by all contributions.
    pub rows: u64,
    /// First and last commit time.
    pub first: String,
    /// Last commit time.
    pub last: String,
}

/// The history of a tag, oldest first, and the credits.
pub struct Credits {
    /// Commits, oldest first (by time, then id).
    pub commits: Vec<CommitInfo>,
    /// Reverted commit id → reverting commit id.
    pub reverted_by: BTreeMap<String, String>,
    /// Authors in order of first appearance.
    pub authors: Vec<AuthorCredit>,
    /// Merged-branch tips whose history is no longer stored (expired by gc).
    pub unavailable: Vec<String>,
}

fn count(c: &CommitInfo, k: &str) -> u64 {
    c.counts.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Every commit reachable from `tip` through parents and merged-branch tips.
pub async fn collect(repo: &Repo, tip: &SnapshotId) -> Result<Credits, RepoError> {
    let mut seen = BTreeSet::new();
    let mut commits = Vec::new();
    let mut queue = VecDeque::from([tip.to_string()]);
    let mut unavailable = vec![];
    while let Some(start) = queue.pop_front() {
        if seen.contains(start.as_str()) {
            continue;
        }
        let log = match repo.log(&start, None).await {
            Ok(l) => l,
            // a merged branch whose commits gc expired (merge sources are not parents)
            Err(_) if start != tip.to_string() => {
                unavailable.push(start);
                continue;
            }
            Err(e) => return Err(e),
        };
        for c in log {
            if !seen.insert(c.id.clone()) {
                break;
            }
            if let Some(m) = c.extra.get(keys::MERGED_FROM).and_then(Value::as_str) {
                queue.push_back(m.to_string());
            }
            commits.push(c);
        }
    }
    commits.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
    let reverted_by: BTreeMap<String, String> = commits
        .iter()
        .filter_map(|c| {
            let r = c.extra.get(keys::REVERTS)?.as_str()?;
            Some((r.to_string(), c.id.to_string()))
        })
        .collect();
    let mut authors: Vec<AuthorCredit> = Vec::new();
    for c in &commits {
        let Some(a) = &c.author else { continue };
        let i = match authors.iter().position(|x| &x.author == a) {
            Some(i) => i,
            None => {
                authors.push(AuthorCredit {
                    author: a.clone(),
                    commits: 0,
                    contributions: 0,
                    reverted: 0,
                    cells: 0,
                    rows: 0,
                    first: c.time_text(),
                    last: c.time_text(),
                });
                authors.len() - 1
            }
        };
        let e = &mut authors[i];
        e.commits += 1;
        e.last = c.time_text();
        if c.operation.as_deref() == Some("update") {
            e.contributions += 1;
            e.rows += count(c, "rows_read");
            if reverted_by.contains_key(c.id.as_str()) {
                e.reverted += 1;
            } else {
                e.cells += count(c, "cells_written");
            }
        }
    }
    Ok(Credits {
        commits,
        reverted_by,
        authors,
        unavailable,
    })
}

impl Credits {
    /// `PROVENANCE.json`.
    pub fn to_json(&self, tag: &str, commit: &str, digest: &str) -> Value {
        let commits: Vec<Value> = self
            .commits
            .iter()
            .map(|c| {
                let mut v = json!({
                    "id": c.id, "parents": c.parents, "time": c.time_text(), "author": c.author,
                    "operation": c.operation, "message": c.message, "source": c.source,
                    "input_blake3": c.input_blake3, "schema_blake3": c.schema_blake3,
                    "content_digest": c.content_digest, "counts": c.counts, "meta": c.meta,
                    "reverted_by": self.reverted_by.get(c.id.as_str()),
                });
                if let Some(o) = v.as_object_mut() {
                    for k in [
                        keys::REVERTS,
                        keys::MERGED_FROM,
                        keys::MERGE_BASE,
                        keys::CHERRY_PICKED,
                    ] {
                        if let Some(x) = c.extra.get(k) {
                            o.insert(k.to_string(), x.clone());
                        }
                    }
                }
                v
            })
            .collect();
        json!({
            "format": "zarr-fuse/provenance/v1",
            "tag": tag,
            "commit": commit,
            "content_digest": digest,
            "commits": commits,
            "authors": self.authors,
            "unavailable_merge_sources": self.unavailable,
        })
    }

    /// `PROVENANCE.csv`: one row per commit, oldest first.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "commit",
            "parents",
            "time",
            "author",
            "operation",
            "message",
            "source",
            "input_blake3",
            "rows_read",
            "cells_written",
            "chunks_written",
            "content_digest",
            "reverts",
            "reverted_by",
        ])?;
        for c in &self.commits {
            let s = |o: &Option<String>| o.clone().unwrap_or_default();
            let extra = |k: &str| {
                c.extra
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            w.write_record([
                c.id.to_string(),
                c.parents
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                c.time_text(),
                s(&c.author),
                s(&c.operation),
                c.message.clone(),
                s(&c.source),
                s(&c.input_blake3),
                count(c, "rows_read").to_string(),
                count(c, "cells_written").to_string(),
                count(c, "chunks_written").to_string(),
                s(&c.content_digest),
                extra(keys::REVERTS),
                self.reverted_by
                    .get(c.id.as_str())
                    .cloned()
                    .unwrap_or_default(),
            ])?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}
