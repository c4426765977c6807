//! Who contributed what: the provenance record each commit carries in its icechunk metadata.
//!
//! The keys (spec/003-provenance.md) are flat top-level keys of the snapshot properties, so that
//! icechunk-python's `repo.ancestry()` shows them as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// Version of this tool, recorded in every commit.
pub const TOOL: &str = concat!("zarr-fuse ", env!("CARGO_PKG_VERSION"));

/// Metadata keys written into every commit (the names other tools script against).
pub mod keys {
    /// `Name <email>` of the contributor.
    pub const AUTHOR: &str = "author";
    /// Where the input came from (URI or file name).
    pub const SOURCE: &str = "source";
    /// blake3 hex of the input bytes.
    pub const INPUT_BLAKE3: &str = "input_blake3";
    /// blake3 hex of the normalised schema.
    pub const SCHEMA_BLAKE3: &str = "schema_blake3";
    /// Tool name and version.
    pub const TOOL: &str = "tool";
    /// UTC time of the operation (RFC 3339).
    pub const TIME: &str = "time";
    /// Counts (rows read, chunks written, ...).
    pub const COUNTS: &str = "counts";
    /// Free `key=value` pairs given by the user.
    pub const META: &str = "meta";
    /// What kind of operation made the commit (init, update, revert, merge, cherry-pick, ...).
    pub const OPERATION: &str = "operation";
    /// Content digest of the snapshot (blake3 Merkle root, hex).
    pub const CONTENT_DIGEST: &str = "content_digest";
    /// Key of the side record listing the chunks this commit wrote with their full digests.
    pub const RECORD: &str = "record";
    /// For reverts: the reverted commit.
    pub const REVERTS: &str = "reverts";
    /// For merges: the merged source tip.
    pub const MERGED_FROM: &str = "merged_from";
    /// For merges: the common ancestor used.
    pub const MERGE_BASE: &str = "merge_base";
    /// For cherry-picks: the picked commit.
    pub const CHERRY_PICKED: &str = "cherry_picked";
    /// Per node, per coordinate: `[least, greatest]` value an update wrote.
    pub const EXTENT: &str = "extent";
    /// Skip pointer over earlier commits for blame: depth, ancestor, union of extents (spec/018).
    pub const SKIP: &str = "skip";
}

/// Errors resolving who the author is.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// No author could be determined.
    #[error("no author: pass --author 'Name <email>', set ZF_AUTHOR, or set git's user.name and user.email")]
    NoAuthor,
    /// The author string is not `Name <email>`.
    #[error("author '{0}' is not of the form 'Name <email>' (e.g. --author 'Ada Lovelace <ada@example.org>')")]
    BadAuthor(String),
    /// A `--meta` pair is not `key=value`.
    #[error("metadata '{0}' is not key=value")]
    BadMeta(String),
}

/// Check that `s` reads `Name <email>`.
pub fn validate_author(s: &str) -> Result<String, ProvenanceError> {
    let s = s.trim();
    let ok = (|| {
        let (name, rest) = s.split_once('<')?;
        let email = rest.strip_suffix('>')?;
        let (user, host) = email.split_once('@')?;
        let clean =
            |x: &str| !x.is_empty() && !x.contains(char::is_whitespace) && !x.contains(['<', '>']);
        (!name.trim().is_empty() && clean(user) && clean(host)).then_some(())
    })();
    ok.map(|_| s.to_string())
        .ok_or_else(|| ProvenanceError::BadAuthor(s.to_string()))
}

/// The author from `--author`, else `ZF_AUTHOR`, else git's `user.name`/`user.email`.
pub fn resolve_author(explicit: Option<&str>) -> Result<String, ProvenanceError> {
    if let Some(a) = explicit {
        return validate_author(a);
    }
    if let Ok(a) = std::env::var("ZF_AUTHOR") {
        if !a.trim().is_empty() {
            return validate_author(&a);
        }
    }
    let git = |key: &str| {
        std::process::Command::new("git")
            .args(["config", "--get", key])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    match (git("user.name"), git("user.email")) {
        (Some(n), Some(e)) => validate_author(&format!("{n} <{e}>")),
        _ => Err(ProvenanceError::NoAuthor),
    }
}

/// Parse `key=value` pairs.
pub fn parse_meta(pairs: &[String]) -> Result<BTreeMap<String, String>, ProvenanceError> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(ProvenanceError::BadMeta(p.clone())),
        })
        .collect()
}

