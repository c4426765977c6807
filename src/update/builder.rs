//! The front door of the main job: `repo.update("main").input("/", table).author(a).commit()`
//! merges contributions into a branch as one commit (in the spirit of icechunk's
//! `CommitBuilder`).

use std::path::PathBuf;

use super::{driver, UpdateError, UpdateOptions, UpdateReport};
use crate::ingest::Table;
use crate::provenance::{resolve_author, Provenance};
use crate::repo::{CommitOutcome, Repo};

/// An update of one branch being assembled; [`UpdateBuilder::commit`] merges it as one commit.
#[must_use = "an update does nothing until `commit` is called"]
pub struct UpdateBuilder<'r> {
    repo: &'r Repo,
    branch: String,
    tables: Vec<(String, Table)>,
    files: Vec<(String, PathBuf)>,
    author: Option<String>,
    message: Option<String>,
    source: Option<String>,
    provenance: Option<Provenance>,
    options: UpdateOptions,
    progress: Option<&'r (dyn Fn(u64) + Sync)>,
    force_protected: bool,
}

impl Repo {
    /// Start an update of `branch`: add inputs, say who contributes, then `commit()`.
    pub fn update(&self, branch: &str) -> UpdateBuilder<'_> {
        UpdateBuilder {
            repo: self,
            branch: branch.to_string(),
            tables: vec![],
            files: vec![],
            author: None,
            message: None,
            source: None,
            provenance: None,
            options: UpdateOptions::default(),
            progress: None,
            force_protected: false,
        }
    }

    /// Create the node tree of a schema (YAML text, named `file` in messages) in a new
    /// repository, as its first data commit on `main`.
    pub async fn init_dataset(
        &self,
        schema_text: &str,
        file: &str,
        prov: Provenance,
    ) -> Result<CommitOutcome, UpdateError> {
        super::init_dataset(self, schema_text, file, prov).await
    }
}

impl<'r> UpdateBuilder<'r> {
    /// A table for the node at `node` (`/`-separated path; `""` or `"/"` is the root).
    pub fn input(mut self, node: &str, table: Table) -> Self {
        self.tables
            .push((node.trim_matches('/').to_string(), table));
        self
    }

    /// A CSV, Parquet or JSON file for the node at `node`, read batch by batch while it is
    /// converted (memory holds one batch, never the whole file).
    pub fn file(mut self, node: &str, path: impl Into<PathBuf>) -> Self {
        self.files
            .push((node.trim_matches('/').to_string(), path.into()));
        self
    }

    /// Files as (node path, file) pairs, as [`UpdateBuilder::file`].
    pub fn files(mut self, files: impl IntoIterator<Item = (String, PathBuf)>) -> Self {
        self.files.extend(files);
        self
    }

    /// The author, `Name <email>` (default: `ZF_AUTHOR`, then git config).
    pub fn author(mut self, author: &str) -> Self {
        self.author = Some(author.to_string());
        self
    }

    /// The commit message (default: "Update from" the source).
    pub fn message(mut self, message: &str) -> Self {
        self.message = Some(message.to_string());
        self
    }

    /// The source recorded with the commit (a URI or name; default: the inputs' names).
    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_string());
        self
    }

    /// The whole provenance (author, message, meta…), instead of author/message/source.
    pub fn provenance(mut self, prov: Provenance) -> Self {
        self.provenance = Some(prov);
        self
    }

    /// How values are merged and how much memory the update may use.
    pub fn options(mut self, options: UpdateOptions) -> Self {
        self.options = options;
        self
    }

    /// Plan and report without writing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.options.dry_run = dry_run;
        self
    }

    /// Called with the number of bytes read as files are read.
    pub fn progress(mut self, progress: &'r (dyn Fn(u64) + Sync)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Update the branch even when the repository records it as protected.
    pub fn force_protected(mut self, force: bool) -> Self {
        self.force_protected = force;
        self
    }

    /// Merge the inputs as one commit, planning again on the new tip when another writer
    /// committed first. Nothing is written when it fails.
    pub async fn commit(self) -> Result<UpdateReport, UpdateError> {
        if !self.force_protected && self.repo.is_protected(&self.branch).await? {
            return Err(UpdateError::Protected(self.branch));
        }
        let mut prov = match self.provenance {
            Some(p) => p,
            None => {
                let author =
                    resolve_author(self.author.as_deref()).map_err(crate::repo::RepoError::from)?;
                Provenance::new(author, "update", self.message.unwrap_or_default())
            }
        };
        if prov.source.is_none() {
            let names: Vec<String> = self
                .tables
                .iter()
                .map(|(_, t)| t.source.clone())
                .chain(self.files.iter().map(|(_, f)| f.display().to_string()))
                .collect();
            prov.source = Some(self.source.unwrap_or_else(|| names.join(" ")));
        }
        if prov.message.is_empty() {
            prov.message = format!("Update from {}", prov.source.clone().unwrap_or_default());
        }
        let (repo, branch, opts) = (self.repo, self.branch.as_str(), &self.options);
        match (self.tables.is_empty(), self.files.is_empty()) {
            (false, false) => Err(UpdateError::Invalid(
                "an update takes tables or files, not both".into(),
            )),
            (_, true) => driver::update(repo, branch, &self.tables, prov, opts).await,
            (true, false) => {
                let none = |_: u64| {};
                let progress = self.progress.unwrap_or(&none);
                driver::update_files(repo, branch, &self.files, prov, opts, progress).await
            }
        }
    }
}
