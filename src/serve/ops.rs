//! The maintainers' routes (`revert`, `merge`, `reset`, `tags`) and the reading routes
//! (`blame`, `export`): the library's operations under the token's identity. A protected branch
//! changes only through these.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{authenticate, authorize_read, finish, param, query_pairs, Failure};
use super::tokens::TokenEntry;
use super::Service;
use crate::history::{HistoryError, HistoryOptions, Resolve};
use crate::provenance::Provenance;

/// The body of `POST /api/v1/revert`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevertBody {
    commit: String,
    #[serde(default = "main")]
    branch: String,
    /// `theirs`: keep the later values of conflicting cells.
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The body of `POST /api/v1/merge`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MergeBody {
    source: String,
    #[serde(default = "main")]
    into: String,
    /// `ours` or `theirs`.
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The body of `POST /api/v1/reset`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetBody {
    branch: String,
    rev: String,
    #[serde(default)]
    force: bool,
}

/// The body of `POST /api/v1/tags`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TagBody {
    name: String,
    #[serde(default = "main")]
    at: String,
    #[serde(default)]
    message: Option<String>,
}

/// The body of `POST /api/v1/squash`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SquashBody {
    #[serde(default = "main")]
    branch: String,
    /// Only contributions older than this (`7d`, `12h`, `0s`).
    older_than: String,
    /// `hour`, `day` or `week`.
    by: String,
    #[serde(default)]
    dry_run: bool,
}

fn main() -> String {
    "main".into()
}

/// The (authenticated) token, if it may maintain `branch`; else 403.
pub(super) fn maintainer(t: TokenEntry, branch: &str) -> Result<TokenEntry, Failure> {
    if !t.can_maintain(branch) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "token '{}' may not change branch '{branch}' this way",
                t.name
            ),
            format!("role maintainer:{branch} needed"),
        ));
    }
    Ok(t)
}

/// An operation's request: authenticated (401), its JSON body read (400), the token a
/// maintainer of the branch the body names (403) — in that order.
fn maintained<T: serde::de::DeserializeOwned>(
    svc: &Service,
    headers: &HeaderMap,
    bytes: &[u8],
    branch: impl Fn(&T) -> &String,
) -> Result<(TokenEntry, T), Failure> {
    let t = authenticate(svc, headers)?;
    let b: T = body(bytes)?;
    let t = maintainer(t, branch(&b))?;
    Ok((t, b))
}

pub(super) fn provenance(
    t: &TokenEntry,
    addr: SocketAddr,
    op: &str,
    message: Option<String>,
) -> Provenance {
    let mut p = Provenance::new(t.author(), op, message.unwrap_or_default());
    p.meta.insert("token".into(), t.name.clone());
    p.meta.insert("client".into(), addr.to_string());
    p
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the request body: {e}"),
            "send the JSON fields of the API",
        )
    })
}

/// A history operation's answer: its report, or 409 with the conflicts.
fn history_answer(
    out: Result<crate::history::HistoryReport, HistoryError>,
) -> Result<Response, Failure> {
    match out {
        Ok(r) => Ok(Json(json!(r)).into_response()),
        Err(HistoryError::CellConflicts(r)) => {
            let mut v = json!(r);
            if let Some(o) = v.as_object_mut() {
                o.insert("error".into(), json!(r.refusal()));
                o.insert(
                    "hint".into(),
                    json!("decide the conflicting cells with a strategy"),
                );
            }
            Ok((StatusCode::CONFLICT, Json(v)).into_response())
        }
        Err(e) => Err(unprocessable(e, "see the error")),
    }
}

fn resolve(strategy: Option<&str>, revert: bool) -> Result<Resolve, Failure> {
    match (strategy, revert) {
        (None, _) => Ok(Resolve::Fail),
        (Some("theirs"), true) | (Some("ours"), false) => Ok(Resolve::KeepTarget),
        (Some("theirs"), false) => Ok(Resolve::TakeSource),
        (Some(s), _) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("strategy '{s}'"),
            if revert { "theirs" } else { "ours or theirs" },
        )),
    }
}

