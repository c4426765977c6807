//! Durable, multi-process-safe local repository storage.
//!
//! Same file layout as icechunk's own local filesystem storage (one file per object key under the
//! repository directory), so icechunk-python's `local_filesystem_storage` opens what we write. What
//! differs is how objects are written (spec/002-local-storage.md):
//!
//! * every object is written to a temporary file, then renamed (or hard-linked for
//!   create-if-absent) into place: a reader never sees a torn object. Objects whose names are never
//!   reused (manifests, snapshots, transaction logs, `overwritten/` copies) are `fdatasync`ed later,
//!   together, just before the next ref move; all others before they get their name;
//! * before any conditional update (the `repo` ref object, its backup copy) those deferred files
//!   and every directory this process wrote into are synced, in parallel, so all data a ref can
//!   point at is durable before the ref moves;
//! * conditional updates hold an exclusive `flock` on `<repo>/.zf.lock` and re-check the object's
//!   version under the lock: a real compare-and-swap across processes.
//!
//! Reads, listings and deletes go to icechunk's object-store backed storage on the same directory.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::Stream;
use icechunk::storage::{
    DeleteObjectsResult, ETag, GetModifiedResult, ListInfo, Settings, Storage, StorageContext,
    StorageError, StorageErrorKind, StorageInfo, StorageResult, VersionInfo, VersionedUpdateResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

/// Name of the lock file that serialises conditional updates between processes.
pub const LOCK_FILE: &str = ".zf.lock";
/// Directory (inside the repository) that holds objects being written.
pub const TMP_DIR: &str = ".zf-tmp";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// icechunk [`Storage`] on a local directory, durable and safe for concurrent committers.
#[derive(Serialize, Deserialize)]
pub struct DurableLocalStorage {
    root: PathBuf,
    #[serde(skip)]
    inner: OnceCell<Arc<dyn Storage + Send + Sync>>,
    #[serde(skip)]
    dirty_dirs: Arc<Mutex<HashSet<PathBuf>>>,
    #[serde(skip)]
    unsynced: Arc<Mutex<Vec<PathBuf>>>,
}

/// Key prefixes of objects whose names are never reused (random ids): nothing can reference
/// them before a ref moves, so their data sync waits for the flush before the next ref move.
const DEFERRED_SYNC_PREFIXES: [&str; 4] =
    ["manifests/", "snapshots/", "transactions/", "overwritten/"];

fn sync_deferred(key: &str) -> bool {
    DEFERRED_SYNC_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The blocking half of the storage: what a write needs, cheap to move onto a blocking thread.
#[derive(Clone)]
struct Writer {
    root: PathBuf,
    dirty_dirs: Arc<Mutex<HashSet<PathBuf>>>,
    unsynced: Arc<Mutex<Vec<PathBuf>>>,
}

impl fmt::Debug for DurableLocalStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableLocalStorage")
            .field("root", &self.root)
            .finish()
    }
}

impl fmt::Display for DurableLocalStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableLocalStorage(path={})", self.root.display())
    }
}

impl icechunk_storage::sealed::Sealed for DurableLocalStorage {}

fn io_err(err: std::io::Error) -> StorageError {
    StorageError::capture(StorageErrorKind::IOError(err))
}

/// The version tag of a file: the same formula object_store's local backend uses, so versions
/// read through it and versions returned by our writes compare equal.
fn etag_of(meta: &fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{:x}-{:x}-{:x}\"", meta.ino(), mtime, meta.len())
}

fn version_of(path: &Path) -> std::io::Result<VersionInfo> {
    let meta = fs::metadata(path)?;
    Ok(VersionInfo {
        etag: Some(ETag(etag_of(&meta))),
        generation: None,
    })
}

