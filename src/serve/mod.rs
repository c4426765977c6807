//! `zarr-fuse serve`: contributions over HTTP under an authenticated identity (issue H, in
//! part). Pushes are streamed into a durable queue on local disk and acknowledged (202) once
//! synced; a worker commits them in arrival order, one commit per upload, with the token's
//! identity as author and the upload id in the provenance, so that a restart after SIGKILL
//! commits every acknowledged upload exactly once. Protected branches refuse pushes.
//!
//! Rooms: `config` (the YAML file), `tokens` (hashed tokens, roles), `queue` (durable
//! uploads), `worker` (the commits), `http` (routes, authentication, authorization).

pub mod config;
mod http;
mod ops;
mod page;
pub mod queue;
pub mod scrape;
mod tls;
pub mod tokens;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use config::ServeConfig;

use crate::repo::Repo;

/// Errors of the service and of `zarr-fuse token`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config or tokens file is unreadable or wrong.
    #[error("{}: {why}", file.display())]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Reading or writing the queue or the tokens file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// The repository refused an operation of the service's start.
    #[error("{0}")]
    Repo(#[from] crate::repo::RepoError),
    /// Listening on the address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Counters for `/metrics`.
#[derive(Default)]
struct Metrics {
    inner: Mutex<MetricsInner>,
}

#[derive(Default)]
struct MetricsInner {
    uploads: HashMap<String, u64>,
    /// Scraper requests by (scraper, result).
    scrapes: std::collections::BTreeMap<(String, String), u64>,
    depth: usize,
    /// Commit latency histogram: counts per bucket upper bound (seconds), sum, count.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, MetricsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, status: &str) {
        *self.lock().uploads.entry(status.to_string()).or_default() += 1;
    }

    fn scraped(&self, scraper: &str, result: &str) {
        *self
            .lock()
            .scrapes
            .entry((scraper.to_string(), result.to_string()))
            .or_default() += 1;
    }

    fn set_depth(&self, n: usize) {
        self.lock().depth = n;
    }

    fn observe_commit(&self, d: Duration) {
        let s = d.as_secs_f64();
        let mut m = self.lock();
        if m.buckets.is_empty() {
            m.buckets = BUCKETS.iter().map(|b| (*b, 0)).collect();
        }
        for (b, n) in m.buckets.iter_mut() {
            if s <= *b {
                *n += 1;
            }
        }
        m.sum += s;
        m.count += 1;
    }

    /// Prometheus text format.
    fn render(&self) -> String {
        let m = self.lock();
        let mut t = String::from("# TYPE zf_uploads_total counter\n");
        for (status, n) in &m.uploads {
            t.push_str(&format!("zf_uploads_total{{status=\"{status}\"}} {n}\n"));
        }
        t.push_str(&format!(
            "# TYPE zf_queue_depth gauge\nzf_queue_depth {}\n",
            m.depth
        ));
        t.push_str("# TYPE zf_scrapes_total counter\n");
        for ((s, r), n) in &m.scrapes {
            t.push_str(&format!(
                "zf_scrapes_total{{scraper=\"{s}\",result=\"{r}\"}} {n}\n"
            ));
        }
        t.push_str("# TYPE zf_commit_seconds histogram\n");
        for (b, n) in &m.buckets {
            t.push_str(&format!("zf_commit_seconds_bucket{{le=\"{b}\"}} {n}\n"));
        }
        t.push_str(&format!(
            "zf_commit_seconds_bucket{{le=\"+Inf\"}} {c}\nzf_commit_seconds_sum {}\nzf_commit_seconds_count {c}\n",
            m.sum,
            c = m.count
        ));
        t
    }
}

/// Uploads per token in the current minute.
#[derive(Default)]
struct Rate {
    seen: Mutex<HashMap<String, (i64, u32)>>,
}

impl Rate {
    fn allow(&self, token: &str, per_minute: u32) -> bool {
        let minute = chrono::Utc::now().timestamp() / 60;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let e = seen.entry(token.to_string()).or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        e.1 <= per_minute
    }
}

/// The running service's state.
struct Service {
    repo: Repo,
    config: ServeConfig,
    tokens: tokens::TokenFile,
    queue: queue::Queue,
    /// Wakes the worker.
    work: tokio::sync::Notify,
    /// Wakes those waiting for an upload's state.
    done: tokio::sync::Notify,
    metrics: Metrics,
    rate: Rate,
}

/// One line of the request log (JSON): time, token name, route, status, upload id.
fn log_line(route: &str, token: &str, upload: &str, status: u16, error: Option<&str>) -> String {
    serde_json::json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "token": token,
        "route": route,
        "status": status,
        "upload": upload,
        "error": error,
    })
    .to_string()
}

/// Serve `repo` with `config` on `listen` until the process ends — over HTTPS when `tls`
/// names a PEM certificate chain and key. Prints `listening on URL` on standard output once
/// the socket is bound.
pub async fn serve(
    repo: Repo,
    mut config: ServeConfig,
    listen: &str,
    tls: Option<(&Path, &Path)>,
) -> Result<(), ServeError> {
    let tls = tls.map(|(c, k)| tls::config(c, k)).transpose()?;
    let queue = queue::Queue::open(&config.queue)?;
    // the config's protected branches are recorded in the repository (so that the CLI refuses
    // them too), and those recorded there are protected here
    config.protected = if config.protected.is_empty() {
        repo.protected().await
    } else {
        repo.protect(&config.protected).await
    }?;
    queue.clean_temp();
    let svc = Arc::new(Service {
        repo,
        tokens: tokens::TokenFile::new(config.tokens.clone()),
        config,
        queue,
        work: tokio::sync::Notify::new(),
        done: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
        rate: Rate::default(),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    tokio::spawn(worker::run(Arc::clone(&svc)));
    scrape::start(&svc);
    let app = http::router(svc).into_make_service_with_connect_info::<SocketAddr>();
    let failed = |source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    };
    match tls {
        None => axum::serve(listener, app).await.map_err(failed),
        Some(cfg) => {
            use axum::serve::ListenerExt as _;
            // `tap_io` gives the connections their peer address (ConnectInfo)
            let tls = tls::TlsListener::new(listener, cfg)
                .map_err(failed)?
                .tap_io(|_| {});
            axum::serve(tls, app).await.map_err(failed)
        }
    }
}
