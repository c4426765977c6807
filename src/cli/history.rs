//! Commands that write new history by cells or shorten it: `revert`, `merge`, `cherry-pick`,
//! `squash`, `gc`.

use super::args::{self, BranchArg, CommitArgs, MergeStrategy, PeriodArg, RevertStrategy};
use super::ui::{finish, open, progress_bar};
use super::{output, CliError};
use crate::history::{HistoryError, HistoryOptions, HistoryReport, Resolve};

/// `revert`: undo one commit by cells.
#[derive(clap::Args, Debug)]
pub(crate) struct RevertArgs {
    /// Repository location.
    repo: String,
    /// Commit to revert.
    commit: String,
    #[command(flatten)]
    branch: BranchArg,
    #[command(flatten)]
    write: CommitArgs,
    /// `theirs`: keep the later values of conflicting cells and revert the rest.
    #[arg(long, value_enum)]
    strategy: Option<RevertStrategy>,
    /// Show what would change; commit nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `revert`.
pub(crate) async fn revert(a: RevertArgs, json: bool) -> Result<(), CliError> {
    let prov = a.write.provenance("revert", None)?;
    let r = open(&a.repo).await?;
    let opts = HistoryOptions {
        resolve: match a.strategy {
            Some(RevertStrategy::Theirs) => Resolve::KeepTarget,
            None => Resolve::Fail,
        },
        dry_run: a.dry_run,
    };
    print_history(
        r.revert(&a.commit, &a.branch.branch, &opts, prov).await,
        json,
    )
}

/// `merge`: merge a revision into a branch, three-way by cells.
#[derive(clap::Args, Debug)]
pub(crate) struct MergeArgs {
    /// Repository location.
    repo: String,
    /// Source revision.
    source: String,
    /// Target branch.
    #[arg(long, default_value = "main")]
    into: String,
    #[command(flatten)]
    write: CommitArgs,
    /// Decide cells changed differently on both sides: `ours` keeps the target's value,
    /// `theirs` takes the source's.
    #[arg(long, value_enum)]
    strategy: Option<MergeStrategy>,
    /// Show what would change; commit nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `merge`.
pub(crate) async fn merge(a: MergeArgs, json: bool) -> Result<(), CliError> {
    let prov = a.write.provenance("merge", None)?;
    let r = open(&a.repo).await?;
    let opts = merge_options(a.strategy, a.dry_run);
    print_history(
        crate::history::merge(&r, &a.source, &a.into, &opts, prov).await,
        json,
    )
}

/// `cherry-pick`: apply one commit's changes onto a branch, three-way by cells.
#[derive(clap::Args, Debug)]
pub(crate) struct CherryPickArgs {
    /// Repository location.
    repo: String,
    /// Commit to apply.
    commit: String,
    #[command(flatten)]
    branch: BranchArg,
    #[command(flatten)]
    write: CommitArgs,
    /// Decide conflicting cells: `ours` keeps the branch's value, `theirs` takes the commit's.
    #[arg(long, value_enum)]
    strategy: Option<MergeStrategy>,
    /// Show what would change; commit nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `cherry-pick`.
pub(crate) async fn cherry_pick(a: CherryPickArgs, json: bool) -> Result<(), CliError> {
    let prov = a.write.provenance("cherry-pick", None)?;
    let r = open(&a.repo).await?;
    let opts = merge_options(a.strategy, a.dry_run);
    let out = crate::history::cherry_pick(&r, &a.commit, &a.branch.branch, &opts, prov).await;
    print_history(out, json)
}

/// `--strategy` and `--dry-run` of merge and cherry-pick.
fn merge_options(strategy: Option<MergeStrategy>, dry_run: bool) -> HistoryOptions {
    HistoryOptions {
        resolve: match strategy {
            Some(MergeStrategy::Ours) => Resolve::KeepTarget,
            Some(MergeStrategy::Theirs) => Resolve::TakeSource,
            None => Resolve::Fail,
        },
        dry_run,
    }
}

/// Print what a revert, merge or cherry-pick did; a refusal prints its report as JSON too.
fn print_history(out: Result<HistoryReport, HistoryError>, json: bool) -> Result<(), CliError> {
    let report = match out {
        Ok(r) => r,
        Err(HistoryError::CellConflicts(r)) => {
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            }
            return Err(CliError::History(Box::new(HistoryError::CellConflicts(r))));
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        output::history(&report);
    }
    Ok(())
}

/// `squash`: fold old contributions into one commit per period.
#[derive(clap::Args, Debug)]
pub(crate) struct SquashArgs {
    /// Repository location.
    repo: String,
    /// Branch to squash.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Only contributions older than this (e.g. 7d, 12h, 0s).
    #[arg(long, value_parser = args::duration)]
    older_than: std::time::Duration,
    /// One commit per hour, day (UTC) or ISO week.
    #[arg(long, value_enum)]
    by: PeriodArg,
    /// Author of the squash commits.
    #[arg(long)]
    author: Option<String>,
    /// Report without changing anything.
    #[arg(long)]
    dry_run: bool,
}

/// `squash`.
pub(crate) async fn squash(a: SquashArgs, json: bool) -> Result<(), CliError> {
    let cutoff = args::cutoff(a.older_than)?;
    let commit = CommitArgs {
        author: a.author,
        message: None,
        meta: vec![],
    };
    let prov = commit.provenance("squash", None)?;
    let r = open(&a.repo).await?;
    let report = r
        .squash(&a.branch, cutoff, a.by.into(), a.dry_run, prov)
        .await?;
    output::squash(&report, json);
    Ok(())
}

/// `gc`: delete what no branch or tag needs.
#[derive(clap::Args, Debug)]
pub(crate) struct GcArgs {
    /// Repository location.
    repo: String,
    /// Only touch what is older than this (e.g. 7d, 12h, 0s).
    #[arg(long, default_value = "7d", value_parser = args::duration)]
    older_than: std::time::Duration,
    /// Also expire old commits that are no ref's tip, destroying their audit information
    /// (who wrote which cells).
    #[arg(long)]
    drop_provenance: bool,
    /// Report without deleting.
    #[arg(long)]
    dry_run: bool,
}

/// `gc`.
pub(crate) async fn gc(a: GcArgs, json: bool) -> Result<(), CliError> {
    let cutoff = args::cutoff(a.older_than)?;
    let r = open(&a.repo).await?;
    let pb = progress_bar(1, "collecting garbage");
    let report = r
        .collect_garbage(cutoff, a.dry_run, a.drop_provenance)
        .await;
    finish(pb);
    output::gc(&report?, json);
    Ok(())
}
