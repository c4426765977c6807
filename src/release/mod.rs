//! Zenodo release: a tagged snapshot as a self-contained, verifiable, citable package
//! (spec/015-release.md).
//!
//! ```text
//!  tag ──▶ nodes + chunk bytes (checked against their content addresses)
//!      ──▶ <title>-<tag>.zarr.zip   plain Zarr v3, stored entries, deterministic
//!      ──▶ zenodo.json, datacite.json      (root ATTRS + --meta FILE + history)
//!      ──▶ PROVENANCE.json/.csv, schema.yaml
//!      ──▶ CHECKSUMS (MD5 + BLAKE3 of every file and entry, the snapshot content digest)
//! ```
//!
//! Everything is written into a temporary sibling directory and renamed into place at the end,
//! so a failed release leaves nothing in the output directory.

pub mod credits;
pub mod import;
pub mod metadata;
pub mod package;
pub mod zip;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use icechunk::format::manifest::ChunkPayload;
use icechunk::format::snapshot::NodeData;
use icechunk::format::{ChunkIndices, Path as IcePath, SnapshotId};
use md5::Digest;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cas::{self, PlainDigest};
use crate::repo::{Repo, RepoError};
pub use package::{verify, verify_with_repo, VerifyReport};

/// Name of the checksum file.
pub const CHECKSUMS: &str = "CHECKSUMS";
/// Name of the Zenodo deposition metadata file.
pub const ZENODO_JSON: &str = "zenodo.json";
/// Name of the DataCite metadata file.
pub const DATACITE_JSON: &str = "datacite.json";
/// Name of the provenance file (JSON).
pub const PROVENANCE_JSON: &str = "PROVENANCE.json";
/// Name of the provenance file (CSV).
pub const PROVENANCE_CSV: &str = "PROVENANCE.csv";
/// Name of the schema file.
pub const SCHEMA_YAML: &str = "schema.yaml";

/// Errors of release, verify and import. Each names the file, key, tag or field involved.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A repository error.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The tag does not exist.
    #[error("tag '{tag}' not found in {repo}: {hint}")]
    NoSuchTag {
        /// The tag.
        tag: String,
        /// The repository.
        repo: String,
        /// What exists instead.
        hint: String,
    },
    /// The output directory exists and holds something.
    #[error("output directory {0} is not empty; choose a new or empty directory")]
    OutputNotEmpty(PathBuf),
    /// The output path is a file.
    #[error("cannot write the package into {0}: it is a file, not a directory; give --out a new or empty directory")]
    OutputIsFile(PathBuf),
    /// Metadata fields missing or malformed.
    #[error("release metadata incomplete:{}{} (set them in the schema's root ATTRS or in a --meta FILE, YAML or JSON)",
        if missing.is_empty() { String::new() } else { format!(" missing {}", missing.join(", ")) },
        if problems.is_empty() { String::new() } else { format!("; {}", problems.join("; ")) })]
    Metadata {
        /// Required fields that are absent.
        missing: Vec<String>,
        /// Fields present but wrong.
        problems: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not a release package (no or unreadable CHECKSUMS).
    #[error("{} is not a zarr-fuse release package: {problem}", dir.display())]
    NotAPackage {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A package that does not verify.
    #[error("{} does not verify ({} problem(s)): {}", dir.display(), problems.len(), problems.join("; "))]
    Damaged {
        /// The directory.
        dir: PathBuf,
        /// Every problem.
        problems: Vec<String>,
    },
    /// The repository content does not match what it records.
    #[error("tag '{tag}': {detail}; run `zarr-fuse verify REPO {tag}`")]
    Content {
        /// The tag.
        tag: String,
        /// What differs.
        detail: String,
    },
    /// Something the package format cannot hold.
    #[error("{0}")]
    Unsupported(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Zip archive or plain directory for the Zarr data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One `.zarr.zip` (the default: one file on Zenodo).
    Zip,
    /// A `.zarr` directory.
    Dir,
}

/// What to release and where.
pub struct ReleaseOptions {
    /// Output directory (absent or empty).
    pub out: PathBuf,
    /// Zip or directory.
    pub format: Format,
    /// Metadata overrides (YAML or JSON).
    pub meta: Option<PathBuf>,
}

/// One file of the package.
#[derive(Clone, Debug, Serialize)]
pub struct PackageFile {
    /// Name in the package.
    pub name: String,
    /// Size.
    pub bytes: u64,
    /// MD5 hex.
    pub md5: String,
    /// BLAKE3 hex.
    pub blake3: String,
}

/// What `release` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseReport {
    /// Output directory.
    pub out: String,
    /// The tag.
    pub tag: String,
    /// Its commit.
    pub commit: String,
    /// Snapshot content digest (recomputed from the packaged bytes; equals the recorded one).
    pub content_digest: String,
    /// Nodes packaged.
    pub nodes: u64,
    /// Chunks packaged.
    pub chunks: u64,
    /// Bytes of Zarr data (metadata + chunks).
    pub zarr_bytes: u64,
    /// The files.
    pub files: Vec<PackageFile>,
    /// Commits in the tag's history.
    pub commits: u64,
    /// Seconds taken.
    pub seconds: f64,
}

/// The repository's identity as packages record it (`unknown` where none was recorded).
pub async fn repository_identity(repo: &Repo) -> Result<String, ReleaseError> {
    Ok(repo
        .repository_id()
        .await?
        .unwrap_or_else(|| "unknown".into()))
}

/// The first commit of `tip`'s history.
pub async fn root_of(
    repo: &Repo,
    tip: &icechunk::format::SnapshotId,
) -> Result<String, ReleaseError> {
    let hist = repo.ancestry(tip).await?;
    Ok(hist.last().map(|i| i.id.to_string()).unwrap_or_default())
}

/// A file name fragment from free text.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "dataset".into()
    } else {
        out
    }
}

