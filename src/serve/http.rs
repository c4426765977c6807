//! The HTTP API: authentication (Bearer, or Basic `NAME:TOKEN`), authorization by role and
//! protected branch, pushes streamed into the queue, upload states, the read routes, health and
//! metrics. Every answer that is not a success is `{"error": ..., "hint": ...}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};

use super::queue::{valid_id, Upload};
use super::tokens::{Refused, TokenEntry};
use super::{log_line, Service};

/// An answer that is not a success.
pub(super) struct Failure {
    status: StatusCode,
    error: String,
    hint: String,
}

impl Failure {
    pub(super) fn new(
        status: StatusCode,
        error: impl Into<String>,
        hint: impl Into<String>,
    ) -> Failure {
        Failure {
            status,
            error: error.into(),
            hint: hint.into(),
        }
    }
}

impl Failure {
    /// A failure whose error is `e`'s first line (the library's messages end in hints for the
    /// command line).
    pub(super) fn because(status: StatusCode, e: impl std::fmt::Display, hint: &str) -> Failure {
        Failure::new(status, crate::repo::one_line(&e.to_string()), hint)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "hint": self.hint})),
        )
            .into_response()
    }
}

type Answer = Result<Response, Failure>;

/// The routes.
pub(super) fn router(svc: Arc<Service>) -> Router {
    Router::new()
        .route("/", get(super::page::page))
        .route("/ui/revert", post(super::page::form))
        .route("/ui/tag", post(super::page::form))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/push/{endpoint}", post(push_endpoint))
        .route("/api/v1/nodes/{*node}", post(push_node))
        .route("/api/v1/nodes/", post(push_root))
        .route("/api/v1/nodes", post(push_root))
        .route("/api/v1/uploads/{id}", get(upload_state))
        .route("/api/v1/log", get(log))
        .route("/api/v1/branches", get(branches))
        .route("/api/v1/tags", get(tags).post(super::ops::tag))
        .route("/api/v1/revert", post(super::ops::revert))
        .route("/api/v1/merge", post(super::ops::merge))
        .route("/api/v1/reset", post(super::ops::reset))
        .route("/api/v1/squash", post(super::ops::squash))
        .route("/api/v1/show/{*rev}", get(super::ops::show))
        .route("/api/v1/diff", get(super::ops::diff))
        .route("/api/v1/blame", get(super::ops::blame))
        .route("/api/v1/export", get(super::ops::export))
        .with_state(svc)
}

/// A name of an endpoint or a node path segment: letters, digits, `_`, `-`, `.` (not first).
pub(super) fn check_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not a name (letters, digits, _ - . ; not starting with .)"
        ))
    }
}

/// The token given by `Authorization: Bearer T` or `Authorization: Basic base64(NAME:T)`.
fn presented(headers: &HeaderMap) -> Option<(Option<String>, String)> {
    let h = headers.get("authorization")?.to_str().ok()?;
    if let Some(t) = h.strip_prefix("Bearer ") {
        return Some((None, t.trim().to_string()));
    }
    let b = h.strip_prefix("Basic ")?;
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let text = String::from_utf8(text).ok()?;
    let (name, token) = text.split_once(':')?;
    Some((Some(name.to_string()), token.to_string()))
}

/// The token's entry, or 401.
pub(super) fn authenticate(svc: &Service, headers: &HeaderMap) -> Result<TokenEntry, Failure> {
    let tokens = svc.tokens.current().map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "fix the tokens file",
        )
    })?;
    let given = presented(headers);
    let refused = |why: Refused| {
        let what = match why {
            Refused::Absent => "no token given",
            Refused::Unknown => "unknown token",
            Refused::Expired => "the token has expired",
            Refused::Revoked => "the token was revoked",
        };
        Failure::new(
            StatusCode::UNAUTHORIZED,
            what,
            "send `Authorization: Bearer TOKEN` with a token from `zarr-fuse token add`",
        )
    };
    let entry = tokens
        .check(given.as_ref().map(|(_, t)| t.as_str()), chrono::Utc::now())
        .map_err(refused)?;
    if let Some((Some(name), _)) = &given {
        if *name != entry.name {
            return Err(refused(Refused::Unknown));
        }
    }
    Ok(entry.clone())
}

