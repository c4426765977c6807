//! zarr-fuse: a versioned, schema-driven storage engine for scientific Zarr datasets.
//!
//! A YAML schema says what a dataset is; each contribution (CSV, Parquet, JSON) is converted to
//! it and merged as **one commit with provenance** into a repository in icechunk's format (local
//! directory, S3, memory), which xarray and icechunk-python open as they are. On that history
//! you audit who wrote which cell ([`Repo::blame`], [`Repo::log`]), revert a contribution or
//! merge a branch **by cells** ([`Repo::revert`], [`Repo::merge`]), and release a tag to Zenodo
//! ([`release`]).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use zarr_fuse::{HistoryOptions, Location, Provenance, Repo, Scalar, Table, Where};
//!
//! let repo = Repo::init(&Location::parse("memory://doc")?).await?;
//! let schema = "VARS:\n  temp: {coords: [time, site], unit: K}\n\
//!               COORDS:\n  time: {unit: {tick: h, tz: null}}\n  site: {type: 'str[8]', sorted: false}\n";
//! repo.init_dataset(schema, "weather.yaml", Provenance::new("Ada <ada@example.org>", "init", "schema"))
//!     .await?;
//!
//! // the main job: a contribution merged as one commit
//! let csv = "time,site,temp\n2026-01-01T00:00:00,A,271.5\n2026-01-01T01:00:00,A,272.0\n";
//! let report = repo
//!     .update("main")
//!     .input("/", Table::from_csv_bytes(csv.as_bytes(), "fetch-1.csv")?)
//!     .author("Bob <bob@example.org>")
//!     .commit()
//!     .await?;
//! let commit = report.commit.expect("a new commit");
//!
//! // who wrote the cell at 01:00 of site A
//! let cell = [Where::parse("time=2026-01-01T01:00:00")?, Where::parse("site=A")?];
//! let blame = repo.blame("/", "temp", "main", &cell).await?;
//! assert_eq!(blame[0].author.as_deref(), Some("Bob <bob@example.org>"));
//!
//! // revert the contribution by cells: the cell is NA again
//! let prov = Provenance::new("Ada <ada@example.org>", "revert", "bad fetch");
//! repo.revert(&commit, "main", &HistoryOptions::default(), prov).await?;
//! let tip = repo.resolve("main").await?.id;
//! let node = zarr_fuse::update::read_node(&repo, &tip, "/").await?;
//! let (_, _, _, temp) = &node.vars[0];
//! assert!(temp.iter().all(|v| *v == Scalar::Na));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! How the code is laid out and why: `ARCHITECTURE.md` at the repository's root. Modules depend
//! one way: `cli` → `release` → (`history`, `audit`) → `update` → (`schema`, `ingest`) → `repo` →
//! (`cas`, `provenance`) → `storage`.
#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod cas;
#[doc(hidden)]
pub mod cli;
pub mod demo;
#[doc(hidden)]
pub mod fuzz;
pub mod history;
pub mod ingest;
pub(crate) mod json;
pub mod provenance;
pub mod release;
pub mod repo;
pub mod schema;
pub mod serve;
pub mod storage;
pub mod time;
pub mod units;
pub mod update;

pub use audit::{BlameRecord, Where};
pub use history::{HistoryError, HistoryOptions, HistoryReport, Resolve};
pub use ingest::Table;
pub use provenance::Provenance;
pub use repo::{CommitId, CommitInfo, CommitOutcome, DiffReport, Repo, RepoError};
pub use storage::Location;
pub use update::{
    CellDiff, Changes, Scalar, UpdateBuilder, UpdateError, UpdateOptions, UpdateReport,
};
