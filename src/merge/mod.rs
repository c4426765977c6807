//! Merging contributions into stored nodes (merge-semantics.md §3): plan the new axes, then
//! read-modify-write only the chunks whose content changes, as one transaction.

pub mod axis;
pub mod cells;
pub mod convert;
mod diff;
pub mod history;
mod interp;
pub mod keys;
mod node;
pub mod rows;

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

pub use convert::OnInvalid;
pub use diff::{cell_diff, BoxSide, CellBox, CellDiff, VarDiff};
pub use keys::{KeyRef, Keys};
pub use node::{
    apply_schema, cells_with_values, create_node, init_dataset, read_axis, read_node,
    repair_metadata, stored_schema, update, update_files, NodeData, Timings, UpdateOptions,
    UpdateReport, VarData, BATCH_ROWS,
};

/// A coordinate value as it is compared and ordered.
#[derive(Debug, Clone)]
pub enum Key {
    /// Integers, datetime ticks, composed keys.
    I(i64),
    /// Floats.
    F(OrdF64),
    /// Strings.
    S(String),
}

/// An f64 with a total order.
#[derive(Debug, Clone, Copy)]
pub struct OrdF64(pub f64);

impl Key {
    /// A float key.
    pub fn f(x: f64) -> Key {
        Key::F(OrdF64(if x == 0.0 { 0.0 } else { x }))
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        match (self, o) {
            (Key::I(a), Key::I(b)) => a.cmp(b),
            (Key::F(a), Key::F(b)) => a.0.total_cmp(&b.0),
            (Key::S(a), Key::S(b)) => a.cmp(b),
            (Key::I(_), _) => Ordering::Less,
            (Key::F(_), Key::I(_)) => Ordering::Greater,
            (Key::F(_), Key::S(_)) => Ordering::Less,
            (Key::S(_), _) => Ordering::Greater,
        }
    }
}
impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // as its borrowed form hashes: a `Keys` list is searched by `KeyRef`
        self.as_ref().hash(h)
    }
}

/// A cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Float.
    F(f64),
    /// Integer or ticks.
    I(i64),
    /// String.
    S(String),
    /// Not available.
    Na,
}

impl Scalar {
    /// The coordinate key of this value (`None` for NA).
    pub fn key(&self) -> Option<Key> {
        match self {
            Scalar::F(f) => Some(Key::f(*f)),
            Scalar::I(i) => Some(Key::I(*i)),
            Scalar::S(s) => Some(Key::S(s.clone())),
            Scalar::Na => None,
        }
    }
}

/// The node `path` of `schema`, or an error listing the nodes there are.
pub fn require_node<'a>(
    schema: &'a crate::schema::Schema,
    path: &str,
) -> Result<&'a crate::schema::NodeSchema, MergeError> {
    schema.node(path).ok_or_else(|| MergeError::NoSuchNode {
        node: path.to_string(),
        nodes: schema
            .root
            .walk()
            .iter()
            .map(|n| {
                if n.path.is_empty() {
                    "/".into()
                } else {
                    n.path.clone()
                }
            })
            .collect(),
    })
}

/// Errors converting or merging a contribution. Nothing is written when one occurs.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A column the schema reads is not in the input.
    #[error("{file}: column '{column}' (variable '{variable}' of node '{node}') is missing; the input has columns: {}", available.join(", "))]
    MissingColumn {
        /// Input file.
        file: String,
        /// Column expected.
        column: String,
        /// Variable reading it.
        variable: String,
        /// Node.
        node: String,
        /// Columns present.
        available: Vec<String>,
    },
    /// A value that cannot be used; the whole contribution is rejected.
    #[error("{file}:{line}: column '{column}': value '{value}': {reason} (nothing written; --on-invalid na makes such cells NA)")]
    BadValue {
        /// Input file.
        file: String,
        /// Input line (header = 1).
        line: u64,
        /// Column.
        column: String,
        /// The value as written.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A variable that does not use a coordinate varies along it within the contribution.
    #[error("{file}: variable '{variable}' {detail}")]
    VariesAlongUnusedDim {
        /// Input file.
        file: String,
        /// The variable.
        variable: String,
        /// Which dimensions, lines and values.
        detail: String,
    },
    /// A node path that the schema does not have.
    #[error("node '{node}' is not in the schema; nodes: {}", nodes.join(", "))]
    NoSuchNode {
        /// Given path.
        node: String,
        /// Existing nodes.
        nodes: Vec<String>,
    },
    /// The repository has no schema (not initialised by zarr-fuse).
    #[error("the repository has no zarr-fuse schema at {0}; create it with `zarr-fuse init <REPO> --schema FILE`")]
    NoSchema(String),
    /// Stored data does not match what the schema expects.
    #[error("{0}")]
    Invalid(String),
    /// A revert, merge or cherry-pick found conflicting cells (the report names them).
    #[error("{}", .0.refusal())]
    CellConflicts(Box<history::HistoryReport>),
    /// Reading the input.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// Schema problem.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    /// Repository problem.
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
}