/// Read a `--meta` file (YAML or JSON) into a map.
fn read_meta(path: &Path) -> Result<Map<String, Value>, ReleaseError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v = crate::schema::yaml_to_json(&text).map_err(|e| ReleaseError::Metadata {
        missing: vec![],
        problems: vec![format!("{}: {e}", path.display())],
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ReleaseError::Metadata {
            missing: vec![],
            problems: vec![format!("{}: must be a mapping of keys", path.display())],
        }),
    }
}

fn check_out_dir(out: &Path) -> Result<(), ReleaseError> {
    match std::fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                Err(ReleaseError::OutputNotEmpty(out.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(ReleaseError::OutputIsFile(out.to_path_buf()))
        }
        Err(e) => Err(io(out)(e)),
    }
}

/// A directory removed on drop unless kept.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// MD5 and BLAKE3 of a byte stream, each computed on its own thread so that hashing a large
/// archive overlaps with writing it.
struct HashPipe {
    feeds: Vec<std::sync::mpsc::SyncSender<Bytes>>,
    md5: std::thread::JoinHandle<String>,
    blake3: std::thread::JoinHandle<String>,
}

impl HashPipe {
    fn new() -> Self {
        let (tm, rm) = std::sync::mpsc::sync_channel::<Bytes>(64);
        let (tb, rb) = std::sync::mpsc::sync_channel::<Bytes>(64);
        let md5 = std::thread::spawn(move || {
            let mut h = md5::Md5::new();
            for b in rm {
                h.update(&b);
            }
            package::hex(&h.finalize())
        });
        let blake3 = std::thread::spawn(move || {
            let mut h = blake3::Hasher::new();
            for b in rb {
                h.update(&b);
            }
            h.finalize().to_hex().to_string()
        });
        HashPipe {
            feeds: vec![tm, tb],
            md5,
            blake3,
        }
    }

    fn feed(&self, buf: &[u8]) {
        let b = Bytes::copy_from_slice(buf);
        for f in &self.feeds {
            // a hasher thread only stops when the pipe is finished
            let _ = f.send(b.clone());
        }
    }