/// The reader's identity (`None`: anonymous, allowed by `public_read`), or 401/403.
pub(super) fn authorize_read(
    svc: &Service,
    headers: &HeaderMap,
) -> Result<Option<TokenEntry>, Failure> {
    if svc.config.public_read && presented(headers).is_none() {
        return Ok(None);
    }
    let t = authenticate(svc, headers)?;
    if !t.can_read() {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "this token may not read",
            "role reader needed",
        ));
    }
    Ok(Some(t))
}

/// 403 unless `t` may push a contribution to `branch`.
fn authorize_push(svc: &Service, t: &TokenEntry, branch: &str) -> Result<(), Failure> {
    if svc.config.is_protected(branch) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "branch '{branch}' is protected: it changes only by merge, revert, reset or tag"
            ),
            format!("push to another branch and ask a maintainer:{branch} to merge it"),
        ));
    }
    if !t.can_push(branch) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("token '{}' may not push to branch '{branch}'", t.name),
            format!("role contributor:{branch} (or maintainer:{branch}) needed"),
        ));
    }
    Ok(())
}

/// The query's `key=value` pairs, percent-decoded (repeated keys kept).
pub(super) fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes[i],
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b, ..) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    q.as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

pub(super) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// What a push says about itself.
struct PushTarget {
    endpoint: Option<String>,
    node: String,
    branch: String,
    format: Option<String>,
    set: Vec<(String, String)>,
}

async fn push_endpoint(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    UrlPath(endpoint): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = format!("POST /api/v1/push/{endpoint}");
    let q = query_pairs(&q);
    let target = match svc.config.endpoint(&endpoint) {
        Some(e) => Ok(PushTarget {
            endpoint: Some(e.name.clone()),
            node: e.node.trim_matches('/').to_string(),
            branch: e.branch.clone(),
            format: e.format.clone(),
            set: e.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no endpoint '{endpoint}'"),
            "the endpoints are the config's `endpoints` list",
        )),
    };
    finish(
        &svc,
        &route,
        &headers,
        push(&svc, addr, target, q, &headers, body).await,
    )
}

async fn push_node(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    UrlPath(node): UrlPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    push_to_node(&svc, addr, node, q, headers, body).await
}

/// `POST /api/v1/nodes/?branch=B`: the root node.
async fn push_root(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    push_to_node(&svc, addr, String::new(), q, headers, body).await
}

/// A push to a node by its path.
async fn push_to_node(
    svc: &Service,
    addr: SocketAddr,
    node: String,
    q: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let route = format!("POST /api/v1/nodes/{node}");
    let q = query_pairs(&q);
    let node = node.trim_matches('/').to_string();
    let checked = node
        .split('/')
        .filter(|s| !s.is_empty())
        .try_for_each(check_name)
        .map_err(|why| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("node path: {why}"),
                "use the schema's node names",
            )
        });
    let target = checked.map(|()| PushTarget {
        endpoint: None,
        node,
        branch: param(&q, "branch").unwrap_or("main").to_string(),
        format: None,
        set: vec![],
    });
    finish(
        svc,
        &route,
        &headers,
        push(svc, addr, target, q, &headers, body).await,
    )
}

/// Log the request (one JSON line) and answer.
pub(super) fn finish(
    svc: &Service,
    route: &str,
    headers: &HeaderMap,
    a: (Answer, Option<String>),
) -> Response {
    let (answer, upload) = a;
    let resp = answer.unwrap_or_else(IntoResponse::into_response);
    let who = svc
        .tokens
        .current()
        .ok()
        .and_then(|t| {
            presented(headers).and_then(|(_, tok)| {
                t.check(Some(&tok), chrono::Utc::now())
                    .ok()
                    .map(|e| e.name.clone())
            })
        })
        .unwrap_or_else(|| "-".into());
    eprintln!(
        "{}",
        log_line(
            route,
            &who,
            upload.as_deref().unwrap_or("-"),
            resp.status().as_u16(),
            None
        )
    );
    resp
}