/// `POST /api/v1/revert`.
pub(super) async fn revert(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let answer = async {
        let (t, b) = maintained(&svc, &headers, &bytes, |b: &RevertBody| &b.branch)?;
        let opts = HistoryOptions {
            resolve: resolve(b.strategy.as_deref(), true)?,
            dry_run: false,
        };
        let prov = provenance(&t, addr, "revert", b.message);
        let svc2 = Arc::clone(&svc);
        let out = on_own_thread(move || async move {
            svc2.repo.revert(&b.commit, &b.branch, &opts, prov).await
        })
        .await?;
        history_answer(out)
    }
    .await;
    finish(&svc, "POST /api/v1/revert", &headers, (answer, None))
}

/// `POST /api/v1/merge`.
pub(super) async fn merge(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let answer = async {
        let (t, b) = maintained(&svc, &headers, &bytes, |b: &MergeBody| &b.into)?;
        let opts = HistoryOptions {
            resolve: resolve(b.strategy.as_deref(), false)?,
            dry_run: false,
        };
        let prov = provenance(&t, addr, "merge", b.message);
        let svc2 = Arc::clone(&svc);
        let out =
            on_own_thread(
                move || async move { svc2.repo.merge(&b.source, &b.into, &opts, prov).await },
            )
            .await?;
        history_answer(out)
    }
    .await;
    finish(&svc, "POST /api/v1/merge", &headers, (answer, None))
}

/// `POST /api/v1/reset`.
pub(super) async fn reset(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let answer = async {
        let (_, b) = maintained(&svc, &headers, &bytes, |b: &ResetBody| &b.branch)?;
        match svc.repo.reset(&b.branch, &b.rev, b.force).await {
            Ok(id) => {
                Ok(Json(json!({"branch": b.branch, "commit": id.to_string()})).into_response())
            }
            Err(e) => Err(unprocessable(e, "force: true moves it outside its history")),
        }
    }
    .await;
    finish(&svc, "POST /api/v1/reset", &headers, (answer, None))
}

/// `POST /api/v1/tags`: a maintainer of the branch tagged (an admin for any other revision).
pub(super) async fn tag(
    State(svc): State<Arc<Service>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let answer = async {
        let (_, b) = maintained(&svc, &headers, &bytes, |b: &TagBody| &b.at)?;
        match svc
            .repo
            .create_tag(&b.name, &b.at, b.message.as_deref())
            .await
        {
            Ok(id) => Ok((
                StatusCode::CREATED,
                Json(json!({"tag": b.name, "commit": id.to_string()})),
            )
                .into_response()),
            Err(e) => Err(unprocessable(e, "tags are immutable")),
        }
    }
    .await;
    finish(&svc, "POST /api/v1/tags", &headers, (answer, None))
}

/// `POST /api/v1/squash`: fold old contributions into one commit per period.
pub(super) async fn squash(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let answer = async {
        let (t, b) = maintained(&svc, &headers, &bytes, |b: &SquashBody| &b.branch)?;
        let bad = |what: String, hint: &str| Failure::new(StatusCode::BAD_REQUEST, what, hint);
        let period: crate::repo::Period =
            b.by.parse()
                .map_err(|_| bad(format!("by '{}'", b.by), "hour, day or week"))?;
        let cutoff = humantime::parse_duration(&b.older_than)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
            .ok_or_else(|| {
                bad(
                    format!("older_than '{}'", b.older_than),
                    "a duration: 7d, 12h, 0s",
                )
            })?;
        let prov = provenance(&t, addr, "squash", None);
        let svc2 = Arc::clone(&svc);
        let out = on_own_thread(move || async move {
            svc2.repo
                .squash(&b.branch, cutoff, period, b.dry_run, prov)
                .await
        })
        .await?;
        out.map(|r| Json(json!(r)).into_response())
            .map_err(|e| unprocessable(e, "see the error"))
    }
    .await;
    finish(&svc, "POST /api/v1/squash", &headers, (answer, None))
}

/// 422 with the error's one line.
fn unprocessable(e: impl std::fmt::Display, hint: &str) -> Failure {
    Failure::because(StatusCode::UNPROCESSABLE_ENTITY, e, hint)
}

/// `GET /api/v1/show/{rev}`: the commit and what it changed (the JSON of `show --json`).
pub(super) async fn show(
    State(svc): State<Arc<Service>>,
    UrlPath(rev): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&q);
    let answer = async {
        authorize_read(&svc, &headers)?;
        let chunks = param(&q, "chunks") == Some("true");
        let svc2 = Arc::clone(&svc);
        let (info, changes) =
            on_own_thread(move || async move { svc2.repo.show(&rev, chunks).await })
                .await?
                .map_err(|e| not_found(e, "a branch, tag or commit"))?;
        let mut v = info.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("changes".into(), json!(changes));
        }
        Ok(Json(v).into_response())
    }
    .await;
    finish(&svc, "GET /api/v1/show", &headers, (answer, None))
}

