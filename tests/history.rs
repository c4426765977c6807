//! Revert, merge and cherry-pick by cells (merge-semantics.md §5, spec/028) through the CLI, on
//! a real repository on disk: the Kalman scenario and its variants, a Kalman branch merged while
//! forecasts kept arriving on main, conflicts named by coordinate values, blame afterwards.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const AUTHOR: &str = "Hist Tester <hist@example.org>";
const KALMAN: &str = "Kal Man <kalman@example.org>";

/// Time chunks of 2 steps, site chunks of 2: the Kalman update and the next forecast share no
/// chunk in some cases and share one in others.
const SCHEMA: &str = "\
VARS:
  temp: {coords: [time, site], unit: K}
  hum: {coords: [time, site], unit: '%'}
COORDS:
  time: {unit: {tick: h, tz: null}, chunk_size: 2}
  site: {type: 'str[8]', sorted: false, chunk_size: 2}
";

fn zf(args: &[&str], author: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zarr-fuse"))
        .args(args)
        .env("ZF_AUTHOR", author)
        .output()
        .expect("run zarr-fuse")
}

fn ok(args: &[&str]) -> String {
    let o = zf(args, AUTHOR);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn json(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

struct Repo {
    dir: std::path::PathBuf,
    path: String,
}

impl Repo {
    fn new(dir: &Path) -> Repo {
        std::fs::write(dir.join("s.yaml"), SCHEMA).unwrap();
        let path = dir.join("repo").display().to_string();
        ok(&[
            "init",
            &path,
            "--schema",
            dir.join("s.yaml").to_str().unwrap(),
        ]);
        Repo {
            dir: dir.to_path_buf(),
            path,
        }
    }

    /// An update of `rows` (`time,site,temp,hum`) on `branch`; its commit.
    fn update(&self, branch: &str, name: &str, rows: &[&str], author: &str) -> String {
        let f = self.dir.join(format!("{name}.csv"));
        std::fs::write(&f, format!("time,site,temp,hum\n{}\n", rows.join("\n"))).unwrap();
        let o = zf(
            &[
                "update",
                &self.path,
                f.to_str().unwrap(),
                "--branch",
                branch,
                "-m",
                name,
                "--json",
            ],
            author,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["commit"].as_str().expect("a commit").to_string()
    }

    /// `time,site` → (temp, hum) of every row with a value, at `rev`.
    fn cells(&self, rev: &str) -> std::collections::BTreeMap<(String, String), (String, String)> {
        ok(&["export", &self.path, "--at", rev])
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    (f[0][11..16].to_string(), f[1].to_string()),
                    (f[2].to_string(), f[3].to_string()),
                )
            })
            .collect()
    }

    fn temp(&self, rev: &str, time: &str, site: &str) -> Option<String> {
        self.cells(rev)
            .get(&(time.to_string(), site.to_string()))
            .map(|c| c.0.clone())
            .filter(|v| !v.is_empty())
    }

    /// The message of the commit blamed for `temp` at (time, site) on `rev`.
    fn blame(&self, rev: &str, time: &str, site: &str) -> String {
        let b = json(&[
            "blame",
            &self.path,
            "--at",
            rev,
            "--var",
            "temp",
            "--where",
            &format!("time=2026-01-01T{time}"),
            "--where",
            &format!("site={site}"),
            "--json",
        ]);
        b[0]["message"].as_str().unwrap_or_default().to_string()
    }

    fn tip(&self, branch: &str) -> String {
        json(&["log", &self.path, branch, "-n", "1", "--json"])[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The base forecast: 00:00–03:00 at sites A and B.
fn base(r: &Repo) -> String {
    r.update(
        "main",
        "base",
        &[
            "2026-01-01T00:00,A,1,10",
            "2026-01-01T00:00,B,2,20",
            "2026-01-01T01:00,A,3,30",
            "2026-01-01T01:00,B,4,40",
            "2026-01-01T02:00,A,5,50",
            "2026-01-01T03:00,B,6,60",
        ],
        AUTHOR,
    )
}

#[test]
fn the_kalman_update_is_reverted_after_the_next_forecast() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    let b = base(&r);
    let kalman = r.update("main", "kalman", &["2026-01-01T00:00,A,999,"], KALMAN);
    // the next forecast shares the Kalman update's chunk (time 00–01, sites A–B)
    r.update(
        "main",
        "next",
        &["2026-01-01T01:00,B,44,", "2026-01-01T05:00,A,7,70"],
        AUTHOR,
    );
    let before = r.tip("main");
    // --dry-run shows the cell, writes nothing
    let dry = json(&["revert", &r.path, &kalman, "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["commit"].is_null());
    assert_eq!(r.tip("main"), before);
    let rev = json(&["revert", &r.path, &kalman, "--json"]);
    let temp = &rev["changed"][""]["temp"];
    assert_eq!(temp["changed"], 1, "{rev}");
    assert_eq!(
        temp["boxes"][0]["coords"][0]["first"],
        "2026-01-01T00:00:00"
    );
    assert_eq!(temp["boxes"][0]["coords"][1]["first"], "A");
    assert!(
        rev["changed"][""].get("hum").is_none(),
        "hum was not written: {rev}"
    );
    assert_eq!(rev["conflict_cells"], 0);
    assert!(rev["commit"].is_string());
    assert_eq!(r.temp("main", "00:00", "A").as_deref(), Some("1.0"));
    assert_eq!(
        r.temp("main", "01:00", "B").as_deref(),
        Some("44.0"),
        "later cells stay"
    );
    assert_eq!(r.temp("main", "05:00", "A").as_deref(), Some("7.0"));
    assert_eq!(r.blame("main", "00:00", "A"), "base");
    assert_eq!(r.blame("main", "01:00", "B"), "next");
    let log = json(&["log", &r.path, "-n", "1", "--json"]);
    assert_eq!(log[0]["reverts"], kalman.as_str());
    assert_eq!(json(&["verify", &r.path, "--json"])["ok"], true);
    // reverting it again is refused: it was reverted
    let o = zf(&["revert", &r.path, &kalman], AUTHOR);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already reverted"));
    // the first commit and a commit of another branch are refused
    let first = json(&["log", &r.path, "--json"])
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = zf(&["revert", &r.path, &first], AUTHOR);
    assert!(String::from_utf8_lossy(&o.stderr).contains("first commit"));
    ok(&["branch", &r.path, "create", "side", "--from", &b]);
    let side = r.update("side", "side", &["2026-01-01T02:00,B,8,80"], AUTHOR);
    let o = zf(&["revert", &r.path, &side], AUTHOR);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not on branch"));
}

#[test]
fn a_cell_written_again_later_is_a_conflict_named_by_coordinates() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    base(&r);
    let kalman = r.update(
        "main",
        "kalman",
        &["2026-01-01T00:00,A,999,", "2026-01-01T00:00,B,998,"],
        KALMAN,
    );
    let fix = r.update("main", "fix", &["2026-01-01T00:00,A,600,"], AUTHOR);
    let before = r.tip("main");
    let o = zf(&["revert", &r.path, &kalman, "--json"], AUTHOR);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("time 2026-01-01T00:00:00 × site A") && err.contains(&fix),
        "names the cell and the later commit: {err}"
    );
    let refused: Value = serde_json::from_slice(&o.stdout).expect("the refusal as JSON");
    assert_eq!(refused["conflict_cells"], 1);
    assert_eq!(refused["conflicts"][0]["later_commits"][0], fix.as_str());
    assert_eq!(
        refused["conflicts"][0]["boxes"][0]["coords"][1]["first"],
        "A"
    );
    assert_eq!(r.tip("main"), before, "a refused revert writes nothing");
    // --strategy theirs keeps the later value and reverts the rest
    let rev = json(&["revert", &r.path, &kalman, "--strategy", "theirs", "--json"]);
    assert_eq!(rev["conflict_cells"], 1);
    assert_eq!(rev["changed"][""]["temp"]["changed"], 1);
    assert_eq!(r.temp("main", "00:00", "A").as_deref(), Some("600.0"));
    assert_eq!(r.temp("main", "00:00", "B").as_deref(), Some("2.0"));
    assert_eq!(r.blame("main", "00:00", "A"), "fix");
    assert_eq!(r.blame("main", "00:00", "B"), "base");
    // a revert whose every cell conflicts makes no commit and says why
    let k2 = r.update("main", "k2", &["2026-01-01T03:00,B,5,"], KALMAN);
    r.update("main", "fix2", &["2026-01-01T03:00,B,50,"], AUTHOR);
    let tip = r.tip("main");
    let none = json(&["revert", &r.path, &k2, "--strategy", "theirs", "--json"]);
    assert!(none["commit"].is_null(), "{none}");
    assert!(
        none["note"].as_str().unwrap().contains("written later"),
        "{none}"
    );
    assert_eq!(r.tip("main"), tip);
}

#[test]
fn reverting_restores_na_and_keeps_axis_values_the_commit_added() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    base(&r);
    // a value where the parent had NA, a new site and a new time
    let c = r.update(
        "main",
        "adds",
        &["2026-01-01T02:00,B,9,90", "2026-01-01T04:00,C,11,"],
        KALMAN,
    );
    r.update("main", "later", &["2026-01-01T03:00,A,12,"], AUTHOR);
    let rev = json(&["revert", &r.path, &c, "--json"]);
    assert_eq!(rev["changed"][""]["temp"]["set_na"], 2, "{rev}");
    assert_eq!(rev["changed"][""]["hum"]["set_na"], 1, "{rev}");
    let cells = r.cells("main");
    assert!(
        !cells.contains_key(&("02:00".into(), "B".into())),
        "{cells:?}"
    );
    assert!(
        !cells.contains_key(&("04:00".into(), "C".into())),
        "{cells:?}"
    );
    assert_eq!(r.temp("main", "03:00", "A").as_deref(), Some("12.0"));
    // the new site stays on its axis (positions never move back); its cells are NA
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt.block_on(async {
        let repo = zarr_fuse::Repo::open_str(&r.path).await.unwrap();
        let id = repo.resolve("main").await.unwrap().id;
        zarr_fuse::update::read_node(&repo, &id, "").await.unwrap()
    });
    let sites: Vec<String> = node
        .coords
        .iter()
        .find(|(n, _)| n == "site")
        .map(|(_, v)| v.iter().map(|s| format!("{s:?}")).collect())
        .unwrap();
    assert!(sites.iter().any(|s| s.contains("\"C\"")), "{sites:?}");
    assert_eq!(r.blame("main", "02:00", "B"), "never written");
    assert_eq!(json(&["verify", &r.path, "--json"])["ok"], true);
}

#[test]
fn whole_chunks_are_restored_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    let b = base(&r);
    let kalman = r.update("main", "kalman", &["2026-01-01T00:00,A,999,"], KALMAN);
    // a later forecast in other chunks (times 04–05)
    r.update("main", "next", &["2026-01-01T05:00,A,7,70"], AUTHOR);
    let rev = json(&["revert", &r.path, &kalman, "--json"]);
    assert_eq!(rev["chunks_by_reference"], 1, "{rev}");
    assert_eq!(rev["chunks_rewritten"], 0, "{rev}");
    // the tip's chunk (00–01 × A–B) is the base's own chunk again
    let d = json(&["diff", &r.path, &b, "main", "--chunks", "--json"]);
    let changed: Vec<String> = d["chunks"]["/temp"]
        .as_array()
        .map(|a| a.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default();
    assert!(!changed.contains(&"[0,0]".to_string()), "{d}");
    assert_eq!(r.temp("main", "00:00", "A").as_deref(), Some("1.0"));
}

#[test]
fn a_kalman_branch_merges_by_cells_while_forecasts_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    base(&r);
    ok(&["branch", &r.path, "create", "kalman", "--from", "main"]);
    let k = r.update(
        "kalman",
        "analysis",
        &["2026-01-01T01:00,A,-1,", "2026-01-01T01:00,B,-2,"],
        KALMAN,
    );
    // main: forecasts in the same chunks, new times and a new site
    r.update(
        "main",
        "f1",
        &[
            "2026-01-01T00:00,B,22,",
            "2026-01-01T06:00,A,8,",
            "2026-01-01T04:00,D,9,",
        ],
        AUTHOR,
    );
    let m = json(&["merge", &r.path, "kalman", "--into", "main", "--json"]);
    assert!(m["commit"].is_string(), "{m}");
    assert_eq!(m["changed"][""]["temp"]["changed"], 2, "{m}");
    assert_eq!(r.temp("main", "01:00", "A").as_deref(), Some("-1.0"));
    assert_eq!(r.temp("main", "00:00", "B").as_deref(), Some("22.0"));
    assert_eq!(r.temp("main", "04:00", "D").as_deref(), Some("9.0"));
    // blame credits each cell's own writer, not the merge commit
    assert_eq!(r.blame("main", "01:00", "A"), "analysis");
    assert_eq!(r.blame("main", "00:00", "B"), "f1");
    assert_eq!(r.blame("main", "00:00", "A"), "base");
    let log = json(&["log", &r.path, "-n", "1", "--json"]);
    assert_eq!(log[0]["parents"][1], k.as_str());
    // merging again: nothing to do
    let again = json(&["merge", &r.path, "kalman", "--into", "main", "--json"]);
    assert!(again["commit"].is_null());

    // both sides write the same cell differently: a conflict by coordinates, nothing written
    r.update(
        "kalman",
        "k2",
        &["2026-01-01T02:00,A,-5,", "2026-01-01T03:00,B,-6,"],
        KALMAN,
    );
    r.update(
        "main",
        "f2",
        &["2026-01-01T02:00,A,55,", "2026-01-01T03:00,B,-6,"],
        AUTHOR,
    );
    let tip = r.tip("main");
    let o = zf(&["merge", &r.path, "kalman", "--into", "main"], AUTHOR);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("time 2026-01-01T02:00:00 × site A"), "{err}");
    assert!(
        err.contains("1 conflicting cell(s)"),
        "equal values are no conflict: {err}"
    );
    assert_eq!(r.tip("main"), tip);
    let dry = json(&[
        "merge",
        &r.path,
        "kalman",
        "--into",
        "main",
        "--strategy",
        "theirs",
        "--dry-run",
        "--json",
    ]);
    assert!(dry["commit"].is_null());
    assert_eq!(r.tip("main"), tip);
    ok(&["branch", &r.path, "create", "copy", "--from", "main"]);
    ok(&[
        "merge",
        &r.path,
        "kalman",
        "--into",
        "copy",
        "--strategy",
        "ours",
    ]);
    assert_eq!(r.temp("copy", "02:00", "A").as_deref(), Some("55.0"));
    ok(&[
        "merge",
        &r.path,
        "kalman",
        "--into",
        "main",
        "--strategy",
        "theirs",
    ]);
    assert_eq!(r.temp("main", "02:00", "A").as_deref(), Some("-5.0"));
    assert_eq!(r.blame("main", "02:00", "A"), "k2");
    assert_eq!(json(&["verify", &r.path, "--json"])["ok"], true);
}