/// Accept a push: authorize, stream the body into the queue (413 beyond the limit), answer 202
/// — or, with `wait=true`, 200 once committed.
async fn push(
    svc: &Service,
    addr: SocketAddr,
    target: Result<PushTarget, Failure>,
    q: Vec<(String, String)>,
    headers: &HeaderMap,
    body: Body,
) -> (Answer, Option<String>) {
    let token = match authenticate(svc, headers) {
        Ok(t) => t,
        Err(f) => return (Err(f), None),
    };
    let mut target = match target {
        Ok(t) => t,
        Err(f) => return (Err(f), None),
    };
    if let Err(f) = check_name(&target.branch.replace('/', "_")).map_err(|why| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            format!("branch: {why}"),
            "a branch name",
        )
    }) {
        return (Err(f), None);
    }
    if let Err(f) = authorize_push(svc, &token, &target.branch) {
        return (Err(f), None);
    }
    if !svc.rate.allow(&token.name, svc.config.rate_per_minute) {
        let f = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many uploads",
            "wait a minute",
        );
        return (Err(f), None);
    }
    target.format = param(&q, "format")
        .map(str::to_string)
        .or(target.format)
        .or_else(|| format_of(headers));
    if let Some(f) = target.format.as_deref() {
        if super::config::input_format(f).is_none() {
            let f = Failure::new(
                StatusCode::BAD_REQUEST,
                format!("format '{f}'"),
                "csv, parquet, json or yrno",
            );
            return (Err(f), None);
        }
    }
    for (k, v) in q.iter().filter(|(k, _)| k == "set") {
        match v.split_once('=') {
            Some((c, val)) if !c.is_empty() => target.set.push((c.to_string(), val.to_string())),
            _ => {
                let f = Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("{k}={v}: expected COL=VALUE"),
                    "?set=COL=VALUE",
                );
                return (Err(f), None);
            }
        }
    }
    let id = super::queue::Queue::new_id();
    if let Some(key) = headers.get("idempotency-key").and_then(|k| k.to_str().ok()) {
        match svc.queue.reserve_key(&token.name, key, &id) {
            Ok(Some(earlier)) => return (Ok(accepted(svc, &earlier, &q).await), Some(earlier)),
            Ok(None) => {}
            Err(e) => return (Err(internal(e)), None),
        }
    }
    let bytes = match receive(svc, &id, headers, body).await {
        Ok(n) => n,
        Err(f) => return (Err(f), Some(id)),
    };
    let endpoint = target.endpoint.clone();
    let up = Upload {
        id: id.clone(),
        source: format!(
            "http:{}/{id}",
            endpoint
                .as_deref()
                .unwrap_or(&format!("nodes/{}", target.node))
        ),
        endpoint,
        node: target.node,
        branch: target.branch,
        format: target.format,
        set: target.set,
        message: param(&q, "message").map(str::to_string),
        author: token.author(),
        token: token.name.clone(),
        client: addr.to_string(),
        user_agent: headers
            .get("user-agent")
            .and_then(|u| u.to_str().ok())
            .map(str::to_string),
        received: chrono::Utc::now(),
        bytes,
        meta: Default::default(),
    };
    if let Err(e) = svc.queue.commit(&up) {
        return (Err(internal(e)), Some(id));
    }
    svc.work.notify_one();
    (Ok(accepted(svc, &id, &q).await), Some(id))
}

/// 202 `{"upload", "status": "queued"}`, or with `wait=true` the state once decided.
async fn accepted(svc: &Service, id: &str, q: &[(String, String)]) -> Response {
    if param(q, "wait") != Some("true") {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"upload": id, "status": "queued"})),
        )
            .into_response();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let done = svc.done.notified();
        match svc.queue.state(id) {
            Some(s) if s.status != "queued" => {
                let code = if s.status == "committed" {
                    StatusCode::OK
                } else {
                    StatusCode::UNPROCESSABLE_ENTITY
                };
                let mut v = s.report.clone().unwrap_or_else(|| json!({}));
                if let Some(o) = v.as_object_mut() {
                    o.insert("upload".into(), json!(id));
                    o.insert("status".into(), json!(s.status));
                    o.insert("commit".into(), json!(s.commit));
                    if let Some(e) = &s.error {
                        o.insert("error".into(), json!(e));
                        o.insert("hint".into(), json!("fix the input and push it again"));
                    }
                }
                return (code, Json(v)).into_response();
            }
            _ => {}
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            return (
                StatusCode::ACCEPTED,
                Json(json!({"upload": id, "status": "queued"})),
            )
                .into_response();
        }
    }
}

