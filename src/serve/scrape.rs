//! Active scrapers (config `scrapers`, spec/031): on a cron schedule (UTC), one request per row
//! of a locations table, each answer queued as an upload to the scraper's endpoint — processed
//! exactly as a push there — under the identity `scraper:NAME` with the URL as source. A scraper
//! honours `Expires` (no request before) and `Last-Modified` (`If-Modified-Since`; a 304 makes no
//! upload), sends its headers (yr.no asks for an identifying User-Agent), backs off on 429 and
//! 5xx, and never runs two rounds at once. A failed fetch is logged and counted, never fatal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::queue::{write_durably, Upload};
use super::{log_line, ServeError, Service};

/// Attempts per request when the server answers 429 or 5xx (or the connection fails).
const ATTEMPTS: u32 = 4;
/// The longest wait between attempts, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// A scraper as configured.
#[derive(Clone, Debug)]
pub struct Scraper {
    /// Its name (the author is `scraper:NAME`).
    pub name: String,
    /// When it runs: cron, UTC (5 fields, or 6 with seconds first).
    pub schedule: croner::Cron,
    /// The URL, with `{column}` placeholders from the locations row.
    pub url: String,
    /// Request headers (User-Agent, …).
    pub headers: BTreeMap<String, String>,
    /// The locations table (CSV with a header row): one request per row; none: one request.
    pub locations: Option<PathBuf>,
    /// The endpoint whose processing the answers get.
    pub endpoint: String,
    /// Constant columns (with placeholders) added to the endpoint's.
    pub set: BTreeMap<String, String>,
}

/// A scraper in the config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScraper {
    name: String,
    schedule: String,
    url: String,
    #[serde(default, deserialize_with = "super::config::scalar_map")]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    locations: Option<PathBuf>,
    endpoint: String,
    #[serde(default, deserialize_with = "super::config::scalar_map")]
    set: BTreeMap<String, String>,
}

impl RawScraper {
    /// Check it against the config (`dir`: the config's folder; `endpoints`: their names).
    pub(super) fn check(self, dir: &Path, endpoints: &[&str]) -> Result<Scraper, String> {
        let name = self.name;
        let at = |why: String| format!("scraper '{name}': {why}");
        super::http::check_name(&name).map_err(at)?;
        let schedule: croner::Cron = self.schedule.parse().map_err(|e| {
            at(format!(
                "schedule '{}': {e} (cron, UTC: \"15 * * * *\")",
                self.schedule
            ))
        })?;
        if !endpoints.contains(&self.endpoint.as_str()) {
            return Err(at(format!(
                "endpoint '{}' is not in the config's endpoints ({})",
                self.endpoint,
                endpoints.join(", ")
            )));
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(at(format!("url '{}' is not http(s)", self.url)));
        }
        let locations = self.locations.map(|p| dir.join(p));
        let s = Scraper {
            name: name.clone(),
            schedule,
            url: self.url,
            headers: self.headers,
            locations,
            endpoint: self.endpoint,
            set: self.set,
        };
        // every placeholder must name a column of the table
        for row in s.rows().map_err(at)? {
            s.request(&row).map_err(at)?;
        }
        Ok(s)
    }
}

/// One request of a round: the URL and the constant columns, placeholders filled.
struct Request {
    url: String,
    set: Vec<(String, String)>,
}