#[test]
fn cherry_pick_by_cells_and_revert_after_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    base(&r);
    ok(&["branch", &r.path, "create", "rel", "--from", "main"]);
    r.update("rel", "rel fix", &["2026-01-01T00:00,B,21,"], AUTHOR);
    let pick = r.update("main", "kalman", &["2026-01-01T00:00,A,-9,"], KALMAN);
    // the same chunk changed differently on rel, but not the same cell: picked by cells
    let cp = json(&["cherry-pick", &r.path, &pick, "--branch", "rel", "--json"]);
    assert!(cp["commit"].is_string(), "{cp}");
    assert_eq!(r.temp("rel", "00:00", "A").as_deref(), Some("-9.0"));
    assert_eq!(r.temp("rel", "00:00", "B").as_deref(), Some("21.0"));
    assert_eq!(
        r.blame("rel", "00:00", "A"),
        "kalman",
        "the pick carries the message"
    );
    let log = json(&["log", &r.path, "rel", "-n", "1", "--json"]);
    assert_eq!(log[0]["cherry_picked"], pick.as_str());

    // a Kalman branch merged, then the merge reverted while main moved on
    ok(&["branch", &r.path, "create", "k", "--from", "main"]);
    r.update("k", "analysis", &["2026-01-01T01:00,A,-3,"], KALMAN);
    let m = json(&["merge", &r.path, "k", "--into", "main", "--json"]);
    let m = m["commit"].as_str().unwrap().to_string();
    r.update("main", "after", &["2026-01-01T01:00,B,41,"], AUTHOR);
    json(&["revert", &r.path, &m, "--json"]);
    assert_eq!(r.temp("main", "01:00", "A").as_deref(), Some("3.0"));
    assert_eq!(r.temp("main", "01:00", "B").as_deref(), Some("41.0"));
    assert_eq!(r.blame("main", "01:00", "A"), "base");
    assert_eq!(r.blame("main", "01:00", "B"), "after");
}

