//! What the command line shows besides its results: progress bars on a terminal, and the commit
//! line (or JSON object) of a command that writes.

use std::io::IsTerminal;

use serde_json::json;

use super::CliError;
use crate::repo::{Repo, RepoError};
use crate::storage::Location;

/// Open the repository at `repo` (a path or `s3://bucket/prefix`).
pub(crate) async fn open(repo: &str) -> Result<Repo, CliError> {
    Ok(Repo::open(&Location::parse(repo).map_err(RepoError::from)?).await?)
}

/// A progress bar on stderr when it is a terminal.
pub(crate) fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
    {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    Some(pb)
}

/// A spinner on stderr when it is a terminal.
pub(crate) fn spinner(what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let sp = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        sp.set_style(style);
    }
    sp.set_message(what.to_string());
    sp.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(sp)
}

/// A counter of work whose total grows as it is found (verifying chunks, package files).
pub(crate) fn counter(pb: &Option<indicatif::ProgressBar>) -> impl Fn(u64) + '_ {
    move |n: u64| {
        if let Some(pb) = pb {
            pb.inc_length(n);
            pb.inc(n);
        }
    }
}

/// Clear a progress bar, if one was shown.
pub(crate) fn finish(pb: Option<indicatif::ProgressBar>) {
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}

/// The new commit (or that nothing changed); with `--json` an object with `extra`'s fields.
pub(crate) fn print_write(
    json: bool,
    commit: &Option<crate::repo::CommitId>,
    extra: serde_json::Value,
) {
    if json {
        let mut v = json!({ "commit": commit });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        println!("{v}");
    } else {
        match commit {
            Some(c) => println!("{c}"),
            None => println!("nothing changed; no commit made"),
        }
    }
}
