//! Commands that read: `blame`, `export`, `log`, `show`, `diff`, `verify`.

use std::path::PathBuf;

use super::args::{ExportFormatArg, RevArg};
use super::ui::{counter, finish, open, progress_bar};
use super::{output, CliError};
use crate::audit::Where;

/// A node and a selection of its cells by coordinate values.
#[derive(clap::Args, Debug)]
pub(crate) struct SelectArgs {
    /// Node path (`/` = root).
    #[arg(long, default_value = "/")]
    node: String,
    /// Revision (default: main).
    #[arg(long)]
    at: Option<String>,
    /// DIM=VALUE or DIM=FROM..TO (repeatable).
    #[arg(long = "where")]
    wheres: Vec<String>,
}

impl SelectArgs {
    fn wheres(&self) -> Result<Vec<Where>, CliError> {
        Ok(self
            .wheres
            .iter()
            .map(|w| Where::parse(w))
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn at(&self) -> &str {
        self.at.as_deref().unwrap_or("main")
    }
}

/// `blame`: which commit last wrote each cell of a selection.
#[derive(clap::Args, Debug)]
pub(crate) struct BlameArgs {
    /// Repository location.
    repo: String,
    /// Variable.
    #[arg(long)]
    var: String,
    #[command(flatten)]
    select: SelectArgs,
}

/// `blame`.
pub(crate) async fn blame(a: BlameArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let s = &a.select;
    let recs = r.blame(&s.node, &a.var, s.at(), &s.wheres()?).await?;
    output::blame(&recs, json);
    Ok(())
}

/// `export`: a node as a tidy long table.
#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// Repository location.
    repo: String,
    #[command(flatten)]
    select: SelectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
    format: ExportFormatArg,
    /// Output file (default: standard output).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

/// `export`.
pub(crate) async fn export(a: ExportArgs) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let s = &a.select;
    let mut buf: Vec<u8> = Vec::new();
    let rows =
        crate::audit::export(&r, &s.node, s.at(), &s.wheres()?, a.format.into(), &mut buf).await?;
    let Some(path) = a.output else {
        use std::io::Write;
        return std::io::stdout()
            .write_all(&buf)
            .map_err(|source| CliError::Write {
                path: "<stdout>".into(),
                what: format!("the {rows}-row export"),
                source,
            });
    };
    // write beside, then rename: a failed export leaves no partial file
    let tmp = path.with_extension("zf-partial");
    std::fs::write(&tmp, &buf)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            CliError::Write {
                path: path.clone(),
                what: format!("the {rows}-row export"),
                source,
            }
        })?;
    eprintln!("wrote {rows} row(s) to {}", path.display());
    Ok(())
}

/// `log`: the history, newest first.
#[derive(clap::Args, Debug)]
pub(crate) struct LogArgs {
    /// Repository location.
    repo: String,
    #[command(flatten)]
    rev: RevArg,
    /// At most N commits.
    #[arg(short = 'n', long)]
    max_count: Option<usize>,
}

/// `log`.
pub(crate) async fn log(a: LogArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    output::log(&r.log(a.rev.get(), a.max_count).await?, json);
    Ok(())
}

/// `show`: one commit and what it changed.
#[derive(clap::Args, Debug)]
pub(crate) struct ShowArgs {
    /// Repository location.
    repo: String,
    /// Revision.
    rev: String,
    /// Also list the indices of the changed chunks.
    #[arg(long)]
    chunks: bool,
}

/// `show`.
pub(crate) async fn show(a: ShowArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let (info, changes) = r.show(&a.rev, a.chunks).await?;
    output::show(&info, changes.as_ref(), json);
    Ok(())
}

/// `diff`: differences between two revisions.
#[derive(clap::Args, Debug)]
pub(crate) struct DiffArgs {
    /// Repository location.
    repo: String,
    /// From revision.
    rev_a: String,
    /// To revision.
    rev_b: String,
    /// Also list the indices of the changed chunks.
    #[arg(long)]
    chunks: bool,
}

/// `diff`.
pub(crate) async fn diff(a: DiffArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let (from, to) = (r.resolve(&a.rev_a).await?, r.resolve(&a.rev_b).await?);
    output::diff(&r.changes(&from.id, &to.id, a.chunks).await?, json);
    Ok(())
}

/// `verify`: recompute a commit's content digest from the stored bytes.
#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
    /// Repository location.
    repo: String,
    #[command(flatten)]
    rev: RevArg,
}

/// `verify`.
pub(crate) async fn verify(a: VerifyArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let pb = progress_bar(0, "verifying chunks");
    let report = r.verify(a.rev.get(), &counter(&pb)).await;
    finish(pb);
    let report = report?;
    output::verify(&report, json);
    if report.ok {
        return Ok(());
    }
    let digest_differs = report
        .recorded_digest
        .as_deref()
        .is_some_and(|d| d != report.computed_digest);
    Err(CliError::Failed(format!(
        "verify failed for {}: {} bad chunk(s){}",
        report.commit,
        report.bad_chunks.len(),
        if digest_differs {
            ", content digest differs from the recorded one"
        } else {
            ""
        }
    )))
}