/// Contributions made at chosen times (the library's provenance time: the test hook), squashed
/// by day: one commit per day, blame still names every contributor, log lists the folded
/// contributions, a tag keeps its snapshot, revert of a folded contribution and of a squash
/// commit work by cells.
#[test]
fn squash_by_day_keeps_blame_and_reverts() {
    use zarr_fuse::provenance::Provenance;
    use zarr_fuse::update::{self, UpdateOptions};
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let repo = rt.block_on(zarr_fuse::Repo::open_str(&r.path)).unwrap();
    let day = |d: u32, h: u32| {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-01-{d:02}T{h:02}:30:00Z"))
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    // days 1 and 2: three hourly contributions each, by different authors
    let mut ids = vec![];
    for (i, (d, h)) in [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
        .iter()
        .enumerate()
    {
        let csv = format!(
            "time,site,temp,hum\n2026-01-01T{i:02}:00,A,{i},\n2026-01-01T{i:02}:00,B,{},\n",
            i + 10
        );
        let table = zarr_fuse::ingest::Table::from_csv_bytes(csv.as_bytes(), "f.csv").unwrap();
        let mut prov = Provenance::new(
            format!("Author{i} <a{i}@example.org>"),
            "update",
            format!("fetch {i}"),
        );
        prov.time = Some(day(*d, *h));
        let out = rt
            .block_on(update::update(
                &repo,
                "main",
                &[(String::new(), table)],
                prov,
                &UpdateOptions::default(),
            ))
            .unwrap();
        ids.push(out.commit.unwrap());
        if i == 4 {
            rt.block_on(repo.create_tag("v1", "main", None)).unwrap();
        }
    }
    let before = r.cells("main");
    let dry = json(&[
        "squash",
        &r.path,
        "--older-than",
        "0s",
        "--by",
        "day",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(dry["commits_folded"], 5, "{dry}");
    assert_eq!(r.tip("main"), ids[5], "a dry run changes nothing");
    let sq = json(&[
        "squash",
        &r.path,
        "--older-than",
        "0s",
        "--by",
        "day",
        "--json",
    ]);
    // day 1: fetches 0–2; day 2: 3–4 (the tag at 4 ends the run), fetch 5 stays alone
    let periods: Vec<(String, u64)> = sq["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["contributions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        periods,
        vec![("2026-01-01".to_string(), 3), ("2026-01-02".to_string(), 2)],
        "{sq}"
    );
    assert_eq!(r.cells("main"), before, "the tip's content is unchanged");
    assert_eq!(json(&["verify", &r.path, "--json"])["ok"], true);
    assert_eq!(json(&["verify", &r.path, "v1", "--json"])["ok"], true);
    assert_eq!(r.cells("v1").len(), 10, "the tag keeps its snapshot");
    for i in 0..6 {
        assert_eq!(
            r.blame("main", &format!("{i:02}:00"), "A"),
            format!("fetch {i}")
        );
    }
    let log = json(&["log", &r.path, "--json"]);
    let squashes: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("folded").is_some())
        .collect();
    assert_eq!(squashes.len(), 2);
    let folded: Vec<&str> = squashes[1]["folded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["author"].as_str().unwrap())
        .collect();
    assert_eq!(
        folded,
        [
            "Author0 <a0@example.org>",
            "Author1 <a1@example.org>",
            "Author2 <a2@example.org>"
        ]
    );
    assert!(ok(&["log", &r.path]).contains("folded"));
    // revert of one folded contribution, by cells
    json(&["revert", &r.path, &ids[1], "--json"]);
    assert_eq!(r.temp("main", "01:00", "A"), None);
    assert_eq!(r.temp("main", "02:00", "A").as_deref(), Some("2.0"));
    assert_eq!(r.blame("main", "02:00", "A"), "fetch 2");
    // revert of a squash commit reverts all it folds
    let day2 = squashes[0]["id"].as_str().unwrap().to_string();
    json(&["revert", &r.path, &day2, "--json"]);
    assert_eq!(r.temp("main", "03:00", "A"), None);
    assert_eq!(r.temp("main", "04:00", "B"), None);
    assert_eq!(r.temp("main", "05:00", "A").as_deref(), Some("5.0"));
    assert_eq!(r.blame("main", "00:00", "A"), "fetch 0");
    // gc afterwards keeps what blame needs
    ok(&["gc", &r.path, "--older-than", "0s"]);
    assert_eq!(r.blame("main", "00:00", "B"), "fetch 0");
    assert_eq!(r.blame("main", "05:00", "B"), "fetch 5");
}

/// Eight writer processes committing while a squash runs: every acknowledged update is in the history
/// afterwards (folded, or after the squash) and blamed to its author.
#[test]
fn squash_with_concurrent_writers_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    for i in 0..12 {
        r.update(
            "main",
            &format!("seed{i}"),
            &[&format!("2026-01-01T{i:02}:00,A,{i},")],
            AUTHOR,
        );
    }
    let path = r.path.clone();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (path, dir) = (path.clone(), r.dir.clone());
            std::thread::spawn(move || {
                let mut acked = vec![];
                for k in 0..2 {
                    let f = dir.join(format!("w{w}-{k}.csv"));
                    std::fs::write(
                        &f,
                        format!("time,site,temp,hum\n2026-01-02T{:02}:00,W{w},{k},\n", k),
                    )
                    .unwrap();
                    let msg = format!("writer {w} #{k}");
                    let o = zf(&["update", &path, f.to_str().unwrap(), "-m", &msg], AUTHOR);
                    if o.status.success() {
                        acked.push((w, k, msg));
                    }
                }
                acked
            })
        })
        .collect();
    let sq = zf(
        &[
            "squash",
            &r.path,
            "--older-than",
            "0s",
            "--by",
            "day",
            "--json",
        ],
        AUTHOR,
    );
    let acked: Vec<(usize, usize, String)> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        sq.status.success(),
        "{}",
        String::from_utf8_lossy(&sq.stderr)
    );
    let report: Value = serde_json::from_slice(&sq.stdout).unwrap();
    eprintln!(
        "squash folded {} replayed {} retries {} while {} updates were acknowledged",
        report["commits_folded"],
        report["commits_replayed"],
        report["retries"],
        acked.len()
    );
    assert!(!acked.is_empty());
    let log = json(&["log", &r.path, "--json"]);
    let mut messages: Vec<String> = vec![];
    for c in log.as_array().unwrap() {
        messages.push(c["message"].as_str().unwrap().to_string());
        for f in c
            .get("folded")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            messages.push(f["message"].as_str().unwrap().to_string());
        }
    }
    for (w, k, msg) in &acked {
        assert!(messages.contains(msg), "{msg} lost: {messages:?}");
        let b = json(&[
            "blame",
            &r.path,
            "--var",
            "temp",
            "--where",
            &format!("time=2026-01-02T{k:02}:00"),
            "--where",
            &format!("site=W{w}"),
            "--json",
        ]);
        assert_eq!(b[0]["message"], msg.as_str(), "{b}");
    }
    for i in 0..12 {
        assert_eq!(
            r.blame("main", &format!("{i:02}:00"), "A"),
            format!("seed{i}")
        );
    }
    assert_eq!(json(&["verify", &r.path, "--json"])["ok"], true);
}

