//! Several processes feed one branch at once, all appending the same new times (each for its own
//! site): every update lands (re-planned on the newer tip when it lost a race), none is lost,
//! and every writer's cells are in the final dataset.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use zarr_fuse::ingest::Table;
use zarr_fuse::merge::{self, UpdateOptions};
use zarr_fuse::provenance::Provenance;
use zarr_fuse::{Location, Repo};

const WRITERS: usize = 4;
const UPDATES: usize = 5;
const SCHEMA: &str = "VARS:\n  temp: {coords: [t, site], type: float64}\nCOORDS:\n  t: {type: int64}\n  site: {type: 'str[8]', sorted: false}\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn csv(writer: usize, update: usize) -> String {
    let mut s = String::from("t,site,temp\n");
    for t in update * 10..update * 10 + 12 {
        s.push_str(&format!("{t},w{writer},{}\n", writer * 1000 + t));
    }
    s
}

#[test]
fn concurrent_update_child() {
    let Ok(spec) = std::env::var("ZF_UPD_CHILD") else {
        return;
    };
    let (loc, idx) = spec.split_once('|').unwrap();
    let idx: usize = idx.parse().unwrap();
    let loc = Location::parse(loc).unwrap();
    rt().block_on(async {
        let repo = Repo::open(&loc).await.unwrap();
        for u in 0..UPDATES {
            let table =
                Table::from_csv_bytes(csv(idx, u).as_bytes(), &format!("w{idx}-{u}.csv")).unwrap();
            let prov = Provenance::new(
                format!("Writer {idx} <w{idx}@example.org>"),
                "update",
                format!("w{idx} u{u}"),
            );
            match merge::update(
                &repo,
                "main",
                &[(String::new(), table)],
                prov,
                &UpdateOptions::default(),
            )
            .await
            {
                Ok(r) => println!("\nZFUPD ok {}", r.commit.unwrap_or_default()),
                Err(e) => println!("\nZFUPD error {e}"),
            }
        }
    });
}

#[test]
fn concurrent_updates_all_land() {
    if std::env::var("ZF_UPD_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::Local(dir.path().join("conc"));
    let rt = rt();
    rt.block_on(async {
        let repo = Repo::init(&loc).await.unwrap();
        merge::init_dataset(
            &repo,
            SCHEMA,
            "s.yaml",
            Provenance::new("Init <i@example.org>", "init", "init"),
        )
        .await
        .unwrap();
    });
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_update_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("ZF_UPD_CHILD", format!("{loc}|{i}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut acked = vec![];
    for mut c in children {
        for line in BufReader::new(c.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            if let Some(p) = line.find("ZFUPD ") {
                let rest = &line[p + 6..];
                assert!(rest.starts_with("ok "), "an update failed: {rest}");
                acked.push(rest[3..].trim().to_string());
            }
        }
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(acked.len(), WRITERS * UPDATES, "every update must land");
    rt.block_on(async {
        let repo = Repo::open(&loc).await.unwrap();
        let ids: std::collections::HashSet<String> = repo
            .log("main", None)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        for a in &acked {
            assert!(ids.contains(a), "acknowledged update {a} lost");
        }
        let tip = repo.branch_tip("main").await.unwrap();
        let data = merge::read_node(&repo, &tip, "").await.unwrap();
        let t = &data.coords.iter().find(|(n, _)| n == "t").unwrap().1;
        let sites = &data.coords.iter().find(|(n, _)| n == "site").unwrap().1;
        assert_eq!(sites.len(), WRITERS);
        assert_eq!(t.len(), (UPDATES - 1) * 10 + 12, "times sorted and unique");
        let (_, _, shape, vals) = data.vars.iter().find(|(n, ..)| n == "temp").unwrap();
        // every writer's every cell is present with its value
        for (si, s) in sites.iter().enumerate() {
            let zarr_fuse::merge::Scalar::S(name) = s else {
                panic!("{s:?}")
            };
            let w: usize = name[1..].parse().unwrap();
            for (ti, tv) in t.iter().enumerate() {
                let zarr_fuse::merge::Scalar::I(tt) = tv else {
                    panic!()
                };
                let v = &vals[ti * shape[1] as usize + si];
                assert_eq!(
                    *v,
                    zarr_fuse::merge::Scalar::F((w * 1000 + *tt as usize) as f64),
                    "writer {w} t {tt}"
                );
            }
        }
        assert!(repo.verify("main", &|_| {}).await.unwrap().ok);
    });
}
