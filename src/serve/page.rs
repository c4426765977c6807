//! The audit page (`GET /`, spec/031): the history of a branch (author, source, counts, folded
//! contributions), a commit's diff by coordinates, per node and variable a time-series plot and
//! a blame map (time × site, coloured by contributor), the upload queue, and for maintainers
//! revert and tag forms. Everything is rendered here — HTML and SVG, no script, nothing from
//! elsewhere. A reader token given once as `?token=` is kept in an HttpOnly cookie.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::http::{authorize_read, finish, param, query_pairs, Failure};
use super::tokens::TokenEntry;
use super::Service;
use crate::audit::BlameRecord;
use crate::repo::CommitInfo;

const COOKIE: &str = "zf_token";
/// Commits listed.
const HISTORY: usize = 50;
/// Sites plotted at most.
const MAX_SITES: usize = 12;
/// Colours of sites and contributors.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// Text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` for a query string.
fn url(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The headers with the cookie's token as `Authorization` when none is given.
fn with_cookie(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    if h.contains_key("authorization") {
        return h;
    }
    let token = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        });
    if let Some(v) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        h.insert("authorization", v);
    }
    h
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            ("content-type", "text/html; charset=utf-8"),
            ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'"),
        ],
        body,
    )
        .into_response()
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{}</title>\
<meta name=viewport content='width=device-width, initial-scale=1'><style>{STYLE}</style></head>\
<body><h1>{}</h1>{body}</body></html>",
        esc(title),
        esc(title)
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;\
padding:0 1em;color:#222}table{border-collapse:collapse;width:100%;margin:.5em 0}\
td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code{font-size:12px}h2{margin-top:1.5em;border-bottom:2px solid #444}\
.refused{color:#b00}.committed{color:#070}form.inline{display:inline}nav a{margin-right:.8em}\
.note{background:#ffd;padding:.4em}svg{background:#fff;border:1px solid #ccc}";

fn login(error: Option<&str>) -> Response {
    let e = error
        .map(|e| format!("<p class=refused>{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "{e}<form method=get action='/'><label>Token <input name=token type=password \
autocomplete=off size=70></label> <button type=submit>Sign in</button></form>\
<p>A token from <code>zarr-fuse token add</code> with role reader (or more).</p>"
    );
    html(
        StatusCode::UNAUTHORIZED,
        layout("zarr-fuse: sign in", &body),
    )
}

/// `GET /`.
pub(super) async fn page(
    State(svc): State<Arc<Service>>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query_pairs(&raw);
    // a token in the address: checked, kept in a cookie, and taken out of the address
    if let Some(t) = param(&q, "token") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}")) {
            h.insert("authorization", v);
        }
        return match authorize_read(&svc, &h) {
            Ok(_) => {
                let rest: Vec<String> = q
                    .iter()
                    .filter(|(k, _)| k != "token")
                    .map(|(k, v)| format!("{}={}", url(k), url(v)))
                    .collect();
                let cookie = format!("{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/");
                (
                    StatusCode::SEE_OTHER,
                    [
                        ("location", format!("/?{}", rest.join("&"))),
                        ("set-cookie", cookie),
                    ],
                )
                    .into_response()
            }
            Err(_) => login(Some(
                "that token is unknown, expired, revoked or may not read",
            )),
        };
    }
    let headers = with_cookie(&headers);
    let reader = match authorize_read(&svc, &headers) {
        Ok(r) => r,
        Err(_) => return finish(&svc, "GET /", &headers, (Ok(login(None)), None)),
    };
    let svc2 = Arc::clone(&svc);
    let built = super::ops::on_own_thread(move || async move {
        let view = View::new(&q);
        view.render(&svc2, reader.as_ref()).await
    })
    .await
    .and_then(|r| r)
    .map(|body| html(StatusCode::OK, body));
    finish(&svc, "GET /", &headers, (built, None))
}

/// What the page shows: from the query.
struct View {
    branch: String,
    commit: Option<String>,
    node: Option<String>,
    var: Option<String>,
    sites: Option<Vec<String>>,
    note: Option<String>,
}

impl View {
    fn new(q: &[(String, String)]) -> View {
        let p = |k: &str| param(q, k).filter(|v| !v.is_empty()).map(str::to_string);
        View {
            branch: p("branch").unwrap_or_else(|| "main".into()),
            commit: p("commit"),
            node: p("node"),
            var: p("var"),
            sites: p("sites").map(|s| s.split(',').map(str::to_string).collect()),
            note: p("note"),
        }
    }

    /// A link to this view with `key` changed.
    fn link(&self, key: &str, value: &str) -> String {
        let mut parts = vec![("branch", self.branch.clone())];
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                parts.push((k, v));
            }
        };
        put("commit", self.commit.clone());
        put("node", self.node.clone());
        put("var", self.var.clone());
        put("sites", self.sites.as_ref().map(|s| s.join(",")));
        parts.retain(|(k, _)| *k != key);
        parts.push((
            match key {
                "branch" => "branch",
                "commit" => "commit",
                "node" => "node",
                "var" => "var",
                _ => "sites",
            },
            value.to_string(),
        ));
        let q: Vec<String> = parts
            .iter()
            .map(|(k, v)| format!("{k}={}", url(v)))
            .collect();
        format!("/?{}", esc(&q.join("&")))
    }

    async fn render(&self, svc: &Service, who: Option<&TokenEntry>) -> Result<String, Failure> {
        let repo = &svc.repo;
        let maintainer = who.is_some_and(|t| t.can_maintain(&self.branch));
        let mut b = String::new();
        if let Some(n) = &self.note {
            let _ = write!(b, "<p class=note id=note>{}</p>", esc(n));
        }
        let _ = write!(
            b,
            "<p>Repository <code>{}</code> · signed in as {}</p>",
            esc(&repo.location().to_string()),
            who.map_or("anonymous reader".to_string(), |t| esc(&t.author()))
        );
        b.push_str(&self.refs(svc).await);
        let commits = repo
            .log(&self.branch, Some(HISTORY))
            .await
            .map_err(|e| super::ops::not_found(e, "a branch, tag or commit"))?;
        b.push_str(&self.history(&commits, maintainer));
        if let Some(c) = &self.commit {
            b.push_str(&self.changes(svc, c).await);
        }
        b.push_str(&self.plots(svc).await);
        b.push_str(&queue(svc));
        if maintainer {
            b.push_str(&self.tag_form());
        }
        Ok(layout(&format!("zarr-fuse: {}", self.branch), &b))
    }

    async fn refs(&self, svc: &Service) -> String {
        let mut b = String::from("<nav>Branches: ");
        for r in svc.repo.branches().await.unwrap_or_default() {
            let mark = if r.name == self.branch { " ◀" } else { "" };
            let _ = write!(
                b,
                "<a href=\"{}\">{}{mark}</a>",
                self.link("branch", &r.name),
                esc(&r.name)
            );
        }
        b.push_str(" · Tags: ");
        for r in svc.repo.tags().await.unwrap_or_default() {
            let _ = write!(
                b,
                "<a href=\"{}\">{}</a>",
                self.link("branch", &r.name),
                esc(&r.name)
            );
        }
        b.push_str("</nav>");
        b
    }

    fn history(&self, commits: &[CommitInfo], maintainer: bool) -> String {
        let mut b = format!(
            "<h2>History of {}</h2><table id=history><tr><th>commit</th><th>time (UTC)</th>\
<th>author</th><th>operation · source</th><th>cells</th><th>folded</th>{}</tr>",
            esc(&self.branch),
            if maintainer { "<th></th>" } else { "" }
        );
        for c in commits {
            let id = c.id.to_string();
            let counts: Vec<String> = c
                .counts
                .iter()
                .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let folded = c
                .extra
                .get(crate::repo::FOLDED)
                .or_else(|| c.meta.get(crate::repo::FOLDED))
                .and_then(Value::as_array)
                .map_or(String::new(), |a| format!("{} contributions", a.len()));
            let _ = write!(
                b,
                "<tr class=commit data-id=\"{id}\"><td><a href=\"{}\"><code>{}</code></a></td>\
<td>{}</td><td class=author>{}</td><td>{} · {}<br><small>{}</small></td><td>{}</td><td>{folded}</td>",
                self.link("commit", &id),
                esc(&id[..id.len().min(12)]),
                esc(&c.time_text()),
                esc(c.author.as_deref().unwrap_or("")),
                esc(c.operation.as_deref().unwrap_or("")),
                esc(c.source.as_deref().unwrap_or("")),
                esc(&c.message),
                esc(&counts.join(", ")),
            );
            if maintainer {
                let _ = write!(
                    b,
                    "<td><form class=inline method=post action=/ui/revert>\
<input type=hidden name=commit value=\"{id}\"><input type=hidden name=branch value=\"{}\">\
<button type=submit>revert</button></form></td>",
                    esc(&self.branch)
                );
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
        b
    }

    async fn changes(&self, svc: &Service, rev: &str) -> String {
        let mut b = format!("<h2>Commit <code>{}</code></h2>", esc(rev));
        let (info, changes) = match svc.repo.show(rev, false).await {
            Ok(x) => x,
            Err(e) => {
                let _ = write!(b, "<p class=refused>{}</p>", esc(&e.to_string()));
                return b;
            }
        };
        let _ = write!(
            b,
            "<p>{} · {} · {}</p>",
            esc(info.author.as_deref().unwrap_or("")),
            esc(&info.time_text()),
            esc(&info.message)
        );
        let Some(cells) = changes.and_then(|c| c.cells) else {
            b.push_str("<p>No cells (the first commit).</p>");
            return b;
        };
        b.push_str(
            "<table id=diff><tr><th>node</th><th>variable</th><th>changed</th><th>added</th>\
<th>set NA</th><th>where (boxes of coordinate values)</th></tr>",
        );
        for (node, vars) in &cells.nodes {
            for (var, d) in vars {
                let boxes: Vec<String> = d
                    .boxes
                    .iter()
                    .take(5)
                    .map(|bx| {
                        let sides: Vec<String> = bx
                            .coords
                            .iter()
                            .map(|s| format!("{} {} … {}", s.dim, plain(&s.first), plain(&s.last)))
                            .collect();
                        format!("{} ({} cells)", sides.join("; "), bx.cells)
                    })
                    .collect();
                let _ = write!(
                    b,
                    "<tr><td>/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                    esc(node),
                    esc(var),
                    d.changed,
                    d.added,
                    d.set_na,
                    esc(&boxes.join("<br>")).replace("&lt;br&gt;", "<br>"),
                    if d.boxes_total > 5 {
                        format!(" … {} boxes in all", d.boxes_total)
                    } else {
                        String::new()
                    }
                );
            }
        }
        b.push_str("</table>");
        b
    }

    fn tag_form(&self) -> String {
        format!(
            "<h2>Tag</h2><form method=post action=/ui/tag><input type=hidden name=at value=\"{}\">\
<label>Tag {} as <input name=name required pattern='[A-Za-z0-9._-]+'></label> \
<label>message <input name=message size=40></label> <button type=submit>tag</button></form>",
            esc(&self.branch),
            esc(&self.branch)
        )
    }
}

/// A JSON value as plain text.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The upload queue: pending, then the latest finished.
fn queue(svc: &Service) -> String {
    let mut b = String::from(
        "<h2>Upload queue</h2><table id=queue><tr><th>upload</th><th>status</th>\
<th>token · endpoint → branch</th><th>commit or error</th></tr>",
    );
    for id in svc.queue.pending().iter().take(50) {
        let (who, to) = svc.queue.upload(id).map_or_else(
            || (String::new(), String::new()),
            |u| {
                (
                    u.token,
                    format!("{} → {}", u.endpoint.unwrap_or(u.node), u.branch),
                )
            },
        );
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>queued</td><td>{} · {}</td><td></td></tr>",
            esc(id),
            esc(&who),
            esc(&to)
        );
    }
    for id in svc.queue.recent(20) {
        let Some(s) = svc.queue.state(&id) else {
            continue;
        };
        let what = s.error.clone().or(s.commit.clone()).unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td class={}>{}</td><td></td><td>{}</td></tr>",
            esc(&id),
            esc(&s.status),
            esc(&s.status),
            esc(&what)
        );
    }
    b.push_str("</table>");
    b
}

