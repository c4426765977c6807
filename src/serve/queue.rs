//! The durable upload queue on local disk. An upload is acknowledged (202) only after its body
//! and its description are fsync'ed and named: `uploads/<id>.body`, then `uploads/<id>.json`
//! (the description is the commit point). Its state (`done/<id>.status`) is written after the
//! worker committed or refused it; then its description and body move to `done/` (a refused
//! upload stays inspectable), so that `uploads/` holds only what is pending. Ids sort in arrival order. `Idempotency-Key`s are files under
//! `keys/`, created before the upload they name, so a client's retry finds the first upload.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ServeError;

/// What an upload is and who sent it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Upload {
    /// Its id.
    pub id: String,
    /// The endpoint it came through (`None`: `/api/v1/nodes/...`).
    pub endpoint: Option<String>,
    /// The node it goes to.
    pub node: String,
    /// The branch.
    pub branch: String,
    /// Input format (`None`: CSV).
    pub format: Option<String>,
    /// Constant columns.
    pub set: Vec<(String, String)>,
    /// Commit message.
    pub message: Option<String>,
    /// `Name <email>` of the token.
    pub author: String,
    /// The token's name.
    pub token: String,
    /// The client's address.
    pub client: String,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// When it was accepted.
    pub received: DateTime<Utc>,
    /// The commit's source: `http:{endpoint}/{id}`.
    pub source: String,
    /// Body bytes.
    pub bytes: u64,
    /// More provenance meta (a scraper's `scheduled` tick).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub meta: std::collections::BTreeMap<String, String>,
}

/// Where an upload stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UploadState {
    /// `queued`, `committed` or `refused`.
    pub status: String,
    /// The commit made (`None`: queued, refused, or nothing changed).
    pub commit: Option<String>,
    /// Why it was refused: the CLI's one-line message.
    pub error: Option<String>,
    /// The update's report (`update --json` fields), once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// The queue directory.
pub struct Queue {
    dir: PathBuf,
}

/// Write `bytes` to `path` durably: a temporary file beside it, fsync, rename, fsync the folder.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ServeError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|source| ServeError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Whether `id` has the form of an upload id (so that it never names a path outside the queue).
pub fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with('u')
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || c == '-')
}

impl Queue {
    /// Open (create) the queue at `dir`.
    pub fn open(dir: &Path) -> Result<Queue, ServeError> {
        for sub in ["uploads", "tmp", "keys", "done"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|source| ServeError::Io { path: d, source })?;
        }
        Ok(Queue {
            dir: dir.to_path_buf(),
        })
    }

    /// A new upload id: the time (to the microsecond) and 32 random bits, sorting in arrival order.
    pub fn new_id() -> String {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        format!(
            "u{}-{}",
            Utc::now().format("%Y%m%d%H%M%S%6f"),
            crate::release::package::hex(&r)
        )
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join("uploads").join(format!("{id}.{ext}"))
    }

    fn done(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join("done").join(format!("{id}.{ext}"))
    }

    /// The body file of upload `id`.
    pub fn body(&self, id: &str) -> PathBuf {
        self.path(id, "body")
    }

    /// A temporary file for a body being received.
    pub fn temp_body(&self, id: &str) -> PathBuf {
        self.dir.join("tmp").join(format!("{id}.body"))
    }

    /// Reserve idempotency key `key` of token `token` for upload `id`: `Ok(None)` when reserved,
    /// `Ok(Some(earlier))` when an earlier upload holds it.
    pub fn reserve_key(
        &self,
        token: &str,
        key: &str,
        id: &str,
    ) -> Result<Option<String>, ServeError> {
        let name = blake3::hash(format!("{token}\n{key}").as_bytes())
            .to_hex()
            .to_string();
        let path = self.dir.join("keys").join(name);
        let io = |source| ServeError::Io {
            path: path.clone(),
            source,
        };
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(id.as_bytes()).map_err(io)?;
                    f.sync_all().map_err(io)?;
                    sync_dir(&self.dir.join("keys"))?;
                    return Ok(None);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let earlier = std::fs::read_to_string(&path).map_err(io)?;
                    let e = earlier.trim();
                    if self.path(e, "json").exists() || self.done(e, "status").exists() {
                        return Ok(Some(earlier.trim().to_string()));
                    }
                    // the earlier upload never reached the queue (a crash before its 202)
                    std::fs::remove_file(&path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    /// Put a received upload into the queue: its body (already written to
    /// [`Queue::temp_body`] and synced) and description, durably. After this returns the upload
    /// is never lost.
    pub fn commit(&self, up: &Upload) -> Result<(), ServeError> {
        let body = self.temp_body(&up.id);
        let target = self.body(&up.id);
        std::fs::rename(&body, &target).map_err(|source| ServeError::Io {
            path: target.clone(),
            source,
        })?;
        let text = serde_json::to_vec(up).map_err(|e| ServeError::Io {
            path: self.path(&up.id, "json"),
            source: std::io::Error::other(e),
        })?;
        write_durably(&self.path(&up.id, "json"), &text)
    }

    /// The description of upload `id`.
    pub fn upload(&self, id: &str) -> Option<Upload> {
        let text = std::fs::read(self.path(id, "json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Where upload `id` stands (`None`: no such upload).
    pub fn state(&self, id: &str) -> Option<UploadState> {
        if !valid_id(id) {
            return None;
        }
        if let Ok(text) = std::fs::read(self.done(id, "status")) {
            if let Ok(s) = serde_json::from_slice(&text) {
                return Some(s);
            }
        }
        self.path(id, "json").exists().then(|| UploadState {
            status: "queued".into(),
            commit: None,
            error: None,
            report: None,
        })
    }

    /// Record where upload `id` stands (committed or refused), then move it out of the pending.
    pub fn set_state(&self, id: &str, state: &UploadState) -> Result<(), ServeError> {
        let text = serde_json::to_vec(state).map_err(|e| ServeError::Io {
            path: self.done(id, "status"),
            source: std::io::Error::other(e),
        })?;
        write_durably(&self.done(id, "status"), &text)?;
        for ext in ["body", "json"] {
            // a crash between these leaves a description whose state exists: not pending
            let _ = std::fs::rename(self.path(id, ext), self.done(id, ext));
        }
        Ok(())
    }

    /// The uploads not yet committed or refused, in arrival order.
    pub fn pending(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.join("uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_string)
            })
            .filter(|id| !self.done(id, "status").exists())
            .collect();
        ids.sort();
        ids
    }

    /// The `n` most recent finished uploads, newest first.
    pub fn recent(&self, n: usize) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.join("done"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".status").map(str::to_string)
            })
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(n);
        ids
    }

    /// Remove what a crashed receive left in `tmp/`.
    pub fn clean_temp(&self) {
        for e in std::fs::read_dir(self.dir.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