/// Bytes `range` (all when `None`) of a file, and its version.
fn read_range(path: &Path, range: Option<Range<u64>>) -> std::io::Result<(Bytes, VersionInfo)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    let len = meta.len();
    let r = range.unwrap_or(0..len);
    if r.start > r.end || r.end > len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "{}: range {}..{} beyond the object's {len} bytes",
                path.display(),
                r.start,
                r.end
            ),
        ));
    }
    f.seek(SeekFrom::Start(r.start))?;
    let mut buf = vec![0u8; (r.end - r.start) as usize];
    f.read_exact(&mut buf)?;
    let version = VersionInfo {
        etag: Some(ETag(etag_of(&meta))),
        generation: None,
    };
    Ok((Bytes::from(buf), version))
}

fn same_etag(a: &str, b: &str) -> bool {
    icechunk::storage::strip_quotes(a) == icechunk::storage::strip_quotes(b)
}

/// `fdatasync` a file written earlier; one deleted since (an abandoned attempt's object removed
/// by gc) needs none.
fn sync_file(file: &Path) -> std::io::Result<()> {
    match File::open(file) {
        Ok(f) => f.sync_data(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Held for the duration of a conditional update; released on drop (and by the OS if the process dies).
struct RepoLock(File);

impl RepoLock {
    fn acquire(root: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK_FILE))?;
        fs2::FileExt::lock_exclusive(&file)?;
        Ok(RepoLock(file))
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let _ = fs2::FileExt::unlock(&self.0);
    }
}

impl DurableLocalStorage {
    /// Storage rooted at `root` (the repository directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DurableLocalStorage {
            root: root.into(),
            inner: OnceCell::new(),
            dirty_dirs: Arc::new(Mutex::new(HashSet::new())),
            unsynced: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn writer(&self) -> Writer {
        Writer {
            root: self.root.clone(),
            dirty_dirs: Arc::clone(&self.dirty_dirs),
            unsynced: Arc::clone(&self.unsynced),
        }
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn inner(&self) -> StorageResult<&Arc<dyn Storage + Send + Sync>> {
        self.inner
            .get_or_try_init(|| async {
                let storage: Arc<dyn Storage + Send + Sync> =
                    Arc::new(icechunk::ObjectStorage::new_local_filesystem(&self.root).await?);
                Ok(storage)
            })
            .await
    }
}

impl Writer {
    fn mark_dirty(&self, dir: &Path) {
        if let Ok(mut dirs) = self.dirty_dirs.lock() {
            dirs.insert(dir.to_path_buf());
        }
    }

    fn defer_sync(&self, file: PathBuf) {
        if let Ok(mut files) = self.unsynced.lock() {
            files.push(file);
        }
    }

    /// Make durable what this process wrote since the last flush: the data of deferred files and
    /// every directory it created entries in.
    fn flush(&self) -> std::io::Result<()> {
        let dirs: Vec<PathBuf> = match self.dirty_dirs.lock() {
            Ok(mut d) => d.drain().collect(),
            Err(_) => Vec::new(),
        };
        let files: Vec<PathBuf> = match self.unsynced.lock() {
            Ok(mut f) => f.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        // in parallel: the file system commits them together instead of one journal flush each
        std::thread::scope(|scope| {
            let handles: Vec<_> = dirs
                .iter()
                .map(|dir| scope.spawn(move || fsync_dir(dir)))
                .chain(
                    files
                        .iter()
                        .map(|file| scope.spawn(move || sync_file(file))),
                )
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
            })
        })
    }

    /// Write `bytes` to a temporary file in `<repo>/.zf-tmp` (outside every listed prefix), synced
    /// when `sync`, and make sure the destination's directory exists.
    fn write_temp(&self, dest: &Path, bytes: &[u8], sync: bool) -> std::io::Result<PathBuf> {
        let dir = dest.parent().unwrap_or(&self.root);
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            // the new directory's own entry lives in its parent
            if let Some(parent) = dir.parent() {
                self.mark_dirty(parent);
            }
        }
        let tmp_dir = self.root.join(TMP_DIR);
        if !tmp_dir.exists() {
            fs::create_dir_all(&tmp_dir)?;
        }
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = tmp_dir.join(format!(
            ".{name}.zf-tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            if sync {
                f.sync_data()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            // a full disk (or any failed write) leaves no temporary file behind
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    fn put_blocking(
        &self,
        key: &str,
        bytes: &[u8],
        previous: Option<&VersionInfo>,
    ) -> std::io::Result<VersionedUpdateResult> {
        let dest = self.root.join(key);
        // a conditional update's own new version is synced with the flush that precedes its rename
        let conditional = previous.is_some_and(|p| !p.is_create());
        let deferred = previous.is_none() && sync_deferred(key);
        let tmp = self.write_temp(&dest, bytes, !deferred && !conditional)?;
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let result = match previous {
            None => {
                if let Err(e) = fs::rename(&tmp, &dest) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                self.mark_dirty(&dir);
                if deferred {
                    self.defer_sync(dest.clone());
                }
                VersionedUpdateResult::Updated {
                    new_version: version_of(&dest)?,
                }
            }
            Some(prev) if prev.is_create() => {
                // create-if-absent: link(2) fails atomically when the name exists
                let linked = fs::hard_link(&tmp, &dest);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        self.mark_dirty(&dir);
                        if key == "repo" {
                            self.flush()?;
                        }
                        VersionedUpdateResult::Updated {
                            new_version: version_of(&dest)?,
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        VersionedUpdateResult::NotOnLatestVersion
                    }
                    Err(e) => return Err(e),
                }
            }
            Some(prev) => {
                let _lock = RepoLock::acquire(&self.root)?;
                let current = match version_of(&dest) {
                    Ok(v) => v,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        let _ = fs::remove_file(&tmp);
                        return Ok(VersionedUpdateResult::NotOnLatestVersion);
                    }
                    Err(e) => return Err(e),
                };
                let matches = match (current.etag(), prev.etag()) {
                    (Some(a), Some(b)) => same_etag(a, b),
                    _ => false,
                };
                if !matches {
                    let _ = fs::remove_file(&tmp);
                    return Ok(VersionedUpdateResult::NotOnLatestVersion);
                }
                // everything the new ref can reach, and the new ref itself, must be durable before
                // the ref moves
                self.defer_sync(tmp.clone());
                if let Err(e) = self.flush().and_then(|_| fs::rename(&tmp, &dest)) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
                fsync_dir(&dir)?;
                VersionedUpdateResult::Updated {
                    new_version: version_of(&dest)?,
                }
            }
        };
        Ok(result)
    }

    fn copy_blocking(
        &self,
        from: &str,
        to: &str,
        version: &VersionInfo,
    ) -> std::io::Result<VersionedUpdateResult> {
        let src = self.root.join(from);
        let _lock = RepoLock::acquire(&self.root)?;
        let current = match version_of(&src) {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(VersionedUpdateResult::NotOnLatestVersion)
            }
            Err(e) => return Err(e),
        };
        if let (Some(a), Some(b)) = (current.etag(), version.etag()) {
            if !same_etag(a, b) {
                return Ok(VersionedUpdateResult::NotOnLatestVersion);
            }
        }
        let bytes = fs::read(&src)?;
        let dest = self.root.join(to);
        let deferred = sync_deferred(to);
        let tmp = self.write_temp(&dest, &bytes, !deferred)?;
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.mark_dirty(dest.parent().unwrap_or(&self.root));
        if deferred {
            self.defer_sync(dest.clone());
        }
        Ok(VersionedUpdateResult::Updated {
            new_version: version_of(&dest)?,
        })
    }
}

