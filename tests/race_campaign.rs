//! Race campaign (issues B and C): 8 separate processes feed one branch at once, each with its own
//! opened repository. Every update appends the same new times as the others (disjoint cells: its
//! own site) and writes one cell that every writer writes in the same round (overlapping: site
//! `shared`). Updates that lose a race are re-planned on the newer tip and retried.
//!
//! Checked afterwards: every acknowledged update is in the history; its disjoint cells hold its
//! values; each overlapping cell holds the value of the newest acknowledged update (in history
//! order) that wrote it; an update reported as failed left no cell behind; `verify` passes.
//!
//! `ZF_RACE_UPDATES` sets the updates per writer (CI: 10 local, 4 on S3; the campaign in
//! spec/014 uses 50).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::rt;
use zarr_fuse::ingest::Table;
use zarr_fuse::provenance::Provenance;
use zarr_fuse::update::{self, Scalar, UpdateOptions};
use zarr_fuse::{Location, Repo};

const WRITERS: usize = 8;
const SCHEMA: &str = "VARS:\n  temp: {coords: [t, site], type: float64}\nCOORDS:\n  t: {type: int64, chunk_size: 16}\n  site: {type: 'str[8]', sorted: false}\n";

fn value(writer: usize, update: usize, t: i64) -> f64 {
    (writer * 100_000 + update * 100) as f64 + t as f64
}

/// Update `u` of writer `w`: times 4u..4u+3 at its own site, and time u at site `shared`.
fn csv(w: usize, u: usize) -> String {
    let mut s = String::from("t,site,temp\n");
    for t in (u * 4) as i64..(u * 4 + 4) as i64 {
        s.push_str(&format!("{t},w{w},{}\n", value(w, u, t)));
    }
    s.push_str(&format!("{u},shared,{}\n", value(w, u, u as i64)));
    s
}

