//! Contributions: converting inputs to the schema and merging them into stored nodes as one
//! commit (merge-semantics.md §3) — layout, plan, apply, chunk I/O, driver — and reading nodes
//! back. The files and their jobs: ARCHITECTURE.md §2.

mod apply;
pub(crate) mod axis;
mod builder;
pub(crate) mod cells;
pub(crate) mod convert;
pub(crate) mod dense;
pub(crate) mod diff;
mod driver;
mod evolve;
mod interp;
pub(crate) mod keys;
pub(crate) mod layout;
mod plan;
mod read;
pub(crate) mod rows;
#[cfg(test)]
mod tests_streaming;
pub(crate) mod values;

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

pub use builder::UpdateBuilder;
pub use convert::OnInvalid;
pub use diff::{cell_diff, BoxSide, CellBox, CellDiff, Changes, VarDiff};
pub use driver::{
    update, update_files, DroppedRow, Timings, UpdateOptions, UpdateReport, BATCH_ROWS,
};
pub use evolve::apply_schema;
pub use layout::{create_node, init_dataset, repair_metadata, schema_text, stored_schema};
pub use read::{cells_with_values, read_axis, read_node, NodeData, VarData};

/// A coordinate value as it is compared and ordered.
#[derive(Debug, Clone)]
pub enum Key {
    /// Floats.
    F(OrdF64),
    /// Integers, datetime ticks, composed keys.
    I(i64),
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
) -> Result<&'a crate::schema::NodeSchema, UpdateError> {
    schema.node(path).ok_or_else(|| UpdateError::NoSuchNode {
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
pub enum UpdateError {
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
    #[error("{file}:{line}: column '{column}': value '{value}': {reason}")]
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
    /// The branch is protected (spec/031): it changes by merge, revert, reset or tag.
    #[error("branch '{0}' is protected: it changes only by merge, revert, reset or tag; update another branch and merge it, or pass --force-protected")]
    Protected(String),
    /// The repository has no schema (not initialised by zarr-fuse).
    #[error("the repository has no zarr-fuse schema at {0}; create it with `zarr-fuse init <REPO> --schema FILE`")]
    NoSchema(String),
    /// A coordinate would hold more values than an axis can (positions are 32-bit).
    #[error("node '{node}': coordinate '{coord}' would have {values} values, more than {limit} (split the dataset into nodes)")]
    TooManyValues {
        /// Node.
        node: String,
        /// Coordinate.
        coord: String,
        /// Values it would hold.
        values: usize,
        /// The most an axis holds.
        limit: usize,
    },
    /// An input file changed between two attempts of one update.
    #[error("{}: the file changed while the update was being retried; nothing was written, run the update again", .0.display())]
    InputChanged(std::path::PathBuf),
    /// A coordinate or variable the stored schema names has no definition in it.
    #[error(
        "the stored schema has no {0}; the repository is damaged or was written by another tool"
    )]
    NotInSchema(String),
    /// A schema change that evolution does not allow (removing or retyping what is stored).
    #[error("{file}: incompatible schema change refused: {what}")]
    SchemaChangeRefused {
        /// The new schema file.
        file: String,
        /// What changed.
        what: String,
    },
    /// One contribution with more rows than an update takes.
    #[error(
        "{source_name}: more than {limit} rows in one contribution; split it into several updates"
    )]
    TooManyRows {
        /// The input.
        source_name: String,
        /// The most rows a contribution takes.
        limit: u64,
    },
    /// The temporary file of converted rows could not be written or read.
    #[error("temporary file for the converted rows in {}: {source}; free space there or point TMPDIR at a directory with room for about 30 bytes per input row", dir.display())]
    Spill {
        /// The temporary directory.
        dir: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing an array through the Zarr layer.
    #[error("array store: {0}")]
    ArrayStore(String),
    /// A selection (`DIM=VALUE`, `DIM=FROM..TO`) that does not fit the node or variable.
    #[error("{0}")]
    BadSelection(String),
    /// Stored data does not match what the schema expects.
    #[error("{0}")]
    Invalid(String),
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