/// 404 with the error's one line.
pub(super) fn not_found(e: impl std::fmt::Display, hint: &str) -> Failure {
    Failure::because(StatusCode::NOT_FOUND, e, hint)
}

/// `GET /api/v1/diff?from=&to=`: what changed (the JSON of `diff --json`).
pub(super) async fn diff(
    State(svc): State<Arc<Service>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&q);
    let answer = async {
        authorize_read(&svc, &headers)?;
        let rev = |k: &str| {
            param(&q, k).map(str::to_string).ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("no {k}"),
                    "?from=REV&to=REV",
                )
            })
        };
        let (from, to) = (rev("from")?, rev("to")?);
        let chunks = param(&q, "chunks") == Some("true");
        let svc2 = Arc::clone(&svc);
        let changes = on_own_thread(move || async move {
            let r = &svc2.repo;
            let (a, b) = (r.resolve(&from).await?, r.resolve(&to).await?);
            r.changes(&a.id, &b.id, chunks).await
        })
        .await?
        .map_err(|e| not_found(e, "two branches, tags or commits"))?;
        Ok(Json(json!(changes)).into_response())
    }
    .await;
    finish(&svc, "GET /api/v1/diff", &headers, (answer, None))
}

/// Run `f`'s future on a blocking thread of the runtime: history operations and exports hold
/// values that are not `Send` across their awaits.
pub(super) async fn on_own_thread<F, Fut, T>(f: F) -> Result<T, Failure>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let h = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || h.block_on(f()))
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the operation failed: {e}"),
                "see the service's log",
            )
        })
}

/// `?where=DIM=V` selections.
fn wheres(q: &[(String, String)]) -> Result<Vec<crate::audit::Where>, Failure> {
    q.iter()
        .filter(|(k, _)| k == "where")
        .map(|(_, v)| crate::audit::Where::parse(v))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                e.to_string(),
                "where=DIM=VALUE or DIM=FROM..TO",
            )
        })
}

/// `GET /api/v1/blame?node=&var=&at=&where=`.
pub(super) async fn blame(
    State(svc): State<Arc<Service>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&q);
    let answer = async {
        authorize_read(&svc, &headers)?;
        let var = param(&q, "var")
            .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "no var", "?var=VARIABLE"))?;
        let recs = svc
            .repo
            .blame(
                param(&q, "node").unwrap_or("/"),
                var,
                param(&q, "at").unwrap_or("main"),
                &wheres(&q)?,
            )
            .await
            .map_err(|e| unprocessable(e, "see the error"))?;
        Ok(Json(Value::Array(recs.iter().map(|r| json!(r)).collect())).into_response())
    }
    .await;
    finish(&svc, "GET /api/v1/blame", &headers, (answer, None))
}

/// `GET /api/v1/export?node=&format=csv|json|parquet&at=&where=`.
pub(super) async fn export(
    State(svc): State<Arc<Service>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&q);
    let answer = async {
        authorize_read(&svc, &headers)?;
        let (format, ct) = match param(&q, "format").unwrap_or("csv") {
            "csv" => (crate::audit::Format::Csv, "text/csv"),
            "json" => (crate::audit::Format::Json, "application/json"),
            "parquet" => (
                crate::audit::Format::Parquet,
                "application/vnd.apache.parquet",
            ),
            f => {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("format '{f}'"),
                    "csv, json or parquet",
                ))
            }
        };
        let (node, at) = (
            param(&q, "node").unwrap_or("/").to_string(),
            param(&q, "at").unwrap_or("main").to_string(),
        );
        let w = wheres(&q)?;
        let svc2 = Arc::clone(&svc);
        let buf = on_own_thread(move || async move {
            let mut buf = Vec::new();
            crate::audit::export(&svc2.repo, &node, &at, &w, format, &mut buf)
                .await
                .map(|_| buf)
        })
        .await?
        .map_err(|e| unprocessable(e, "see the error"))?;
        Ok(([("content-type", ct)], buf).into_response())
    }
    .await;
    finish(&svc, "GET /api/v1/export", &headers, (answer, None))
}
