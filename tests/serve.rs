//! `zarr-fuse serve` against real processes on 127.0.0.1: tokens made with `zarr-fuse token`,
//! pushes over HTTP from a client of our own, the commits' identity, the authentication and
//! authorization matrix (every refusal leaves the repository byte-identical), idempotency keys,
//! the upload limit, and SIGKILLs of the server while clients push (every acknowledged upload
//! committed exactly once).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const SCHEMA: &str = "\
VARS:
  temp: {coords: [time, site], unit: K}
COORDS:
  time: {unit: {tick: h, tz: null}}
  site: {type: 'str[8]', sorted: false}
";

fn zf(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(args)
        .env("ZF_AUTHOR", "Setup <setup@example.org>")
        .output()
        .expect("run zarr-fuse")
}

fn ok(args: &[&str]) -> String {
    let o = zf(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A repository, a config and tokens in `dir`.
struct Site {
    dir: PathBuf,
    repo: String,
    config: String,
}

impl Site {
    fn new(dir: &Path, extra: &str) -> Site {
        let tail =
            format!("{extra}endpoints:\n  - {{name: hlavo, node: /, branch: main, format: csv}}\n");
        Site::with(dir, SCHEMA, &tail)
    }

    /// A repository of `schema` and a config ending in `tail`.
    fn with(dir: &Path, schema: &str, tail: &str) -> Site {
        let repo = dir.join("repo").display().to_string();
        std::fs::write(dir.join("s.yaml"), schema).unwrap();
        ok(&[
            "init",
            &repo,
            "--schema",
            &dir.join("s.yaml").display().to_string(),
        ]);
        ok(&["branch", &repo, "create", "release"]);
        let config = dir.join("serve.yaml");
        std::fs::write(
            &config,
            format!("tokens: tokens.yaml\nqueue: ./queue\nprotected: [release]\n{tail}"),
        )
        .unwrap();
        Site {
            dir: dir.to_path_buf(),
            repo,
            config: config.display().to_string(),
        }
    }

    /// `zarr-fuse token add`: the token, alone on the last line.
    fn token(&self, name: &str, roles: &[&str], expires: Option<&str>) -> String {
        let email = format!("{name}@example.org");
        let mut args = vec![
            "token",
            "add",
            "--config",
            &self.config,
            name,
            "--email",
            &email,
        ];
        for r in roles {
            args.extend(["--role", r]);
        }
        if let Some(e) = expires {
            args.extend(["--expires", e]);
        }
        let out = ok(&args);
        out.lines().last().unwrap().trim().to_string()
    }

    fn start(&self) -> Server {
        self.start_with(&[])
    }

    /// The server with more arguments (`--tls-cert`, …).
    fn start_with(&self, extra: &[&str]) -> Server {
        // the request log (one JSON line per request) goes to a file: a pipe nobody reads
        // would fill and stop the server
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
            .args([
                "serve",
                &self.repo,
                "--config",
                &self.config,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("serve");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .or_else(|| line.trim().strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            _stdout: out,
        }
    }

    /// Every file of the repository with its bytes.
    fn fingerprint(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let k = p.strip_prefix(root).unwrap().display().to_string();
                    out.insert(k, std::fs::read(&p).unwrap_or_default());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.dir.join("repo"), &self.dir.join("repo"), &mut out);
        out
    }
}

struct Server {
    child: Child,
    addr: String,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (`Connection: close`); gives the status and the body as JSON (or text).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // a server that refuses early (413 by Content-Length) may close before the body is sent
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(rest).unwrap_or(Value::String(rest.to_string()));
    (status, body)
}

/// A figure for the log of the run: printed, and kept in `target/tmp/serve-figures.txt`
/// (scripts/test.sh shows it after the tests, whose output cargo captures).
fn figure(line: &str) {
    println!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn csv(hour: u32, site: &str, temp: f64) -> String {
    format!("time,site,temp\n2026-01-01T{hour:02}:00:00,{site},{temp}\n")
}

#[test]
fn identity_authentication_and_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "max_upload_mb: 1\n");
    let ada = site.token("ada", &["contributor:main"], None);
    let bob = site.token("bob", &["contributor:main,kalman/*"], None);
    let rita = site.token("rita", &["reader"], None);
    let mia = site.token("mia", &["maintainer:release,main"], None);
    let old = site.token("old", &["contributor:main"], Some("1s"));
    let gone = site.token("gone", &["contributor:main"], None);
    ok(&["token", "revoke", "--config", &site.config, "gone"]);
    let listed: Value =
        serde_json::from_str(&ok(&["token", "list", "--config", &site.config, "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 6);
    let tokens_text = std::fs::read_to_string(dir.path().join("tokens.yaml")).unwrap();
    assert!(
        !tokens_text.contains(&ada),
        "the tokens file holds hashes only"
    );
    std::thread::sleep(Duration::from_millis(1100)); // `old` expires
    let srv = site.start();
    let a = &srv.addr;
    assert_eq!(http(a, "GET", "/healthz", &[], b"").0, 200);

    // absent, unknown, expired, revoked tokens on every route: 401, nothing written
    let before = site.fingerprint();
    let routes: [(&str, &str); 20] = [
        ("POST", "/api/v1/push/hlavo"),
        ("POST", "/api/v1/nodes/?branch=main"),
        ("POST", "/api/v1/nodes/?branch=release"),
        ("GET", "/api/v1/uploads/u1-00"),
        ("GET", "/api/v1/log"),
        ("GET", "/api/v1/show/main"),
        ("GET", "/api/v1/diff?from=main&to=release"),
        ("GET", "/api/v1/blame?var=temp"),
        ("GET", "/api/v1/export"),
        ("GET", "/api/v1/branches"),
        ("GET", "/api/v1/tags"),
        ("POST", "/api/v1/tags"),
        ("POST", "/api/v1/revert"),
        ("POST", "/api/v1/merge"),
        ("POST", "/api/v1/reset"),
        ("POST", "/api/v1/squash"),
        ("POST", "/ui/revert"),
        ("POST", "/ui/tag"),
        ("GET", "/"),
        ("GET", "/?branch=release"),
    ];
    let body = csv(1, "A", 271.0);
    let creds: Vec<Option<String>> = vec![
        None,
        Some(bearer("zf_nope")),
        Some(bearer(&old)),
        Some(bearer(&gone)),
    ];
    for (m, p) in routes {
        for c in &creds {
            let h: Vec<(&str, &str)> = c.iter().map(|c| ("Authorization", c.as_str())).collect();
            let (status, v) = http(a, m, p, &h, body.as_bytes());
            assert_eq!(status, 401, "{m} {p} with {c:?}: {v}");
            if !(p == "/" || p.starts_with("/?")) {
                assert!(v["error"].is_string() && v["hint"].is_string(), "{v}");
            } else {
                // the page answers the sign-in form
                assert!(v.as_str().is_some_and(|t| t.contains("<form")), "{v}");
            }
        }
    }
    // roles: a reader may not push; nobody pushes to a protected branch; a contributor only to
    // its branches
    for (t, p, want) in [
        (&rita, "/api/v1/push/hlavo", "contributor:main"),
        (&ada, "/api/v1/nodes/?branch=release", "protected"),
        (&mia, "/api/v1/nodes/?branch=release", "protected"),
        (
            &ada,
            "/api/v1/nodes/?branch=kalman/k1",
            "contributor:kalman/k1",
        ),
    ] {
        let (status, v) = http(
            a,
            "POST",
            p,
            &[("Authorization", &bearer(t))],
            body.as_bytes(),
        );
        assert_eq!(status, 403, "{p}: {v}");
        assert!(v.to_string().contains(want), "{p}: {v} lacks {want}");
    }
    // bad paths never reach the file system
    let (status, _) = http(
        a,
        "POST",
        "/api/v1/nodes/../etc?branch=main",
        &[("Authorization", &bearer(&ada))],
        body.as_bytes(),
    );
    assert!(status == 400 || status == 404, "{status}");
    let (status, _) = http(
        a,
        "GET",
        "/api/v1/uploads/..%2F..%2Fx",
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert!(status == 400 || status == 404, "{status}");
    // too large: 413
    let big = format!(
        "time,site,temp\n{}",
        "2026-01-01T01:00:00,A,1.0\n".repeat(50_000)
    );
    let (status, _) = http(
        a,
        "POST",
        "/api/v1/push/hlavo",
        &[("Authorization", &bearer(&ada))],
        big.as_bytes(),
    );
    assert_eq!(status, 413);
    assert_eq!(
        site.fingerprint(),
        before,
        "a refusal wrote to the repository"
    );

    // two contributors: each commit names its token's identity, source and upload
    let (s1, v1) = http(
        a,
        "POST",
        "/api/v1/push/hlavo?wait=true",
        &[
            ("Authorization", &bearer(&ada)),
            ("User-Agent", "station-7"),
        ],
        csv(1, "A", 271.0).as_bytes(),
    );
    assert_eq!(s1, 200, "{v1}");
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("bob:{bob}"))
    );
    let (s2, v2) = http(
        a,
        "POST",
        "/api/v1/nodes/?branch=main&wait=true&message=from%20bob",
        &[("Authorization", &basic)],
        csv(2, "B", 272.0).as_bytes(),
    );
    assert_eq!(s2, 200, "{v2}");
    assert_eq!(v2["cells_written"], 1, "{v2}");
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json", "-n", "2"])).unwrap();
    assert_eq!(log[0]["author"], "bob <bob@example.org>");
    assert_eq!(log[0]["message"], "from bob");
    assert_eq!(log[1]["author"], "ada <ada@example.org>");
    assert_eq!(
        log[1]["source"],
        format!("http:hlavo/{}", v1["upload"].as_str().unwrap())
    );
    assert_eq!(log[1]["meta"]["upload"], v1["upload"]);
    assert_eq!(log[1]["meta"]["user_agent"], "station-7");
    assert!(log[1]["meta"]["client"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // the service's log API gives the same
    let (s, l) = http(
        a,
        "GET",
        "/api/v1/log?n=1",
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!((s, l[0]["id"].clone()), (200, log[0]["id"].clone()));

    // a refused upload: the CLI's message, inspectable afterwards; nothing written
    let before = site.fingerprint();
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/push/hlavo?wait=true",
        &[("Authorization", &bearer(&ada))],
        b"time,site,temp\n2026-01-01T03:00:00,A,warm\n",
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("'warm'"), "{v}");
    let id = v["upload"].as_str().unwrap().to_string();
    let (_, st) = http(
        a,
        "GET",
        &format!("/api/v1/uploads/{id}"),
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(st["status"], "refused");
    assert_eq!(site.fingerprint(), before);

    // a retry with the same Idempotency-Key is the same upload, committed once
    let h = [
        ("Authorization", bearer(&ada)),
        ("Idempotency-Key", "fetch-42".to_string()),
    ];
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, first) = http(
        a,
        "POST",
        "/api/v1/push/hlavo?wait=true",
        &h,
        csv(4, "C", 274.0).as_bytes(),
    );
    let (_, again) = http(
        a,
        "POST",
        "/api/v1/push/hlavo?wait=true",
        &h,
        csv(4, "C", 274.0).as_bytes(),
    );
    assert_eq!(first["upload"], again["upload"]);
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json"])).unwrap();
    let n = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["meta"]["upload"] == first["upload"])
        .count();
    assert_eq!(n, 1);
    let (_, metrics) = http(a, "GET", "/metrics", &[], b"");
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("zf_uploads_total{status=\"committed\"}"),
        "{metrics}"
    );
}

/// A client pushing numbered uploads until the server goes away; gives the acknowledged ids.
fn push_until_refused(addr: &str, token: &str, start: u32, acked: &mut Vec<(String, u32)>) {
    for k in start..start + 1000 {
        let body = format!("time,site,temp\n2026-02-01T00:00:00,s{k},{k}\n");
        let r = std::panic::catch_unwind(|| {
            let mut s = TcpStream::connect(addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
            let req = format!(
                "POST /api/v1/push/hlavo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).ok()?;
            let mut resp = String::new();
            s.read_to_string(&mut resp).ok()?;
            let (head, rest) = resp.split_once("\r\n\r\n")?;
            head.contains(" 202 ")
                .then(|| serde_json::from_str::<Value>(rest).ok())?
        });
        match r.ok().flatten() {
            Some(v) => acked.push((v["upload"].as_str().unwrap_or_default().to_string(), k)),
            None => return,
        }
    }
}

#[test]
fn sigkilled_server_commits_every_acknowledged_upload_once() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "");
    let t = site.token("station", &["contributor:main"], None);
    let mut acked: Vec<(String, u32)> = vec![];
    let kills = 30;
    let mut next = 0u32;
    for round in 0..kills {
        let mut srv = site.start();
        let addr = srv.addr.clone();
        let token = t.clone();
        let from = next;
        let client = std::thread::spawn(move || {
            let mut got = vec![];
            push_until_refused(&addr, &token, from, &mut got);
            got
        });
        std::thread::sleep(Duration::from_millis(40 + (round * 37 % 200) as u64));
        let _ = srv.child.kill(); // SIGKILL
        let _ = srv.child.wait();
        let got = client.join().unwrap();
        next += 1000;
        acked.extend(got);
    }
    assert!(
        acked.len() >= kills as usize,
        "the clients got {} uploads through",
        acked.len()
    );
    // a last start works the queue off
    let srv = site.start();
    let reader = site.token("auditor", &["reader"], None);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    for (id, _) in &acked {
        loop {
            let (_, st) = http(
                &srv.addr,
                "GET",
                &format!("/api/v1/uploads/{id}"),
                &[("Authorization", &bearer(&reader))],
                b"",
            );
            if st["status"] == "committed" {
                break;
            }
            assert_ne!(st["status"], "refused", "{id}: {st}");
            assert!(std::time::Instant::now() < deadline, "{id} still {st}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json"])).unwrap();
    let mut per_upload: BTreeMap<String, usize> = BTreeMap::new();
    for c in log.as_array().unwrap() {
        if let Some(u) = c["meta"]["upload"].as_str() {
            *per_upload.entry(u.to_string()).or_default() += 1;
        }
    }
    for (id, k) in &acked {
        assert_eq!(
            per_upload.get(id),
            Some(&1),
            "upload {id} (row {k}) committed {:?} times",
            per_upload.get(id)
        );
    }
    let export = ok(&["export", &site.repo]);
    for (_, k) in &acked {
        assert!(
            export.contains(&format!(",s{k},")),
            "row {k} of an acknowledged upload is missing"
        );
    }
    eprintln!(
        "{kills} SIGKILLs, {} acknowledged uploads, each committed exactly once",
        acked.len()
    );
}

#[test]
fn maintainers_merge_revert_reset_and_tag_readers_blame_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "");
    let ada = site.token("ada", &["contributor:main"], None);
    let mia = site.token("mia", &["maintainer:release,main"], None);
    let rita = site.token("rita", &["reader"], None);
    let srv = site.start();
    let a = &srv.addr;
    let push = |hour: u32, temp: f64| {
        let (s, v) = http(
            a,
            "POST",
            "/api/v1/push/hlavo?wait=true",
            &[("Authorization", &bearer(&ada))],
            csv(hour, "A", temp).as_bytes(),
        );
        assert_eq!(s, 200, "{v}");
        v["commit"].as_str().unwrap().to_string()
    };
    let good = push(1, 271.0);
    let bad = push(2, 999.0);
    // a contributor may not merge into the protected branch; a maintainer may
    let before = site.fingerprint();
    let merge = br#"{"source": "main", "into": "release"}"#;
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/merge",
        &[("Authorization", &bearer(&ada))],
        merge,
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["hint"].as_str().unwrap().contains("maintainer:release"),
        "{v}"
    );
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/merge",
        &[("Authorization", &bearer(&mia))],
        b"{not json",
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(site.fingerprint(), before);
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/merge",
        &[("Authorization", &bearer(&mia))],
        merge,
    );
    assert_eq!(s, 200, "{v}");
    let log: Value =
        serde_json::from_str(&ok(&["log", &site.repo, "release", "--json", "-n", "1"])).unwrap();
    assert_eq!(log[0]["author"], "mia <mia@example.org>");
    assert_eq!(log[0]["id"], v["commit"]);
    // revert the bad contribution on main by cells, as mia
    let body = format!(r#"{{"commit": "{bad}", "branch": "main", "message": "bad sensor"}}"#);
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/revert",
        &[("Authorization", &bearer(&mia))],
        body.as_bytes(),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["operation"], "revert");
    // blame and export as a reader
    let (s, b) = http(
        a,
        "GET",
        "/api/v1/blame?var=temp&where=time=2026-01-01T01:00:00&where=site=A",
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[0]["commit"], good.as_str());
    assert_eq!(b[0]["author"], "ada <ada@example.org>");
    let (s, e) = http(
        a,
        "GET",
        "/api/v1/export?format=csv",
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(s, 200);
    let text = e.as_str().unwrap();
    assert!(text.contains("271") && !text.contains("999"), "{text}");
    // tag the release branch, then reset main to the first contribution
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/tags",
        &[("Authorization", &bearer(&mia))],
        br#"{"name": "v1", "at": "release"}"#,
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/tags",
        &[("Authorization", &bearer(&ada))],
        br#"{"name": "v2", "at": "main"}"#,
    );
    assert_eq!(s, 403, "{v}");
    let body = format!(r#"{{"branch": "main", "rev": "{good}"}}"#);
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/reset",
        &[("Authorization", &bearer(&mia))],
        body.as_bytes(),
    );
    assert_eq!((s, v["commit"].as_str()), (200, Some(good.as_str())), "{v}");
    // show and diff: the CLI's JSON
    let (s, v) = http(
        a,
        "GET",
        &format!("/api/v1/show/{bad}"),
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(s, 200, "{v}");
    let cli: Value = serde_json::from_str(&ok(&["show", &site.repo, &bad, "--json"])).unwrap();
    assert_eq!(v, cli);
    assert_eq!(
        v["changes"]["cells"]["nodes"][""]["temp"]["added"], 1,
        "{v}"
    );
    let (s, v) = http(
        a,
        "GET",
        &format!("/api/v1/diff?from={good}&to={bad}"),
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(s, 200, "{v}");
    let cli: Value =
        serde_json::from_str(&ok(&["diff", &site.repo, &good, &bad, "--json"])).unwrap();
    assert_eq!(v, cli);
    let (s, v) = http(
        a,
        "GET",
        "/api/v1/show/nosuch",
        &[("Authorization", &bearer(&rita))],
        b"",
    );
    assert_eq!(s, 404, "{v}");
    // squash by a maintainer only
    let squash = br#"{"branch": "main", "older_than": "0s", "by": "day"}"#;
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/squash",
        &[("Authorization", &bearer(&ada))],
        squash,
    );
    assert_eq!(s, 403, "{v}");
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/squash",
        &[("Authorization", &bearer(&mia))],
        br#"{"branch": "main", "older_than": "soon", "by": "day"}"#,
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = http(
        a,
        "POST",
        "/api/v1/squash",
        &[("Authorization", &bearer(&mia))],
        squash,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["branch"], "main", "{v}");

    // the config's protection is recorded in the repository: the CLI refuses a direct update
    let listed = ok(&["branch", &site.repo, "protect", "kalman/*", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap(),
        serde_json::json!(["release", "kalman/*"])
    );
    let input = dir.path().join("direct.csv");
    std::fs::write(&input, csv(5, "B", 280.0)).unwrap();
    let before = site.fingerprint();
    let (repo, file) = (site.repo.as_str(), input.to_str().unwrap());
    for branch in ["release", "kalman/k1"] {
        let o = zf(&["update", repo, file, "--branch", branch]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("protected"), "{err}");
        assert!(err.contains("--force-protected"), "{err}");
    }
    assert_eq!(site.fingerprint(), before, "a refused update wrote");
    ok(&[
        "update",
        repo,
        file,
        "--branch",
        "release",
        "--force-protected",
    ]);
    ok(&["branch", repo, "unprotect", "kalman/*"]);
    let o = zf(&["branch", repo, "unprotect", "kalman/*"]);
    assert!(!o.status.success());
}

/// A request the fake yr.no server received.
#[derive(Clone, Debug)]
struct Seen {
    query: String,
    headers: BTreeMap<String, String>,
    at: std::time::Instant,
}

/// A yr.no-like forecast server of our own on 127.0.0.1: `lat=50.1` answers a forecast with
/// `Last-Modified` and a short `Expires`, then 304 to `If-Modified-Since`; `lat=50.2` first
/// answers 429 (`Retry-After: 1`), then like 50.1; `lat=50.3` answers a broken body slowly.
/// Records every request and the most requests it had in flight at once.
struct FakeYr {
    addr: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    max_in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

fn forecast_body(lat: &str, lon: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yrno_forecast.json"),
    )
    .unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["geometry"]["coordinates"] = serde_json::json!([
        lon.parse::<f64>().unwrap(),
        lat.parse::<f64>().unwrap(),
        300
    ]);
    doc.to_string()
}

impl FakeYr {
    fn start() -> FakeYr {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let max_in_flight: Arc<AtomicUsize> = Arc::default();
        let in_flight: Arc<AtomicUsize> = Arc::default();
        let (seen2, max2) = (Arc::clone(&seen), Arc::clone(&max_in_flight));
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let (seen, max, in_flight) = (
                    Arc::clone(&seen2),
                    Arc::clone(&max2),
                    Arc::clone(&in_flight),
                );
                std::thread::spawn(move || {
                    let n = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    answer(conn, &seen);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FakeYr {
            addr,
            seen,
            max_in_flight,
        }
    }

    fn requests(&self, lat: &str) -> Vec<Seen> {
        let key = format!("lat={lat}&");
        let all = self.seen.lock().unwrap();
        all.iter()
            .filter(|s| s.query.contains(&key))
            .cloned()
            .collect()
    }
}

fn answer(mut conn: TcpStream, seen: &std::sync::Mutex<Vec<Seen>>) {
    const LAST_MODIFIED: &str = "Tue, 01 Dec 2026 10:00:00 GMT";
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let query = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let earlier = {
        let mut all = seen.lock().unwrap();
        let key = query.split('&').next().unwrap_or("").to_string();
        let n = all.iter().filter(|s| s.query.starts_with(&key)).count();
        all.push(Seen {
            query: query.clone(),
            headers: headers.clone(),
            at: std::time::Instant::now(),
        });
        n
    };
    let param = |k: &str| {
        query
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    let (lat, lon) = (param("lat"), param("lon"));
    let expires = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
    };
    let (status, extra, body) = if lat == "50.3" {
        std::thread::sleep(Duration::from_millis(2500));
        (
            "200 OK",
            format!("Expires: {}\r\n", expires(3600)),
            "{broken".to_string(),
        )
    } else if lat == "50.2" && earlier == 0 {
        (
            "429 Too Many Requests",
            "Retry-After: 1\r\n".to_string(),
            String::new(),
        )
    } else if headers.get("if-modified-since").map(String::as_str) == Some(LAST_MODIFIED) {
        (
            "304 Not Modified",
            format!("Expires: {}\r\n", expires(3)),
            String::new(),
        )
    } else {
        (
            "200 OK",
            format!(
                "Expires: {}\r\nLast-Modified: {LAST_MODIFIED}\r\n",
                expires(3)
            ),
            forecast_body(&lat, &lon),
        )
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
}

#[test]
fn scrapers_fetch_on_schedule_honour_expires_304_and_429_and_survive_broken_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let yr = FakeYr::start();
    std::fs::write(
        dir.path().join("locations.csv"),
        "name,lat,lon\nA,50.1,14.2\nB,50.2,14.3\nC,50.3,14.4\n",
    )
    .unwrap();
    let schema = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yrno_schema.yaml"),
    )
    .unwrap();
    let tail = format!(
        "endpoints:
  - {{name: hlavo, node: forecast, branch: main, format: yrno, set: {{fresh: \"True\"}}}}
scrapers:
  - name: yrno-test
    schedule: \"*/2 * * * * *\"
    url: \"http://{}/weatherapi/locationforecast/2.0/complete?lat={{lat}}&lon={{lon}}\"
    headers: {{User-Agent: \"hlavo-test/1.0 test@example.org\"}}
    locations: locations.csv
    endpoint: hlavo
    set: {{station: \"{{name}}\"}}
",
        yr.addr
    );
    let site = Site::with(dir.path(), &schema, &tail);
    let srv = site.start();
    std::thread::sleep(Duration::from_secs(11));
    let (s, metrics) = http(&srv.addr, "GET", "/metrics", &[], b"");
    assert_eq!(s, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json"])).unwrap();
    drop(srv);
    let server_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();

    // every request identifies the collector; never two at once
    let all = yr.seen.lock().unwrap().clone();
    assert!(all.len() >= 5, "{all:?} {server_log}");
    for r in &all {
        assert_eq!(r.headers["user-agent"], "hlavo-test/1.0 test@example.org");
    }
    let in_flight = yr.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(in_flight, 1, "two fetches of one scraper ran at once");
    // A: fetched, then only after Expires, with If-Modified-Since (answered 304)
    let a = yr.requests("50.1");
    assert!(a.len() >= 2, "{a:?}");
    assert!(!a[0].headers.contains_key("if-modified-since"));
    for w in a.windows(2) {
        assert!(w[1].headers.contains_key("if-modified-since"), "{w:?}");
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(1900),
            "requested before Expires: {gap:?}"
        );
    }
    // B: 429, then again after Retry-After
    let b = yr.requests("50.2");
    assert!(b.len() >= 2, "{b:?}");
    assert!(b[1].at - b[0].at >= Duration::from_millis(950), "{b:?}");
    // one commit per station fetched with a body; the 304s made none; C was refused
    let by_scraper: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["author"] == "scraper:yrno-test")
        .collect();
    assert_eq!(
        by_scraper.len(),
        2,
        "{server_log} {metrics}\n{}",
        std::fs::read_dir(dir.path().join("queue/done"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let sources: Vec<&str> = by_scraper
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert!(
        sources.iter().any(|s| s.ends_with("lat=50.1&lon=14.2")),
        "{sources:?}"
    );
    assert!(
        sources.iter().any(|s| s.ends_with("lat=50.2&lon=14.3")),
        "{sources:?}"
    );
    assert!(
        metrics.contains("zf_uploads_total{status=\"refused\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("result=\"not_modified\""), "{metrics}");
    let ticks: Vec<f64> = by_scraper
        .iter()
        .map(|c| {
            let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
            (at(&c["time"]) - at(&c["meta"]["scheduled"])).as_seconds_f64()
        })
        .collect();
    figure(&format!(
        "scraper tick → commit: {ticks:?} s (station B's includes its 1 s Retry-After)"
    ));
    assert!(ticks.iter().all(|t| *t >= 0.0 && *t < 10.0), "{ticks:?}");
    // the data: the station from the locations row, the point from the answer
    let rows = ok(&[
        "export", &site.repo, "--node", "forecast", "--format", "json",
    ]);
    let rows: Value = serde_json::from_str(&rows).unwrap();
    let stations: std::collections::BTreeSet<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["station"].as_str().unwrap())
        .collect();
    assert_eq!(stations.into_iter().collect::<Vec<_>>(), ["A", "B"]);
}

/// A headless Chromium, if this machine has one (`ZF_CHROMIUM`, else `chromium` on the PATH).
fn chromium() -> Option<String> {
    let candidates = std::env::var("ZF_CHROMIUM")
        .ok()
        .into_iter()
        .chain(["chromium", "chromium-browser", "google-chrome"].map(String::from));
    for c in candidates {
        let ok = Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    None
}

fn headless(browser: &str, extra: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let dir = format!("--user-data-dir={}", profile.path().display());
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1500",
            &dir,
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}

/// What the page must show for the history of `audit_page_in_a_real_browser`: a row per
/// commit, both contributors in the blame map with a legend, the cell bob overwrote blamed on
/// him, the queue with both uploads.
fn check_page(html: &str, commits: &[Value], uploads: &[&str]) {
    let rows = html.matches("class=\"commit\"").count() + html.matches("class=commit ").count();
    assert_eq!(rows, commits.len(), "commit rows: {html}");
    for c in commits {
        assert!(
            html.contains(c["id"].as_str().unwrap()),
            "{} missing",
            c["id"]
        );
    }
    for who in ["ada &lt;ada@example.org&gt;", "bob &lt;bob@example.org&gt;"] {
        assert!(html.contains(who), "{who} missing");
    }
    assert!(
        html.contains("id=\"blame\"") || html.contains("id=blame"),
        "no blame map"
    );
    let cells = html.matches("class=\"cell\"").count() + html.matches("class=cell ").count();
    assert_eq!(cells, 6, "blame cells: 3 times × 2 sites");
    assert!(
        html.contains("time 2026-01-01T01:00:00 · site A: bob &lt;bob@example.org&gt;"),
        "the overwritten cell is blamed on bob"
    );
    assert!(
        html.contains("time 2026-01-01T00:00:00 · site B: ada &lt;ada@example.org&gt;"),
        "ada's cell"
    );
    let legend = html.matches("class=\"legend\"").count() + html.matches("class=legend ").count();
    assert!(legend >= 4, "legends of sites and contributors: {legend}");
    for u in uploads {
        assert!(html.contains(u), "upload {u} not in the queue");
    }
}

#[test]
fn audit_page_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "");
    let ada = site.token("ada", &["contributor:main"], None);
    let bob = site.token("bob", &["contributor:main"], None);
    let rita = site.token("rita", &["reader"], None);
    let mia = site.token("mia", &["maintainer:main"], None);
    let srv = site.start();
    let a = &srv.addr;
    let mut uploads = vec![];
    for (t, body) in [
        (&ada, "time,site,temp\n2026-01-01T00:00:00,A,270\n2026-01-01T01:00:00,A,271\n2026-01-01T00:00:00,B,272\n2026-01-01T01:00:00,B,273\n"),
        (&bob, "time,site,temp\n2026-01-01T01:00:00,A,275\n2026-01-01T02:00:00,A,276\n2026-01-01T02:00:00,B,274\n"),
    ] {
        let (s, v) = http(a, "POST", "/api/v1/push/hlavo?wait=true", &[("Authorization", &bearer(t))], body.as_bytes());
        assert_eq!(s, 200, "{v}");
        uploads.push(v["upload"].as_str().unwrap().to_string());
    }
    let uploads: Vec<&str> = uploads.iter().map(String::as_str).collect();
    let commits: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json"])).unwrap();
    let commits = commits.as_array().unwrap().clone();

    // without a token: the login form, nothing else
    let (s, v) = http(a, "GET", "/", &[], b"");
    assert_eq!(s, 401);
    let text = v.as_str().unwrap();
    assert!(
        text.contains("<form") && !text.contains("id=history"),
        "{text}"
    );
    // ?token= once: a cookie, then the page (Rust-only: the HTML as served)
    let mut conn = TcpStream::connect(a).unwrap();
    write!(
        conn,
        "GET /?token={rita} HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    conn.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let (s, v) = http(a, "GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(s, 200);
    let served = v.as_str().unwrap().to_string();
    check_page(&served, &commits, &uploads);
    assert!(
        !served.contains("/ui/revert"),
        "a reader sees no maintainer forms"
    );
    assert!(!served.contains("<script"), "the page runs no script");

    // a maintainer's revert form (the cookie's token) makes a revert commit by mia
    let (s, _) = http(a, "GET", &format!("/?token={mia}"), &[], b"");
    assert_eq!(s, 303);
    let bob_commit = commits[0]["id"].as_str().unwrap();
    let form = format!("commit={bob_commit}&branch=main");
    let (s, v) = http(
        a,
        "POST",
        "/ui/revert",
        &[
            ("Cookie", &format!("zf_token={mia}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    );
    assert_eq!(s, 303, "{v}");
    let (s, _) = http(
        a,
        "POST",
        "/ui/revert",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        form.as_bytes(),
    );
    assert_eq!(s, 403, "a reader may not revert");
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json", "-n", "1"])).unwrap();
    assert_eq!(
        (log[0]["operation"].as_str(), log[0]["author"].as_str()),
        (Some("revert"), Some("mia <mia@example.org>"))
    );
    ok(&[
        "reset", &site.repo, bob_commit, "--branch", "main", "--force",
    ]);

    // the same in a real browser: the DOM it built, and a screenshot kept as an artifact
    let Some(browser) = chromium() else {
        figure("SKIPPED: the audit page in a browser: no Chromium (install the Debian package `chromium`, or set ZF_CHROMIUM); the page was checked as served only");
        return;
    };
    let url = format!("http://{a}/?token={rita}&commit={bob_commit}");
    let o = headless(&browser, &["--dump-dom"], &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout).into_owned();
    check_page(&dom, &commits, &uploads);
    assert!(
        dom.contains("id=\"diff\""),
        "the commit's diff by coordinates"
    );
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let o = headless(&browser, &[&arg], &url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    figure(&format!("screenshot of the audit page: {}", shot.display()));
}

/// A bounded load test (not a timed assertion: the figures are printed for the closing note):
/// 8 clients × 50 uploads with `wait=true`; every upload committed once.
#[test]
fn load_eight_clients_fifty_uploads_each() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "");
    let tokens: Vec<String> = (0..8)
        .map(|i| site.token(&format!("c{i}"), &["contributor:main"], None))
        .collect();
    let srv = site.start();
    let started = std::time::Instant::now();
    let lat: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(c, t)| {
                let addr = srv.addr.clone();
                s.spawn(move || {
                    (0..50u32)
                        .map(|i| {
                            let body = csv(i % 24, &format!("c{c}s{}", i / 24), f64::from(i));
                            let t0 = std::time::Instant::now();
                            let (st, v) = http(
                                &addr,
                                "POST",
                                "/api/v1/push/hlavo?wait=true",
                                &[("Authorization", &bearer(t))],
                                body.as_bytes(),
                            );
                            assert_eq!(st, 200, "{v}");
                            t0.elapsed().as_secs_f64() * 1000.0
                        })
                        .collect::<Vec<f64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    figure(&format!(
        "load: 8 clients × 50 uploads: {:.1} commits/s, upload→commit p50 {:.1} ms, p99 {:.1} ms ({} build)",
        lat.len() as f64 / wall,
        q(0.5),
        q(0.99),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    ));
    let log: Value = serde_json::from_str(&ok(&["log", &site.repo, "--json"])).unwrap();
    let mut ids: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["meta"]["upload"].as_str())
        .collect();
    assert_eq!(ids.len(), 400);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 400, "an upload committed twice");
}

/// `--tls-cert/--tls-key`: HTTPS with rustls (a self-signed certificate made by openssl, a
/// client that trusts only it: curl).
#[test]
fn https_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    let has_curl = Command::new("curl").arg("--version").output().is_ok();
    if !made.is_ok_and(|o| o.status.success()) || !has_curl {
        figure("SKIPPED: https_with_a_certificate needs openssl and curl");
        return;
    }
    let site = Site::new(dir.path(), "");
    let ada = site.token("ada", &["contributor:main"], None);
    // a key that is not a key: one line naming the file, no server
    let o = zf(&[
        "serve",
        &site.repo,
        "--config",
        &site.config,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        cert.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("cert.pem"), "{err}");
    let srv = site.start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let base = format!("https://{}", srv.addr);
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-sS", "--cacert", cert.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(
        curl(&[&format!("{base}/healthz")]),
        (true, "ok\n".to_string())
    );
    let auth = format!("Authorization: Bearer {ada}");
    let (okay, body) = curl(&[
        "-H",
        &auth,
        "--data-binary",
        &csv(1, "A", 271.0),
        &format!("{base}/api/v1/push/hlavo?wait=true"),
    ]);
    assert!(okay, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "committed", "{v}");
    // plain HTTP to the HTTPS port gets no answer
    let (s, _) = http(&srv.addr, "GET", "/healthz", &[], b"");
    assert_ne!(s, 200);
}

/// `public_read: true`: the page and the reading routes without a token; writing still needs one.
#[test]
fn public_read_opens_reading_only() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path(), "public_read: true\n");
    let srv = site.start();
    let a = &srv.addr;
    let (s, v) = http(a, "GET", "/", &[], b"");
    assert_eq!(s, 200);
    let page = v.as_str().unwrap();
    assert!(
        page.contains("id=history") && page.contains("anonymous reader"),
        "{page}"
    );
    assert!(!page.contains("/ui/revert"));
    assert_eq!(http(a, "GET", "/api/v1/log", &[], b"").0, 200);
    let before = site.fingerprint();
    let (s, _) = http(
        a,
        "POST",
        "/api/v1/push/hlavo",
        &[],
        csv(1, "A", 1.0).as_bytes(),
    );
    assert_eq!(s, 401);
    let (s, _) = http(a, "POST", "/ui/tag", &[], b"name=v1&at=main");
    assert_eq!(s, 401);
    assert_eq!(site.fingerprint(), before);
}
