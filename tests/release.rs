//! Zenodo release packages: contents and metadata fields, byte equality with the tag, verify
//! (including tampering), determinism, import, and refusals that leave nothing behind.
//! The Python side (zarr-python 3 + xarray without icechunk) is in `release_python.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use md5::Digest;
use serde_json::Value;
use zarr_fuse::release::package::{Layout, ZarrSource};
use zarr_fuse::release::{self, Format, ReleaseError, ReleaseOptions};
use zarr_fuse::{Location, Repo};
use zarrs_storage::{AsyncReadableStorageTraits, StoreKey};

/// The demo repository (two authors' re-fetches, a merged Kalman branch, a revert, tag v1.0).
fn demo(dir: &Path) -> Location {
    let p = dir.join("repo");
    rt().block_on(zarr_fuse::demo::run(&p)).expect("demo");
    Location::Local(p)
}

fn opts(out: &Path) -> ReleaseOptions {
    ReleaseOptions {
        out: out.to_path_buf(),
        format: Format::Zip,
        meta: None,
    }
}

fn release_to(
    loc: &Location,
    tag: &str,
    o: &ReleaseOptions,
) -> Result<release::ReleaseReport, ReleaseError> {
    rt().block_on(async {
        let repo = Repo::open(loc).await.unwrap();
        release::release(&repo, tag, o, &|_, _| {}).await
    })
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn zip_of(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".zarr.zip"))
        .expect("a .zarr.zip")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every key of the packaged Zarr and its bytes.
fn package_entries(zarr: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut src = ZarrSource::open(zarr).unwrap();
    let keys = src.keys().unwrap();
    keys.into_iter()
        .map(|k| {
            let b = src.read(&k).unwrap();
            (k, b)
        })
        .collect()
}

