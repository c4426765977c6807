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
        let repo = dir.join("repo").display().to_string();
        std::fs::write(dir.join("s.yaml"), SCHEMA).unwrap();
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
            format!(
                "tokens: tokens.yaml\nqueue: ./queue\nprotected: [release]\n{extra}endpoints:\n  - {{name: hlavo, node: /, branch: main, format: csv}}\n"
            ),
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
    let routes: [(&str, &str); 7] = [
        ("POST", "/api/v1/push/hlavo"),
        ("POST", "/api/v1/nodes/?branch=main"),
        ("POST", "/api/v1/nodes/?branch=release"),
        ("GET", "/api/v1/uploads/u1-00"),
        ("GET", "/api/v1/log"),
        ("GET", "/api/v1/branches"),
        ("GET", "/api/v1/tags"),
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
            assert!(v["error"].is_string() && v["hint"].is_string(), "{v}");
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
}