/// The format a Content-Type names.
fn format_of(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get("content-type")?
        .to_str()
        .ok()?
        .to_ascii_lowercase();
    let f = if ct.contains("csv") || ct.starts_with("text/plain") {
        "csv"
    } else if ct.contains("parquet") {
        "parquet"
    } else if ct.contains("geo+json") {
        "yrno"
    } else if ct.contains("json") {
        "json"
    } else {
        return None;
    };
    Some(f.into())
}

/// Stream the body to the queue's temporary file, synced; 413 beyond the limit.
async fn receive(svc: &Service, id: &str, headers: &HeaderMap, body: Body) -> Result<u64, Failure> {
    let limit = svc.config.max_upload;
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the upload is larger than {} MB", limit >> 20),
            "split it, or raise max_upload_mb in the config",
        )
    };
    if headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let path = svc.queue.temp_body(id);
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let mut n = 0u64;
    let mut stream = body.into_data_stream();
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                format!("reading the body: {e}"),
                "send it again",
            )
        })?;
        n += chunk.len() as u64;
        if n > limit {
            drop(f);
            let _ = tokio::fs::remove_file(&path).await;
            return Err(too_large());
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| internal(e.to_string()))?;
    }
    f.sync_all().await.map_err(|e| internal(e.to_string()))?;
    Ok(n)
}

pub(super) fn internal(e: impl std::fmt::Display) -> Failure {
    Failure::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        e.to_string(),
        "see the service's log",
    )
}

async fn upload_state(
    State(svc): State<Arc<Service>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let route = format!("GET /api/v1/uploads/{id}");
    let answer = authorize_read(&svc, &headers).and_then(|_| {
        if !valid_id(&id) {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                format!("'{id}' is not an upload id"),
                "ids start with u",
            ));
        }
        match svc.queue.state(&id) {
            Some(s) => Ok(Json(
                json!({"upload": id, "status": s.status, "commit": s.commit, "error": s.error}),
            )
            .into_response()),
            None => Err(Failure::new(
                StatusCode::NOT_FOUND,
                format!("no upload '{id}'"),
                "the id a push answered",
            )),
        }
    });
    finish(&svc, &route, &headers, (answer, Some(id.clone())))
}

async fn log(
    State(svc): State<Arc<Service>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&q);
    let answer = match authorize_read(&svc, &headers) {
        Err(f) => Err(f),
        Ok(_) => {
            let rev = param(&q, "rev").unwrap_or("main");
            let n = param(&q, "n").and_then(|n| n.parse().ok());
            match svc.repo.log(rev, n).await {
                Ok(l) => {
                    Ok(Json(Value::Array(l.iter().map(|c| c.to_json()).collect())).into_response())
                }
                Err(e) => Err(Failure::because(
                    StatusCode::NOT_FOUND,
                    e,
                    "a branch, tag or commit",
                )),
            }
        }
    };
    finish(&svc, "GET /api/v1/log", &headers, (answer, None))
}

async fn branches(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let answer = match authorize_read(&svc, &headers) {
        Err(f) => Err(f),
        Ok(_) => svc
            .repo
            .branches()
            .await
            .map(|b| Json(json!(b)).into_response())
            .map_err(internal),
    };
    finish(&svc, "GET /api/v1/branches", &headers, (answer, None))
}

async fn tags(State(svc): State<Arc<Service>>, headers: HeaderMap) -> Response {
    let answer = match authorize_read(&svc, &headers) {
        Err(f) => Err(f),
        Ok(_) => svc
            .repo
            .tags()
            .await
            .map(|b| Json(json!(b)).into_response())
            .map_err(internal),
    };
    finish(&svc, "GET /api/v1/tags", &headers, (answer, None))
}

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        svc.metrics.render(),
    )
        .into_response()
}
