//! A child process commits in a loop and is killed with SIGKILL at random moments (≥ 50 times).
//! After each kill the repository opens, `verify` passes, and every commit the child reported is
//! in the history, with the content it wrote.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use zarr_fuse::{Location, Repo};

const KILLS: usize = 50;

/// The child: commit forever, print each acknowledged commit with its seed.
fn child(location: &str, start: u64) {
    let loc = Location::parse(location).expect("location");
    rt().block_on(async {
        let repo = Repo::open(&loc).await.expect("open");
        let mut seed = start;
        loop {
            seed += 1;
            let out = write(
                &repo,
                "main",
                &["a", "b"],
                seed as f64,
                &format!("seed {seed}"),
            )
            .await;
            if let Some(id) = out.commit {
                println!("\nZFACK {id} {seed}");
            }
        }
    });
}

#[test]
fn sigkill_child() {
    let Ok(spec) = std::env::var("ZF_KILL_CHILD") else {
        return;
    };
    let (loc, start) = spec.split_once('|').expect("spec");
    child(loc, start.parse().expect("start"));
}

/// xorshift: a reproducible stream of kill delays.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn campaign(location: Location) {
    let rt = rt();
    rt.block_on(async {
        init(&location).await;
    });
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    eprintln!("kill-delay seed {rng}");
    let mut acked: Vec<(String, u64)> = Vec::new();
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "sigkill_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ZF_KILL_CHILD", format!("{location}|{}", kill * 1_000_000))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(40 + next(&mut rng) % 400));
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        child.wait().expect("reap");
        let out = child.stdout.take().expect("stdout");
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(pos) = line.find("ZFACK ") {
                let mut it = line[pos + 6..].split_whitespace();
                if let (Some(id), Some(seed)) = (it.next(), it.next()) {
                    acked.push((id.to_string(), seed.parse().expect("seed")));
                }
            }
        }
        rt.block_on(async {
            let repo = Repo::open(&location)
                .await
                .unwrap_or_else(|e| panic!("kill {kill}: repository does not open: {e}"));
            let report = repo.verify("main", &|_| {}).await.expect("verify runs");
            assert!(report.ok, "kill {kill}: verify failed: {report:?}");
            let log = repo.log("main", None).await.expect("log");
            let ids: std::collections::HashSet<&str> = log.iter().map(|c| c.id.as_str()).collect();
            for (id, _) in &acked {
                assert!(
                    ids.contains(id.as_str()),
                    "kill {kill}: acknowledged commit {id} lost"
                );
            }
            // no partial commit: both arrays always hold the same seed
            let a = read(&repo, "main", "a").await;
            let b = read(&repo, "main", "b").await;
            assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                assert!(
                    same(&a, &b),
                    "kill {kill}: arrays a and b disagree: a partial contribution is visible"
                );
            }
        });
    }
    eprintln!(
        "{location}: {KILLS} kills survived, {} acknowledged commits all present",
        acked.len()
    );
    assert!(
        acked.len() >= KILLS / 2,
        "the child committed too little to test anything ({})",
        acked.len()
    );
}

#[test]
fn sigkill_local_storage() {
    if std::env::var("ZF_KILL_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    campaign(Location::Local(dir.path().join("killed")));
}

#[test]
fn sigkill_s3() {
    if std::env::var("ZF_KILL_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    match fresh_location("s3", dir.path(), "killed") {
        Some(loc) => campaign(loc),
        None => eprintln!("skipped: ZF_TEST_S3_BUCKET not set (.ci/run starts a local S3 server)"),
    }
}
