//! S3 fault campaign (issue C): a writer process updates a repository on the local S3 server
//! through a fault-injecting TCP proxy of ours on 127.0.0.1. While it runs, the proxy cuts
//! connections mid-stream, delays responses, drops responses after the server processed the
//! request (including the response to a conditional PUT that succeeded), and simulates the
//! server being down (connections refused, open ones cut) and coming back.
//!
//! Checked with a fault-free view of the same repository: no update reported as committed is
//! missing from the history or its cells; every update reported as failed either left nothing or
//! landed whole; `a` and `b` (always written together) agree everywhere; `verify` passes.
//!
//! `ZF_FAULT_UPDATES` sets the writer's updates (CI: 40; spec/014 has the campaign figures).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::update::{self, Scalar, UpdateOptions};
use zarr_fuse::{Location, Repo};

const WHO: &str = "Fault Writer <fault@example.org>";
const SCHEMA: &str = "\
VARS:
  a: {coords: [t], type: float64}
  b: {coords: [t], type: float64}
COORDS:
  t: {type: int64, chunk_size: 8}
";

/// What the proxy does now (per mille probabilities) and what it did.
#[derive(Default)]
struct Faults {
    cut: AtomicU32,
    drop_response: AtomicU32,
    delay: AtomicU32,
    down: AtomicBool,
    cuts: AtomicU64,
    drops: AtomicU64,
    delays: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn roll(rng: &mut u64, per_mille: &AtomicU32) -> bool {
    next(rng) % 1000 < u64::from(per_mille.load(Ordering::Relaxed))
}

async fn pump_requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
    mut rng: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if faults.down.load(Ordering::Relaxed) || roll(&mut rng, &faults.cut) {
            // the connection breaks in the middle of a request
            faults.cuts.fetch_add(1, Ordering::Relaxed);
            let _ = to.write_all(&buf[..n / 2]).await;
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn pump_responses(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Faults>,
    mut rng: u64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if roll(&mut rng, &faults.delay) {
            faults.delays.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20 + next(&mut rng) % 300)).await;
        }
        if faults.down.load(Ordering::Relaxed) || roll(&mut rng, &faults.drop_response) {
            // the server did the work; its answer never arrives
            faults.drops.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if roll(&mut rng, &faults.cut) {
            faults.cuts.fetch_add(1, Ordering::Relaxed);
            let _ = to.write_all(&buf[..n / 2]).await;
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn proxy(listener: TcpListener, upstream: String, faults: Arc<Faults>) {
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        faults.connections.fetch_add(1, Ordering::Relaxed);
        if faults.down.load(Ordering::Relaxed) {
            faults.refused.fetch_add(1, Ordering::Relaxed);
            drop(client);
            continue;
        }
        let (r1, r2) = (next(&mut seed), next(&mut seed));
        let (faults, upstream) = (Arc::clone(&faults), upstream.clone());
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = tokio::spawn(pump_requests(cr, sw, Arc::clone(&faults), r1 | 1));
            pump_responses(sr, cw, faults, r2 | 1).await;
            up.abort();
        });
    }
}

fn value(i: usize) -> f64 {
    i as f64 + 0.5
}

