//! Import: continue a published dataset. A verified release package becomes a new repository
//! (its `main`) or a new branch of an existing one, as one `import` commit whose provenance
//! references the package's history (the full PROVENANCE.json is kept in the commit's side record).

use std::path::Path;

use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use serde_json::Value;
use zarrs_storage::{AsyncWritableStorageTraits, StoreKey};

use super::package::{self, Layout, ZarrSource};
use super::{ReleaseError, CHECKSUMS, PROVENANCE_JSON};
use crate::provenance::Provenance;
use crate::repo::{validate_ref_name, Repo, RepoError};
use crate::storage::Location;

/// What `import` did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// Repository location.
    pub repo: String,
    /// Whether the repository was created.
    pub created_repository: bool,
    /// Branch written.
    pub branch: String,
    /// The import commit.
    pub commit: Option<String>,
    /// The released tag.
    pub tag: String,
    /// The released commit (in the source repository).
    pub source_commit: String,
    /// Content digest of the import commit.
    pub content_digest: Option<String>,
    /// Whether it equals the package's digest (same bytes, same chunk layout).
    pub digest_matches: bool,
    /// Nodes and chunks imported.
    pub nodes: u64,
    /// Chunks imported.
    pub chunks: u64,
    /// Commits of the package's history referenced by the import commit.
    pub commits_referenced: u64,
}

/// Import the package in `dir` into `location` (created when absent) on `branch` (default
/// `main` for a new repository; required for an existing one, and must not exist yet).
pub async fn import(
    location: &Location,
    dir: &Path,
    branch: Option<&str>,
    mut prov: Provenance,
) -> Result<ImportReport, ReleaseError> {
    let report = package::verify(dir, &|_| {})?;
    if !report.ok {
        return Err(ReleaseError::Damaged {
            dir: dir.to_path_buf(),
            problems: report.problems,
        });
    }
    let h = report.header.clone();
    let history: Value = std::fs::read(dir.join(PROVENANCE_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let n_commits = history
        .get("commits")
        .and_then(Value::as_array)
        .map_or(0, |a| a.len() as u64);
    if let Some(b) = branch {
        validate_ref_name("branch", b)?;
    }
    let (repo, created) = match Repo::open(location).await {
        Ok(r) => (r, false),
        Err(RepoError::NotARepository(_)) => (Repo::init(location).await?, true),
        Err(e) => return Err(e.into()),
    };
    let mut made_branch = None;
    let result = async {
        let branch = match (created, branch) {
            (_, Some(b)) => b.to_string(),
            (true, None) => "main".to_string(),
            (false, None) => {
                return Err(ReleaseError::Unsupported(format!(
                    "{location} already exists: pass --branch NAME to import the release as a new branch of it"
                )))
            }
        };
        if !(created && branch == "main") {
            if repo.branch_tip(&branch).await.is_ok() {
                return Err(RepoError::BranchExists(branch).into());
            }
            let main = repo.branch_tip("main").await?;
            let root = super::root_of(&repo, &main).await?;
            repo.create_branch(&branch, &root).await?;
            made_branch = Some(branch.clone());
        }
        write(&repo, dir, &h, &branch, &history, n_commits, &mut prov).await
    }
    .await;
    match result {
        Ok((commit, digest, nodes, chunks, branch)) => Ok(ImportReport {
            repo: location.to_string(),
            created_repository: created,
            branch,
            digest_matches: digest.as_deref() == Some(h.content_digest.as_str()),
            commit,
            tag: h.tag,
            source_commit: h.commit,
            content_digest: digest,
            nodes,
            chunks,
            commits_referenced: n_commits,
        }),
        Err(e) => {
            // nothing half-made stays behind: the new repository or the new branch goes
            if created {
                if let Location::Local(p) = location {
                    let _ = std::fs::remove_dir_all(p);
                }
            } else if let Some(b) = made_branch {
                let _ = repo.delete_branch(&b).await;
            }
            Err(e)
        }
    }
}

type Written = (Option<String>, Option<String>, u64, u64, String);

async fn write(
    repo: &Repo,
    dir: &Path,
    h: &package::Header,
    branch: &str,
    history: &Value,
    n_commits: u64,
    prov: &mut Provenance,
) -> Result<Written, ReleaseError> {
    let zpath = dir.join(&h.zarr);
    let bad = |e: String| ReleaseError::Damaged {
        dir: dir.to_path_buf(),
        problems: vec![format!("{}: {e}", h.zarr)],
    };
    let mut src = ZarrSource::open(&zpath).map_err(bad)?;
    let keys = src.keys().map_err(bad)?;
    let layout = Layout::build(&keys, |k| src.read(k)).map_err(bad)?;
    let mut tx = repo.transaction(branch).await?;
    let engine = |op: String| {
        move |e: String| {
            ReleaseError::Repo(RepoError::Engine {
                op,
                message: e,
                source: None,
            })
        }
    };
    // remove what the branch's start holds that the package does not
    {
        let session = tx.session();
        let mut s = session.write().await;
        let existing: Vec<_> = crate::cas::list_nodes(&s)
            .await
            .map_err(|e| engine("listing nodes".into())(e.to_string()))?
            .into_iter()
            .filter(|n| !layout.nodes.contains_key(&n.path.to_string()))
            .collect();
        for n in existing.iter().rev() {
            let r = match n.node_data {
                icechunk::format::snapshot::NodeData::Array { .. } => {
                    s.delete_array(n.path.clone()).await
                }
                icechunk::format::snapshot::NodeData::Group => s.delete_group(n.path.clone()).await,
            };
            r.map_err(|e| engine(format!("removing {}", n.path))(e.to_string()))?;
        }
    }
    let store = tx.store();
    for node in layout.nodes.values() {
        let key = format!("{}zarr.json", node.prefix());
        let k = StoreKey::new(&key).map_err(|e| bad(e.to_string()))?;
        store
            .set(&k, node.zarr_json.clone().into())
            .await
            .map_err(|e| engine(format!("writing {key}"))(e.to_string()))?;
    }
    let mut chunks = 0u64;
    {
        let mut inflight = FuturesUnordered::new();
        for (array, cs) in &layout.chunks {
            for (coords, key) in cs {
                let data = src.read(key).map_err(bad)?;
                inflight.push(tx.write_chunk(array, coords.clone(), data.into()));
                chunks += 1;
                if inflight.len() >= 32 {
                    if let Some(r) = inflight.next().await {
                        r?;
                    }
                }
            }
        }
        while let Some(r) = inflight.next().await {
            r?;
        }
    }
    tx.set_record_field("imported", history.clone());
    prov.operation = "import".into();
    if prov.message.is_empty() {
        prov.message = format!(
            "Import of release {} ({} commits, content digest {})",
            h.tag, n_commits, h.content_digest
        );
    }
    if prov.source.is_none() {
        prov.source = Some(dir.display().to_string());
    }
    if let Ok(t) = std::fs::read(dir.join(CHECKSUMS)) {
        prov.input_blake3 = Some(blake3::hash(&t).to_hex().to_string());
    }
    for (k, v) in [
        ("imported_tag", h.tag.clone()),
        ("imported_commit", h.commit.clone()),
        ("imported_repository", h.repository.clone()),
        ("imported_digest", h.content_digest.clone()),
        ("imported_commits", n_commits.to_string()),
    ] {
        prov.refs.insert(k.into(), v);
    }
    let out = tx.commit(prov.clone()).await?;
    Ok((
        out.commit.map(|c| c.to_string()),
        out.content_digest,
        layout.nodes.len() as u64,
        chunks,
        branch.to_string(),
    ))
}
