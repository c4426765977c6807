//! Fuzzing entry points (issue C; spec/014): each takes arbitrary bytes and must return without
//! panicking, whatever the bytes. `fuzz/` runs them under cargo-fuzz (libFuzzer); the test
//! `tests/fuzz_corpus.rs` runs them over the seed corpus and deterministic mutations of it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::ingest::Table;
use crate::repo::{CommitInfo, Repo};
use crate::schema::Schema;
use crate::update::cells::CellMatcher;
use crate::update::convert::{convert, Converter, OnInvalid};
use crate::update::{Key, UpdateError};

/// The schema the table targets convert against: times with zones, units, ranges, strings,
/// integers with and without `na_value`, a composed coordinate.
const TABLE_SCHEMA: &str = "\
VARS:
  temp: {coords: [t, site], unit: K, source_unit: degC, df_col: temperature}
  hum: {coords: [t, site], unit: '%', range: {interval: [0, 100]}}
  count: {coords: [t, site], type: int32, na_value: -1}
  flag: {coords: [t, site], type: int8}
  kind: {coords: [t, site], type: 'str[4]', range: {discrete: [a, b]}}
  x: {coords: site}
  y: {coords: site}
COORDS:
  t: {unit: {tick: h, tz: null}, source_unit: {tick: s, tz: Europe/Prague}, df_col: time}
  site: {composed: [x, y], sorted: false}
";

fn table_schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| crate::schema::load_str(TABLE_SCHEMA, "fuzz.yaml").ok())
        .as_ref()
}

/// The schema loader on arbitrary text.
pub fn schema(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(s) = crate::schema::load_str(&text, "fuzz.yaml") {
        // what a loaded schema is used for must not panic either
        let _ = s.digest();
        let _ = s.to_json();
    }
}

fn convert_table(table: &Table) {
    if let Some(schema) = table_schema() {
        for on_invalid in [OnInvalid::Error, OnInvalid::Na] {
            let _ = convert(table, &schema.root, on_invalid);
        }
    }
}

/// CSV ingest and conversion against a schema.
pub fn csv(data: &[u8]) {
    if let Ok(t) = Table::from_csv_bytes(data, "fuzz.csv") {
        convert_table(&t);
    }
}

/// JSON inputs of every accepted shape (records, columns, NDJSON, yr.no), read as `update` reads
/// them, then converted against a schema.
pub fn json(data: &[u8]) {
    for shape in [
        crate::ingest::JsonShape::Auto,
        crate::ingest::JsonShape::Yrno,
    ] {
        if let Ok(t) = Table::from_json_bytes(data, "fuzz.json", shape) {
            convert_table(&t);
        }
    }
}

/// Rows the Parquet target decodes at most: a few kilobytes of run-length encoded Parquet can
/// hold millions of rows (found by libFuzzer: 2 KiB → 7 GB of cells), which is data, not a bug.
const FUZZ_MAX_ROWS: usize = 50_000;

/// Parquet ingest and conversion against a schema, batch by batch as `update` reads files.
pub fn parquet(data: &[u8]) {
    let Some(schema) = table_schema() else {
        return;
    };
    for on_invalid in [OnInvalid::Error, OnInvalid::Na] {
        let mut conv = Converter::new(&schema.root, on_invalid);
        let mut rows = 0usize;
        let read = Table::parquet_bytes_batches(data, "fuzz.parquet", 4_096, |t| {
            rows += t.n_rows();
            if rows > FUZZ_MAX_ROWS {
                return Err(UpdateError::Invalid("enough rows".into()));
            }
            conv.push(&t)
        });
        if read.is_ok() {
            let _ = conv.finish();
        }
    }
}

struct RevFixture {
    rt: tokio::runtime::Runtime,
    repo: Repo,
}

fn rev_fixture() -> Option<&'static RevFixture> {
    static FIXTURE: OnceLock<Option<RevFixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let repo = rt.block_on(async {
                let repo = Repo::init(&crate::storage::Location::Memory("fuzz-rev".into()))
                    .await
                    .ok()?;
                crate::update::init_dataset(
                    &repo,
                    "VARS:\n  v: {coords: t}\nCOORDS:\n  t: {type: int64}\n",
                    "rev.yaml",
                    crate::provenance::Provenance::new("Fuzz <f@example.org>", "init", "init"),
                )
                .await
                .ok()?;
                repo.create_branch("side", "main").await.ok()?;
                repo.create_tag("v1", "main", None).await.ok()?;
                Some(repo)
            })?;
            Some(RevFixture { rt, repo })
        })
        .as_ref()
}

/// The REV parser and resolver (branch, tag, id, prefix, BRANCH@time) and ref-name validation.
pub fn rev(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::repo::parse_time(&text);
    let _ = crate::repo::validate_ref_name("branch", &text);
    if let Some(f) = rev_fixture() {
        let _ = f.rt.block_on(f.repo.resolve(&text));
    }
}

/// Decoding of our provenance (commit metadata) and side records (cell sets).
pub fn records(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(obj) = v.as_object() {
        let props: BTreeMap<String, serde_json::Value> =
            obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let info = CommitInfo::from_parts(
            crate::repo::CommitId::from(icechunk::format::SnapshotId::random()),
            vec![],
            chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            "fuzz",
            &props,
        );
        let _ = serde_json::to_string(&info);
        // a side record: per node, per variable, a cell set
        if let Some(cells) = obj.get("cells").and_then(|c| c.as_object()) {
            for node in cells.values().filter_map(|n| n.as_object()) {
                for set in node.values() {
                    if let Some(m) = CellMatcher::from_json(set) {
                        let probe = [Key::I(0), Key::f(0.5), Key::S("a".into())];
                        for n in 0..=probe.len() {
                            let _ = m.contains(&probe[..n]);
                        }
                    }
                }
            }
        }
    }
    if let Some(m) = CellMatcher::from_json(&v) {
        let _ = m.contains(&[Key::I(1), Key::I(2)]);
    }
}

/// Release packages: a `.zarr.zip` (structure, entries, hierarchy, content digest) or, for
/// bytes that are not a zip, a CHECKSUMS file.
pub fn package(data: &[u8]) {
    use crate::release::package::{parse_checksums, Layout};
    use crate::release::zip::ZipReader;
    if !data.starts_with(b"PK") {
        let _ = parse_checksums(
            &String::from_utf8_lossy(data),
            std::path::Path::new("CHECKSUMS"),
        );
        return;
    }
    let Ok(mut r) = ZipReader::open(std::io::Cursor::new(data)) else {
        return;
    };
    let entries = r.entries().to_vec();
    let keys: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let read = |r: &mut ZipReader<std::io::Cursor<&[u8]>>, k: &str| {
        let e = entries.iter().find(|e| e.name == k).ok_or("missing")?;
        r.read(e).map_err(|e| e.to_string())
    };
    if let Ok(layout) = Layout::build(&keys, |k| read(&mut r, k)) {
        let mut pd = crate::cas::PlainDigest::new(512);
        for node in layout.nodes.values() {
            pd.node(&node.path, node.is_array, &node.zarr_json);
            for (coords, key) in layout.chunks.get(&node.path).into_iter().flatten() {
                if let Ok(b) = read(&mut r, key) {
                    pd.chunk(coords, b.len() as u64, &blake3::hash(&b));
                }
                let _ = layout.describe(key);
            }
        }
        let _ = pd.finish();
    }
}

/// A fuzz target: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: &[(&str, Target)] = &[
    ("schema", schema),
    ("csv", csv),
    ("parquet", parquet),
    ("rev", rev),
    ("records", records),
    ("package", package),
    ("json", json),
];
