//! Commands on branches and tags: `branch`, `tag`, `reset`.

use serde_json::json;

use super::ui::open;
use super::{output, CliError};

/// `branch REPO create|list|delete`.
#[derive(clap::Args, Debug)]
pub(crate) struct BranchArgs {
    /// Repository location.
    repo: String,
    #[command(subcommand)]
    action: BranchAction,
}

#[derive(clap::Subcommand, Debug)]
enum BranchAction {
    /// Create a branch.
    Create {
        /// Branch name.
        name: String,
        /// Where it starts (default: main).
        #[arg(long, default_value = "main")]
        from: String,
    },
    /// List branches.
    List,
    /// Protect branches (names or `*` globs): `update` refuses them unless
    /// `--force-protected`; `serve` lets only maintainers change them, by merge, revert, reset
    /// or tag. Prints the protected list.
    Protect {
        /// Branch names or globs.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Stop protecting a branch (the name or glob as given to `protect`).
    Unprotect {
        /// Branch name or glob.
        name: String,
    },
    /// Delete a branch; refused when it has commits no other branch or tag reaches.
    Delete {
        /// Branch name.
        name: String,
        /// Delete it even when its own commits would then be reached by no ref (gc may then
        /// expire them).
        #[arg(long, short = 'D')]
        force: bool,
    },
}

/// `branch`.
pub(crate) async fn branch(a: BranchArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    match a.action {
        BranchAction::Create { name, from } => println!("{}", r.create_branch(&name, &from).await?),
        BranchAction::List => output::refs(&r.branches().await?, json),
        BranchAction::Protect { names } => protected(&r.protect(&names).await?, json),
        BranchAction::Unprotect { name } => protected(&r.unprotect(&name).await?, json),
        BranchAction::Delete { name, force } => {
            if force {
                r.delete_branch(&name).await?;
            } else {
                r.delete_merged_branch(&name).await?;
            }
            println!("deleted branch {name}");
        }
    }
    Ok(())
}

/// The protected branches, one per line (`--json`: a list).
fn protected(all: &[String], json: bool) {
    if json {
        println!("{}", json!(all));
    } else if all.is_empty() {
        println!("no protected branches");
    } else {
        all.iter().for_each(|p| println!("protected {p}"));
    }
}

/// `tag REPO create|list`.
#[derive(clap::Args, Debug)]
pub(crate) struct TagArgs {
    /// Repository location.
    repo: String,
    #[command(subcommand)]
    action: TagAction,
}

#[derive(clap::Subcommand, Debug)]
enum TagAction {
    /// Create a tag.
    Create {
        /// Tag name.
        name: String,
        /// Revision to tag (default: main).
        #[arg(long, default_value = "main")]
        at: String,
        /// Tag message.
        #[arg(short = 'm', long)]
        message: Option<String>,
    },
    /// List tags.
    List,
}

/// `tag`.
pub(crate) async fn tag(a: TagArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    match a.action {
        TagAction::Create { name, at, message } => {
            println!("{}", r.create_tag(&name, &at, message.as_deref()).await?);
        }
        TagAction::List => output::refs(&r.tags().await?, json),
    }
    Ok(())
}

/// `reset`: move a branch back to an earlier commit of its history.
#[derive(clap::Args, Debug)]
pub(crate) struct ResetArgs {
    /// Repository location.
    repo: String,
    /// Branch to move.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Target revision.
    rev: String,
    /// Allow a target outside the branch history.
    #[arg(long)]
    force: bool,
}

/// `reset`.
pub(crate) async fn reset(a: ResetArgs, json: bool) -> Result<(), CliError> {
    let r = open(&a.repo).await?;
    let id = r.reset(&a.branch, &a.rev, a.force).await?;
    if json {
        println!("{}", json!({"branch": a.branch, "commit": id.to_string()}));
    } else {
        println!("{id}");
    }
    Ok(())
}
