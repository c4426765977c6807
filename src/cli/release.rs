//! `release REPO TAG --out DIR` (a Zenodo package) and `release verify DIR [--repo REPO]`.

use std::path::PathBuf;

use super::ui::{counter, finish, open, progress_bar};
use super::{output, CliError};

/// `release REPO TAG --out DIR`, or `release verify DIR [--repo REPO]`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ReleaseArgs {
    #[command(subcommand)]
    action: Option<ReleaseAction>,
    /// Repository location.
    repo: Option<String>,
    /// Tag to release.
    tag: Option<String>,
    /// Output directory (must be absent or empty).
    #[arg(long)]
    out: Option<PathBuf>,
    /// One `.zarr.zip` (default) or a `.zarr` directory.
    #[arg(long, value_enum, default_value_t = PackageFormat::Zip)]
    format: PackageFormat,
    /// Metadata file (YAML or JSON) overriding the schema's root ATTRS: title, description,
    /// creators, contributors, keywords, license, funding, related_identifiers, ...
    #[arg(long)]
    meta: Option<PathBuf>,
}

/// The form of the Zarr store in a package.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PackageFormat {
    /// One `.zarr.zip`.
    Zip,
    /// A `.zarr` directory.
    Dir,
}

#[derive(clap::Subcommand, Debug)]
enum ReleaseAction {
    /// Recompute every checksum and the content digest of a package; with --repo also compare
    /// it with the tag in that repository.
    Verify {
        /// Package directory.
        dir: PathBuf,
        /// Repository the package should equal a tag of.
        #[arg(long)]
        repo: Option<String>,
    },
}

/// `release`.
pub(crate) async fn release(a: ReleaseArgs, json: bool) -> Result<(), CliError> {
    if let Some(ReleaseAction::Verify { dir, repo }) = a.action {
        return verify(&dir, repo.as_deref(), json).await;
    }
    let (Some(repo), Some(tag), Some(out)) = (a.repo, a.tag, a.out) else {
        return Err(CliError::Failed(
            "usage: zarr-fuse release <REPO> <TAG> --out DIR [--format zip|dir] [--meta FILE], or zarr-fuse release verify DIR [--repo REPO]".into(),
        ));
    };
    let r = open(&repo).await?;
    let opts = crate::release::ReleaseOptions {
        out,
        format: match a.format {
            PackageFormat::Dir => crate::release::Format::Dir,
            PackageFormat::Zip => crate::release::Format::Zip,
        },
        meta: a.meta,
    };
    let pb = progress_bar(0, "packaging chunks");
    let tick = |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    };
    let report = crate::release::release(&r, &tag, &opts, &tick).await;
    finish(pb);
    output::release(&report?, json);
    Ok(())
}

/// `release verify`.
async fn verify(dir: &std::path::Path, repo: Option<&str>, json: bool) -> Result<(), CliError> {
    let pb = progress_bar(0, "verifying");
    let report = crate::release::verify(dir, &counter(&pb));
    finish(pb);
    let mut report = report?;
    if let Some(repo) = repo {
        let r = open(repo).await?;
        crate::release::verify_with_repo(&mut report, &r).await?;
    }
    output::release_verify(&report, json);
    if !report.ok {
        return Err(CliError::Failed(format!(
            "{} does not verify: {} problem(s)",
            dir.display(),
            report.problems.len()
        )));
    }
    Ok(())
}