/// The provenance of one commit.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// `Name <email>`.
    pub author: String,
    /// Commit message.
    pub message: String,
    /// Operation kind.
    pub operation: String,
    /// Input source (URI or file name).
    pub source: Option<String>,
    /// blake3 hex of the input bytes.
    pub input_blake3: Option<String>,
    /// blake3 hex of the normalised schema.
    pub schema_blake3: Option<String>,
    /// Time of the operation.
    pub time: Option<DateTime<Utc>>,
    /// Counts.
    pub counts: BTreeMap<String, u64>,
    /// Free metadata.
    pub meta: BTreeMap<String, String>,
    /// Operation-specific references (reverts, merged_from, ...).
    pub refs: BTreeMap<String, String>,
    /// Per node, per coordinate: the least and greatest value an update wrote (spec/011).
    pub extent: Option<Value>,
}

impl Provenance {
    /// A provenance record for `operation` by `author` with `message`.
    pub fn new(author: impl Into<String>, operation: &str, message: impl Into<String>) -> Self {
        Provenance {
            author: author.into(),
            operation: operation.to_string(),
            message: message.into(),
            time: Some(Utc::now()),
            ..Default::default()
        }
    }

    /// The snapshot properties to commit, given the content digest and side-record key.
    pub fn to_properties(
        &self,
        content_digest: &str,
        record: Option<&str>,
    ) -> BTreeMap<String, Value> {
        let mut p = BTreeMap::new();
        let time = self.time.unwrap_or_else(Utc::now);
        p.insert(keys::AUTHOR.into(), json!(self.author));
        p.insert(keys::OPERATION.into(), json!(self.operation));
        p.insert(keys::TOOL.into(), json!(TOOL));
        p.insert(
            keys::TIME.into(),
            json!(time.to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        p.insert(
            keys::SOURCE.into(),
            self.source.as_ref().map_or(Value::Null, |s| json!(s)),
        );
        p.insert(
            keys::INPUT_BLAKE3.into(),
            self.input_blake3.as_ref().map_or(Value::Null, |s| json!(s)),
        );
        p.insert(
            keys::SCHEMA_BLAKE3.into(),
            self.schema_blake3
                .as_ref()
                .map_or(Value::Null, |s| json!(s)),
        );
        p.insert(keys::COUNTS.into(), json!(self.counts));
        p.insert(keys::META.into(), json!(self.meta));
        p.insert(keys::CONTENT_DIGEST.into(), json!(content_digest));
        if let Some(r) = record {
            p.insert(keys::RECORD.into(), json!(r));
        }
        for (k, v) in &self.refs {
            p.insert(k.clone(), json!(v));
        }
        if let Some(e) = &self.extent {
            p.insert(keys::EXTENT.into(), e.clone());
        }
        p
    }
}

/// Read a string property.
pub fn prop_str(props: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    props.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

/// The `meta` map of a commit.
pub fn prop_meta(props: &BTreeMap<String, Value>) -> Map<String, Value> {
    props
        .get(keys::META)
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_format() {
        assert!(validate_author("Ada Lovelace <ada@example.org>").is_ok());
        assert!(validate_author("ada@example.org").is_err());
        assert!(validate_author("<ada@example.org>").is_err());
        assert!(validate_author("Ada <ada>").is_err());
        assert!(validate_author("Ada <a b@x.y>").is_err());
    }

    #[test]
    fn meta_pairs() {
        let m = parse_meta(&["a=1".into(), "b=x=y".into()]).unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert!(parse_meta(&["novalue".into()]).is_err());
        assert!(parse_meta(&["=v".into()]).is_err());
    }
}