/// A variable's values and blame over a grid of (time, site).
struct Grid {
    /// The two dimensions: time-like first.
    dims: [String; 2],
    times: Vec<String>,
    sites: Vec<String>,
    /// `values[site][time]`.
    values: Vec<Vec<Option<f64>>>,
    /// `writer[site][time]`: index into `authors`.
    writer: Vec<Vec<Option<usize>>>,
    authors: Vec<String>,
}

impl View {
    async fn plots(&self, svc: &Service) -> String {
        let mut b = String::from("<h2>Values and blame</h2>");
        let schema = match crate::audit::schema_at(&svc.repo, &self.branch).await {
            Ok(s) => s,
            Err(e) => {
                let _ = write!(b, "<p>{}</p>", esc(&crate::repo::one_line(&e.to_string())));
                return b;
            }
        };
        // the choice of node and variable: every variable of two dimensions
        let mut choices = Vec::new();
        let mut stack = vec![&schema.root];
        while let Some(n) = stack.pop() {
            for v in n.vars.iter().filter(|v| v.coords.len() == 2) {
                choices.push((n.path.clone(), v.name.clone()));
            }
            stack.extend(n.children.iter().rev());
        }
        b.push_str("<nav id=variables>");
        for (n, v) in &choices {
            let href = format!(
                "/?branch={}&node={}&var={}",
                url(&self.branch),
                url(&format!("/{n}")),
                url(v)
            );
            let _ = write!(b, "<a href=\"{}\">/{}: {}</a>", esc(&href), esc(n), esc(v));
        }
        b.push_str("</nav>");
        let chosen = match (&self.node, &self.var) {
            (Some(n), Some(v)) => Some((n.trim_matches('/').to_string(), v.clone())),
            _ => choices.first().cloned(),
        };
        let Some((node, var)) = chosen else {
            b.push_str("<p>No variable of two dimensions (time × site) to plot.</p>");
            return b;
        };
        match self.grid(svc, &node, &var).await {
            Ok(g) => {
                let _ = write!(
                    b,
                    "<h3>/{}: {}</h3><p>Sites: {}</p>",
                    esc(&node),
                    esc(&var),
                    g.sites
                        .iter()
                        .map(|s| esc(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                b.push_str(&series_svg(&g, &var));
                b.push_str(&blame_svg(&g));
            }
            Err(e) => {
                let _ = write!(b, "<p class=refused>{}</p>", esc(&e));
            }
        }
        b
    }

    /// The values (an export) and writers (blame) of `var`, sites limited to those chosen.
    async fn grid(&self, svc: &Service, node: &str, var: &str) -> Result<Grid, String> {
        let one = |e: crate::update::UpdateError| crate::repo::one_line(&e.to_string());
        let mut buf = Vec::new();
        crate::audit::export(
            &svc.repo,
            node,
            &self.branch,
            &[],
            crate::audit::Format::Json,
            &mut buf,
        )
        .await
        .map_err(one)?;
        let rows: Vec<BTreeMap<String, Value>> =
            serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
        let blame = svc
            .repo
            .blame(node, var, &self.branch, &[])
            .await
            .map_err(one)?;
        let dims: Vec<String> = blame
            .first()
            .map(|r| r.selection.keys().cloned().collect())
            .unwrap_or_default();
        let [a, c] = dims.as_slice() else {
            return Err(format!("'{var}' has no cells to plot"));
        };
        // the time-like dimension: the one whose values look like ISO times
        let looks_time = |d: &str| {
            rows.first()
                .and_then(|r| r.get(d))
                .and_then(Value::as_str)
                .is_some_and(|s| s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-'))
        };
        let (t, s) = if looks_time(c) && !looks_time(a) {
            (c.clone(), a.clone())
        } else {
            (a.clone(), c.clone())
        };
        let mut g = Grid::from_rows(&rows, [t, s], var, self.sites.as_deref())?;
        g.blame(&blame);
        Ok(g)
    }
}

impl Grid {
    fn from_rows(
        rows: &[BTreeMap<String, Value>],
        dims: [String; 2],
        var: &str,
        chosen: Option<&[String]>,
    ) -> Result<Grid, String> {
        let key = |r: &BTreeMap<String, Value>, d: &str| r.get(d).map(plain);
        let mut times: Vec<String> = rows.iter().filter_map(|r| key(r, &dims[0])).collect();
        times.sort();
        times.dedup();
        let mut sites: Vec<String> = Vec::new();
        for s in rows.iter().filter_map(|r| key(r, &dims[1])) {
            if !sites.contains(&s) && chosen.is_none_or(|c| c.contains(&s)) {
                sites.push(s);
            }
        }
        sites.truncate(MAX_SITES);
        if times.is_empty() || sites.is_empty() {
            return Err(format!("'{var}' has no values to plot"));
        }
        let mut values = vec![vec![None; times.len()]; sites.len()];
        for r in rows {
            let (Some(t), Some(s)) = (key(r, &dims[0]), key(r, &dims[1])) else {
                continue;
            };
            let (Ok(ti), Some(si)) = (times.binary_search(&t), sites.iter().position(|x| *x == s))
            else {
                continue;
            };
            values[si][ti] = r.get(var).and_then(Value::as_f64);
        }
        let writer = vec![vec![None; times.len()]; sites.len()];
        Ok(Grid {
            dims,
            times,
            sites,
            values,
            writer,
            authors: vec![],
        })
    }

    /// The cells a blame record covers, by position on each axis.
    fn covered(axis: &[String], sel: Option<&Value>) -> Vec<usize> {
        match sel {
            Some(Value::Array(v)) if v.len() == 2 && !v[0].is_array() => {
                let (lo, hi) = (plain(&v[0]), plain(&v[1]));
                // a run [first, last] in the axis' order; times sort as text
                let i = axis.iter().position(|x| *x == lo);
                let j = axis.iter().position(|x| *x == hi);
                match (i, j) {
                    (Some(i), Some(j)) if i <= j => (i..=j).collect(),
                    _ => v
                        .iter()
                        .filter_map(|x| axis.iter().position(|a| *a == plain(x)))
                        .collect(),
                }
            }
            Some(Value::Array(v)) => v
                .iter()
                .filter_map(|x| axis.iter().position(|a| *a == plain(x)))
                .collect(),
            Some(x) => axis
                .iter()
                .position(|a| *a == plain(x))
                .into_iter()
                .collect(),
            None => vec![],
        }
    }

    fn blame(&mut self, records: &[BlameRecord]) {
        for r in records {
            let Some(author) = &r.author else { continue };
            let who = match self.authors.iter().position(|a| a == author) {
                Some(i) => i,
                None => {
                    self.authors.push(author.clone());
                    self.authors.len() - 1
                }
            };
            let ts = Grid::covered(&self.times, r.selection.get(&self.dims[0]));
            let ss = Grid::covered(&self.sites, r.selection.get(&self.dims[1]));
            for &s in &ss {
                for &t in &ts {
                    self.writer[s][t] = Some(who);
                }
            }
        }
    }
}

const W: f64 = 960.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;

/// The values of each site over time, one line per site, with a legend.
fn series_svg(g: &Grid, var: &str) -> String {
    let h = 260.0;
    let (top, bottom) = (15.0, 35.0);
    let all: Vec<f64> = g.values.iter().flatten().flatten().copied().collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let n = g.times.len().max(2) - 1;
    let x = |i: usize| LEFT + (W - LEFT - RIGHT) * i as f64 / n as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (v - lo) / (hi - lo));
    let mut b = format!(
        "<svg id=series xmlns='http://www.w3.org/2000/svg' width='{W}' height='{h}' \
viewBox='0 0 {W} {h}' role=img aria-label='{} over {}'>",
        esc(var),
        esc(&g.dims[0])
    );
    axes(&mut b, g, h, bottom);
    let _ = write!(
        b,
        "<text x='4' y='{}' font-size='11'>{}</text><text x='4' y='{}' font-size='11'>{}</text>",
        y(hi) + 4.0,
        fmt_num(hi),
        y(lo),
        fmt_num(lo)
    );
    for (si, site) in g.sites.iter().enumerate() {
        let colour = PALETTE[si % PALETTE.len()];
        let mut path = String::new();
        let mut pen_up = true;
        for (ti, v) in g.values[si].iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_up { "M" } else { "L" },
                        x(ti),
                        y(*v)
                    );
                    pen_up = false;
                }
                None => pen_up = true,
            }
        }
        let _ = write!(
            b,
            "<path d='{path}' fill='none' stroke='{colour}' stroke-width='1.5'><title>{}</title></path>",
            esc(site)
        );
        legend(&mut b, si, colour, site);
    }
    b.push_str("</svg>");
    b
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The time axis: first, middle and last label.
fn axes(b: &mut String, g: &Grid, h: f64, bottom: f64) {
    let base = h - bottom;
    let _ = write!(
        b,
        "<line x1='{LEFT}' y1='{base}' x2='{}' y2='{base}' stroke='#888'/>",
        W - RIGHT
    );
    let n = g.times.len();
    for i in [0, n / 2, n - 1] {
        let x = LEFT + (W - LEFT - RIGHT) * i as f64 / (n.max(2) - 1) as f64;
        let _ = write!(
            b,
            "<text x='{x:.1}' y='{}' font-size='11' text-anchor='middle'>{}</text>",
            base + 16.0,
            esc(&g.times[i])
        );
    }
}

