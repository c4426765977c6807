//! The bad-input corpus (issue C): schemas, input tables, revisions and ref names, and CLI
//! arguments. Every case asserts the exact error class (the enum variant, or exit status 2 for a
//! usage error), the key facts in its message, and that the repository is exactly as before:
//! the same branch tips and tags and the same bytes on disk.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::rt;
use zarr_fuse::ingest::{IngestError, Table};
use zarr_fuse::provenance::Provenance;
use zarr_fuse::repo::Strategy;
use zarr_fuse::update::{self, OnInvalid, UpdateError, UpdateOptions};
use zarr_fuse::{Location, Repo, RepoError};

const WHO: &str = "Corpus Tester <corpus@example.org>";

const SCHEMA: &str = "\
ATTRS: {title: corpus}
VARS:
  temp: {coords: [t, site], unit: K, source_unit: degC, df_col: temperature}
  hum: {coords: [t, site], unit: '%', range: {interval: [0, 100]}}
  count: {coords: [t, site], type: int32}
  kind: {coords: [t, site], type: 'str[4]', range: {discrete: [a, b]}}
  lat: {coords: site, unit: deg}
COORDS:
  t: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: CET}, df_col: time}
  site: {type: 'str[8]', sorted: false}
";

const HEADER: &str = "time,site,temperature,hum,count,kind,lat\n";
const GOOD_ROW: &str = "2026-01-01T01:00,A,1,2,1,a,3\n";

/// Branch tips, tags and a digest of every byte under the repository directory.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    refs: BTreeMap<String, String>,
    bytes: String,
}