/// The writer: `n` updates, each writing a and b at a new time `i`.
fn writer(location: &str, n: usize) {
    let loc = Location::parse(location).expect("location");
    let rt = common::rt();
    rt.block_on(async {
        let mut repo = None;
        for i in 0..n {
            if repo.is_none() {
                match Repo::open(&loc).await {
                    Ok(r) => repo = Some(r),
                    Err(e) => {
                        println!("\nZFERR {i} open: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let Some(r) = &repo else { continue };
            let csv = format!("t,a,b\n{i},{v},{v}\n", v = value(i));
            let table = Table::from_csv_bytes(csv.as_bytes(), "fault.csv").expect("csv");
            println!("\nZFINTENT {i}");
            match update::update(
                r,
                "main",
                &[(String::new(), table)],
                Provenance::new(WHO, "fault", format!("update {i}")),
                &UpdateOptions::default(),
            )
            .await
            {
                Ok(rep) => println!(
                    "\nZFACK {i} {}",
                    rep.commit.map(|c| c.to_string()).unwrap_or_default()
                ),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'), "multi-line error: {msg}");
                    println!("\nZFERR {i} {msg}");
                }
            }
        }
    });
}

#[test]
fn s3_fault_writer() {
    let Ok(spec) = std::env::var("ZF_FAULT_CHILD") else {
        return;
    };
    let (loc, n) = spec.rsplit_once('|').expect("spec");
    writer(loc, n.parse().expect("n"));
}

#[test]
fn s3_faults_never_lose_or_invent_commits() {
    if std::env::var("ZF_FAULT_CHILD").is_ok() {
        return;
    }
    let (Ok(bucket), Ok(endpoint)) = (
        std::env::var("ZF_TEST_S3_BUCKET"),
        std::env::var("ZF_S3_ENDPOINT_URL"),
    ) else {
        eprintln!("skipped: ZF_TEST_S3_BUCKET / ZF_S3_ENDPOINT_URL not set (.ci/run starts a local S3 server)");
        return;
    };
    let n: usize = std::env::var("ZF_FAULT_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let loc = Location::S3 {
        bucket,
        prefix: format!("t/faults-{}-{nanos}", std::process::id()),
    };
    let rt = common::rt();
    rt.block_on(async {
        let repo = Repo::init(&loc).await.expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "f.yaml",
            Provenance::new(WHO, "init", "init"),
        )
        .await
        .expect("schema");
    });
    let faults = Arc::new(Faults::default());
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    rt.spawn(proxy(listener, upstream, Arc::clone(&faults)));

    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(&exe)
        .args([
            "--exact",
            "s3_fault_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZF_FAULT_CHILD", format!("{loc}|{n}"))
        .env("ZF_S3_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // keep the end of the writer's stderr for the failure message
    let stderr = child.stderr.take().expect("stderr");
    let err_tail = std::thread::spawn(move || {
        let mut lines: Vec<String> = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect();
        let n = lines.len();
        lines.drain(..n.saturating_sub(30));
        lines.join("\n")
    });
    // the fault schedule: a new mode every 250 ms while the writer runs
    let done = Arc::new(AtomicBool::new(false));
    let schedule = {
        let (faults, done) = (Arc::clone(&faults), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ nanos as u64;
            let mut outages = 0u64;
            while !done.load(Ordering::Relaxed) {
                let mode = next(&mut rng) % 6;
                faults
                    .cut
                    .store(if mode == 1 { 150 } else { 0 }, Ordering::Relaxed);
                faults
                    .drop_response
                    .store(if mode == 2 { 200 } else { 0 }, Ordering::Relaxed);
                faults
                    .delay
                    .store(if mode == 3 { 300 } else { 0 }, Ordering::Relaxed);
                let down = mode == 4;
                faults.down.store(down, Ordering::Relaxed);
                outages += u64::from(down);
                std::thread::sleep(Duration::from_millis(if down { 600 } else { 250 }));
            }
            faults.down.store(false, Ordering::Relaxed);
            outages
        })
    };
    let mut acked: BTreeMap<usize, String> = BTreeMap::new();
    let mut failed: Vec<(usize, String)> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        let Some(p) = line.find("ZF") else { continue };
        let mut it = line[p..].splitn(3, ' ');
        match (it.next(), it.next(), it.next()) {
            (Some("ZFACK"), Some(i), Some(id)) => {
                acked.insert(i.parse().expect("i"), id.trim().to_string());
            }
            (Some("ZFERR"), Some(i), Some(msg)) => failed.push((i.parse().expect("i"), msg.into())),
            _ => {}
        }
    }
    let status = child.wait().expect("wait");
    done.store(true, Ordering::Relaxed);
    let outages = schedule.join().expect("schedule");
    let err_tail = err_tail.join().unwrap_or_default();
    assert!(
        status.success(),
        "the writer crashed (a panic is never an answer to a fault):\n{err_tail}"
    );

    rt.block_on(async {
        let repo = Repo::open(&loc).await.expect("open without faults");
        let log = repo.log("main", None).await.expect("log");
        let ids: HashSet<&str> = log.iter().map(|c| c.id.as_str()).collect();
        for (i, id) in &acked {
            if !id.is_empty() {
                assert!(
                    ids.contains(id.as_str()),
                    "update {i} was reported committed as {id} but is not in the history"
                );
            }
        }
        let tip = repo.branch_tip("main").await.expect("tip");
        let data = update::read_node(&repo, &tip, "").await.expect("read");
        let ts = common::axis_i64(&data, 0);
        let a = &data.vars.iter().find(|v| v.0 == "a").expect("a").3;
        let b = &data.vars.iter().find(|v| v.0 == "b").expect("b").3;
        let mut cells: BTreeMap<i64, Scalar> = BTreeMap::new();
        for (k, t) in ts.iter().enumerate() {
            assert_eq!(a[k], b[k], "t={t}: a and b differ: a partial update is visible");
            cells.insert(*t, a[k].clone());
        }
        for i in acked.keys() {
            assert_eq!(
                cells.get(&(*i as i64)),
                Some(&Scalar::F(value(*i))),
                "the cells of acknowledged update {i} are missing"
            );
        }
        let mut landed_despite_error = 0;
        for (i, _) in &failed {
            match cells.get(&(*i as i64)) {
                None | Some(Scalar::Na) => {}
                Some(v) => {
                    assert_eq!(v, &Scalar::F(value(*i)), "update {i}: wrong value");
                    landed_despite_error += 1;
                }
            }
        }
        let report = repo.verify("main", &|_| {}).await.expect("verify runs");
        assert!(report.ok, "verify failed: {report:?}");
        eprintln!(
            "{loc}: {n} updates through the fault proxy: {} acknowledged (all present), {} reported errors ({landed_despite_error} of them landed whole, none partially); faults: {} connections, {} cuts, {} dropped responses, {} delays, {outages} outages ({} connections refused); verify OK",
            acked.len(),
            failed.len(),
            faults.connections.load(Ordering::Relaxed),
            faults.cuts.load(Ordering::Relaxed),
            faults.drops.load(Ordering::Relaxed),
            faults.delays.load(Ordering::Relaxed),
            faults.refused.load(Ordering::Relaxed),
        );
        for (i, msg) in failed.iter().take(5) {
            eprintln!("  error reported for update {i}: {msg}");
        }
        assert!(
            !acked.is_empty(),
            "no update got through at all: the campaign tested nothing"
        );
    });
}