fn legend(b: &mut String, i: usize, colour: &str, label: &str) {
    let y = 20.0 + 16.0 * i as f64;
    let x = W - RIGHT + 12.0;
    let _ = write!(
        b,
        "<rect class=legend x='{x}' y='{}' width='10' height='10' fill='{colour}'/>\
<text x='{}' y='{}' font-size='11'>{}</text>",
        y - 9.0,
        x + 14.0,
        y,
        esc(label)
    );
}

/// Time × site, each cell coloured by the contributor who last wrote it, with a legend.
fn blame_svg(g: &Grid) -> String {
    let row = 18.0;
    let (top, bottom) = (10.0, 35.0);
    let h = (top + bottom + row * g.sites.len() as f64).max(40.0 + 16.0 * g.authors.len() as f64);
    let cw = (W - LEFT - RIGHT) / g.times.len() as f64;
    let mut b = format!(
        "<svg id=blame xmlns='http://www.w3.org/2000/svg' width='{W}' height='{h}' \
viewBox='0 0 {W} {h}' role=img aria-label='blame map: {} × {}'>",
        esc(&g.dims[0]),
        esc(&g.dims[1])
    );
    for (si, site) in g.sites.iter().enumerate() {
        let y = top + row * si as f64;
        let _ = write!(
            b,
            "<text x='4' y='{}' font-size='11'>{}</text>",
            y + 13.0,
            esc(site)
        );
        for (ti, w) in g.writer[si].iter().enumerate() {
            let Some(w) = w else { continue };
            let _ = write!(
                b,
                "<rect class=cell x='{:.2}' y='{y}' width='{:.2}' height='{}' fill='{}'>\
<title>{} {} · {} {}: {}</title></rect>",
                LEFT + cw * ti as f64,
                cw.max(0.5),
                row - 2.0,
                PALETTE[w % PALETTE.len()],
                esc(&g.dims[0]),
                esc(&g.times[ti]),
                esc(&g.dims[1]),
                esc(site),
                esc(&g.authors[*w])
            );
        }
    }
    let base = h - bottom;
    let n = g.times.len();
    for i in [0, n - 1] {
        let x = LEFT + cw * i as f64 + cw / 2.0;
        let _ = write!(
            b,
            "<text x='{x:.1}' y='{}' font-size='11' text-anchor='middle'>{}</text>",
            base + 16.0,
            esc(&g.times[i])
        );
    }
    for (i, a) in g.authors.iter().enumerate() {
        legend(&mut b, i, PALETTE[i % PALETTE.len()], a);
    }
    b.push_str("</svg>");
    b
}

