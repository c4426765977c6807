//! Tokens: random secrets (256 bits) given once, stored only as BLAKE3 hashes in the tokens file
//! beside the config, each with a name, an e-mail, roles, an expiry and a revoked flag. A token
//! is found by its hash (BLAKE3's `Hash` compares in constant time).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ServeError;
use crate::repo::glob;

/// What a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Read everything.
    Reader,
    /// Push contributions to these branches (names or globs).
    Contributor(Vec<String>),
    /// Push, merge, revert, reset and tag on these branches.
    Maintainer(Vec<String>),
    /// Everything.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        let branches = |b: &str| -> Result<Vec<String>, String> {
            let v: Vec<String> = b
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            if v.is_empty() {
                return Err(format!(
                    "role '{s}': name the branches (e.g. contributor:main,kalman/*)"
                ));
            }
            Ok(v)
        };
        match s.split_once(':') {
            None if s == "reader" => Ok(Role::Reader),
            None if s == "admin" => Ok(Role::Admin),
            Some(("contributor", b)) => Ok(Role::Contributor(branches(b)?)),
            Some(("maintainer", b)) => Ok(Role::Maintainer(branches(b)?)),
            _ => Err(format!(
                "role '{s}' is not reader, contributor:BRANCHES, maintainer:BRANCHES or admin"
            )),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Reader => f.write_str("reader"),
            Role::Admin => f.write_str("admin"),
            Role::Contributor(b) => write!(f, "contributor:{}", b.join(",")),
            Role::Maintainer(b) => write!(f, "maintainer:{}", b.join(",")),
        }
    }
}

/// One token as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Who holds it (the author name of its commits).
    pub name: String,
    /// Their e-mail.
    pub email: String,
    /// Roles, as written (`reader`, `contributor:main`, …).
    pub roles: Vec<String>,
    /// BLAKE3 of the token, hex.
    pub blake3: String,
    /// When it was made.
    pub created: DateTime<Utc>,
    /// When it stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    /// Revoked tokens stay listed.
    #[serde(default)]
    pub revoked: bool,
}

impl TokenEntry {
    /// The roles, parsed.
    pub fn parsed_roles(&self) -> Vec<Role> {
        self.roles.iter().filter_map(|r| r.parse().ok()).collect()
    }

    /// `Name <email>`: the author of its commits.
    pub fn author(&self) -> String {
        format!("{} <{}>", self.name, self.email)
    }

    /// Whether it may read.
    pub fn can_read(&self) -> bool {
        !self.parsed_roles().is_empty()
    }

    /// Whether it may push contributions to `branch`.
    pub fn can_push(&self, branch: &str) -> bool {
        self.parsed_roles().iter().any(|r| match r {
            Role::Admin => true,
            Role::Contributor(b) | Role::Maintainer(b) => b.iter().any(|p| glob(p, branch)),
            Role::Reader => false,
        })
    }

    /// Whether it may merge, revert, reset and tag on `branch`.
    pub fn can_maintain(&self, branch: &str) -> bool {
        self.parsed_roles().iter().any(|r| match r {
            Role::Admin => true,
            Role::Maintainer(b) => b.iter().any(|p| glob(p, branch)),
            _ => false,
        })
    }
}

/// The tokens file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tokens {
    /// Every token made, revoked ones included.
    pub tokens: Vec<TokenEntry>,
}

/// Why a token is refused (401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No token was given.
    Absent,
    /// No token has that hash.
    Unknown,
    /// Past its expiry.
    Expired,
    /// Revoked.
    Revoked,
}

impl Tokens {
    /// Read the tokens file (absent: no tokens).
    pub fn load(path: &Path) -> Result<Tokens, ServeError> {
        let bad = |why: String| ServeError::Config {
            file: path.to_path_buf(),
            why,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let json = crate::schema::yaml_to_json(&text).map_err(bad)?;
                if json.is_null() {
                    return Ok(Tokens::default());
                }
                serde_json::from_value(json).map_err(|e| bad(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tokens::default()),
            Err(e) => Err(bad(e.to_string())),
        }
    }

    /// Write the tokens file (JSON, which is YAML), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), ServeError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ServeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        super::queue::write_durably(path, text.as_bytes())
    }