fn updates(default: usize) -> usize {
    std::env::var("ZF_RACE_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn race_campaign_child() {
    let Ok(spec) = std::env::var("ZF_RACE_CHILD") else {
        return;
    };
    let mut parts = spec.rsplitn(3, '|');
    let (Some(n), Some(idx), Some(loc)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("bad spec {spec}");
    };
    let (n, idx): (usize, usize) = (n.parse().expect("n"), idx.parse().expect("idx"));
    let loc = Location::parse(loc).expect("location");
    rt().block_on(async {
        let repo = Repo::open(&loc).await.expect("open");
        for u in 0..n {
            let table = Table::from_csv_bytes(csv(idx, u).as_bytes(), &format!("w{idx}-{u}.csv"))
                .expect("csv");
            let prov = Provenance::new(
                format!("Writer {idx} <w{idx}@example.org>"),
                "update",
                format!("w{idx} u{u}"),
            );
            match update::update(
                &repo,
                "main",
                &[(String::new(), table)],
                prov,
                &UpdateOptions::default(),
            )
            .await
            {
                Ok(r) => println!(
                    "\nZFUPD ok {u} {}",
                    r.commit.map(|c| c.to_string()).unwrap_or_default()
                ),
                Err(e) => println!("\nZFUPD error {u} {e}"),
            }
        }
    });
}

fn campaign(loc: Location, n: usize) {
    let rt = rt();
    rt.block_on(async {
        let repo = Repo::init(&loc).await.expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "s.yaml",
            Provenance::new("Init <i@example.org>", "init", "init"),
        )
        .await
        .expect("schema");
    });
    let exe = std::env::current_exe().expect("test binary");
    let started = std::time::Instant::now();
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "race_campaign_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("ZF_RACE_CHILD", format!("{loc}|{i}|{n}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    // (writer, update) → commit id of acknowledged updates; failed ones
    let mut acked: HashMap<(usize, usize), String> = HashMap::new();
    let mut failed: Vec<(usize, usize, String)> = Vec::new();
    for (w, mut c) in children.into_iter().enumerate() {
        for line in BufReader::new(c.stdout.take().expect("stdout"))
            .lines()
            .map_while(Result::ok)
        {
            let Some(p) = line.find("ZFUPD ") else {
                continue;
            };
            let mut it = line[p + 6..].splitn(3, ' ');
            let (Some(kind), Some(u), rest) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let u: usize = u.parse().expect("update index");
            match kind {
                "ok" => {
                    acked.insert((w, u), rest.unwrap_or_default().trim().to_string());
                }
                _ => failed.push((w, u, rest.unwrap_or_default().to_string())),
            }
        }
        assert!(c.wait().expect("wait").success(), "writer {w} crashed");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        acked.len() + failed.len(),
        WRITERS * n,
        "every update must be acknowledged or reported as failed"
    );
    for (w, u, e) in &failed {
        assert!(
            e.contains("conflict"),
            "update {u} of writer {w} failed with something else than a reported conflict: {e}"
        );
    }
    rt.block_on(async {
        let repo = Repo::open(&loc).await.expect("open");
        let log = repo.log("main", None).await.expect("log");
        // history position (0 = newest) of every commit
        let order: HashMap<&str, usize> = log
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.as_str(), i))
            .collect();
        for ((w, u), id) in &acked {
            assert!(
                order.contains_key(id.as_str()),
                "acknowledged update {u} of writer {w} ({id}) is not in the history"
            );
        }
        let tip = repo.branch_tip("main").await.expect("tip");
        let data = update::read_node(&repo, &tip, "").await.expect("read");
        let ts = common::axis_i64(&data, 0);
        let sites = common::axis_str(&data, 1);
        assert!(ts.windows(2).all(|p| p[0] < p[1]), "times sorted and unique");
        let (_, _, shape, vals) = &data.vars[0];
        let cell: BTreeMap<(i64, &str), &Scalar> = ts
            .iter()
            .enumerate()
            .flat_map(|(ti, t)| {
                sites
                    .iter()
                    .enumerate()
                    .map(move |(si, s)| ((*t, s.as_str()), ti * shape[1] as usize + si))
            })
            .map(|(k, i)| (k, &vals[i]))
            .collect();
        // disjoint cells: present with the acknowledged update's values; failed ones absent
        for (w, u) in acked.keys() {
            for t in (u * 4) as i64..(u * 4 + 4) as i64 {
                let site = format!("w{w}");
                assert_eq!(
                    cell.get(&(t, site.as_str())).copied(),
                    Some(&Scalar::F(value(*w, *u, t))),
                    "cell t={t} site={site} of acknowledged update {u} of writer {w}"
                );
            }
        }
        let acked_keys: HashSet<(usize, usize)> = acked.keys().copied().collect();
        for (w, u, _) in &failed {
            let t = (*u * 4) as i64;
            let site = format!("w{w}");
            if !acked_keys.contains(&(*w, *u)) {
                assert_ne!(
                    cell.get(&(t, site.as_str())).copied(),
                    Some(&Scalar::F(value(*w, *u, t))),
                    "a failed update left its cell t={t} site={site} behind"
                );
            }
        }
        // overlapping cells: the newest acknowledged writer of round u wins
        let mut overlapping = 0;
        for u in 0..n {
            let newest = acked
                .iter()
                .filter(|((_, uu), _)| *uu == u)
                .min_by_key(|(_, id)| order[id.as_str()]);
            if let Some(((w, _), _)) = newest {
                assert_eq!(
                    cell.get(&(u as i64, "shared")).copied(),
                    Some(&Scalar::F(value(*w, u, u as i64))),
                    "overlapping cell of round {u}: the newest acknowledged update (writer {w}) must win"
                );
                overlapping += 1;
            }
        }
        assert!(repo.verify("main", &|_| {}).await.expect("verify").ok);
        eprintln!(
            "{loc}: {WRITERS} writers x {n} updates in {elapsed:.1?}: {} acknowledged and present, {} reported conflicts (absent), {overlapping} overlapping cells won by the newest, 0 lost",
            acked.len(),
            failed.len()
        );
    });
}

#[test]
fn race_campaign_local() {
    if std::env::var("ZF_RACE_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    campaign(Location::Local(dir.path().join("race")), updates(10));
}

#[test]
fn race_campaign_s3() {
    if std::env::var("ZF_RACE_CHILD").is_ok() {
        return;
    }
    let Ok(bucket) = std::env::var("ZF_TEST_S3_BUCKET") else {
        eprintln!("skipped: ZF_TEST_S3_BUCKET not set (.ci/run starts a local S3 server)");
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    campaign(
        Location::S3 {
            bucket,
            prefix: format!("t/race-{}-{nanos}", std::process::id()),
        },
        updates(4),
    );
}