/// `POST /ui/revert` and `POST /ui/tag`: the page's forms (the cookie's token), then back to
/// the page with a note.
pub(super) async fn form(
    State(svc): State<Arc<Service>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let headers = with_cookie(&headers);
    let f = query_pairs(&Some(String::from_utf8_lossy(&body).into_owned()));
    let get = move |k: &str| param(&f, k).unwrap_or("").to_string();
    let (route, branch) = match uri.path() {
        "/ui/revert" => ("POST /ui/revert", get("branch")),
        _ => ("POST /ui/tag", get("at")),
    };
    let svc2 = Arc::clone(&svc);
    let h2 = headers.clone();
    let done = super::ops::on_own_thread(move || async move {
        let t = super::http::authenticate(&svc2, &h2)?;
        let t = super::ops::maintainer(t, &branch)?;
        let note: Result<String, Failure> = if route == "POST /ui/revert" {
            let prov = super::ops::provenance(&t, addr, "revert", Some(get("message")));
            let opts = crate::history::HistoryOptions::default();
            match svc2.repo.revert(&get("commit"), &branch, &opts, prov).await {
                Ok(r) => Ok(format!(
                    "reverted {}: new commit {}",
                    get("commit"),
                    r.commit.map(|c| c.to_string()).unwrap_or_default()
                )),
                Err(e) => Ok(format!(
                    "revert refused: {}",
                    crate::repo::one_line(&e.to_string())
                )),
            }
        } else {
            let msg = get("message");
            let msg = (!msg.is_empty()).then_some(msg);
            match svc2
                .repo
                .create_tag(&get("name"), &branch, msg.as_deref())
                .await
            {
                Ok(id) => Ok(format!("tagged {} as {}", id, get("name"))),
                Err(e) => Ok(format!(
                    "tag refused: {}",
                    crate::repo::one_line(&e.to_string())
                )),
            }
        };
        note.map(|n| (n, branch))
    })
    .await;
    let answer = match done {
        Ok(Ok((note, branch))) => Ok((
            StatusCode::SEE_OTHER,
            [(
                "location",
                format!("/?branch={}&note={}", url(&branch), url(&note)),
            )],
        )
            .into_response()),
        Ok(Err(f)) | Err(f) => Err(f),
    };
    finish(&svc, route, &headers, (answer, None))
}
