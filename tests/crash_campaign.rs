//! Crash campaign (issues C, F): a writer process runs schema-driven updates, reverts, branch
//! merges, squashes and `gc`, and is killed with SIGKILL at random moments. The writer keeps a plain model of the
//! dataset (a map t → (a, b, k), independent of the engine) and prints, before each operation,
//! the digest the dataset must have if the operation lands, and after it the acknowledged commit.
//!
//! After every kill: the repository opens, `verify` passes, the tip's content equals the model
//! of the last acknowledged operation (or of the one in flight, if it landed unacknowledged),
//! `a` and `b` (always written together) agree everywhere (no partial contribution), and every
//! acknowledged commit is in the history with exactly the model's content (or folded into a squash
//! commit, or written again by one: then found by its original id), and every cell with a value
//! is blamed on a commit by the writer (gc keeps provenance: nothing is "before the horizon").
//!
//! `ZF_CRASH_KILLS` sets the number of kills per backend (CI default: 50 local, 25 on S3; the
//! campaign in spec/014 uses 200).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::rt;
use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::{Period, Strategy};
use zarr_fuse::update::{self, NodeData, Scalar, UpdateOptions};
use zarr_fuse::{Location, Repo};

const WHO: &str = "Crash Writer <crash@example.org>";
const SCHEMA: &str = "\
VARS:
  a: {coords: [t], type: float64}
  b: {coords: [t], type: float64}
  k: {coords: [t], type: float64}
COORDS:
  t: {type: int64, chunk_size: 8}
";

/// The model: t → (a, b, k).
type Model = BTreeMap<i64, [Option<f64>; 3]>;