/// Every metadata document and chunk of `rev`, read through our API, by store key.
fn repo_entries(loc: &Location, rev: &str) -> BTreeMap<String, Vec<u8>> {
    rt().block_on(async {
        let repo = Repo::open(loc).await.unwrap();
        let id = repo.resolve(rev).await.unwrap().id;
        let session = repo.session_at(&id).await.unwrap();
        let store = repo.read_store(&id).await.unwrap();
        let mut out = BTreeMap::new();
        for node in zarr_fuse::cas::list_nodes(&session).await.unwrap() {
            let prefix = node.path.to_string().trim_start_matches('/').to_string();
            let prefix = if prefix.is_empty() {
                prefix
            } else {
                format!("{prefix}/")
            };
            let key = format!("{prefix}zarr.json");
            out.insert(
                key.clone(),
                store
                    .get(&StoreKey::new(&key).unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .to_vec(),
            );
            if let icechunk::format::snapshot::NodeData::Array { .. } = node.node_data {
                for (coords, _) in zarr_fuse::cas::array_chunks(&session, &node).await.unwrap() {
                    let c: Vec<String> = coords.0.iter().map(u32::to_string).collect();
                    let key = format!("{prefix}c/{}", c.join("/"));
                    let b = store
                        .get(&StoreKey::new(&key).unwrap())
                        .await
                        .unwrap()
                        .unwrap();
                    out.insert(key, b.to_vec());
                }
            }
        }
        out
    })
}

fn verify(dir: &Path) -> release::VerifyReport {
    release::verify(dir, &|_| {}).unwrap()
}

#[test]
fn package_holds_the_tag_with_metadata_provenance_and_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let out = tmp.path().join("pkg");
    let rep = release_to(&loc, "v1.0", &opts(&out)).unwrap();
    let names = listing(&out);
    for f in [
        "zenodo.json",
        "datacite.json",
        "PROVENANCE.json",
        "PROVENANCE.csv",
        "schema.yaml",
        "CHECKSUMS",
    ] {
        assert!(names.contains(f), "{f} missing: {names:?}");
    }
    assert_eq!(names.len(), 7, "{names:?}");
    let zip = zip_of(&out);

    // the packaged Zarr is byte for byte the tag, every node and every chunk
    let pkg = package_entries(&zip);
    let tag = repo_entries(&loc, "v1.0");
    assert_eq!(
        pkg.keys().collect::<Vec<_>>(),
        tag.keys().collect::<Vec<_>>()
    );
    assert_eq!(pkg, tag);
    assert_eq!(
        rep.chunks as usize,
        tag.keys().filter(|k| !k.ends_with("zarr.json")).count()
    );

    // the digest is the one the tag's commit records
    let (repo, info) = rt().block_on(async {
        let repo = Repo::open(&loc).await.unwrap();
        let id = repo.resolve("v1.0").await.unwrap().id;
        let info = repo.commit_info(&id).await.unwrap();
        (repo, info)
    });
    assert_eq!(Some(rep.content_digest.clone()), info.content_digest);

    // zenodo.json: the deposition fields
    let z = json(&out.join("zenodo.json"));
    let m = &z["metadata"];
    assert_eq!(m["upload_type"], "dataset");
    assert_eq!(m["title"], "Weather forecasts for CZ sites");
    assert!(m["description"]
        .as_str()
        .unwrap()
        .starts_with("Hourly forecasts"));
    assert_eq!(m["license"], "cc-by-4.0");
    assert_eq!(m["version"], "v1.0");
    assert_eq!(
        m["publication_date"],
        info.time.format("%Y-%m-%d").to_string()
    );
    assert_eq!(
        m["keywords"],
        serde_json::json!(["weather", "forecast", "yr.no"])
    );
    assert!(m["notes"].as_str().unwrap().contains(&rep.content_digest));
    // creators default to the commit authors, first appearance first, as "Family, Given"
    let log = rt().block_on(repo.log("v1.0", None)).unwrap();
    let kalman_log = rt().block_on(repo.log("kalman", None)).unwrap();
    let mut authors: Vec<(String, String)> = log
        .iter()
        .chain(kalman_log.iter())
        .filter_map(|c| Some((c.time_text(), c.author.clone()?)))
        .collect();
    authors.sort();
    let mut expect_creators: Vec<String> = vec![];
    for (_, a) in authors {
        let name = a.split('<').next().unwrap().trim().to_string();
        let (given, family) = name.rsplit_once(' ').unwrap();
        let fg = format!("{family}, {given}");
        if !expect_creators.contains(&fg) {
            expect_creators.push(fg);
        }
    }
    let creators: Vec<&str> = m["creators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(creators, expect_creators);

    // datacite.json: the DataCite 4 fields
    let d = json(&out.join("datacite.json"));
    for k in [
        "creators",
        "titles",
        "publisher",
        "publicationYear",
        "types",
        "subjects",
        "contributors",
        "dates",
        "version",
        "rightsList",
        "descriptions",
    ] {
        assert!(d.get(k).is_some(), "datacite.json lacks {k}");
    }
    assert!(
        d.get("identifier").is_none() && d.get("doi").is_none(),
        "the DOI is Zenodo's to assign"
    );
    assert_eq!(d["types"]["resourceTypeGeneral"], "Dataset");
    assert_eq!(d["publicationYear"], info.time.format("%Y").to_string());
    assert_eq!(d["rightsList"][0]["rightsIdentifier"], "CC-BY-4.0");
    assert_eq!(
        d["creators"].as_array().unwrap().len(),
        expect_creators.len()
    );
    assert_eq!(d["subjects"].as_array().unwrap().len(), 3);

    // PROVENANCE: every commit of the tag's history, merged branch included
    let p = json(&out.join("PROVENANCE.json"));
    let ids: BTreeSet<String> = log
        .iter()
        .chain(kalman_log.iter())
        .map(|c| c.id.to_string())
        .collect();
    let got: BTreeSet<String> = p["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids);
    for a in p["authors"].as_array().unwrap() {
        let who = a["author"].as_str().unwrap();
        let updates: BTreeSet<&str> = log
            .iter()
            .chain(kalman_log.iter())
            .filter(|c| {
                c.author.as_deref() == Some(who) && c.operation.as_deref() == Some("update")
            })
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(
            a["contributions"].as_u64().unwrap() as usize,
            updates.len(),
            "{who}"
        );
    }
    let reverted: Vec<_> = p["commits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["reverted_by"].is_null())
        .collect();
    assert_eq!(reverted.len(), 1, "the demo reverts one fetch");
    let csv = std::fs::read_to_string(out.join("PROVENANCE.csv")).unwrap();
    assert_eq!(csv.lines().count(), ids.len() + 1);
    assert!(csv.starts_with("commit,parents,time,author,operation,message"));

    // the schema file as stored
    assert_eq!(
        std::fs::read_to_string(out.join("schema.yaml")).unwrap(),
        zarr_fuse::demo::WEATHER_SCHEMA
    );

    // CHECKSUMS: md5 and blake3 of every file, computed here independently
    let ck = std::fs::read_to_string(out.join("CHECKSUMS")).unwrap();
    for f in names.iter().filter(|f| *f != "CHECKSUMS") {
        let b = std::fs::read(out.join(f)).unwrap();
        let md5: String = md5::Md5::digest(&b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        assert!(ck.contains(&format!("MD5 ({f}) = {md5}\n")), "md5 of {f}");
        assert!(
            ck.contains(&format!("BLAKE3 ({f}) = {}\n", blake3::hash(&b).to_hex())),
            "blake3 of {f}"
        );
    }
    for (k, b) in &pkg {
        let line = format!(
            "BLAKE3 ({}/{k}) = {}\n",
            zip.file_name().unwrap().to_string_lossy(),
            blake3::hash(b).to_hex()
        );
        assert!(ck.contains(&line), "{line}");
    }
    assert!(ck.contains(&format!("# content-digest: {}\n", rep.content_digest)));

    // verify, alone and against the repository
    let v = verify(&out);
    assert!(v.ok, "{:?}", v.problems);
    assert_eq!(
        v.computed_digest.as_deref(),
        Some(rep.content_digest.as_str())
    );
    assert_eq!(v.entries as usize, pkg.len());
    let mut v = v;
    rt().block_on(release::verify_with_repo(&mut v, &repo))
        .unwrap();
    assert!(v.ok, "{:?}", v.problems);
}

#[test]
fn releases_are_deterministic_apart_from_the_generation_time() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    release_to(&loc, "v1.0", &opts(&a)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // the second goes into an existing empty directory (files moved in, CHECKSUMS last)
    std::fs::create_dir(&b).unwrap();
    release_to(&loc, "v1.0", &opts(&b)).unwrap();
    assert!(verify(&b).ok);
    let partial: Vec<String> = listing(tmp.path())
        .into_iter()
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    assert_eq!(listing(&a), listing(&b));
    for f in listing(&a) {
        let (x, y) = (
            std::fs::read(a.join(&f)).unwrap(),
            std::fs::read(b.join(&f)).unwrap(),
        );
        if f == "CHECKSUMS" {
            let (x, y) = (String::from_utf8(x).unwrap(), String::from_utf8(y).unwrap());
            let differing: Vec<(&str, &str)> =
                x.lines().zip(y.lines()).filter(|(l, r)| l != r).collect();
            assert_eq!(differing.len(), 1, "{differing:?}");
            assert!(differing[0].0.starts_with("# generated: "));
            assert_eq!(x.lines().count(), y.lines().count());
        } else {
            assert!(x == y, "{f} differs between two releases of the same tag");
        }
    }
}

#[test]
fn verify_names_what_was_tampered_with() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let out = tmp.path().join("pkg");
    release_to(&loc, "v1.0", &opts(&out)).unwrap();
    let zip = zip_of(&out);
    let zip_name = zip.file_name().unwrap().to_string_lossy().into_owned();
    let pkg = package_entries(&zip);
    let bytes = std::fs::read(&zip).unwrap();
    // the largest chunk of the temperature array: find its bytes inside the archive
    let (key, data) = pkg
        .iter()
        .filter(|(k, _)| k.starts_with("temperature/c/"))
        .max_by_key(|(_, v)| v.len())
        .unwrap();
    let at = bytes
        .windows(data.len())
        .position(|w| w == &data[..])
        .unwrap();

    // 1. one modified byte in a chunk
    let t1 = tmp.path().join("t1");
    copy_dir(&out, &t1);
    let mut b = bytes.clone();
    b[at + data.len() / 2] ^= 0x40;
    std::fs::write(t1.join(&zip_name), &b).unwrap();
    let v = verify(&t1);
    assert!(!v.ok);
    let all = v.problems.join("\n");
    assert!(all.contains(&format!("{zip_name}: MD5")), "{all}");
    assert!(
        all.contains(key.as_str()) && all.contains("array /temperature, chunk"),
        "{all}"
    );

    // 2. a modified metadata file
    let t2 = tmp.path().join("t2");
    copy_dir(&out, &t2);
    let mut z = std::fs::read(t2.join("zenodo.json")).unwrap();
    let i = z.iter().position(|c| *c == b'W').unwrap();
    z[i] = b'V';
    std::fs::write(t2.join("zenodo.json"), z).unwrap();
    let v = verify(&t2);
    assert!(!v.ok);
    assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    assert!(
        v.problems.iter().all(|p| p.starts_with("zenodo.json: ")),
        "{:?}",
        v.problems
    );

    // 3. a truncated zip
    let t3 = tmp.path().join("t3");
    copy_dir(&out, &t3);
    std::fs::write(t3.join(&zip_name), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let v = verify(&t3);
    assert!(!v.ok);
    assert!(
        v.problems.iter().any(|p| p.contains("truncated")),
        "{:?}",
        v.problems
    );
    assert!(v.computed_digest.is_none());

    // 4. an extra file and a missing one
    let t4 = tmp.path().join("t4");
    copy_dir(&out, &t4);
    std::fs::write(t4.join("notes.txt"), "x").unwrap();
    std::fs::remove_file(t4.join("PROVENANCE.csv")).unwrap();
    let v = verify(&t4);
    let all = v.problems.join("\n");
    assert!(
        all.contains("notes.txt: not listed")
            && all.contains("PROVENANCE.csv: listed in CHECKSUMS but missing"),
        "{all}"
    );

    // 5. a package whose bytes and checksums were both rewritten: only the digest catches it
    let t5 = tmp.path().join("t5");
    copy_dir(&out, &t5);
    let ck = std::fs::read_to_string(t5.join("CHECKSUMS")).unwrap();
    let mut b = bytes.clone();
    b[at] ^= 1;
    // fix the entry's CRC in both headers so the zip itself is consistent
    let crc_old = crc32fast::hash(data).to_le_bytes();
    let mut nd = data.clone();
    nd[0] ^= 1;
    let crc_new = crc32fast::hash(&nd).to_le_bytes();
    let mut i = 0;
    while let Some(p) = b[i..].windows(4).position(|w| w == crc_old) {
        b[i + p..i + p + 4].copy_from_slice(&crc_new);
        i += p + 4;
    }
    std::fs::write(t5.join(&zip_name), &b).unwrap();
    let fixed = ck
        .lines()
        .map(|l| {
            if l.starts_with(&format!("MD5 ({zip_name})")) {
                format!(
                    "MD5 ({zip_name}) = {}",
                    md5::Md5::digest(&b)
                        .iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<String>()
                )
            } else if l.starts_with(&format!("BLAKE3 ({zip_name})")) {
                format!("BLAKE3 ({zip_name}) = {}", blake3::hash(&b).to_hex())
            } else if l.starts_with(&format!("BLAKE3 ({zip_name}/{key})")) {
                format!("BLAKE3 ({zip_name}/{key}) = {}", blake3::hash(&nd).to_hex())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(t5.join("CHECKSUMS"), fixed).unwrap();
    let v = verify(&t5);
    assert!(!v.ok);
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(
        v.problems[0].starts_with("content digest recomputed"),
        "{:?}",
        v.problems
    );
    // and against the repository the difference is named too
    let mut v = v;
    rt().block_on(async {
        let repo = Repo::open(&loc).await.unwrap();
        release::verify_with_repo(&mut v, &repo).await.unwrap();
    });
    assert!(
        v.problems
            .iter()
            .any(|p| p.contains("differs from tag 'v1.0'")),
        "{:?}",
        v.problems
    );
}

#[test]
fn refusals_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let before = listing(tmp.path());
    // unknown tag: the error lists the tags
    let e = release_to(&loc, "v9", &opts(&tmp.path().join("o1")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'v9' not found") && e.contains("v1.0"), "{e}");
    // a branch is not a tag
    let e = release_to(&loc, "kalman", &opts(&tmp.path().join("o1")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'kalman' is a branch"), "{e}");
    // output directory not empty: untouched
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep.txt"), "mine").unwrap();
    let e = release_to(&loc, "v1.0", &opts(&full)).unwrap_err();
    assert!(matches!(e, ReleaseError::OutputNotEmpty(_)), "{e}");
    assert_eq!(listing(&full), BTreeSet::from(["keep.txt".to_string()]));
    // --out names a file: the message says so (not "not empty")
    let e = release_to(&loc, "v1.0", &opts(&full.join("keep.txt"))).unwrap_err();
    assert!(matches!(e, ReleaseError::OutputIsFile(_)), "{e}");
    assert!(
        e.to_string().contains("it is a file, not a directory"),
        "{e}"
    );
    // a metadata file with every problem at once
    let meta = tmp.path().join("meta.yaml");
    std::fs::write(&meta, "title: ''\nlicence: cc0-1.0\ncreators:\n  - {name: Ada, orcid: 0000-0002-1825-0098}\npublication_date: 2026-13-01\n").unwrap();
    let mut o = opts(&tmp.path().join("o2"));
    o.meta = Some(meta.clone());
    let e = release_to(&loc, "v1.0", &o).unwrap_err().to_string();
    for part in ["licence", "ORCID '0000-0002-1825-0098'", "publication_date"] {
        assert!(e.contains(part), "{part}: {e}");
    }
    // nothing was created: no output, no staging directory
    let mut now = listing(tmp.path());
    now.remove("full");
    now.remove("meta.yaml");
    assert_eq!(now, before);
}

#[test]
fn missing_metadata_lists_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = Location::Local(tmp.path().join("repo"));
    let schema = "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {type: int64}\n";
    rt().block_on(async {
        let repo = Repo::init(&loc).await.unwrap();
        zarr_fuse::update::init_dataset(&repo, schema, "s.yaml", prov("init"))
            .await
            .unwrap();
        repo.create_tag("v1", "main", None).await.unwrap();
    });
    let out = tmp.path().join("out");
    let e = release_to(&loc, "v1", &opts(&out)).unwrap_err().to_string();
    assert!(e.contains("missing title, description, license"), "{e}");
    assert!(!out.exists());
    // with a metadata file the same tag releases, and the file's creators win
    let meta = tmp.path().join("meta.json");
    std::fs::write(&meta, r#"{"title": "T", "description": "D", "license": "cc0-1.0",
        "creators": [{"name": "Lovelace, Ada", "affiliation": "Analytical Engines", "orcid": "0000-0002-1825-0097"}],
        "funding": [{"funder": "GA CR", "award_number": "22-1234S"}],
        "source_repository": "https://example.org/repo"}"#).unwrap();
    let mut o = opts(&out);
    o.meta = Some(meta);
    release_to(&loc, "v1", &o).unwrap();
    let z = json(&out.join("zenodo.json"));
    assert_eq!(z["metadata"]["creators"][0]["orcid"], "0000-0002-1825-0097");
    assert_eq!(
        z["metadata"]["related_identifiers"][0]["relation"],
        "isDerivedFrom"
    );
    let d = json(&out.join("datacite.json"));
    assert_eq!(d["fundingReferences"][0]["awardNumber"], "22-1234S");
    assert_eq!(
        d["creators"][0]["nameIdentifiers"][0]["nameIdentifierScheme"],
        "ORCID"
    );
    assert_eq!(
        d["creators"][0]["affiliation"][0]["name"],
        "Analytical Engines"
    );
    assert!(verify(&out).ok);
}

#[test]
fn import_continues_a_published_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let out = tmp.path().join("pkg");
    let rep = release_to(&loc, "v1.0", &opts(&out)).unwrap();
    let n_commits = json(&out.join("PROVENANCE.json"))["commits"]
        .as_array()
        .unwrap()
        .len();

    // a damaged package is refused and creates nothing
    let bad = tmp.path().join("bad");
    copy_dir(&out, &bad);
    std::fs::write(bad.join("PROVENANCE.csv"), "changed").unwrap();
    let new = Location::Local(tmp.path().join("new"));
    let e = rt()
        .block_on(release::import::import(&new, &bad, None, prov("import")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("PROVENANCE.csv"), "{e}");
    assert!(!tmp.path().join("new").exists());

    // a new repository
    let r = rt()
        .block_on(release::import::import(&new, &out, None, prov("import")))
        .unwrap();
    assert!(r.created_repository && r.digest_matches, "{r:?}");
    assert_eq!(
        r.content_digest.as_deref(),
        Some(rep.content_digest.as_str())
    );
    assert_eq!(repo_entries(&new, "main"), repo_entries(&loc, "v1.0"));
    rt().block_on(async {
        let repo = Repo::open(&new).await.unwrap();
        let head = &repo.log("main", Some(1)).await.unwrap()[0];
        assert_eq!(head.operation.as_deref(), Some("import"));
        assert_eq!(head.extra["imported_tag"], "v1.0");
        assert_eq!(head.extra["imported_commit"], rep.commit.as_str());
        assert_eq!(head.extra["imported_commits"], n_commits.to_string().as_str());
        let record = repo.record(head).await.unwrap().unwrap();
        assert_eq!(record["imported"]["commits"].as_array().unwrap().len(), n_commits);
        let v = repo.verify("main", &|_| {}).await.unwrap();
        assert!(v.ok);
        // and the dataset continues: the schema came along, an update merges
        let csv = "time,latitude,longitude,air_temperature,relative_humidity,air_pressure_at_sea_level,wind_speed\n2026-03-01T00:00:00Z,50.08,14.42,1.5,80,1000,2\n";
        let table = zarr_fuse::ingest::Table::from_csv_bytes(csv.as_bytes(), "more.csv").unwrap();
        let up = zarr_fuse::update::update(&repo, "main", &[(String::new(), table)], prov("more"), &Default::default())
            .await
            .unwrap();
        assert!(up.commit.is_some());
        // blame: the new cell is the update's, the imported ones the import commit's
        let w = |s: &str| zarr_fuse::audit::Where::parse(s).unwrap();
        let b = zarr_fuse::audit::blame(&repo, "/", "temperature", "main", &[w("time=2026-03-01T00:00Z"), w("site=6922230086252109386")]).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].commit, up.commit.map(|c| c.to_string()));
        let b = zarr_fuse::audit::blame(&repo, "/", "temperature", "main", &[w("time=2026-01-01T12:00Z")]).await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].commit.as_deref(), Some(head.id.as_str()));
    });

    // an existing repository: a branch is required, then created from the root
    let e = rt()
        .block_on(release::import::import(&loc, &out, None, prov("import")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--branch"), "{e}");
    let r = rt()
        .block_on(release::import::import(
            &loc,
            &out,
            Some("published"),
            prov("import"),
        ))
        .unwrap();
    assert!(!r.created_repository && r.digest_matches);
    assert_eq!(repo_entries(&loc, "published"), repo_entries(&loc, "v1.0"));
    let e = rt()
        .block_on(release::import::import(
            &loc,
            &out,
            Some("published"),
            prov("import"),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
}

#[test]
fn directory_format_and_another_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = demo(tmp.path());
    let out = tmp.path().join("pkg");
    let mut o = opts(&out);
    o.format = Format::Dir;
    release_to(&loc, "v1.0", &o).unwrap();
    let v = verify(&out);
    assert!(v.ok, "{:?}", v.problems);
    let zdir = out.join(v.header.zarr.clone());
    assert!(zdir.is_dir());
    assert_eq!(package_entries(&zdir), repo_entries(&loc, "v1.0"));
    let layout = {
        let mut src = ZarrSource::open(&zdir).unwrap();
        let keys = src.keys().unwrap();
        Layout::build(&keys, |k| src.read(k)).unwrap()
    };
    assert!(layout.stray.is_empty());
    // tamper with one chunk file: named by file and by array/chunk
    let key = layout.chunks["/temperature"]
        .values()
        .next()
        .unwrap()
        .clone();
    let f = zdir.join(&key);
    let mut b = std::fs::read(&f).unwrap();
    b[0] ^= 1;
    std::fs::write(&f, b).unwrap();
    let v = verify(&out);
    assert!(
        v.problems.iter().any(|p| p.contains(&key)),
        "{:?}",
        v.problems
    );

    // another repository with a tag of the same name
    let other = Location::Local(tmp.path().join("other"));
    rt().block_on(async {
        let repo = Repo::init(&other).await.unwrap();
        zarr_fuse::update::init_dataset(
            &repo,
            zarr_fuse::demo::WEATHER_SCHEMA,
            "w.yaml",
            prov("init"),
        )
        .await
        .unwrap();
        repo.create_tag("v1.0", "main", None).await.unwrap();
        let out2 = tmp.path().join("pkg2");
        release::release(
            &Repo::open(&loc).await.unwrap(),
            "v1.0",
            &opts(&out2),
            &|_, _| {},
        )
        .await
        .unwrap();
        let mut v = release::verify(&out2, &|_| {}).unwrap();
        release::verify_with_repo(&mut v, &repo).await.unwrap();
        assert!(!v.ok);
        let all = v.problems.join("\n");
        assert!(all.contains("comes from another repository"), "{all}");
        assert!(all.contains("tag 'v1.0' in"), "{all}");
    });
}

#[test]
fn release_from_every_backend_and_import_back() {
    for backend in backends() {
        let tmp = tempfile::tempdir().unwrap();
        let loc = fresh_location(backend, tmp.path(), "rel").unwrap();
        rt().block_on(async {
            let repo = init(&loc).await;
            write(&repo, "main", &["a", "b"], 1.0, "first").await;
            write(&repo, "main", &["a"], 2.0, "second").await;
            repo.create_tag("v2", "main", None).await.unwrap();
        });
        // the root has no ATTRS: the metadata come from the file
        let meta = tmp.path().join("meta.yaml");
        std::fs::write(
            &meta,
            "title: Small\ndescription: Two arrays\nlicense: cc-by-4.0\n",
        )
        .unwrap();
        let out = tmp.path().join("pkg");
        let mut o = opts(&out);
        o.meta = Some(meta);
        let rep = release_to(&loc, "v2", &o).unwrap();
        assert_eq!(rep.chunks, 2, "{backend}");
        assert_eq!(
            package_entries(&zip_of(&out)),
            repo_entries(&loc, "v2"),
            "{backend}"
        );
        let mut v = verify(&out);
        rt().block_on(async {
            let repo = Repo::open(&loc).await.unwrap();
            release::verify_with_repo(&mut v, &repo).await.unwrap();
        });
        assert!(v.ok, "{backend}: {:?}", v.problems);
        let z = json(&out.join("zenodo.json"));
        assert_eq!(
            z["metadata"]["creators"][0]["name"], "Writer, Test",
            "{backend}"
        );
        let back = Location::Local(tmp.path().join("back"));
        let r = rt()
            .block_on(release::import::import(&back, &out, None, prov("import")))
            .unwrap();
        assert!(r.digest_matches, "{backend}");
        let got =
            rt().block_on(async { read(&Repo::open(&back).await.unwrap(), "main", "a").await });
        assert!(same(&got.unwrap(), &values(2.0)), "{backend}");
    }
}

#[test]
fn merged_history_expired_by_gc_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let loc = Location::Local(tmp.path().join("repo"));
    rt().block_on(async {
        let repo = init(&loc).await;
        write(&repo, "main", &["a"], 1.0, "first").await;
        repo.create_branch("side", "main").await.unwrap();
        write(&repo, "side", &["b"], 2.0, "on side").await;
        let side_tip = repo.branch_tip("side").await.unwrap();
        repo.merge_by_chunks("side", "main", prov("merge side"))
            .await
            .unwrap();
        repo.delete_branch("side").await.unwrap();
        repo.gc(chrono::Utc::now() + chrono::Duration::seconds(1), false)
            .await
            .unwrap();
        // the side commit is no parent of main's commits: gc expired it
        assert!(repo.resolve(&side_tip.to_string()).await.is_err());
        repo.create_tag("v1", "main", None).await.unwrap();
    });
    let meta = tmp.path().join("meta.yaml");
    std::fs::write(&meta, "title: T\ndescription: D\nlicense: cc0-1.0\n").unwrap();
    let out = tmp.path().join("pkg");
    let mut o = opts(&out);
    o.meta = Some(meta);
    release_to(&loc, "v1", &o).unwrap();
    assert!(verify(&out).ok);
    let p = json(&out.join("PROVENANCE.json"));
    let messages: Vec<&str> = p["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"merge side"), "{messages:?}");
    // its history is gone: reported, and the release still made
    assert!(!messages.contains(&"on side"));
    assert_eq!(p["unavailable_merge_sources"].as_array().unwrap().len(), 1);
}