#[async_trait]
#[typetag::serde(name = "zarr_fuse_durable_local")]
impl Storage for DurableLocalStorage {
    fn storage_info(&self) -> StorageInfo {
        StorageInfo {
            backend_type: "zarr-fuse durable local filesystem",
            fields: vec![("path", self.root.display().to_string())],
        }
    }

    async fn default_settings(&self) -> StorageResult<Settings> {
        self.inner().await?.default_settings().await
    }

    async fn can_write(&self) -> StorageResult<bool> {
        Ok(true)
    }

    async fn create_location_if_needed(&self) -> StorageResult<()> {
        fs::create_dir_all(&self.root).map_err(io_err)
    }

    async fn get_object_range(
        &self,
        ctx: &StorageContext<'_>,
        path: &str,
        range: Option<&Range<u64>>,
    ) -> StorageResult<(
        Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>,
        VersionInfo,
    )> {
        if !path.starts_with("chunks/") {
            return self.inner().await?.get_object_range(ctx, path, range).await;
        }
        // chunk objects: one positioned read on the blocking pool instead of object_store's
        // stream of 8 KiB pieces (each its own blocking task)
        let file = self.root.join(path);
        let range = range.cloned();
        let (bytes, version) = tokio::task::spawn_blocking(move || read_range(&file, range))
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)?;
        let stream = futures::stream::once(async move { Ok(bytes) });
        Ok((Box::pin(stream), version))
    }

    async fn put_object(
        &self,
        _ctx: &StorageContext<'_>,
        path: &str,
        bytes: Bytes,
        _content_type: Option<&str>,
        _metadata: Vec<(String, String)>,
        previous_version: Option<&VersionInfo>,
    ) -> StorageResult<VersionedUpdateResult> {
        let previous = previous_version.cloned();
        let key = path.to_string();
        let writer = self.writer();
        tokio::task::spawn_blocking(move || writer.put_blocking(&key, &bytes, previous.as_ref()))
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)
    }

    async fn copy_object(
        &self,
        _ctx: &StorageContext<'_>,
        from: &str,
        to: &str,
        _content_type: Option<&str>,
        version: &VersionInfo,
    ) -> StorageResult<VersionedUpdateResult> {
        let (from, to, version) = (from.to_string(), to.to_string(), version.clone());
        let writer = self.writer();
        tokio::task::spawn_blocking(move || writer.copy_blocking(&from, &to, &version))
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)
    }

    async fn list_objects<'a>(
        &'a self,
        ctx: &StorageContext<'_>,
        prefix: &str,
    ) -> StorageResult<BoxStream<'a, StorageResult<ListInfo<String>>>> {
        let inner = self.inner().await?;
        inner.list_objects(ctx, prefix).await
    }

    async fn delete_batch(
        &self,
        ctx: &StorageContext<'_>,
        prefix: &str,
        batch: Vec<(String, u64)>,
    ) -> StorageResult<DeleteObjectsResult> {
        self.inner().await?.delete_batch(ctx, prefix, batch).await
    }

    async fn get_object_last_modified(
        &self,
        ctx: &StorageContext<'_>,
        path: &str,
    ) -> StorageResult<DateTime<Utc>> {
        self.inner()
            .await?
            .get_object_last_modified(ctx, path)
            .await
    }

    async fn get_object_conditional(
        &self,
        ctx: &StorageContext<'_>,
        path: &str,
        previous_version: Option<&VersionInfo>,
    ) -> StorageResult<GetModifiedResult> {
        self.inner()
            .await?
            .get_object_conditional(ctx, path, previous_version)
            .await
    }
}

/// Remove temporary files older than `cutoff` (left behind by writers that were killed or ran
/// out of disk mid-write): the rule of gc, under which a writer younger than the cut-off is safe.
/// Returns how many were removed (or, with `dry_run`, would be).
pub fn remove_temp_files_older_than(
    root: &Path,
    cutoff: std::time::SystemTime,
    dry_run: bool,
) -> std::io::Result<usize> {
    let dir = root.join(TMP_DIR);
    let mut removed = 0;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if old {
            if !dry_run {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// Remove temporary files left behind by writers that were killed mid-write.
///
/// Only safe when no writer is running; the objects they would have become were never referenced.
pub fn remove_stale_temp_files(root: &Path) -> std::io::Result<usize> {
    let dir = root.join(TMP_DIR);
    let mut removed = 0;
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                fs::remove_file(entry?.path())?;
                removed += 1;
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(removed)
}
