//! Where a repository lives: a local directory (the embedded default), S3, or memory.
//!
//! `<REPO>` on the command line is parsed into a [`Location`]; [`Location::open_storage`] turns
//! it into an icechunk [`Storage`].

pub mod local;
pub mod s3;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use icechunk::Storage;

pub use local::DurableLocalStorage;
pub use s3::S3Config;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The repository location string could not be understood.
    #[error("invalid repository location '{location}': {reason}")]
    BadLocation {
        /// What the user gave.
        location: String,
        /// Why it is refused.
        reason: String,
    },
    /// S3 configuration is incomplete or wrong.
    #[error("S3 configuration for '{location}': {reason}")]
    S3Config {
        /// The repository location.
        location: String,
        /// What is missing or wrong and how to fix it.
        reason: String,
    },
    /// The backend failed to initialise.
    #[error("cannot open storage '{location}': {source}")]
    Backend {
        /// The repository location.
        location: String,
        /// The backend's error.
        #[source]
        source: Box<icechunk::StorageError>,
    },
}

/// A repository location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local file system.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
    },
    /// `memory://NAME`: an in-process repository, shared by every open of the same name.
    Memory(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Memory(name) => write!(f, "memory://{name}"),
        }
    }
}

impl Location {
    /// Parse `PATH`, `file://PATH`, `s3://bucket[/prefix]` or `memory://NAME`.
    pub fn parse(s: &str) -> Result<Location, StorageError> {
        let bad = |reason: &str| StorageError::BadLocation {
            location: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty; give a directory path or s3://bucket/prefix"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3 {
                return Err(bad("the bucket name must have at least 3 characters"));
            }
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some(name) = s.strip_prefix("memory://") {
            return Ok(Location::Memory(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(&format!(
                "unsupported scheme '{scheme}://'; use a path, file://, s3:// or memory://"
            )));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// Storage settings for this location: bounded retries and timeouts on S3, so that an
    /// unreachable endpoint fails within seconds instead of retrying for minutes.
    pub fn storage_settings(&self) -> Option<icechunk::storage::Settings> {
        use icechunk::storage::{RetriesSettings, Settings, TimeoutSettings};
        match self {
            Location::S3 { .. } => Some(Settings {
                retries: Some(RetriesSettings {
                    max_tries: std::num::NonZeroU16::new(4),
                    initial_backoff_ms: Some(100),
                    max_backoff_ms: Some(1_000),
                }),
                timeouts: Some(TimeoutSettings {
                    connect_timeout_ms: Some(3_000),
                    read_timeout_ms: Some(30_000),
                    operation_timeout_ms: None,
                    operation_attempt_timeout_ms: None,
                }),
                ..Settings::default()
            }),
            _ => None,
        }
    }

    /// Open the icechunk storage for this location (does not check that a repository exists).
    pub async fn open_storage(&self) -> Result<Arc<dyn Storage + Send + Sync>, StorageError> {
        match self {
            Location::Local(path) => Ok(Arc::new(DurableLocalStorage::new(path.clone()))),
            Location::Memory(name) => {
                memory_storage(name)
                    .await
                    .map_err(|e| StorageError::Backend {
                        location: self.to_string(),
                        source: Box::new(e),
                    })
            }
            Location::S3 { bucket, prefix } => {
                let cfg = S3Config::from_env().map_err(|reason| StorageError::S3Config {
                    location: self.to_string(),
                    reason,
                })?;
                cfg.storage(bucket, prefix)
                    .map_err(|e| StorageError::Backend {
                        location: self.to_string(),
                        source: Box::new(e),
                    })
            }
        }
    }
}

type MemoryRegistry = Mutex<HashMap<String, Arc<dyn Storage + Send + Sync>>>;

async fn memory_storage(
    name: &str,
) -> Result<Arc<dyn Storage + Send + Sync>, icechunk::StorageError> {
    static REGISTRY: OnceLock<MemoryRegistry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(s) = registry.lock().ok().and_then(|r| r.get(name).cloned()) {
        return Ok(s);
    }
    let storage = icechunk::new_in_memory_storage().await?;
    if let Ok(mut r) = registry.lock() {
        return Ok(Arc::clone(r.entry(name.to_string()).or_insert(storage)));
    }
    Ok(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("./r").unwrap(),
            Location::Local("./r".into())
        );
        assert_eq!(
            Location::parse("s3://bucket/a/b/").unwrap(),
            Location::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("memory://x").unwrap(),
            Location::Memory("x".into())
        );
        assert!(Location::parse("gs://x/y").is_err());
        assert!(Location::parse("s3://ab").is_err());
        assert!(Location::parse("").is_err());
    }
}
