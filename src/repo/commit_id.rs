//! A commit's id: icechunk's snapshot id, with its 20-character base32 text.

use std::fmt;

use icechunk::format::SnapshotId;
use serde::{Serialize, Serializer};

/// The id of a commit (an icechunk snapshot id). Reads as its text (`Deref<Target = str>`),
/// compares and orders by it, and gives the engine's id with [`CommitId::snapshot`].
#[derive(Clone, Debug)]
pub struct CommitId {
    id: SnapshotId,
    text: String,
}

impl CommitId {
    /// The engine's snapshot id.
    pub fn snapshot(&self) -> &SnapshotId {
        &self.id
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<SnapshotId> for CommitId {
    fn from(id: SnapshotId) -> Self {
        CommitId {
            text: id.to_string(),
            id,
        }
    }
}

impl From<&SnapshotId> for CommitId {
    fn from(id: &SnapshotId) -> Self {
        CommitId::from(id.clone())
    }
}

impl std::str::FromStr for CommitId {
    type Err = super::RepoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SnapshotId::try_from(s)
            .map(CommitId::from)
            .map_err(|_| super::RepoError::Invalid(format!("'{s}' is not a commit id")))
    }
}

impl std::ops::Deref for CommitId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::borrow::Borrow<str> for CommitId {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for CommitId {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CommitId {}

impl std::hash::Hash for CommitId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.text.hash(h)
    }
}

impl PartialOrd for CommitId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CommitId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl PartialEq<str> for CommitId {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for CommitId {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for CommitId {
    fn eq(&self, other: &String) -> bool {
        self.text == *other
    }
}

impl PartialEq<CommitId> for String {
    fn eq(&self, other: &CommitId) -> bool {
        *self == other.text
    }
}

impl PartialEq<CommitId> for &str {
    fn eq(&self, other: &CommitId) -> bool {
        *self == other.text
    }
}

impl Serialize for CommitId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}
