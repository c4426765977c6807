//! `serve` and `token`: the ingest service and its tokens.

use std::path::PathBuf;

use super::args;
use super::ui::open;
use super::CliError;
use crate::serve::tokens::Tokens;
use crate::serve::{config, ServeConfig};

/// `serve`: authenticated contributions over HTTP.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Repository location.
    repo: String,
    /// Service configuration (YAML): tokens, queue, protected, max_upload_mb, endpoints.
    #[arg(long)]
    config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,
    /// HTTPS: the certificate chain (PEM); with `--tls-key`. Without them, plain HTTP (put a
    /// reverse proxy with TLS in front when it listens beyond this machine).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// HTTPS: the private key (PEM) of `--tls-cert`.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
}

/// `serve`.
pub(crate) async fn serve(a: ServeArgs) -> Result<(), CliError> {
    let cfg = ServeConfig::load(&a.config)?;
    let r = open(&a.repo).await?;
    let tls = a.tls_cert.as_deref().zip(a.tls_key.as_deref());
    Ok(crate::serve::serve(r, cfg, &a.listen, tls).await?)
}

/// `token add|list|revoke --config FILE`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum TokenAction {
    /// Make a token; prints it once, alone on the last line.
    Add {
        /// Service configuration (names the tokens file).
        #[arg(long)]
        config: PathBuf,
        /// Who holds it (the author name of its commits).
        name: String,
        /// Their e-mail (the author e-mail of its commits).
        #[arg(long)]
        email: String,
        /// reader, contributor:BRANCHES, maintainer:BRANCHES or admin (BRANCHES: names or
        /// globs, comma-separated); repeatable.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// It stops working after this long (e.g. 90d).
        #[arg(long, value_parser = args::duration)]
        expires: Option<std::time::Duration>,
    },
    /// List the tokens (never their secrets).
    List {
        /// Service configuration.
        #[arg(long)]
        config: PathBuf,
    },
    /// Revoke a token: it is refused from the next request on.
    Revoke {
        /// Service configuration.
        #[arg(long)]
        config: PathBuf,
        /// The token's name.
        name: String,
    },
}

/// `token`.
pub(crate) fn token(action: TokenAction, json: bool) -> Result<(), CliError> {
    match action {
        TokenAction::Add {
            config,
            name,
            email,
            roles,
            expires,
        } => {
            let path = config::tokens_path(&config)?;
            let mut t = Tokens::load(&path)?;
            let expires = match expires {
                Some(d) => Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(d)
                            .map_err(|e| CliError::Usage(format!("--expires: {e}")))?,
                ),
                None => None,
            };
            let secret = t.add(&name, &email, &roles, expires)?;
            t.save(&path)?;
            eprintln!(
                "token '{name}' added to {}; it is shown once:",
                path.display()
            );
            println!("{secret}");
        }
        TokenAction::List { config } => {
            let t = Tokens::load(&config::tokens_path(&config)?)?;
            if json {
                let v: Vec<serde_json::Value> = t
                    .tokens
                    .iter()
                    .map(|e| {
                        serde_json::json!({"name": e.name, "email": e.email, "roles": e.roles,
                            "created": e.created, "expires": e.expires, "revoked": e.revoked})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for e in &t.tokens {
                    let state = if e.revoked { " (revoked)" } else { "" };
                    let exp = e
                        .expires
                        .map(|x| format!(" expires {x}"))
                        .unwrap_or_default();
                    println!("{} <{}> {}{exp}{state}", e.name, e.email, e.roles.join(" "));
                }
            }
        }
        TokenAction::Revoke { config, name } => {
            let path = config::tokens_path(&config)?;
            let mut t = Tokens::load(&path)?;
            t.revoke(&name)?;
            t.save(&path)?;
            println!("revoked token {name}");
        }
    }
    Ok(())
}