    /// Add a token for `name`; gives the secret (shown once).
    pub fn add(
        &mut self,
        name: &str,
        email: &str,
        roles: &[String],
        expires: Option<DateTime<Utc>>,
    ) -> Result<String, ServeError> {
        let usage = |why: String| ServeError::Usage(why);
        if name.is_empty() || name.contains(['<', '>', '\n']) {
            return Err(usage(format!("token name '{name}': give a plain name")));
        }
        if !email.contains('@') || email.contains(['<', '>', ' ', '\n']) {
            return Err(usage(format!("--email '{email}' is not an e-mail address")));
        }
        if self.tokens.iter().any(|t| t.name == name && !t.revoked) {
            return Err(usage(format!(
                "a token named '{name}' exists; revoke it first"
            )));
        }
        if roles.is_empty() {
            return Err(usage("give at least one --role".into()));
        }
        for r in roles {
            r.parse::<Role>().map_err(usage)?;
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| ServeError::Usage(format!("no randomness: {e}")))?;
        let token = format!("zf_{}", crate::release::package::hex(&secret));
        self.tokens.push(TokenEntry {
            name: name.into(),
            email: email.into(),
            roles: roles.to_vec(),
            blake3: blake3::hash(token.as_bytes()).to_hex().to_string(),
            created: Utc::now(),
            expires,
            revoked: false,
        });
        Ok(token)
    }

    /// Revoke the live token named `name`.
    pub fn revoke(&mut self, name: &str) -> Result<(), ServeError> {
        match self
            .tokens
            .iter_mut()
            .find(|t| t.name == name && !t.revoked)
        {
            Some(t) => {
                t.revoked = true;
                Ok(())
            }
            None => Err(ServeError::Usage(format!("no live token named '{name}'"))),
        }
    }

    /// The entry of `token` (its hash compared in constant time), or why it is refused.
    pub fn check(&self, token: Option<&str>, now: DateTime<Utc>) -> Result<&TokenEntry, Refused> {
        let token = token.ok_or(Refused::Absent)?;
        let h = blake3::hash(token.as_bytes());
        let found = self
            .tokens
            .iter()
            .find(|t| blake3::Hash::from_hex(&t.blake3).is_ok_and(|s| s == h))
            .ok_or(Refused::Unknown)?;
        if found.revoked {
            return Err(Refused::Revoked);
        }
        if found.expires.is_some_and(|e| e <= now) {
            return Err(Refused::Expired);
        }
        Ok(found)
    }
}

/// The tokens file at `path`, reloaded when it changes (tokens are added and revoked while the
/// service runs).
pub struct TokenFile {
    path: PathBuf,
    cached: std::sync::Mutex<(Option<std::time::SystemTime>, std::sync::Arc<Tokens>)>,
}

impl TokenFile {
    /// Watch the tokens file at `path`.
    pub fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            cached: std::sync::Mutex::new((None, std::sync::Arc::new(Tokens::default()))),
        }
    }

    /// The tokens as the file holds them now.
    pub fn current(&self) -> Result<std::sync::Arc<Tokens>, ServeError> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.0.is_none() || c.0 != modified {
            *c = (modified, std::sync::Arc::new(Tokens::load(&self.path)?));
        }
        Ok(std::sync::Arc::clone(&c.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_roles() {
        assert!(glob("main", "main") && !glob("main", "mainx"));
        assert!(glob("kalman/*", "kalman/a") && glob("kalman/*", "kalman/a/b"));
        assert!(!glob("kalman/*", "kalmanx") && glob("*", "x") && glob("a*c", "abbc"));
        let t = TokenEntry {
            name: "n".into(),
            email: "n@x".into(),
            roles: vec!["contributor:main,kalman/*".into(), "reader".into()],
            blake3: String::new(),
            created: Utc::now(),
            expires: None,
            revoked: false,
        };
        assert!(t.can_push("main") && t.can_push("kalman/k1") && !t.can_push("release"));
        assert!(!t.can_maintain("main"));
        assert!("contributor:".parse::<Role>().is_err() && "boss".parse::<Role>().is_err());
    }

    #[test]
    fn tokens_are_found_by_hash_and_refused_when_expired_or_revoked() {
        let mut ts = Tokens::default();
        let a = ts
            .add("ada", "ada@x.org", &["reader".into()], None)
            .unwrap();
        let b = ts
            .add(
                "bob",
                "bob@x.org",
                &["reader".into()],
                Some(Utc::now() - chrono::Duration::seconds(1)),
            )
            .unwrap();
        assert!(a.len() >= 3 + 64 && a != b);
        let now = Utc::now();
        assert_eq!(ts.check(Some(&a), now).map(|t| t.name.as_str()), Ok("ada"));
        assert_eq!(ts.check(Some(&b), now).err(), Some(Refused::Expired));
        assert_eq!(ts.check(Some("zf_nope"), now).err(), Some(Refused::Unknown));
        assert_eq!(ts.check(None, now).err(), Some(Refused::Absent));
        ts.revoke("ada").unwrap();
        assert_eq!(ts.check(Some(&a), now).err(), Some(Refused::Revoked));
        assert!(
            !serde_json::to_string(&ts).unwrap().contains(&a),
            "the secret is not stored"
        );
    }
}