    /// (md5 hex, blake3 hex)
    fn finish(self) -> (String, String) {
        drop(self.feeds);
        (
            self.md5.join().unwrap_or_default(),
            self.blake3.join().unwrap_or_default(),
        )
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    pipe: HashPipe,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.pipe.feed(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PackageFile, ReleaseError> {
    let path = dir.join(name);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(io(p))?;
    }
    let mut f = File::create(&path).map_err(io(&path))?;
    f.write_all(bytes).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(PackageFile {
        name: name.to_string(),
        bytes: bytes.len() as u64,
        md5: package::hex(&md5::Md5::digest(bytes)),
        blake3: blake3::hash(bytes).to_hex().to_string(),
    })
}

/// One item of the packaged Zarr, in package order.
struct Item {
    key: String,
    data: Bytes,
    crc: u32,
    digest: blake3::Hash,
    part: Part,
}

/// What an item of the packaged Zarr is, as the digest needs it.
enum Part {
    /// A node's zarr.json.
    Node { path: String, is_array: bool },
    /// A chunk of the current node.
    Chunk { coords: Vec<u32> },
}

/// One planned item: a node's metadata (bytes at hand) or a chunk to fetch.
enum Planned {
    Node {
        path: String,
        is_array: bool,
        zarr_json: Bytes,
    },
    Chunk {
        path: IcePath,
        coords: ChunkIndices,
        payload: ChunkPayload,
    },
}

/// What writing the Zarr produced.
struct ZarrOut {
    digest: String,
    nodes: u64,
    chunks: u64,
    bytes: u64,
    /// BLAKE3 of every entry, by key.
    entries: Vec<(String, String)>,
    /// The files written (one zip, or one per entry).
    files: Vec<PackageFile>,
}

/// The commit tag `tag` names, or an error listing the tags (and saying so when it is a branch).
async fn tag_commit(repo: &Repo, tag: &str) -> Result<SnapshotId, ReleaseError> {
    let loc = repo.location().to_string();
    match repo.icechunk().lookup_tag(tag).await {
        Ok(id) => Ok(id),
        Err(e) if !matches!(e.kind(), icechunk::repository::RepositoryErrorKind::Ref(_)) => {
            Err(RepoError::from_engine(&format!("looking up tag '{tag}'"), e).into())
        }
        Err(_) => {
            let tags: Vec<String> = repo.tags().await?.into_iter().map(|t| t.name).collect();
            let is_branch = repo.branch_tip(tag).await.is_ok();
            let hint = if is_branch {
                format!("'{tag}' is a branch; releases are made from tags (zarr-fuse tag {loc} create NAME --at {tag})")
            } else if tags.is_empty() {
                "the repository has no tags".into()
            } else {
                format!("tags: {}", tags.join(", "))
            };
            Err(ReleaseError::NoSuchTag {
                tag: tag.into(),
                repo: loc,
                hint,
            })
        }
    }
}

/// The plan of a package: every node's metadata, then its chunks, in path and coordinate order.
async fn plan_package(
    session: &icechunk::session::Session,
    nodes: &[icechunk::format::snapshot::NodeSnapshot],
) -> Result<Vec<PlanItem>, ReleaseError> {
    let engine = |op: &'static str| {
        move |e: icechunk::session::SessionError| ReleaseError::Repo(RepoError::from_engine(op, e))
    };
    // the plan: every node's metadata, then its chunks, in path and coordinate order
    let mut plan: Vec<PlanItem> = vec![];
    for node in nodes {
        let v: Value = serde_json::from_slice(&node.user_data).unwrap_or(Value::Null);
        let pn = package::PlainNode::new(
            node.path.to_string(),
            matches!(node.node_data, NodeData::Array { .. }),
            vec![],
            package::key_encoding(&v)
                .map_err(|e| ReleaseError::Unsupported(format!("{}: {e}", node.path)))?,
        );
        plan.push((
            format!("{}zarr.json", pn.prefix()),
            Planned::Node {
                path: pn.path.clone(),
                is_array: pn.is_array,
                zarr_json: node.user_data.clone(),
            },
        ));
        if pn.is_array {
            for (coords, payload) in cas::array_chunks(session, node)
                .await
                .map_err(engine("listing chunks"))?
            {
                if !matches!(payload, ChunkPayload::Ref(_) | ChunkPayload::Inline(_)) {
                    return Err(ReleaseError::Unsupported(format!(
                        "{} chunk {:?} is a virtual chunk (bytes held outside the repository); releases hold only stored chunks",
                        node.path, coords.0
                    )));
                }
                let key = pn.chunk_key(&coords.0);
                plan.push((
                    key,
                    Planned::Chunk {
                        path: node.path.clone(),
                        coords,
                        payload,
                    },
                ));
            }
        }
    }
    Ok(plan)
}

/// The output directory (an existing DIR such as `.` named by its real path), its parent and a
/// fresh staging directory beside it.
fn stage(out: &Path) -> Result<(PathBuf, PathBuf, Staging), ReleaseError> {
    // staging directory beside the output (an existing DIR such as `.` is named by its real path)
    let out = match out.canonicalize() {
        Ok(p) => p,
        Err(_) => out.to_path_buf(),
    };
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let base = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "release".into());
    let staging = Staging {
        path: parent.join(format!(".{base}.partial-{}", std::process::id())),
        keep: false,
    };
    let _ = std::fs::remove_dir_all(&staging.path);
    std::fs::create_dir_all(&staging.path).map_err(io(&staging.path))?;
    Ok((out, parent, staging))
}