fn digest_dir(root: &Path) -> String {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            // the lock file and the temporary-file area are not repository content
            if name == ".zf.lock" || name == ".zf-tmp" {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
                out.push((rel, std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut files = Vec::new();
    walk(root, root, &mut files);
    files.sort();
    let mut h = blake3::Hasher::new();
    for (p, b) in files {
        h.update(p.to_string_lossy().as_bytes());
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    h.finalize().to_hex().to_string()
}

async fn fingerprint(repo: &Repo, dir: &Path) -> Fingerprint {
    let mut refs = BTreeMap::new();
    for b in repo.branches().await.expect("branches") {
        refs.insert(format!("branch/{}", b.name), b.commit);
    }
    for t in repo.tags().await.expect("tags") {
        refs.insert(format!("tag/{}", t.name), t.commit);
    }
    Fingerprint {
        refs,
        bytes: digest_dir(dir),
    }
}

async fn update_csv(
    repo: &Repo,
    name: &str,
    csv: &[u8],
) -> Result<update::UpdateReport, UpdateError> {
    update_csv_with(repo, name, csv, None).await
}

/// As [`update_csv`] with a memory budget (`Some(0)`: the converted rows go to a temporary file).
async fn update_csv_with(
    repo: &Repo,
    name: &str,
    csv: &[u8],
    memory: Option<usize>,
) -> Result<update::UpdateReport, UpdateError> {
    let table = Table::from_csv_bytes(csv, name)?;
    update::update(
        repo,
        "main",
        &[(String::new(), table)],
        Provenance::new(WHO, "update", name),
        &UpdateOptions {
            on_invalid: OnInvalid::Error,
            memory,
            ..Default::default()
        },
    )
    .await
}

/// An input case: file name, content, the expected class and the words its message must hold.
#[derive(Clone)]
struct InputCase {
    name: &'static str,
    csv: Vec<u8>,
    class: fn(&UpdateError) -> bool,
    words: &'static [&'static str],
}

fn row(cells: &str) -> Vec<u8> {
    format!("{HEADER}{cells}\n").into_bytes()
}

fn is_bad_value(e: &UpdateError) -> bool {
    matches!(e, UpdateError::BadValue { .. })
}
fn is_missing_column(e: &UpdateError) -> bool {
    matches!(e, UpdateError::MissingColumn { .. })
}
fn is_csv(e: &UpdateError) -> bool {
    matches!(e, UpdateError::Ingest(IngestError::Csv { .. }))
}
fn is_empty(e: &UpdateError) -> bool {
    matches!(e, UpdateError::Ingest(IngestError::Empty { .. }))
}
fn is_varies(e: &UpdateError) -> bool {
    matches!(e, UpdateError::VariesAlongUnusedDim { .. })
}

fn input_cases() -> Vec<InputCase> {
    let c = |name, csv: Vec<u8>, class, words| InputCase {
        name,
        csv,
        class,
        words,
    };
    let mut bad_utf8 = HEADER.as_bytes().to_vec();
    bad_utf8.extend_from_slice(b"2026-01-01T01:00,\xff\xfe,1,2,1,a,3\n");
    let mut bom_in_cell = HEADER.as_bytes().to_vec();
    bom_in_cell.extend_from_slice(b"2026-01-01T01:00,A,1,2,\xc3\x28,a,3\n");
    vec![
        c(
            "missing-col.csv",
            b"time,site,temperature,hum,lat\n2026-01-01T01:00,A,1,2,3\n".to_vec(),
            is_missing_column,
            &["column 'count'", "missing"],
        ),
        c(
            "missing-time.csv",
            b"site,temperature,hum,count,kind,lat\nA,1,2,1,a,3\n".to_vec(),
            is_missing_column,
            &["column 'time'"],
        ),
        c(
            "header-only-wrong.csv",
            b"a,b,c\n1,2,3\n".to_vec(),
            is_missing_column,
            &["missing", "a, b, c"],
        ),
        c(
            "bad-number.csv",
            row("2026-01-01T01:00,A,warm,2,1,a,3"),
            is_bad_value,
            &["bad-number.csv:2", "temperature", "'warm'", "not a number"],
        ),
        c(
            "bad-number-row3.csv",
            format!("{HEADER}{GOOD_ROW}2026-01-01T02:00,A,1,2,1,a,1e999x\n").into_bytes(),
            is_bad_value,
            &["bad-number-row3.csv:3", "'1e999x'"],
        ),
        c(
            "inf.csv",
            // inf is a float value (spec/022); in an integer column it is invalid
            row("2026-01-01T01:00,A,1,2,inf,a,3"),
            is_bad_value,
            &[":2", "not a finite number"],
        ),
        c(
            "nan-text.csv",
            // NaN is NA in a float column (spec/022); an int32 without na_value refuses NA
            row("2026-01-01T01:00,A,1,2,NaN,a,3"),
            is_bad_value,
            &[":2", "not a finite number"],
        ),
        c(
            "bad-time.csv",
            row("yesterday,A,1,2,1,a,3"),
            is_bad_value,
            &["bad-time.csv:2", "column 'time'", "'yesterday'"],
        ),
        c(
            "bad-date.csv",
            row("2026-02-30T01:00,A,1,2,1,a,3"),
            is_bad_value,
            &[":2", "2026-02-30T01:00"],
        ),
        c(
            "bad-month.csv",
            row("2026-13-01T01:00,A,1,2,1,a,3"),
            is_bad_value,
            &[":2", "2026-13-01T01:00"],
        ),
        c(
            "bad-offset.csv",
            row("2026-01-01T01:00+25:00,A,1,2,1,a,3"),
            is_bad_value,
            &[":2", "column 'time'"],
        ),
        c(
            "time-overflow.csv",
            row("99999999999999999,A,1,2,1,a,3"),
            is_bad_value,
            &[":2", "overflow"],
        ),
        c(
            "year-3000.csv",
            row("3000-01-01T00:00,A,1,2,1,a,3"),
            is_bad_value,
            &[":2", "representable range"],
        ),
        c(
            "out-of-range.csv",
            format!("{HEADER}{GOOD_ROW}2026-01-01T02:00,A,1,150,1,a,3\n").into_bytes(),
            is_bad_value,
            &[
                "out-of-range.csv:3",
                "hum",
                "150",
                "outside the range [0, 100]",
            ],
        ),
        c(
            "below-range.csv",
            row("2026-01-01T01:00,A,1,-0.5,1,a,3"),
            is_bad_value,
            &[":2", "-0.5", "outside the range"],
        ),
        c(
            "not-allowed.csv",
            row("2026-01-01T01:00,A,1,2,1,c,3"),
            is_bad_value,
            &[":2", "kind", "not one of the allowed values"],
        ),
        c(
            "int-na.csv",
            row("2026-01-01T01:00,A,1,2,,a,3"),
            is_bad_value,
            &[":2", "count", "NA in integer variable"],
        ),
        c(
            "int-frac.csv",
            row("2026-01-01T01:00,A,1,2,1.5,a,3"),
            is_bad_value,
            &[":2", "count", "'1.5'", "not an integer"],
        ),
        c(
            "int-overflow.csv",
            row("2026-01-01T01:00,A,1,2,9999999999,a,3"),
            is_bad_value,
            &[":2", "does not fit type int32"],
        ),
        c(
            "int-text.csv",
            row("2026-01-01T01:00,A,1,2,one,a,3"),
            is_bad_value,
            &[":2", "'one'", "not a number"],
        ),
        c(
            "long-str.csv",
            row("2026-01-01T01:00,ABCDEFGHIJ,1,2,1,a,3"),
            is_bad_value,
            &[":2", "longer than 8"],
        ),
        c(
            "long-str-var.csv",
            row("2026-01-01T01:00,A,1,2,1,abcde,3"),
            is_bad_value,
            &[":2", "longer than 4"],
        ),
        c(
            "ragged-short.csv",
            b"time,site,temperature,hum,count,kind,lat\n2026-01-01T01:00,A,1,2\n".to_vec(),
            is_csv,
            &["ragged-short.csv:2", "ragged row"],
        ),
        c(
            "ragged-long.csv",
            row("2026-01-01T01:00,A,1,2,1,a,3,99"),
            is_csv,
            &[":2", "ragged row: 8 fields"],
        ),
        c("bad-utf8.csv", bad_utf8, is_csv, &["UTF-8"]),
        c("bad-utf8-later.csv", bom_in_cell, is_csv, &["UTF-8"]),
        c(
            "unterminated-quote.csv",
            format!("{HEADER}2026-01-01T01:00,\"A,1,2,1,a,3\n").into_bytes(),
            is_csv,
            &[],
        ),
        c("empty.csv", Vec::new(), is_empty, &["empty"]),
        c("blank.csv", b"  \n\n \t\n".to_vec(), is_empty, &["empty"]),
        c(
            "varies.csv",
            format!("{HEADER}{GOOD_ROW}2026-01-01T02:00,A,1,2,1,a,4\n").into_bytes(),
            is_varies,
            &["lat", "does not use", "lines 2 and 3"],
        ),
    ]
}

/// A revision or ref-name case: what to run, the expected class and the words.
type RepoCase = (
    &'static str,
    fn(&RepoError) -> bool,
    &'static [&'static str],
);

#[test]
fn bad_inputs_revisions_and_ref_names_leave_the_repository_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("repo");
    let rt = rt();
    let (repo, first, second) = rt.block_on(async {
        let repo = Repo::init(&Location::Local(path.clone()))
            .await
            .expect("init");
        update::init_dataset(
            &repo,
            SCHEMA,
            "corpus.yaml",
            Provenance::new(WHO, "init", "init"),
        )
        .await
        .expect("schema");
        let r1 = update_csv(&repo, "good.csv", format!("{HEADER}{GOOD_ROW}").as_bytes())
            .await
            .expect("good update");
        let r2 = update_csv(
            &repo,
            "good2.csv",
            format!("{HEADER}2026-01-01T02:00,A,5,6,2,b,3\n").as_bytes(),
        )
        .await
        .expect("second update");
        repo.create_branch("side", "main").await.expect("branch");
        repo.create_tag("v1", "main", Some("first tag"))
            .await
            .expect("tag");
        (repo, r1.commit.expect("c1"), r2.commit.expect("c2"))
    });
    let before = rt.block_on(fingerprint(&repo, &path));
    let mut checked = 0usize;

    // 1. input tables
    // each case with the converted rows in memory and with them in a temporary file
    for (case, memory) in input_cases()
        .into_iter()
        .flat_map(|c| [None, Some(0)].map(|m| (c.clone(), m)))
    {
        let err = rt
            .block_on(update_csv_with(&repo, case.name, &case.csv, memory))
            .expect_err(case.name);
        assert!((case.class)(&err), "{}: wrong class: {err:?}", case.name);
        let msg = err.to_string();
        assert!(
            msg.contains(case.name),
            "{}: message does not name the file: {msg}",
            case.name
        );
        assert_eq!(msg.lines().count(), 1, "{}: one line: {msg}", case.name);
        for w in case.words {
            assert!(msg.contains(w), "{}: '{msg}' lacks '{w}'", case.name);
        }
        assert_eq!(
            rt.block_on(fingerprint(&repo, &path)),
            before,
            "{}",
            case.name
        );
        checked += 1;
    }
    // a node that is not in the schema
    let t = Table::from_csv_bytes(format!("{HEADER}{GOOD_ROW}").as_bytes(), "n.csv").expect("t");
    let err = rt
        .block_on(update::update(
            &repo,
            "main",
            &[("nosuch/node".into(), t.clone())],
            Provenance::new(WHO, "update", "n"),
            &UpdateOptions::default(),
        ))
        .expect_err("no node");
    assert!(matches!(err, UpdateError::NoSuchNode { .. }), "{err:?}");
    assert!(err.to_string().contains("nosuch/node"), "{err}");
    checked += 1;
    // a branch that does not exist
    let err = rt
        .block_on(update::update(
            &repo,
            "ghost",
            &[(String::new(), t)],
            Provenance::new(WHO, "update", "n"),
            &UpdateOptions::default(),
        ))
        .expect_err("no branch");
    assert!(
        matches!(err, UpdateError::Repo(RepoError::NoSuchBranch(_))),
        "{err:?}"
    );
    checked += 1;
    // an unreadable Parquet file and an unsupported extension
    for (name, class, word) in [
        (
            "junk.parquet",
            is_csv as fn(&UpdateError) -> bool,
            "not a readable Parquet file",
        ),
        (
            "x.xlsx",
            |e: &UpdateError| matches!(e, UpdateError::Ingest(IngestError::Unsupported { .. })),
            "unsupported input format",
        ),
        (
            "missing.csv",
            |e: &UpdateError| matches!(e, UpdateError::Ingest(IngestError::Read { .. })),
            "cannot read",
        ),
    ] {
        let f = dir.path().join(name);
        if name != "missing.csv" {
            std::fs::write(&f, b"PAR1 this is not parquet").expect("write");
        }
        let err: UpdateError = Table::read(&f).expect_err(name).into();
        assert!(class(&err), "{name}: {err:?}");
        assert!(
            err.to_string().contains(word) && err.to_string().contains(name),
            "{err}"
        );
        checked += 1;
    }
    assert_eq!(rt.block_on(fingerprint(&repo, &path)), before);

    // 2. revisions and ref names
    let short = &first[..6];
    let cases: Vec<(String, RepoCase)> = vec![
        (
            "nosuch".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch", "main"],
            ),
        ),
        (
            "abc".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["at least 6"],
            ),
        ),
        (
            "ZZZZZZZZ".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["ZZZZZZZZ"],
            ),
        ),
        (
            "main@yesterday".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. } | RepoError::Invalid(_)),
                &["yesterday"],
            ),
        ),
        (
            "main@1990-01-01T00:00:00Z".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["1990"],
            ),
        ),
        (
            "ghost@2026-01-01T00:00:00Z".into(),
            (
                "resolve",
                |e| {
                    matches!(
                        e,
                        RepoError::RevNotFound { .. } | RepoError::NoSuchBranch(_)
                    )
                },
                &["ghost"],
            ),
        ),
        (
            format!("{short}0000000000000000000000"),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &[],
            ),
        ),
        (
            "".into(),
            (
                "resolve",
                |e| matches!(e, RepoError::RevNotFound { .. } | RepoError::Invalid(_)),
                &[],
            ),
        ),
        (
            "v1".into(),
            (
                "create_tag",
                |e| matches!(e, RepoError::TagExists(_)),
                &["v1", "immutable"],
            ),
        ),
        (
            "bad name".into(),
            (
                "create_tag",
                |e| matches!(e, RepoError::InvalidName { .. }),
                &["bad name"],
            ),
        ),
        (
            "../up".into(),
            (
                "create_tag",
                |e| matches!(e, RepoError::InvalidName { .. }),
                &["../up"],
            ),
        ),
        (
            "".into(),
            (
                "create_tag",
                |e| matches!(e, RepoError::InvalidName { .. }),
                &["tag"],
            ),
        ),
        (
            "main".into(),
            (
                "create_branch",
                |e| matches!(e, RepoError::BranchExists(_)),
                &["main"],
            ),
        ),
        (
            "a\u{7}b".into(),
            (
                "create_branch",
                |e| matches!(e, RepoError::InvalidName { .. }),
                &["branch"],
            ),
        ),
        (
            "-dash".into(),
            (
                "create_branch",
                |e| matches!(e, RepoError::InvalidName { .. }),
                &["-dash"],
            ),
        ),
        (
            "ghost".into(),
            (
                "delete_branch",
                |e| matches!(e, RepoError::NoSuchBranch(_)),
                &["ghost"],
            ),
        ),
        (
            "ghost".into(),
            (
                "reset",
                |e| matches!(e, RepoError::NoSuchBranch(_)),
                &["ghost"],
            ),
        ),
        (
            "nosuch".into(),
            (
                "revert",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch"],
            ),
        ),
        (
            "nosuch".into(),
            (
                "merge",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch"],
            ),
        ),
        (
            "nosuch".into(),
            (
                "cherry_pick",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch"],
            ),
        ),
        (
            "nosuch".into(),
            (
                "diff",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch"],
            ),
        ),
        (
            "nosuch".into(),
            (
                "log",
                |e| matches!(e, RepoError::RevNotFound { .. }),
                &["nosuch"],
            ),
        ),
        (
            "ghost".into(),
            (
                "revert_ghost_branch",
                |e| matches!(e, RepoError::NoSuchBranch(_)),
                &["ghost"],
            ),
        ),
    ];
    for (arg, (op, class, words)) in &cases {
        let arg = arg.as_str();
        let result: Result<(), RepoError> = rt.block_on(async {
            match *op {
                "resolve" => repo.resolve(arg).await.map(|_| ()),
                "create_tag" => repo.create_tag(arg, "main", None).await.map(|_| ()),
                "create_branch" => repo.create_branch(arg, "main").await.map(|_| ()),
                "delete_branch" => repo.delete_branch(arg).await,
                "reset" => repo.reset(arg, &first, false).await.map(|_| ()),
                "revert" => repo
                    .revert_by_chunks(
                        arg,
                        "main",
                        Strategy::Fail,
                        Provenance::new(WHO, "revert", "r"),
                    )
                    .await
                    .map(|_| ()),
                "merge" => repo
                    .merge_by_chunks(arg, "main", Provenance::new(WHO, "merge", "m"))
                    .await
                    .map(|_| ()),
                "cherry_pick" => repo
                    .cherry_pick_by_chunks(arg, "main", Provenance::new(WHO, "cherry-pick", "c"))
                    .await
                    .map(|_| ()),
                "revert_ghost_branch" => repo
                    .revert_by_chunks(
                        &second,
                        arg,
                        Strategy::Fail,
                        Provenance::new(WHO, "revert", "r"),
                    )
                    .await
                    .map(|_| ()),
                "diff" => repo.diff(arg, "main").await.map(|_| ()),
                "log" => repo.log(arg, None).await.map(|_| ()),
                other => panic!("unknown op {other}"),
            }
        });
        let err = result.expect_err(&format!("{op} {arg:?} must fail"));
        assert!(class(&err), "{op} {arg:?}: wrong class: {err:?}");
        let msg = err.to_string();
        assert_eq!(msg.lines().count(), 1, "{op} {arg:?}: {msg}");
        for w in *words {
            assert!(msg.contains(w), "{op} {arg:?}: '{msg}' lacks '{w}'");
        }
        assert_eq!(
            rt.block_on(fingerprint(&repo, &path)),
            before,
            "{op} {arg:?}"
        );
        checked += 1;
    }
    // reset to a commit outside the branch's history (a commit of another branch) without --force
    let side_only = rt.block_on(async {
        let t = Table::from_csv_bytes(
            format!("{HEADER}2026-01-01T03:00,B,1,2,1,a,4\n").as_bytes(),
            "side.csv",
        )
        .expect("t");
        update::update(
            &repo,
            "side",
            &[(String::new(), t)],
            Provenance::new(WHO, "update", "side"),
            &UpdateOptions::default(),
        )
        .await
        .expect("side update")
        .commit
        .expect("side commit")
    });
    let before = rt.block_on(fingerprint(&repo, &path));
    let err = rt
        .block_on(repo.reset("main", &side_only, false))
        .expect_err("not in history");
    assert!(matches!(err, RepoError::NotInHistory { .. }), "{err:?}");
    // the library names the commit and branch; the flag that overrides it is the CLI's to name
    assert!(
        err.to_string().contains("not in the history") && !err.to_string().contains("--force"),
        "{err}"
    );
    assert_eq!(rt.block_on(fingerprint(&repo, &path)), before);
    checked += 1;

    // 3. schema changes that are refused
    let refused: &[(&str, &str)] = &[
        ("drop-var.yaml", "removed"),
        ("unit.yaml", "unit"),
        ("type.yaml", "type"),
        ("coords.yaml", "coords"),
    ];
    for (name, word) in refused {
        let text = match *name {
            "drop-var.yaml" => SCHEMA.replace("  count: {coords: [t, site], type: int32}\n", ""),
            "unit.yaml" => SCHEMA.replace("unit: '%'", "unit: '1'"),
            "type.yaml" => SCHEMA.replace("type: int32", "type: int64"),
            _ => SCHEMA.replace("lat: {coords: site", "lat: {coords: [t, site]"),
        };
        let err = rt
            .block_on(update::apply_schema(
                &repo,
                "main",
                &text,
                name,
                Provenance::new(WHO, "schema", *name),
            ))
            .expect_err(name);
        assert!(
            matches!(err, UpdateError::SchemaChangeRefused { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(word), "{name}: {err}");
        assert_eq!(rt.block_on(fingerprint(&repo, &path)), before, "{name}");
        checked += 1;
    }
    for (name, text, line) in [
        (
            "unknown-key.yaml",
            SCHEMA.replace("ATTRS:", "ATTRS:\nVRAS: {}\nX:"),
            2,
        ),
        (
            "bad-yaml.yaml",
            SCHEMA.replace("VARS:", "VARS: [unclosed"),
            3,
        ),
        (
            "bad-unit.yaml",
            SCHEMA.replace("unit: deg}", "unit: deg, source_unit: furlongs}"),
            7,
        ),
        (
            "missing-coord.yaml",
            SCHEMA.replace("coords: site", "coords: sitee"),
            7,
        ),
    ] {
        let err = rt
            .block_on(update::apply_schema(
                &repo,
                "main",
                &text,
                name,
                Provenance::new(WHO, "schema", name),
            ))
            .expect_err(name);
        match &err {
            UpdateError::Schema(s) => {
                assert_eq!(s.file, name);
                assert!(
                    s.line >= 1 && s.line <= line + 1,
                    "{name}: line {} ({err})",
                    s.line
                );
            }
            other => panic!("{name}: wrong class {other:?}"),
        }
        assert_eq!(rt.block_on(fingerprint(&repo, &path)), before, "{name}");
        checked += 1;
    }

    // 4. CLI arguments: usage errors exit 2 and name the argument; nothing is written
    let repo_s = path.display().to_string();
    let exe = env!("CARGO_BIN_EXE_zarr-fuse");
    let good = dir.path().join("g.csv");
    std::fs::write(&good, format!("{HEADER}{GOOD_ROW}")).expect("write");
    let g = good.display().to_string();
    let usage: &[(&[&str], &str)] = &[
        (
            &["update", &repo_s, &g, "--on-invalid", "maybe"],
            "--on-invalid",
        ),
        (&["update", &repo_s], "INPUTS"),
        (&["revert", &repo_s, &first, "--strategy", "ours"], "theirs"),
        (&["export", &repo_s, "--format", "xlsx"], "xlsx"),
        (&["log", &repo_s, "--limit", "ten"], "--limit"),
        (&["tag", &repo_s, "create"], "NAME"),
        (&["branch", &repo_s, "rename", "a", "b"], "rename"),
        (&["frobnicate"], "frobnicate"),
        (&["gc", &repo_s, "--older-than", "soon"], "--older-than"),
    ];
    for (args, word) in usage {
        let o = Command::new(exe).args(*args).output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: '{err}' lacks '{word}'");
        assert_eq!(rt.block_on(fingerprint(&repo, &path)), before, "{args:?}");
        checked += 1;
    }
    // refused operations through the CLI: exit 1, one line
    let refused_cli: &[(&[&str], &str)] = &[
        (
            &["update", &repo_s, &g, "--author", "nobody"],
            "Name <email>",
        ),
        (&["update", &repo_s, &g, "--meta", "novalue"], "key=value"),
        (
            &["blame", &repo_s, "--var", "temp", "--where", "depth=3"],
            "depth",
        ),
        (
            &["blame", &repo_s, "--var", "temp", "--where", "t"],
            "DIM=VALUE",
        ),
        (&["blame", &repo_s, "--var", "nosuch"], "variable 'nosuch'"),
        (&["export", &repo_s, "--at", "nosuch"], "nosuch"),
        (&["show", &repo_s, "nosuch"], "nosuch"),
        (&["tag", &repo_s, "create", "v1"], "immutable"),
    ];
    for (args, word) in refused_cli {
        let o = Command::new(exe).args(*args).output().expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(word), "{args:?}: '{err}' lacks '{word}'");
        assert_eq!(rt.block_on(fingerprint(&repo, &path)), before, "{args:?}");
        checked += 1;
    }
    eprintln!("bad-input corpus: {checked} cases, repository unchanged after each");
    assert!(
        checked >= 60,
        "the corpus must hold at least 60 cases, has {checked}"
    );
    let _ = second;
}