/// Contributions folded into a squash commit still count as later writers for a revert.
#[test]
fn folded_contributions_are_later_writers_for_a_revert() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo::new(dir.path());
    base(&r);
    ok(&["branch", &r.path, "create", "k", "--from", "main"]);
    r.update("k", "analysis", &["2026-01-01T01:00,A,-1,"], KALMAN);
    let m = json(&["merge", &r.path, "k", "--into", "main", "--json"]);
    let m = m["commit"].as_str().unwrap().to_string();
    // the same value again, then another cell: both folded by the squash
    let u1 = r.update(
        "main",
        "u1",
        &["2026-01-01T01:00,A,-1,", "2026-01-01T03:00,A,9,"],
        AUTHOR,
    );
    r.update("main", "u2", &["2026-01-01T02:00,B,7,"], AUTHOR);
    ok(&["branch", &r.path, "delete", "k", "--force"]);
    let sq = json(&[
        "squash",
        &r.path,
        "--older-than",
        "0s",
        "--by",
        "day",
        "--json",
    ]);
    assert_eq!(sq["commits_folded"], 2, "{sq}");
    let o = zf(&["revert", &r.path, &m], AUTHOR);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&u1), "the folded writer is named: {err}");
    assert_eq!(r.blame("main", "01:00", "A"), "u1");
}
