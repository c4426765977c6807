//! The CLI contract other tools script against: commands, JSON fields, exit codes, errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use zarr_fuse::Location;

fn zf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(args)
        .env("ZF_AUTHOR", AUTHOR)
        .output()
        .expect("run zarr-fuse")
}

fn zf_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zarr-fuse"));
    c.args(args).env("ZF_AUTHOR", AUTHOR);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run zarr-fuse")
}

fn ok_json(args: &[&str]) -> Value {
    let out = zf(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn ok_text(args: &[&str]) -> String {
    let out = zf(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fails(args: &[&str], code: i32, needle: &str) {
    let out = zf(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {err}");
    assert!(
        err.contains(needle),
        "{args:?}: stderr does not mention '{needle}': {err}"
    );
    if code == 1 {
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one-line error expected: {err}"
        );
    }
}

fn setup(dir: &Path) -> (String, Vec<String>) {
    let repo = dir.join("repo");
    let schema = dir.join("schema.yaml");
    std::fs::write(&schema, "VARS: {}\n").unwrap();
    let r = repo.to_str().unwrap().to_string();
    let init = ok_json(&["init", &r, "--schema", schema.to_str().unwrap(), "--json"]);
    let mut ids = vec![init["commit"].as_str().unwrap().to_string()];
    // data commits through the library (the `update` command comes with the schema layer)
    rt().block_on(async {
        let repo = zarr_fuse::Repo::open(&Location::Local(repo.clone()))
            .await
            .unwrap();
        ids.push(
            write(&repo, "main", &["a"], 1.0, "one")
                .await
                .commit
                .unwrap()
                .to_string(),
        );
        ids.push(
            write(&repo, "main", &["a", "b"], 2.0, "two")
                .await
                .commit
                .unwrap()
                .to_string(),
        );
    });
    (r, ids)
}

#[test]
fn log_show_diff_json_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = setup(dir.path());
    let log = ok_json(&["log", &r, "--json"]);
    let arr = log.as_array().unwrap();
    assert_eq!(arr.len(), 4, "root + init + 2");
    assert_eq!(arr[0]["id"], ids[2].as_str(), "newest first");
    // times are RFC 3339 in UTC with microseconds, as they always were
    let t = arr[0]["time"].as_str().unwrap();
    let b = t.as_bytes();
    assert!(
        t.len() == 27 && b[10] == b'T' && b[19] == b'.' && t.ends_with('Z'),
        "time {t}"
    );
    for key in [
        "id",
        "parents",
        "time",
        "author",
        "message",
        "source",
        "input_blake3",
        "schema_blake3",
        "content_digest",
        "meta",
    ] {
        assert!(arr[0].get(key).is_some(), "log --json lacks '{key}'");
    }
    assert_eq!(arr[0]["author"], AUTHOR);
    assert_eq!(arr[0]["parents"][0], ids[1].as_str());
    assert!(
        arr[2]["schema_blake3"]
            .as_str()
            .is_some_and(|s| s.len() == 64),
        "init records the schema digest"
    );
    assert_eq!(
        ok_json(&["log", &r, "--at", &ids[1], "--json"])[0]["id"],
        ids[1].as_str()
    );
    let text = ok_text(&["log", &r, "-n", "1"]);
    assert!(text.contains(&ids[2]) && text.contains("two"));

    let show = ok_json(&["show", &r, &ids[2][..8], "--json"]);
    assert_eq!(show["id"], ids[2].as_str());
    assert_eq!(show["changes"]["arrays_added"][0], "/b");
    assert_eq!(show["changes"]["chunk_counts"]["/a"], 1);

    let diff = ok_json(&["diff", &r, &ids[1], &ids[2], "--json"]);
    assert_eq!(diff["chunk_counts"]["/a"], 1);
    assert_eq!(diff["arrays_added"][0], "/b");
    assert!(ok_text(&["diff", &r, "main", "main"]).contains("no differences"));
}

#[test]
fn branches_tags_reset_revert_merge_verify_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = setup(dir.path());
    ok_text(&["branch", &r, "create", "kalman", "--from", &ids[1]]);
    let branches = ok_json(&["branch", &r, "list", "--json"]);
    assert_eq!(branches[0]["name"], "kalman");
    assert_eq!(branches[0]["commit"], ids[1].as_str());
    ok_text(&["tag", &r, "create", "v1.0", "--at", "main", "-m", "first"]);
    let tags = ok_json(&["tag", &r, "list", "--json"]);
    assert_eq!(tags[0]["name"], "v1.0");
    assert_eq!(tags[0]["commit"], ids[2].as_str());
    fails(&["tag", &r, "create", "v1.0"], 1, "immutable");

    let rev = ok_json(&["revert", &r, &ids[2], "--json", "-m", "undo two"]);
    let rc = rev["commit"].as_str().unwrap().to_string();
    let log = ok_json(&["log", &r, "--json", "-n", "1"]);
    assert_eq!(log[0]["id"], rc.as_str());
    assert_eq!(log[0]["reverts"], ids[2].as_str());
    let diff = ok_json(&["diff", &r, &ids[1], "main", "--json"]);
    assert!(
        diff["arrays_added"].as_array().unwrap().is_empty()
            && diff["chunk_counts"].as_object().unwrap().is_empty(),
        "{diff}"
    );

    let merged = ok_json(&["merge", &r, "kalman", "--into", "main", "--json"]);
    assert!(
        merged["commit"].is_null(),
        "kalman is contained in main: nothing to merge"
    );
    let cp = ok_json(&["cherry-pick", &r, &ids[2], "--branch", "kalman", "--json"]);
    assert!(cp["commit"].is_string());
    // a commit only kalman has is outside main's history: the CLI names the flag that allows it
    let picked = cp["commit"].as_str().unwrap();
    fails(&["reset", &r, "--branch", "main", picked], 1, "--force");

    let v = ok_json(&["verify", &r, "--json"]);
    assert_eq!(v["ok"], true);
    let reset = ok_json(&["reset", &r, "--branch", "main", &ids[1], "--json"]);
    assert_eq!(reset["commit"], ids[1].as_str());
    let gc = ok_json(&["gc", &r, "--older-than", "0s", "--dry-run", "--json"]);
    assert_eq!(gc["dry_run"], true);
    ok_text(&["gc", &r, "--older-than", "0s"]);
    assert_eq!(ok_json(&["verify", &r, "kalman", "--json"])["ok"], true);
    // kalman holds the cherry-pick, which no other ref reaches: git's -d/-D rule
    fails(
        &["branch", &r, "delete", "kalman"],
        1,
        "no other branch or tag reaches",
    );
    assert_eq!(
        ok_json(&["branch", &r, "list", "--json"])[0]["name"],
        "kalman"
    );
    ok_text(&["branch", &r, "delete", "kalman", "--force"]);
    // a branch whose commits another ref reaches goes without --force
    ok_text(&["branch", &r, "create", "copy", "--from", "main"]);
    ok_text(&["branch", &r, "delete", "copy"]);
    fails(&["merge", &r, "main", "--into", "main"], 1, "into itself");
}

#[test]
fn errors_are_one_line_with_exit_1_and_usage_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (r, ids) = setup(dir.path());
    let nothing = dir.path().join("nothing");
    fails(
        &["log", nothing.to_str().unwrap()],
        1,
        "not a zarr-fuse repository",
    );
    fails(&["log", &r, "nosuch"], 1, "branches: main");
    fails(&["show", &r, "ABC"], 1, "at least 6");
    fails(&["branch", &r, "create", "main"], 1, "already exists");
    fails(&["branch", &r, "delete", "ghost"], 1, "does not exist");
    fails(
        &["reset", &r, "--branch", "ghost", "main"],
        1,
        "does not exist",
    );
    fails(
        &["revert", &r, &ids[0], "--author", "nobody"],
        1,
        "Name <email>",
    );
    fails(&["gc", &r, "--older-than", "soon"], 2, "--older-than");
    fails(&["log", "s3://x"], 1, "at least 3 characters");
    fails(&["log", "ftp://host/x"], 1, "unsupported scheme");
    fails(
        &[
            "init",
            dir.path().join("new").to_str().unwrap(),
            "--schema",
            "/no/such/schema.yaml",
        ],
        1,
        "/no/such/schema.yaml",
    );
    fails(&["frobnicate"], 2, "unrecognized subcommand");
    // an unreachable S3 endpoint: a quick one-line error that says what to check
    let t = std::time::Instant::now();
    let out = zf_env(
        &["log", "s3://bucket/prefix"],
        &[
            ("ZF_S3_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("ZF_S3_ACCESS_KEY", "k"),
            ("ZF_S3_SECRET_KEY", "s"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("ZF_S3_ENDPOINT_URL"), "{err}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
    let out = zf_env(
        &["log", "s3://bucket/prefix"],
        &[("ZF_S3_ENDPOINT_URL", "ftp://x")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("must start with http"));
    fails(&["log"], 2, "REPO");
    fails(&["revert", &r, &ids[2], "--strategy", "ours"], 2, "theirs");
    // a refused write leaves the repository as it was
    let before = ok_json(&["log", &r, "--json"]);
    fails(&["tag", &r, "create", "bad name"], 1, "not allowed");
    assert_eq!(ok_json(&["log", &r, "--json"]), before);
}

#[test]
fn release_verify_and_import_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    ok_text(&["demo", &p("repo")]);
    let rep = ok_json(&["release", &p("repo"), "v1.0", "--out", &p("pkg"), "--json"]);
    assert_eq!(rep["tag"], "v1.0");
    assert_eq!(rep["files"].as_array().unwrap().len(), 6, "{rep}");
    let v = ok_json(&[
        "release",
        "verify",
        &p("pkg"),
        "--repo",
        &p("repo"),
        "--json",
    ]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["computed_digest"], rep["content_digest"]);
    // usage and refusals: exit 1, one line naming the problem
    fails(
        &["release", &p("repo"), "v1.0"],
        1,
        "usage: zarr-fuse release",
    );
    fails(
        &["release", &p("repo"), "v1.0", "--out", &p("pkg")],
        1,
        "is not empty",
    );
    fails(
        &["release", &p("repo"), "nope", "--out", &p("o")],
        1,
        "tag 'nope' not found",
    );
    fails(
        &["release", "verify", &p("repo")],
        1,
        "not a zarr-fuse release package",
    );
    std::fs::write(dir.path().join("pkg/zenodo.json"), "{}").unwrap();
    let out = zf(&["release", "verify", &p("pkg")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROBLEM zenodo.json: MD5") && text.contains("FAILED"),
        "{text}"
    );
    fails(&["import", &p("copy"), &p("pkg")], 1, "zenodo.json");
    assert!(!dir.path().join("copy").exists());
    ok_text(&["release", &p("repo"), "v1.0", "--out", &p("pkg2")]);
    let imp = ok_json(&["import", &p("copy"), &p("pkg2"), "--json"]);
    assert_eq!(imp["digest_matches"], true);
    assert_eq!(imp["branch"], "main");
    let log = ok_json(&["log", &p("copy"), "-n", "1", "--json"]);
    assert_eq!(log[0]["operation"], "import");
    assert_eq!(log[0]["author"], AUTHOR);
}

/// Issue B item 4 from the command line: writer processes updating one branch from files at
/// once, every update appending the same new times (each writer its own site), all land; an
/// update that loses the race reads its file again and is planned anew on the new tip.
#[test]
fn concurrent_file_updates_all_land() {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 2;
    const TIMES: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("s.yaml");
    std::fs::write(
        &schema,
        "VARS:\n  temp: {coords: [t, site]}\nCOORDS:\n  t: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: UTC}}\n  site: {type: 'str[8]', sorted: false}\n",
    )
    .unwrap();
    let repo = dir.path().join("repo").to_str().unwrap().to_string();
    ok_text(&["init", &repo, "--schema", schema.to_str().unwrap()]);
    let value = |w: usize, u: usize, i: usize| (w * 1000 + u * 100 + i) as f64;
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (repo, dir) = (repo.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let mut attempts = 0;
                for u in 0..ROUNDS {
                    let mut csv = String::from("t,site,temp\n");
                    for i in 0..TIMES {
                        let t = 3600 * (u * TIMES + i);
                        csv += &format!("{t},w{w},{}\n", value(w, u, i));
                    }
                    let f = dir.join(format!("w{w}-u{u}.csv"));
                    std::fs::write(&f, csv).unwrap();
                    let out = zf(&["update", &repo, f.to_str().unwrap(), "--json"]);
                    let err = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success(), "writer {w} update {u}: {err}");
                    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
                    assert!(
                        report["commit"].is_string(),
                        "writer {w} update {u}: {report}"
                    );
                    assert_eq!(report["rows_read"], TIMES, "writer {w} update {u}");
                    attempts += err
                        .split("planned again on the new tip (")
                        .nth(1)
                        .and_then(|s| s.split(' ').next()?.parse::<usize>().ok())
                        .map_or(0, |n| n - 1);
                }
                attempts
            })
        })
        .collect();
    let retries: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("{WRITERS} writers x {ROUNDS} file updates: {retries} retries on a new tip");
    let csv = ok_text(&["export", &repo, "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("t,site,temp"));
    let mut got: Vec<(String, String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    got.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    assert_eq!(
        got.len(),
        WRITERS * ROUNDS * TIMES,
        "every cell of every update"
    );
    for (k, (t, site, v)) in got.iter().enumerate() {
        let (w, rest) = (k / (ROUNDS * TIMES), k % (ROUNDS * TIMES));
        let (u, i) = (rest / TIMES, rest % TIMES);
        assert_eq!(site, &format!("w{w}"));
        let hours = u * TIMES + i;
        let want = chrono::DateTime::from_timestamp((3600 * hours) as i64, 0).unwrap();
        assert!(
            t.starts_with(&want.format("%Y-%m-%dT%H:%M:%S").to_string()),
            "{t} vs {want}"
        );
        assert_eq!(*v, value(w, u, i), "writer {w} update {u} time {i}");
    }
    let log = ok_json(&["log", &repo, "--json"]);
    assert_eq!(
        log.as_array().map(Vec::len),
        Some(1 + WRITERS * ROUNDS + 1),
        "init, updates, repository creation"
    );
}

/// gc deletes icechunk's repo-object backups (`overwritten/repo*`) older than the cut-off except
/// the newest few, and temporary files of crashed writers older than the cut-off; the history,
/// blame and verify are unaffected.
#[test]
fn gc_prunes_repo_backups_and_stale_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = setup(dir.path());
    for i in 0..12 {
        ok_text(&["tag", &r, "create", &format!("t{i}")]);
    }
    let backups = |r: &str| -> usize {
        std::fs::read_dir(Path::new(r).join("overwritten"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("repo"))
                    .count()
            })
            .unwrap_or(0)
    };
    let before = backups(&r);
    assert!(before > 12, "{before} backups");
    let tmp = Path::new(&r).join(".zf-tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let stale = tmp.join(".chunk.zf-tmp-1-1");
    let fresh = tmp.join(".chunk.zf-tmp-2-2");
    std::fs::write(&stale, "partial").unwrap();
    std::fs::write(&fresh, "in flight").unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let dry = ok_json(&["gc", &r, "--older-than", "10m", "--dry-run", "--json"]);
    assert_eq!(dry["temp_files_deleted"], 1, "{dry}");
    assert!(stale.exists());
    let log_before = ok_json(&["log", &r, "--json"]);
    let g = ok_json(&["gc", &r, "--older-than", "10m", "--json"]);
    assert_eq!(g["temp_files_deleted"], 1, "{g}");
    assert!(!stale.exists() && fresh.exists());
    // backups younger than the cut-off stay
    assert_eq!(g["repo_backups_deleted"], 0, "{g}");
    let g = ok_json(&["gc", &r, "--older-than", "0s", "--json"]);
    let deleted = g["repo_backups_deleted"].as_u64().unwrap() as usize;
    assert!(deleted >= before - 8, "{g}");
    assert!(backups(&r) <= 9, "{} left", backups(&r));
    assert_eq!(ok_json(&["verify", &r, "--json"])["ok"], true);
    // gc --older-than 0s expires old snapshots that are no ref's tip, but every tag keeps its own
    let tags = ok_json(&["tag", &r, "list", "--json"]);
    assert_eq!(tags.as_array().unwrap().len(), 12);
    assert!(!ok_json(&["log", &r, "--json"])
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!log_before.as_array().unwrap().is_empty());
    // the repository still takes commits
    ok_text(&["tag", &r, "create", "after-gc"]);
}

/// A full disk: the update fails with one line, leaves no temporary file, and the next update
/// after space is freed succeeds. Needs a small tmpfs (root); skipped with a message elsewhere.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A tmpfs of `size` at `dir/small` (`None`, with a message, where it cannot be mounted).
fn small_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let mnt = dir.join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a small tmpfs here (needs root); the temporary-file cleanup is covered by gc_prunes_repo_backups_and_stale_temp_files");
        return None;
    }
    Some(Mount(mnt))
}

/// A repository at `mnt/repo` for `v(t, site)` with the given chunk sizes (schema in `dir`).
fn noise_repo(dir: &Path, mnt: &Path, t_chunk: u32, site_chunk: u32) -> std::path::PathBuf {
    let repo = mnt.join("repo");
    let schema = dir.join("s.yaml");
    std::fs::write(
        &schema,
        format!("VARS:\n  v: {{coords: [t, site]}}\nCOORDS:\n  t: {{type: int64, chunk_size: {t_chunk}}}\n  site: {{type: int64, chunk_size: {site_chunk}}}\n"),
    )
    .unwrap();
    ok_json(&[
        "init",
        repo.to_str().unwrap(),
        "--schema",
        schema.to_str().unwrap(),
        "--json",
    ]);
    repo
}

/// Incompressible values of `v` at times `ts` × `sites` sites (xorshift state `x`).
fn noise_csv(x: &mut u64, ts: std::ops::Range<i64>, sites: u32) -> String {
    let mut csv = String::from("t,site,v\n");
    for t in ts {
        for site in 0..sites {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            csv.push_str(&format!("{t},{site},{}\n", (*x >> 11) as f64 / 3.0));
        }
    }
    csv
}

#[test]
fn disk_full_leaves_no_temporary_files_and_the_next_update_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guard) = small_tmpfs(dir.path(), "3m") else {
        return;
    };
    let mnt = guard.0.clone();
    let repo = noise_repo(dir.path(), &mnt, 4096, 64);
    let r = repo.to_str().unwrap();
    // incompressible values: ~2 MB of chunks
    let csv = noise_csv(&mut 0x9E37_79B9_7F4A_7C15, 0..4096, 64);
    let input = dir.path().join("big.csv");
    std::fs::write(&input, csv).unwrap();
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let log_before = ok_json(&["log", r, "--json"]);
    let out = zf(&["update", r, input.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let tmp = repo.join(".zf-tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "temporary files left after the full disk");
    assert_eq!(
        ok_json(&["log", r, "--json"]),
        log_before,
        "the branch moved"
    );
    std::fs::remove_file(&filler).unwrap();
    let done = ok_json(&["update", r, input.to_str().unwrap(), "--json"]);
    assert!(done["commit"].is_string(), "{done}");
    assert_eq!(ok_json(&["verify", r, "--json"])["ok"], true);
}

/// A full disk during revert, squash and gc: each either succeeds or fails with one line,
/// leaving the branch as it was, no temporary file and a repository that verifies; once space
/// is freed each succeeds.
#[test]
fn disk_full_during_revert_squash_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let Some(guard) = small_tmpfs(dir.path(), "2m") else {
        return;
    };
    let mnt = guard.0.clone();
    let repo = noise_repo(dir.path(), &mnt, 256, 16);
    let r = repo.to_str().unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut write = |name: &str, ts: std::ops::Range<i64>| {
        let f = dir.path().join(name);
        std::fs::write(&f, noise_csv(&mut x, ts, 16)).unwrap();
        f
    };
    // 4 chunks of 32 KiB, then updates that each rewrite one of them
    let base = write("base.csv", 0..1024);
    ok_json(&["update", r, base.to_str().unwrap(), "--json"]);
    let mut ids = vec![];
    for k in 0..3 {
        let f = write(&format!("u{k}.csv"), k * 256..k * 256 + 8);
        ids.push(
            ok_json(&["update", r, f.to_str().unwrap(), "--json"])["commit"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // fill the disk but for a few KiB
    let free = || {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&mnt)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; free().saturating_sub(8 << 10) as usize]).unwrap();
    let tmp = repo.join(".zf-tmp");
    let ops: [Vec<&str>; 3] = [
        vec!["revert", r, &ids[0]],
        vec!["squash", r, "--older-than", "0s", "--by", "day"],
        vec!["gc", r, "--older-than", "0s"],
    ];
    for op in &ops {
        let before = ok_json(&["log", r, "--json"]);
        let out = zf(op);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "full disk: {} {}",
            op[0],
            if out.status.success() {
                "succeeded".into()
            } else {
                format!("failed: {}", err.trim())
            }
        );
        if !out.status.success() {
            assert_eq!(err.trim().lines().count(), 1, "{op:?}: {err}");
            assert_eq!(
                ok_json(&["log", r, "--json"]),
                before,
                "{op:?} moved the branch"
            );
        }
        let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{op:?}: temporary files left after the full disk");
        assert_eq!(ok_json(&["verify", r, "--json"])["ok"], true, "{op:?}");
    }
    std::fs::remove_file(&filler).unwrap();
    for op in &ops {
        let out = zf(op);
        assert!(
            out.status.success(),
            "{op:?} after freeing space: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(ok_json(&["verify", r, "--json"])["ok"], true);
    let log = ok_json(&["log", r, "--json"]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|c| c.get("folded").is_some()),
        "{log}"
    );
}
