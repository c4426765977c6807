//! zarr-fuse: a versioned, schema-driven storage engine for scientific Zarr datasets.
//!
//! Data flow, one way through:
//!
//! ```text
//!  input table ──▶ schema (parse, validate, convert)      [issue B]
//!              ──▶ merge plan (new axes, touched chunks)   [issue B]
//!              ──▶ repo::Transaction ──(cas: blake3-addressed chunks)──▶ commit + provenance
//!              ──▶ storage (local durable dir | S3 | memory), in icechunk's format
//! ```
//!
//! A tag leaves as a Zenodo package ([`release`]: plain Zarr v3 zip, zenodo/datacite metadata,
//! provenance, checksums with the content digest) and comes back with `import`.
//!
//! Reading goes the other way: a REV ([`repo::Repo::resolve`]) names a commit; `log`, `show`,
//! `diff`, `verify` read it; `revert`, `merge`, `cherry-pick`, `reset` write new history on top.
//!
//! Modules depend one way: `cli` → `release` → `repo` → (`cas`, `provenance`) → `storage`.

pub mod audit;
pub mod cas;
pub mod cli;
pub mod demo;
#[doc(hidden)]
pub mod fuzz;
pub mod ingest;
pub mod json;
pub mod merge;
pub mod provenance;
pub mod release;
pub mod repo;
pub mod schema;
pub mod storage;
pub mod time;
pub mod units;

pub use repo::{Repo, RepoError};
pub use storage::Location;