/// Write zenodo.json, datacite.json, PROVENANCE.json/.csv and the schema into `d`.
#[allow(clippy::too_many_arguments)]
fn write_metadata_files(
    d: &Path,
    md: &metadata::Metadata,
    facts: &metadata::PackageFacts,
    credits: &credits::Credits,
    attrs: &Map<String, Value>,
    tag: &str,
    id: &SnapshotId,
    digest: &str,
) -> Result<Vec<PackageFile>, ReleaseError> {
    let pretty = |v: &Value| {
        let mut b = serde_json::to_vec_pretty(v).unwrap_or_default();
        b.push(b'\n');
        b
    };
    let mut files = vec![];
    files.push(write_file(
        d,
        ZENODO_JSON,
        &pretty(&metadata::zenodo_json(md, facts)),
    )?);
    files.push(write_file(
        d,
        DATACITE_JSON,
        &pretty(&metadata::datacite_json(md, facts)),
    )?);
    files.push(write_file(
        d,
        PROVENANCE_JSON,
        &pretty(&credits.to_json(tag, &id.to_string(), digest)),
    )?);
    let csv = credits
        .to_csv()
        .map_err(|e| ReleaseError::Unsupported(format!("rendering {PROVENANCE_CSV}: {e}")))?;
    files.push(write_file(d, PROVENANCE_CSV, &csv)?);
    if let Some(s) = crate::update::schema_text(attrs) {
        files.push(write_file(d, SCHEMA_YAML, s.as_bytes())?);
    }
    Ok(files)
}

/// Into place: an absent DIR is the staging directory renamed; into an existing empty DIR
/// (which may be someone's working directory) the files move one by one, CHECKSUMS last, so a
/// package without CHECKSUMS is an unfinished one.
fn move_into_place(
    mut staging: Staging,
    out: &Path,
    files: &[PackageFile],
) -> Result<(), ReleaseError> {
    if out.exists() {
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|f| f.name.split('/').next().map(str::to_string))
            .collect();
        names.dedup();
        names.push(CHECKSUMS.to_string());
        for n in names {
            std::fs::rename(staging.path.join(&n), out.join(&n)).map_err(io(&out.join(&n)))?;
        }
        sync_dir(out)?;
    } else {
        std::fs::rename(&staging.path, out).map_err(io(out))?;
        staging.keep = true;
    }
    Ok(())
}

