//! Commit races between separate processes, each with its own opened repository, released
//! together at a file barrier: 8 writers × 10 rounds, on local storage and on S3.
//!
//! Conflicting rounds (every writer changes the same chunk): exactly one winner, the others get a
//! conflict. Disjoint rounds (each writer its own array): every writer lands (rebased).
//! Every acknowledged commit must be in the branch history.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use zarr_fuse::{Location, Repo};

const WRITERS: usize = 8;
const ROUNDS: usize = 10;

fn wait_for(path: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// The child: prepare a change for each round, wait at the barrier, commit, report.
fn child(location: &str, idx: usize, barrier: &Path) {
    let loc = Location::parse(location).expect("location");
    let rt = rt();
    for round in 0..ROUNDS {
        if !wait_for(
            &barrier.join(format!("prepare-{round}")),
            Duration::from_secs(120),
        ) {
            return;
        }
        let conflicting = round % 2 == 0;
        let outcome = rt.block_on(async {
            let repo = Repo::open(&loc).await.expect("open");
            let tx = repo.transaction("main").await.expect("tx");
            let name = if conflicting {
                "shared".to_string()
            } else {
                format!("w{idx}")
            };
            let a = ensure_array(&tx, &name).await;
            a.async_store_chunk(&[0, 0], values((round * 100 + idx) as f64))
                .await
                .expect("chunk");
            std::fs::write(barrier.join(format!("ready-{round}-{idx}")), b"").expect("ready");
            wait_for(
                &barrier.join(format!("go-{round}")),
                Duration::from_secs(120),
            );
            tx.commit(prov(&format!("round {round} writer {idx}")))
                .await
        });
        match outcome {
            Ok(o) => println!(
                "\nZFRACE ok {round} {}",
                o.commit.map(|c| c.to_string()).unwrap_or_default()
            ),
            Err(zarr_fuse::RepoError::Conflict { .. }) => println!("\nZFRACE conflict {round}"),
            Err(e) => println!("\nZFRACE error {round} {e}"),
        }
        std::fs::write(barrier.join(format!("done-{round}-{idx}")), b"").expect("done");
    }
}

fn race(location: Location) {
    let barrier = tempfile::tempdir().expect("barrier dir");
    let rt = rt();
    rt.block_on(async {
        let repo = init(&location).await;
        // the shared array exists before the race, so conflicting rounds only touch a chunk
        write(&repo, "main", &["shared"], -1.0, "setup").await;
    });
    let exe = std::env::current_exe().expect("test binary");
    let mut children: Vec<_> = (0..WRITERS)
        .map(|idx| {
            Command::new(&exe)
                .args(["--exact", "race_child", "--nocapture", "--test-threads=1"])
                .env(
                    "ZF_RACE_CHILD",
                    format!("{location}|{idx}|{}", barrier.path().display()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    let b = barrier.path();
    for round in 0..ROUNDS {
        std::fs::write(b.join(format!("prepare-{round}")), b"").unwrap();
        for idx in 0..WRITERS {
            assert!(
                wait_for(
                    &b.join(format!("ready-{round}-{idx}")),
                    Duration::from_secs(120)
                ),
                "writer {idx} not ready in round {round}"
            );
        }
        std::fs::write(b.join(format!("go-{round}")), b"").unwrap();
        for idx in 0..WRITERS {
            assert!(
                wait_for(
                    &b.join(format!("done-{round}-{idx}")),
                    Duration::from_secs(120)
                ),
                "writer {idx} hung in round {round}"
            );
        }
    }
    let mut acked: Vec<(usize, String)> = Vec::new();
    let mut conflicts = [0usize; ROUNDS];
    for c in children.iter_mut() {
        let out = c.stdout.take().expect("stdout");
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Some(pos) = line.find("ZFRACE ") else {
                continue;
            };
            let parts: Vec<&str> = line[pos + 7..].split_whitespace().collect();
            match parts.as_slice() {
                ["ok", r, id] => acked.push((r.parse().unwrap(), id.to_string())),
                ["conflict", r] => conflicts[r.parse::<usize>().unwrap()] += 1,
                ["error", ..] => panic!("writer failed: {line}"),
                _ => {}
            }
        }
        assert!(c.wait().expect("wait").success());
    }
    let history: BTreeSet<String> = rt.block_on(async {
        let repo = Repo::open(&location).await.unwrap();
        assert!(repo.verify("main", &|_| {}).await.unwrap().ok);
        repo.log("main", None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id.to_string())
            .collect()
    });
    for (round, id) in &acked {
        assert!(
            history.contains(id),
            "acknowledged commit {id} of round {round} is missing from the history"
        );
    }
    for (round, lost) in conflicts.iter().enumerate() {
        let winners = acked.iter().filter(|(r, _)| *r == round).count();
        if round % 2 == 0 {
            assert_eq!(winners, 1, "conflicting round {round}: exactly one winner");
            assert_eq!(
                *lost,
                WRITERS - 1,
                "round {round}: the others report a conflict"
            );
        } else {
            assert_eq!(
                winners, WRITERS,
                "disjoint round {round}: every writer lands"
            );
        }
    }
    eprintln!(
        "{location}: {} rounds x {WRITERS} writers, {} commits acknowledged, all in history",
        ROUNDS,
        acked.len()
    );
}

#[test]
fn race_child() {
    let Ok(spec) = std::env::var("ZF_RACE_CHILD") else {
        return;
    };
    let parts: Vec<&str> = spec.splitn(3, '|').collect();
    child(
        parts[0],
        parts[1].parse().unwrap(),
        &PathBuf::from(parts[2]),
    );
}

#[test]
fn race_local_storage() {
    if std::env::var("ZF_RACE_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    race(Location::Local(dir.path().join("race")));
}

#[test]
fn race_s3() {
    if std::env::var("ZF_RACE_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    match fresh_location("s3", dir.path(), "race") {
        Some(loc) => race(loc),
        None => eprintln!("skipped: ZF_TEST_S3_BUCKET not set (.ci/run starts a local S3 server)"),
    }
}
