//! Arguments shared by several commands, the choices of the command line as `ValueEnum`s, and
//! the parsers clap runs on values (durations, `NODE=FILE` inputs, `KEY=VALUE` pairs).

use std::path::PathBuf;

use clap::ValueEnum;

use super::CliError;
use crate::provenance::{parse_meta, resolve_author, Provenance};
use crate::repo::RepoError;

/// Who writes a commit and why: the arguments of every command that commits.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CommitArgs {
    /// Author, `Name <email>` (default: ZF_AUTHOR, then git config).
    #[arg(long)]
    pub(crate) author: Option<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    pub(crate) message: Option<String>,
    /// Free metadata, key=value (repeatable).
    #[arg(long = "meta")]
    pub(crate) meta: Vec<String>,
}

impl CommitArgs {
    /// The provenance of a commit made by `operation`; `default_message` when none was given.
    pub(crate) fn provenance(
        &self,
        operation: &str,
        default_message: Option<String>,
    ) -> Result<Provenance, CliError> {
        let author = resolve_author(self.author.as_deref()).map_err(RepoError::from)?;
        let message = self.message.clone().or(default_message).unwrap_or_default();
        let mut p = Provenance::new(author, operation, message);
        p.meta = parse_meta(&self.meta).map_err(RepoError::from)?;
        Ok(p)
    }
}

/// The branch a command writes to.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BranchArg {
    /// Branch to write to.
    #[arg(long, default_value = "main")]
    pub(crate) branch: String,
}

/// A revision given as the positional REV or as `--at REV` (default: main).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RevArg {
    /// Revision (default: main).
    rev: Option<String>,
    /// Revision, as an option (same as REV).
    #[arg(long = "at", conflicts_with = "rev")]
    at: Option<String>,
}

impl RevArg {
    /// The revision named, else `main`.
    pub(crate) fn get(&self) -> &str {
        self.rev.as_deref().or(self.at.as_deref()).unwrap_or("main")
    }
}

/// What to do with unusable values.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub(crate) enum OnInvalidArg {
    /// Reject the contribution.
    #[default]
    Error,
    /// Make such cells NA.
    Na,
}

impl From<OnInvalidArg> for crate::update::OnInvalid {
    fn from(a: OnInvalidArg) -> Self {
        match a {
            OnInvalidArg::Error => crate::update::OnInvalid::Error,
            OnInvalidArg::Na => crate::update::OnInvalid::Na,
        }
    }
}

/// An input format.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum InputFormatArg {
    /// Comma-separated text.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// JSON records, NDJSON or GeoJSON.
    Json,
    /// A yr.no locationforecast document.
    Yrno,
}

impl From<InputFormatArg> for crate::ingest::InputFormat {
    fn from(a: InputFormatArg) -> Self {
        match a {
            InputFormatArg::Csv => crate::ingest::InputFormat::Csv,
            InputFormatArg::Parquet => crate::ingest::InputFormat::Parquet,
            InputFormatArg::Json => crate::ingest::InputFormat::Json,
            InputFormatArg::Yrno => crate::ingest::InputFormat::Yrno,
        }
    }
}

/// An export format.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum ExportFormatArg {
    /// Comma-separated text.
    Csv,
    /// A JSON array of records.
    Json,
    /// Apache Parquet.
    Parquet,
}

impl From<ExportFormatArg> for crate::audit::Format {
    fn from(a: ExportFormatArg) -> Self {
        match a {
            ExportFormatArg::Csv => crate::audit::Format::Csv,
            ExportFormatArg::Json => crate::audit::Format::Json,
            ExportFormatArg::Parquet => crate::audit::Format::Parquet,
        }
    }
}

/// The period of a squash.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum PeriodArg {
    /// One commit per hour.
    Hour,
    /// One commit per day (UTC).
    Day,
    /// One commit per ISO week.
    Week,
}

impl From<PeriodArg> for crate::repo::Period {
    fn from(a: PeriodArg) -> Self {
        match a {
            PeriodArg::Hour => crate::repo::Period::Hour,
            PeriodArg::Day => crate::repo::Period::Day,
            PeriodArg::Week => crate::repo::Period::Week,
        }
    }
}

/// How a revert decides cells a later commit wrote.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum RevertStrategy {
    /// Keep the later values of conflicting cells and revert the rest.
    Theirs,
}

/// How a merge or cherry-pick decides cells changed differently on both sides.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub(crate) enum MergeStrategy {
    /// Keep the target branch's value.
    Ours,
    /// Take the source's value.
    Theirs,
}

/// Parse `7d`, `12h`, `30m`, `0s`, or anything humantime accepts.
pub(crate) fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 7d, 12h, 0s)"))
}

/// The time `--older-than DURATION` means: now minus the duration.
pub(crate) fn cutoff(
    older_than: std::time::Duration,
) -> Result<chrono::DateTime<chrono::Utc>, CliError> {
    chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        .ok_or_else(|| CliError::Usage(format!("--older-than {older_than:?}: too far back")))
}

/// An update input as given: a file for the node of `--node PATH` (else the root), or
/// `NODE=FILE`.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    /// The argument as written (the default source of the commit).
    pub(crate) raw: String,
    /// The node of a `NODE=FILE` pair.
    pub(crate) node: Option<String>,
    /// The file (or, for `--node PATH`, the path).
    pub(crate) file: PathBuf,
}

/// `NODE=FILE`, unless the whole text names an existing file.
pub(crate) fn input(s: &str) -> Result<Input, String> {
    let (node, file) = match s.split_once('=') {
        Some((n, f)) if !std::path::Path::new(s).exists() => {
            (Some(n.trim_matches('/').to_string()), PathBuf::from(f))
        }
        _ => (None, PathBuf::from(s)),
    };
    Ok(Input {
        raw: s.to_string(),
        node,
        file,
    })
}

/// `K=V` arguments of a repeatable option.
pub(crate) fn pairs(
    args: &[String],
    flag: &str,
    form: &str,
) -> Result<Vec<(String, String)>, CliError> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(CliError::Usage(format!("{flag} '{a}': expected {form}"))),
        })
        .collect()
}

/// The (node, file) pairs of an update: `--node PATH=FILE` pairs, positional `PATH=FILE` pairs,
/// and positional files for the one `--node PATH` (else the root).
pub(crate) fn update_files(
    nodes: &[Input],
    inputs: &[Input],
) -> Result<Vec<(String, PathBuf)>, CliError> {
    let mut files = vec![];
    let mut plain: Vec<String> = vec![];
    for n in nodes {
        match &n.node {
            Some(node) => files.push((node.clone(), n.file.clone())),
            None => plain.push(n.raw.clone()),
        }
    }
    if plain.len() > 1 {
        return Err(CliError::Usage(format!(
            "--node PATH given {} times ({}); give one node for the positional files, or --node PATH=FILE pairs",
            plain.len(),
            plain.join(", ")
        )));
    }
    let default = plain.first().map(|n| n.trim_matches('/')).unwrap_or("");
    for input in inputs {
        let node = input.node.as_deref().unwrap_or(default);
        files.push((node.to_string(), input.file.clone()));
    }
    if files.is_empty() {
        return Err(CliError::Usage(
            "the following required arguments were not provided: <INPUTS> (FILE... or NODE=FILE...), or --node PATH=FILE".into(),
        ));
    }
    Ok(files)
}