/// CHECKSUMS: the header, MD5 and BLAKE3 of every file, and BLAKE3 of every entry of a zip.
fn checksums_text(
    header: &package::Header,
    files: &[PackageFile],
    zip_entries: Option<&[(String, String)]>,
) -> String {
    let mut text = header.render();
    for f in files {
        text.push_str(&package::sum_line("MD5", &f.name, &f.md5));
        text.push_str(&package::sum_line("BLAKE3", &f.name, &f.blake3));
    }
    for (k, b3) in zip_entries.unwrap_or_default() {
        let name = format!("{}/{k}", header.zarr);
        text.push_str(&package::sum_line("BLAKE3", &name, b3));
    }
    text
}

/// Release tag `tag` of `repo` as a package in `opts.out`. `progress(done, total)` counts chunks.
pub async fn release(
    repo: &Repo,
    tag: &str,
    opts: &ReleaseOptions,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ReleaseReport, ReleaseError> {
    let t0 = std::time::Instant::now();
    let id = tag_commit(repo, tag).await?;
    check_out_dir(&opts.out)?;
    let meta_file = opts.meta.as_deref().map(read_meta).transpose()?;
    let info = repo.commit_info(&id).await?;
    let session = repo.session_at(&id).await?;
    let engine = |op: &'static str| {
        move |e: icechunk::session::SessionError| ReleaseError::Repo(RepoError::from_engine(op, e))
    };
    let nodes = cas::list_nodes(&session)
        .await
        .map_err(engine("listing nodes"))?;
    let attrs: Map<String, Value> = nodes
        .iter()
        .find(|n| n.path == IcePath::root())
        .and_then(|n| serde_json::from_slice::<Value>(&n.user_data).ok())
        .and_then(|v| v.get("attributes").cloned())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let credits = credits::collect(repo, &id).await?;
    let defaults = metadata::Defaults {
        version: tag.to_string(),
        date: info.time.format("%Y-%m-%d").to_string(),
        authors: credits.authors.iter().map(|a| a.author.clone()).collect(),
    };
    let meta_name = opts.meta.as_ref().map(|p| p.display().to_string());
    let md = metadata::build(
        &attrs,
        meta_name.as_deref().zip(meta_file.as_ref()),
        &defaults,
    )?;
    let plan = plan_package(&session, &nodes).await?;
    let n_nodes = nodes.len() as u64;
    let total_chunks = plan
        .iter()
        .filter(|p| matches!(p.1, Planned::Chunk { .. }))
        .count() as u64;
    let zarr_name = format!(
        "{}-{}.zarr{}",
        slug(&md.title),
        tag.replace('/', "_"),
        if opts.format == Format::Zip {
            ".zip"
        } else {
            ""
        }
    );
    let (out, parent, staging) = stage(&opts.out)?;
    let (out, parent) = (&out, &parent);
    let threshold = repo.icechunk().config().inline_chunk_threshold_bytes() as usize;
    let zarr = write_zarr(
        repo,
        plan,
        &staging.path,
        &zarr_name,
        opts.format,
        threshold,
        &|done| progress(done, total_chunks),
    )
    .await
    .map_err(|e| match e {
        ReleaseError::Content { detail, .. } => ReleaseError::Content {
            tag: tag.into(),
            detail,
        },
        e => e,
    })?;
    let mut z = zarr;
    z.nodes = n_nodes;
    let recorded = match info.content_digest.clone() {
        Some(d) => d,
        None => cas::content_digest(&session)
            .await
            .map_err(engine("computing the content digest"))?,
    };
    if z.digest != recorded {
        return Err(ReleaseError::Content {
            tag: tag.into(),
            detail: format!(
                "the packaged bytes give content digest {}, the commit records {recorded} (chunks not written by zarr-fuse, or damaged)",
                z.digest
            ),
        });
    }
    // metadata files
    let first_date = credits
        .commits
        .first()
        .map(|c| c.time.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| defaults.date.clone());
    let facts = metadata::PackageFacts {
        commit: id.to_string(),
        content_digest: z.digest.clone(),
        first_date,
        last_date: defaults.date.clone(),
        zarr_bytes: z.bytes,
        zarr_name: zarr_name.clone(),
    };
    let mut files = z.files.clone();
    files.extend(write_metadata_files(
        &staging.path,
        &md,
        &facts,
        &credits,
        &attrs,
        tag,
        &id,
        &z.digest,
    )?);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let header = package::Header {
        generated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool: crate::provenance::TOOL.into(),
        tag: tag.into(),
        commit: id.to_string(),
        repository: repository_identity(repo).await?,
        zarr: zarr_name.clone(),
        content_digest: z.digest.clone(),
        inline_threshold: threshold,
    };
    let entries = (opts.format == Format::Zip).then_some(z.entries.as_slice());
    let text = checksums_text(&header, &files, entries);
    write_file(&staging.path, CHECKSUMS, text.as_bytes())?;
    sync_dir(&staging.path)?;
    move_into_place(staging, out, &files)?;
    sync_dir(parent)?;
    Ok(ReleaseReport {
        out: out.display().to_string(),
        tag: tag.into(),
        commit: id.to_string(),
        content_digest: z.digest,
        nodes: z.nodes,
        chunks: z.chunks,
        zarr_bytes: z.bytes,
        files,
        commits: credits.commits.len() as u64,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn sync_dir(d: &Path) -> Result<(), ReleaseError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}

/// Bytes between two data syncs of the archive while it is written.
const SYNC_EVERY: u64 = 64 << 20;

/// The files written and the BLAKE3 of every entry.
type Written = (Vec<PackageFile>, Vec<(String, String)>);

/// (store key, what goes there).
type PlanItem = (String, Planned);

/// Read one planned object (a node's metadata, or a chunk's bytes from storage) and hash it on
/// a worker thread, checking a chunk's bytes against its content address.
async fn fetch_item(
    storage: Arc<dyn icechunk::storage::Storage + Send + Sync>,
    ctx: &icechunk::storage::StorageContext<'_>,
    key: String,
    planned: Planned,
) -> Result<Item, String> {
    let (data, part, payload) = match planned {
        Planned::Node {
            path,
            is_array,
            zarr_json,
        } => (zarr_json, Part::Node { path, is_array }, None),
        Planned::Chunk {
            path,
            coords,
            payload,
        } => {
            let data = match &payload {
                ChunkPayload::Inline(b) => b.clone(),
                ChunkPayload::Ref(r) => {
                    let okey = cas::chunk_key(&r.id);
                    let range = r.offset..r.offset + r.length;
                    let what = |e: &dyn std::fmt::Display| {
                        format!("{path} chunk {:?}: reading {okey}: {e}", coords.0)
                    };
                    let (stream, _) = storage
                        .get_object_range(ctx, &okey, Some(&range))
                        .await
                        .map_err(|e| what(&e))?;
                    let parts: Vec<Bytes> = futures::TryStreamExt::try_collect(stream)
                        .await
                        .map_err(|e| what(&e))?;
                    Bytes::from(parts.concat())
                }
                _ => return Err(format!("{path} chunk {:?}: virtual chunk", coords.0)),
            };
            let part = Part::Chunk { coords: coords.0 };
            (data, part, Some((path.to_string(), payload)))
        }
    };
    // hashing on a worker thread, so chunks are hashed in parallel
    tokio::spawn(async move {
        let digest = blake3::hash(&data);
        if let (Some((path, ChunkPayload::Ref(r))), Part::Chunk { coords }) =
            (&payload, &part)
        {
            if !cas::id_matches(&r.id, &digest)
                || data.len() as u64 != r.length
                || r.offset != 0
            {
                return Err(format!(
                    "{path} chunk {coords:?}: the stored bytes of {} do not match its content address",
                    cas::chunk_key(&r.id)
                ));
            }
        }
        let crc = crc32fast::hash(&data);
        Ok(Item {
            key,
            data,
            crc,
            digest,
            part,
        })
    })
    .await
    .map_err(|e| format!("a chunk hasher failed: {e}"))?
}

/// Write the items arriving on `rx` as one zip at `zpath` (data synced as it grows).
fn write_zip(
    zpath: &Path,
    rx: &mut tokio::sync::mpsc::Receiver<Item>,
) -> Result<Written, ReleaseError> {
    let (mut entries, mut files) = (vec![], vec![]);
    let f = File::create(zpath).map_err(io(zpath))?;
    let h = Hashing {
        inner: BufWriter::with_capacity(1 << 20, f),
        pipe: HashPipe::new(),
        n: 0,
    };
    let mut zw = zip::ZipWriter::new(h);
    let mut synced = 0u64;
    while let Some(item) = rx.blocking_recv() {
        zw.add(&item.key, &item.data, item.crc).map_err(io(zpath))?;
        entries.push((item.key, item.digest.to_hex().to_string()));
        // flush to disk as we go, so the final fsync does not wait for everything
        if zw.offset() - synced >= SYNC_EVERY {
            synced = zw.offset();
            let buffered = &mut zw.get_mut().inner;
            buffered.flush().map_err(io(zpath))?;
            buffered.get_ref().sync_data().map_err(io(zpath))?;
        }
    }
    let h = zw.finish().map_err(io(zpath))?;
    let f = h
        .inner
        .into_inner()
        .map_err(|e| io(zpath)(e.into_error()))?;
    f.sync_all().map_err(io(zpath))?;
    let (md5, blake3) = h.pipe.finish();
    files.push(PackageFile {
        name: zpath
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: h.n,
        md5,
        blake3,
    });
    Ok((files, entries))
}

/// Write the items arriving on `rx` as files of a `.zarr` directory at `zpath`.
fn write_dir(
    zpath: &Path,
    rx: &mut tokio::sync::mpsc::Receiver<Item>,
) -> Result<Written, ReleaseError> {
    let (mut entries, mut files) = (vec![], vec![]);
    let root = zpath.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = zpath
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    while let Some(item) = rx.blocking_recv() {
        files.push(write_file(
            &root,
            &format!("{name}/{}", item.key),
            &item.data,
        )?);
        entries.push((item.key, item.digest.to_hex().to_string()));
    }
    Ok((files, entries))
}

/// Fetch every planned chunk (a few dozen at a time, each checked against its content address
/// on a worker), and hand them in order to a writer thread that streams the zip (or the files)
/// while hashing it.
async fn write_zarr(
    repo: &Repo,
    plan: Vec<PlanItem>,
    dir: &Path,
    zarr_name: &str,
    format: Format,
    threshold: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ZarrOut, ReleaseError> {
    let storage = Arc::clone(repo.icechunk().storage());
    let ctx = repo.icechunk().storage_context();
    let ctx = &ctx;
    let fetched = futures::stream::iter(
        plan.into_iter()
            .map(|(key, planned)| fetch_item(Arc::clone(&storage), ctx, key, planned)),
    )
    .buffered(32);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Item>(64);
    let zpath = dir.join(zarr_name);
    let writer = std::thread::spawn(move || match format {
        Format::Zip => write_zip(&zpath, &mut rx),
        Format::Dir => write_dir(&zpath, &mut rx),
    });
    let mut pd = PlainDigest::new(threshold);
    let mut out = ZarrOut {
        digest: String::new(),
        nodes: 0,
        chunks: 0,
        bytes: 0,
        entries: vec![],
        files: vec![],
    };
    futures::pin_mut!(fetched);
    let mut failure = None;
    while let Some(joined) = fetched.next().await {
        let item = match joined {
            Ok(item) => item,
            Err(msg) => {
                failure = Some(ReleaseError::Content {
                    tag: String::new(),
                    detail: msg,
                });
                break;
            }
        };
        match &item.part {
            Part::Node { path, is_array } => pd.node(path, *is_array, &item.data),
            Part::Chunk { coords } => {
                pd.chunk(coords, item.data.len() as u64, &item.digest);
                out.chunks += 1;
                progress(out.chunks);
            }
        }
        out.bytes += item.data.len() as u64;
        if tx.send(item).await.is_err() {
            break; // the writer failed; its error is reported below
        }
    }
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| ReleaseError::Unsupported("the package writer panicked".into()))?;
    if let Some(f) = failure {
        return Err(f);
    }
    let (files, entries) = written?;
    out.files = files;
    out.entries = entries;
    out.digest = pd.finish();
    Ok(out)
}