fn model_digest(m: &Model) -> String {
    let mut h = blake3::Hasher::new();
    for (t, v) in m {
        h.update(format!("{t}:{:?}:{:?}:{:?};", v[0], v[1], v[2]).as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

fn model_of(n: &NodeData) -> Model {
    let mut m = Model::new();
    let ts = common::axis_i64(n, 0);
    for t in &ts {
        m.insert(*t, [None; 3]);
    }
    for (slot, name) in ["a", "b", "k"].iter().enumerate() {
        let Some((_, _, _, vals)) = n.vars.iter().find(|v| v.0 == *name) else {
            continue;
        };
        for (t, s) in ts.iter().zip(vals) {
            if let (Scalar::F(x), Some(row)) = (s, m.get_mut(t)) {
                row[slot] = Some(*x);
            }
        }
    }
    m
}

async fn read_model(repo: &Repo, rev: &str) -> Model {
    let id = repo.resolve(rev).await.expect("resolve").id;
    model_of(&update::read_node(repo, &id, "").await.expect("read node"))
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn update(repo: &Repo, branch: &str, csv: &str) -> Option<String> {
    let t = Table::from_csv_bytes(csv.as_bytes(), "crash.csv").expect("csv");
    update::update(
        repo,
        branch,
        &[(String::new(), t)],
        Provenance::new(WHO, "crash", "update"),
        &UpdateOptions::default(),
    )
    .await
    .expect("update")
    .commit
    .map(|c| c.to_string())
}

/// The writer: random operations forever, with INTENT/ACK lines around each.
fn child(location: &str, seed: u64) {
    let loc = Location::parse(location).expect("location");
    rt().block_on(async {
        let repo = Repo::open(&loc).await.expect("open");
        let mut rng = seed | 1;
        let mut model = read_model(&repo, "main").await;
        // (commit id, model before it) of this run's last acknowledged update, revertable
        let mut last_update: Option<(String, Model)> = None;
        let mut n = 0u64;
        loop {
            n += 1;
            let value = (seed % 1_000_000) as f64 + n as f64 / 1000.0;
            let op = next(&mut rng) % 100;
            let t0 = now_ms();
            if op < 55 || model.is_empty() {
                // update main: a and b together at 1..6 times (insert before/between/after)
                let rows = 1 + next(&mut rng) % 6;
                let mut after = model.clone();
                let mut csv = String::from("t,a,b,k\n");
                for _ in 0..rows {
                    let t = (next(&mut rng) % 300) as i64;
                    csv.push_str(&format!("{t},{value},{value},\n"));
                    let row = after.entry(t).or_insert([None; 3]);
                    row[0] = Some(value);
                    row[1] = Some(value);
                }
                println!("\nZFINTENT {t0} {}", model_digest(&after));
                if let Some(id) = update(&repo, "main", &csv).await {
                    println!("\nZFACK {id} {} {t0}", model_digest(&after));
                    last_update = Some((id, std::mem::replace(&mut model, after)));
                } else {
                    model = after;
                }
            } else if op < 65 {
                // revert this run's last update if it is still the tip
                let Some((id, before)) = last_update.take() else {
                    continue;
                };
                if repo.resolve("main").await.expect("tip").id.to_string() != id {
                    continue;
                }
                println!("\nZFINTENT {t0} {}", model_digest(&before));
                let (out, _) = repo
                    .revert_by_chunks(
                        &id,
                        "main",
                        Strategy::Fail,
                        Provenance::new(WHO, "crash", "revert"),
                    )
                    .await
                    .expect("revert");
                if let Some(c) = out.commit {
                    println!("\nZFACK {c} {} {t0}", model_digest(&before));
                }
                model = before;
            } else if op < 77 {
                // a side branch from the tip writes k at existing times and is merged back
                let times: Vec<i64> = model.keys().copied().collect();
                let mut after = model.clone();
                let mut csv = String::from("t,a,b,k\n");
                for _ in 0..1 + next(&mut rng) % 3 {
                    let t = times[(next(&mut rng) % times.len() as u64) as usize];
                    let row = after.get_mut(&t).expect("existing time");
                    // the side contribution carries a and b as they are, so only k changes
                    let fmt = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
                    csv.push_str(&format!("{t},{},{},{value}\n", fmt(row[0]), fmt(row[1])));
                    row[2] = Some(value);
                }
                let tip = repo.resolve("main").await.expect("tip").id.to_string();
                if repo.branch_tip("side").await.is_err() {
                    repo.create_branch("side", &tip).await.expect("side");
                } else {
                    repo.reset("side", &tip, true).await.expect("reset side");
                }
                update(&repo, "side", &csv).await;
                println!("\nZFINTENT {t0} {}", model_digest(&after));
                let out = repo
                    .merge_by_chunks("side", "main", Provenance::new(WHO, "crash", "merge side"))
                    .await
                    .expect("merge");
                if let Some(c) = out.commit {
                    println!("\nZFACK {c} {} {t0}", model_digest(&after));
                }
                model = after;
                last_update = None;
            } else if op < 92 {
                // squash everything older than 0.2 s, by hour: the content stays
                let cutoff = chrono::Utc::now() - chrono::Duration::milliseconds(200);
                println!("\nZFINTENT {t0} {}", model_digest(&model));
                let r = repo
                    .squash(
                        "main",
                        cutoff,
                        Period::Hour,
                        false,
                        Provenance::new(WHO, "squash", ""),
                    )
                    .await
                    .expect("squash");
                println!("\nZFSQUASH {}", r.commits_folded);
                last_update = None;
            } else {
                // gc: delete what nothing reaches, older than 2 s (provenance is kept)
                let cutoff = chrono::Utc::now() - chrono::Duration::seconds(2);
                repo.collect_garbage(cutoff, false, false)
                    .await
                    .expect("gc");
            }
        }
    });
}

#[test]
fn crash_child() {
    let Ok(spec) = std::env::var("ZF_CRASH_CHILD") else {
        return;
    };
    let (loc, seed) = spec.rsplit_once('|').expect("spec");
    child(loc, seed.parse().expect("seed"));
}

struct Ack {
    id: String,
    digest: String,
    t0: u64,
}

fn campaign(location: Location, kills: usize) {
    let rt = rt();
    rt.block_on(async {
        let repo = Repo::init(&location).await.expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "crash.yaml",
            Provenance::new(WHO, "init", "init"),
        )
        .await
        .expect("schema");
    });
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1;
    eprintln!("{location}: kill-delay seed {rng}");
    let mut acks: Vec<Ack> = Vec::new();
    let mut checked_content = 0usize;
    let mut last_gc_cutoff = 0u64;
    let mut expired = 0usize;
    let mut folded_or_replayed = 0usize;
    let mut squash_commits = 0usize;
    let (mut squashes_run, mut squashed) = (0usize, 0usize);
    let empty = model_digest(&Model::new());
    let mut expected_tip = empty.clone();
    for kill in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(
                "ZF_CRASH_CHILD",
                format!(
                    "{location}|{}",
                    (kill as u64 + 1) * 1_000_003 + next(&mut rng) % 1000
                ),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(60 + next(&mut rng) % 500));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let out = child.stdout.take().expect("stdout");
        let mut in_flight: Option<String> = None;
        let first_new = acks.len();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let Some(pos) = line.find("ZF") else { continue };
            let mut it = line[pos..].split_whitespace();
            match it.next() {
                Some("ZFINTENT") => {
                    let _t0 = it.next();
                    in_flight = it.next().map(str::to_string);
                }
                Some("ZFACK") => {
                    let (Some(id), Some(digest), Some(t0)) = (it.next(), it.next(), it.next())
                    else {
                        continue;
                    };
                    acks.push(Ack {
                        id: id.into(),
                        digest: digest.into(),
                        t0: t0.parse().unwrap_or(0),
                    });
                    expected_tip = digest.to_string();
                    in_flight = None;
                }
                Some("ZFSQUASH") => {
                    squashes_run += 1;
                    squashed += it.next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
                }
                Some("ZFGC") => {
                    if let Some(c) = it.next().and_then(|c| c.parse().ok()) {
                        last_gc_cutoff = last_gc_cutoff.max(c);
                    }
                }
                _ => {}
            }
        }
        rt.block_on(async {
            let repo = Repo::open(&location)
                .await
                .unwrap_or_else(|e| panic!("kill {kill}: repository does not open: {e}"));
            let report = repo.verify("main", &|_| {}).await.expect("verify runs");
            assert!(report.ok, "kill {kill}: verify failed: {report:?}");
            // the tip: the last acknowledged state, or the in-flight operation's if it landed
            let tip = read_model(&repo, "main").await;
            for (t, v) in &tip {
                assert_eq!(v[0], v[1], "kill {kill}: a and b differ at t={t}: partial contribution");
            }
            let d = model_digest(&tip);
            let ok = d == expected_tip || in_flight.as_deref() == Some(d.as_str());
            assert!(
                ok,
                "kill {kill}: tip content {d} is neither the acknowledged state {expected_tip} nor the in-flight one {in_flight:?}"
            );
            expected_tip = d;
            // every acknowledged commit is in the history: as it is, folded into a squash
            // commit or written again by one (its original id)
            let log = repo.log("main", None).await.expect("log");
            let ids: HashSet<&str> = log.iter().map(|c| c.id.as_str()).collect();
            let mut kept: HashSet<String> = HashSet::new();
            for c in &log {
                if let Some(r) = c.extra.get("replayed_from").and_then(|v| v.as_str()) {
                    kept.insert(r.to_string());
                }
                kept.extend(zarr_fuse::repo::folded_leaves(c).into_iter().map(|f| f.id.to_string()));
            }
            squash_commits = log.iter().filter(|c| c.extra.contains_key("folded")).count();
            // every cell with a value is blamed on one of the writer's commits
            let blame = zarr_fuse::audit::blame(&repo, "", "a", "main", &[])
                .await
                .expect("blame");
            for b in &blame {
                if b.commit.is_none() {
                    assert!(
                        b.message.as_deref() == Some("never written"),
                        "kill {kill}: cells of a blamed on no commit: {b:?}"
                    );
                } else {
                    assert_eq!(b.author.as_deref(), Some(WHO), "kill {kill}: {b:?}");
                }
            }
            for (i, a) in acks.iter().enumerate() {
                if kept.contains(&a.id) {
                    folded_or_replayed += 1;
                } else if ids.contains(a.id.as_str()) {
                    if i >= first_new {
                        let m = read_model(&repo, &a.id).await;
                        assert_eq!(
                            model_digest(&m),
                            a.digest,
                            "kill {kill}: commit {} does not hold the acknowledged content",
                            a.id
                        );
                        checked_content += 1;
                    }
                } else {
                    assert!(
                        last_gc_cutoff > a.t0,
                        "kill {kill}: acknowledged commit {} lost (no gc could have expired it)",
                        a.id
                    );
                    expired += 1;
                }
            }
        });
        // expired commits are counted again at every kill; count them once at the end instead
        if kill + 1 < kills {
            expired = 0;
            folded_or_replayed = 0;
        }
    }
    eprintln!(
        "{location}: {kills} kills survived; {} acknowledged commits, {checked_content} checked against the model, {squashes_run} squashes folded {squashed} commits ({folded_or_replayed} acknowledged ones folded or rewritten, {squash_commits} squash commits at the end), {expired} expired by gc, 0 lost or partial",
        acks.len()
    );
    assert!(
        acks.len() >= kills / 3,
        "the writer acknowledged too little to test anything ({})",
        acks.len()
    );
}

fn kills(default: usize) -> usize {
    std::env::var("ZF_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn crash_campaign_local() {
    if std::env::var("ZF_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    campaign(Location::Local(dir.path().join("crash")), kills(50));
}

#[test]
fn crash_campaign_s3() {
    if std::env::var("ZF_CRASH_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    match common::fresh_location("s3", dir.path(), "crash") {
        Some(loc) => campaign(loc, kills(25)),
        None => eprintln!("skipped: ZF_TEST_S3_BUCKET not set (.ci/run starts a local S3 server)"),
    }
}
