//! The service's configuration file (YAML, full YAML as schemas): where the tokens and the queue
//! are, which branches are protected, the upload limit, and the passive endpoints.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ServeError;
use crate::ingest::InputFormat;

/// `zarr-fuse serve --config FILE`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The tokens file (written by `zarr-fuse token`), relative paths from the config's folder.
    pub tokens: PathBuf,
    /// The durable upload queue (a local directory).
    pub queue: PathBuf,
    /// Branches only maintainers change, and only by merge, revert, reset or tag.
    pub protected: Vec<String>,
    /// The largest upload accepted, in bytes.
    pub max_upload: u64,
    /// Anonymous reading (log, blame, export, the page) without a token.
    pub public_read: bool,
    /// Passive endpoints: `POST /api/v1/push/{name}`.
    pub endpoints: Vec<Endpoint>,
    /// Uploads per minute a token may make (429 beyond).
    pub rate_per_minute: u32,
    /// Active scrapers: fetch on a schedule, queue the answers as uploads to an endpoint.
    pub scrapers: Vec<super::scrape::Scraper>,
}

/// A passive endpoint: where pushes to it go and how they are read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `POST /api/v1/push/{name}`.
    pub name: String,
    /// The node the uploads go to (`/`-separated; root = `/` or empty).
    #[serde(default)]
    pub node: String,
    /// The branch.
    #[serde(default = "main_branch")]
    pub branch: String,
    /// The input format: csv, parquet, json or yrno (default: by Content-Type, else csv).
    #[serde(default)]
    pub format: Option<String>,
    /// Constant columns added to every row.
    #[serde(default, deserialize_with = "scalar_map")]
    pub set: std::collections::BTreeMap<String, String>,
}

/// A map of scalars as text (`True`, `1`, `x` alike: the values of `--set`).
pub(super) fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let raw = std::collections::BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Bool(b) => Ok((k, if b { "True" } else { "False" }.to_string())),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "set: '{k}' must be a scalar, not {other}"
            ))),
        })
        .collect()
}

fn main_branch() -> String {
    "main".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    tokens: PathBuf,
    queue: PathBuf,
    #[serde(default)]
    protected: Vec<String>,
    #[serde(default = "default_max_upload_mb")]
    max_upload_mb: u64,
    #[serde(default)]
    public_read: bool,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    scrapers: Vec<super::scrape::RawScraper>,
    #[serde(default = "default_rate")]
    rate_per_minute: u32,
}

fn default_max_upload_mb() -> u64 {
    256
}

fn default_rate() -> u32 {
    600
}

impl ServeConfig {
    /// Read and check the config at `path`.
    pub fn load(path: &Path) -> Result<ServeConfig, ServeError> {
        let bad = |why: String| ServeError::Config {
            file: path.to_path_buf(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let json = crate::schema::yaml_to_json(&text).map_err(bad)?;
        let raw: Raw = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        for e in &raw.endpoints {
            super::http::check_name(&e.name)
                .map_err(|why| bad(format!("endpoint '{}': {why}", e.name)))?;
            if let Some(f) = &e.format {
                input_format(f).ok_or_else(|| {
                    bad(format!(
                        "endpoint '{}': format '{f}' is not csv, parquet, json or yrno",
                        e.name
                    ))
                })?;
            }
        }
        let names: Vec<&str> = raw.endpoints.iter().map(|e| e.name.as_str()).collect();
        let mut scrapers = Vec::new();
        for s in raw.scrapers {
            scrapers.push(s.check(dir, &names).map_err(bad)?);
        }
        Ok(ServeConfig {
            tokens: rel(&raw.tokens),
            queue: rel(&raw.queue),
            protected: raw.protected,
            max_upload: raw.max_upload_mb.saturating_mul(1 << 20),
            public_read: raw.public_read,
            endpoints: raw.endpoints,
            rate_per_minute: raw.rate_per_minute.max(1),
            scrapers,
        })
    }

    /// Whether `branch` is protected.
    pub fn is_protected(&self, branch: &str) -> bool {
        self.protected.iter().any(|p| crate::repo::glob(p, branch))
    }

    /// The endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

/// The tokens file named by the config at `path` (for `zarr-fuse token`, which needs no queue).
pub fn tokens_path(path: &Path) -> Result<PathBuf, ServeError> {
    Ok(ServeConfig::load(path)?.tokens)
}

/// An input format by its name.
pub fn input_format(name: &str) -> Option<InputFormat> {
    match name {
        "csv" => Some(InputFormat::Csv),
        "parquet" => Some(InputFormat::Parquet),
        "json" => Some(InputFormat::Json),
        "yrno" => Some(InputFormat::Yrno),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_text_and_quoted_ones_stay_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::write(
            &path,
            "tokens: t.yaml\nqueue: q\nendpoints:\n  - {name: e, set: {station: \"007\", n: 7, fresh: True, v: \"1.0\"}}\n",
        )
        .unwrap();
        let c = ServeConfig::load(&path).unwrap();
        let set = &c.endpoints[0].set;
        assert_eq!(set["station"], "007");
        assert_eq!(set["v"], "1.0");
        assert_eq!(set["n"], "7");
        assert_eq!(set["fresh"], "True");
        assert_eq!(c.tokens, dir.path().join("t.yaml"));
        std::fs::write(
            &path,
            "tokens: t.yaml\nqueue: q\nendpoints:\n  - {name: e, set: {a: [1]}}\n",
        )
        .unwrap();
        let e = ServeConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("serve.yaml") && e.contains("must be a scalar"),
            "{e}"
        );
    }
}
