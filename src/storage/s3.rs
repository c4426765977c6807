//! S3 configuration from the environment (CESNET Ceph, AWS, moto, any S3-compatible server).
//!
//! `ZF_S3_*` variables win over the usual `AWS_*` ones:
//!
//! | setting | variables | default |
//! |---|---|---|
//! | endpoint | `ZF_S3_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL` | AWS |
//! | region | `ZF_S3_REGION`, `AWS_REGION`, `AWS_DEFAULT_REGION` | `us-east-1` |
//! | keys | `ZF_S3_ACCESS_KEY`/`ZF_S3_SECRET_KEY`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` | the SDK's chain |
//! | path-style | `ZF_S3_FORCE_PATH_STYLE` (`true`/`false`) | true when an endpoint is set |
//! | plain http | `ZF_S3_ALLOW_HTTP` | true when the endpoint starts with `http://` |

use std::sync::Arc;

use icechunk::storage::{S3Credentials, S3Options, S3StaticCredentials};
use icechunk::Storage;

/// S3 connection settings.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    /// Endpoint URL (`None` = AWS).
    pub endpoint_url: Option<String>,
    /// Region name.
    pub region: String,
    /// Static keys (`None` = the SDK's default credential chain).
    pub keys: Option<(String, String)>,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
}

fn var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

fn flag(name: &str, default: bool) -> Result<bool, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            "" => Ok(default),
            _ => Err(format!("{name}='{v}' is not a boolean; use true or false")),
        },
    }
}

impl S3Config {
    /// Read the settings from the environment.
    pub fn from_env() -> Result<S3Config, String> {
        let endpoint_url = var(&[
            "ZF_S3_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
        ]);
        if let Some(url) = &endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "endpoint '{url}' must start with http:// or https:// (set ZF_S3_ENDPOINT_URL)"
                ));
            }
        }
        let region = var(&["ZF_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"])
            .unwrap_or_else(|| "us-east-1".to_string());
        let access = var(&["ZF_S3_ACCESS_KEY", "AWS_ACCESS_KEY_ID"]);
        let secret = var(&["ZF_S3_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"]);
        let keys = match (access, secret) {
            (Some(a), Some(s)) => Some((a, s)),
            (None, None) => None,
            (Some(_), None) => {
                return Err("an access key is set but no secret key (set ZF_S3_SECRET_KEY)".into())
            }
            (None, Some(_)) => {
                return Err("a secret key is set but no access key (set ZF_S3_ACCESS_KEY)".into())
            }
        };
        let has_endpoint = endpoint_url.is_some();
        let is_http = endpoint_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"));
        Ok(S3Config {
            endpoint_url,
            region,
            keys,
            force_path_style: flag("ZF_S3_FORCE_PATH_STYLE", has_endpoint)?,
            allow_http: flag("ZF_S3_ALLOW_HTTP", is_http)?,
        })
    }

    /// The icechunk storage for `bucket`/`prefix` with these settings.
    pub fn storage(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> Result<Arc<dyn Storage + Send + Sync>, icechunk::StorageError> {
        let mut opts = S3Options::default()
            .with_region(self.region.clone())
            .with_allow_http(self.allow_http)
            .with_force_path_style(self.force_path_style);
        if let Some(url) = &self.endpoint_url {
            opts = opts.with_endpoint_url(url.clone());
        }
        let creds = self.keys.as_ref().map(|(a, s)| {
            S3Credentials::Static(S3StaticCredentials {
                access_key_id: a.clone(),
                secret_access_key: s.clone(),
                session_token: None,
                expires_after: None,
            })
        });
        let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
        icechunk::new_s3_storage(
            opts,
            bucket.to_string(),
            prefix,
            creds,
            vec![],
            vec![],
            None,
        )
    }
}