impl Scraper {
    /// The locations rows (column → value); one empty row without a table.
    fn rows(&self) -> Result<Vec<BTreeMap<String, String>>, String> {
        let Some(path) = &self.locations else {
            return Ok(vec![BTreeMap::new()]);
        };
        let at = |e: &dyn std::fmt::Display| format!("locations {}: {e}", path.display());
        let mut r = csv::Reader::from_path(path).map_err(|e| at(&e))?;
        let header: Vec<String> = r
            .headers()
            .map_err(|e| at(&e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        r.records()
            .map(|rec| {
                let rec = rec.map_err(|e| at(&e))?;
                Ok(header
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(|v| v.trim().to_string()))
                    .collect())
            })
            .collect()
    }

    fn request(&self, row: &BTreeMap<String, String>) -> Result<Request, String> {
        Ok(Request {
            url: fill(&self.url, row)?,
            set: self
                .set
                .iter()
                .map(|(k, v)| Ok((k.clone(), fill(v, row)?)))
                .collect::<Result<_, String>>()?,
        })
    }
}

/// `text` with every `{column}` replaced by the row's value.
fn fill(text: &str, row: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let j = tail
            .find('}')
            .ok_or_else(|| format!("'{text}': a '{{' without '}}'"))?;
        let col = &tail[..j];
        let v = row.get(col).ok_or_else(|| {
            let cols: Vec<&str> = row.keys().map(String::as_str).collect();
            format!(
                "'{text}': no column '{col}' in the locations (columns: {})",
                cols.join(", ")
            )
        })?;
        out.push_str(v);
        rest = &tail[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What a scraper remembers of each URL (kept in the queue folder across restarts).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Seen {
    /// The last `Last-Modified` answered (sent back as `If-Modified-Since`).
    last_modified: Option<String>,
    /// No request before this (`Expires`).
    expires: Option<DateTime<Utc>>,
}

fn state_path(svc: &Service, name: &str) -> PathBuf {
    svc.config
        .queue
        .join("scrapers")
        .join(format!("{name}.json"))
}

fn load_state(svc: &Service, name: &str) -> BTreeMap<String, Seen> {
    std::fs::read(state_path(svc, name))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save_state(svc: &Service, name: &str, seen: &BTreeMap<String, Seen>) {
    let path = state_path(svc, name);
    let written = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
        .map_err(|source| ServeError::Io {
            path: path.clone(),
            source,
        })
        .and_then(|()| write_durably(&path, &serde_json::to_vec(seen).unwrap_or_default()));
    if let Err(e) = written {
        note(name, "-", "state", Some(&e.to_string()));
    }
}

/// A JSON line on the log about a scraper.
fn note(name: &str, upload: &str, what: &str, error: Option<&str>) {
    let route = format!("scrape {name} {what}");
    eprintln!("{}", log_line(&route, "-", upload, 0, error));
}

/// Run every configured scraper until the process ends.
pub(super) fn start(svc: &Arc<Service>) {
    for s in svc.config.scrapers.clone() {
        tokio::spawn(run(Arc::clone(svc), s));
    }
}

/// One scraper: wait for each tick, run a round; ticks missed during a round are skipped.
async fn run(svc: Arc<Service>, s: Scraper) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => return note(&s.name, "-", "client", Some(&e.to_string())),
    };
    let mut seen = load_state(&svc, &s.name);
    loop {
        let next = match s.schedule.find_next_occurrence(&Utc::now(), false) {
            Ok(t) => t,
            Err(e) => return note(&s.name, "-", "schedule", Some(&e.to_string())),
        };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        round(&svc, &s, &client, &mut seen, next).await;
        save_state(&svc, &s.name, &seen);
    }
}

/// One request per locations row.
async fn round(
    svc: &Service,
    s: &Scraper,
    client: &reqwest::Client,
    seen: &mut BTreeMap<String, Seen>,
    tick: DateTime<Utc>,
) {
    let rows = match s.rows() {
        Ok(r) => r,
        Err(e) => {
            svc.metrics.scraped(&s.name, "failed");
            return note(&s.name, "-", "locations", Some(&e));
        }
    };
    for row in rows {
        let req = match s.request(&row) {
            Ok(r) => r,
            Err(e) => {
                svc.metrics.scraped(&s.name, "failed");
                note(&s.name, "-", "locations", Some(&e));
                continue;
            }
        };
        let entry = seen.entry(req.url.clone()).or_default();
        if entry.expires.is_some_and(|t| t > Utc::now()) {
            svc.metrics.scraped(&s.name, "fresh");
            continue;
        }
        let result = match fetch(s, client, &req.url, entry).await {
            Ok(Some(body)) => enqueue(svc, s, &req, body, tick).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match result {
            Ok(Some(id)) => {
                svc.metrics.scraped(&s.name, "queued");
                note(&s.name, &id, "queued", None);
                svc.work.notify_one();
            }
            Ok(None) => svc.metrics.scraped(&s.name, "not_modified"),
            Err(e) => {
                svc.metrics.scraped(&s.name, "failed");
                note(&s.name, "-", &req.url, Some(&e));
            }
        }
    }
}

/// GET `url` (conditionally), with retries on 429/5xx: the body, or `None` for 304.
async fn fetch(
    s: &Scraper,
    client: &reqwest::Client,
    url: &str,
    seen: &mut Seen,
) -> Result<Option<bytes::Bytes>, String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        let mut rq = client.get(url);
        for (k, v) in &s.headers {
            rq = rq.header(k, v);
        }
        if let Some(lm) = &seen.last_modified {
            rq = rq.header("if-modified-since", lm);
        }
        let wait = match rq.send().await {
            Ok(resp) => {
                let status = resp.status();
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                if status.is_success() || status.as_u16() == 304 {
                    seen.expires = header("expires").and_then(|e| http_date(&e));
                    if let Some(lm) = header("last-modified") {
                        seen.last_modified = Some(lm);
                    }
                    if status.as_u16() == 304 {
                        return Ok(None);
                    }
                    let body = resp.bytes().await.map_err(|e| format!("reading: {e}"))?;
                    return Ok(Some(body));
                }
                last = format!("HTTP {status}");
                if status.as_u16() != 429 && !status.is_server_error() {
                    return Err(last);
                }
                header("retry-after")
                    .and_then(|r| r.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            }
            Err(e) => {
                last = e.to_string();
                None
            }
        };
        if attempt + 1 < ATTEMPTS {
            let backoff = Duration::from_secs(1 << attempt);
            tokio::time::sleep(wait.unwrap_or(backoff).min(MAX_WAIT)).await;
        }
    }
    Err(format!("{last} after {ATTEMPTS} attempts"))
}

/// An HTTP date (`Tue, 01 Dec 2026 10:00:00 GMT`).
fn http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Put a fetched answer into the queue as an upload to the scraper's endpoint.
fn enqueue(
    svc: &Service,
    s: &Scraper,
    req: &Request,
    body: bytes::Bytes,
    tick: DateTime<Utc>,
) -> Result<String, String> {
    let ep = svc
        .config
        .endpoint(&s.endpoint)
        .ok_or_else(|| format!("no endpoint '{}'", s.endpoint))?;
    let id = super::queue::Queue::new_id();
    write_durably(&svc.queue.temp_body(&id), &body).map_err(|e| e.to_string())?;
    let mut set: Vec<(String, String)> =
        ep.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    set.extend(req.set.iter().cloned());
    let who = format!("scraper:{}", s.name);
    let up = Upload {
        id: id.clone(),
        endpoint: Some(ep.name.clone()),
        node: ep.node.trim_matches('/').to_string(),
        branch: ep.branch.clone(),
        format: ep.format.clone(),
        set,
        message: Some(format!("Scraper {} fetched {}", s.name, req.url)),
        author: who.clone(),
        token: who,
        client: "scraper".into(),
        user_agent: s
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
            .map(|(_, v)| v.clone()),
        received: Utc::now(),
        source: req.url.clone(),
        bytes: body.len() as u64,
        meta: BTreeMap::from([(
            "scheduled".to_string(),
            tick.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )]),
    };
    svc.queue.commit(&up).map_err(|e| e.to_string())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_from_the_row_or_refused() {
        let row = BTreeMap::from([("lat".to_string(), "50.1".to_string())]);
        assert_eq!(fill("a?lat={lat}&x=1", &row).unwrap(), "a?lat=50.1&x=1");
        assert!(fill("{lon}", &row).unwrap_err().contains("no column 'lon'"));
        assert!(fill("{lat", &row).is_err());
        assert_eq!(
            http_date("Tue, 01 Dec 2026 10:00:00 GMT").map(|t| t.to_rfc3339()),
            Some("2026-12-01T10:00:00+00:00".into())
        );
    }
}
