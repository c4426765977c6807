//! Every fuzz target (`zarr_fuse::fuzz`, run by cargo-fuzz under `fuzz/`) over its seed corpus in
//! `fuzz/corpus/<target>/` and over deterministic mutations of it (bit flips, byte insertions and
//! deletions, truncations, splices between seeds). A panic anywhere fails the test.
//!
//! `ZF_FUZZ_ITERS` sets the mutations per seed (default 2000), `ZF_FUZZ_ONLY` one target; the
//! long campaigns use cargo-fuzz (spec/014).

use std::path::Path;
use std::sync::Arc;

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn mutate(seed: &[u8], other: &[u8], rng: &mut u64) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + next(rng) % 4 {
        let len = v.len().max(1) as u64;
        match next(rng) % 7 {
            0 if !v.is_empty() => {
                let i = (next(rng) % len) as usize;
                v[i] ^= 1 << (next(rng) % 8);
            }
            1 => {
                let i = (next(rng) % (len + 1)) as usize;
                let bytes = [
                    b',', b'\n', b'"', b':', b'{', b'[', b'-', b'@', 0xff, b'9', b' ',
                ];
                v.insert(
                    i.min(v.len()),
                    bytes[(next(rng) % bytes.len() as u64) as usize],
                );
            }
            2 if !v.is_empty() => {
                let i = (next(rng) % len) as usize;
                let n = (next(rng) % 16) as usize;
                v.drain(i..(i + n).min(v.len()));
            }
            3 => v.truncate((next(rng) % (len + 1)) as usize),
            4 if !other.is_empty() => {
                let i = (next(rng) % (v.len() as u64 + 1)) as usize;
                let j = (next(rng) % other.len() as u64) as usize;
                let n = (next(rng) % 64) as usize;
                let piece = other[j..(j + n).min(other.len())].to_vec();
                v.splice(i..i, piece);
            }
            5 if !v.is_empty() => {
                let i = (next(rng) % len) as usize;
                v[i] = (next(rng) % 256) as u8;
            }
            _ => {
                let i = (next(rng) % (len + 1)) as usize;
                let n = (next(rng) % 32) as usize;
                let piece = v[i.min(v.len())..(i + n).min(v.len())].to_vec();
                v.splice(i.min(v.len())..i.min(v.len()), piece);
            }
        }
    }
    v
}

/// A Parquet seed whose columns match the schema the table targets convert against.
fn parquet_seed() -> Vec<u8> {
    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "time",
            Arc::new(StringArray::from(vec![
                Some("2026-01-01T01:00"),
                Some("2026-01-01T02:00"),
                None,
            ])),
        ),
        (
            "temperature",
            Arc::new(Float64Array::from(vec![Some(1.5), None, Some(3.0)])),
        ),
        (
            "hum",
            Arc::new(Float64Array::from(vec![Some(50.0), Some(150.0), Some(3.0)])),
        ),
        (
            "count",
            Arc::new(Int64Array::from(vec![Some(1), None, Some(-1)])),
        ),
        ("flag", Arc::new(Int64Array::from(vec![0, 1, 0]))),
        (
            "kind",
            Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("c")])),
        ),
        ("x", Arc::new(Float64Array::from(vec![14.1, 14.1, 15.0]))),
        ("y", Arc::new(Float64Array::from(vec![50.0, 50.0, 49.0]))),
    ];
    let batch = RecordBatch::try_from_iter(cols).expect("batch");
    let mut out = Vec::new();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    out
}

#[test]
fn fuzz_targets_survive_their_corpus_and_mutations() {
    let iters: usize = std::env::var("ZF_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut report = Vec::new();
    let only = std::env::var("ZF_FUZZ_ONLY").ok();
    for (name, target) in zarr_fuse::fuzz::TARGETS {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let dir = root.join(name);
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| std::fs::read(e.path()).expect("seed"))
            .collect();
        if *name == "parquet" {
            seeds.push(parquet_seed());
        }
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let mut runs = 0usize;
        for (i, seed) in seeds.iter().enumerate() {
            target(seed);
            runs += 1;
            let other = &seeds[(i + 1) % seeds.len()];
            for _ in 0..iters {
                let input = mutate(seed, other, &mut rng);
                if let Err(p) = std::panic::catch_unwind(|| target(&input)) {
                    // keep the input that broke the target, to reproduce and to seed a test
                    let keep = std::env::temp_dir().join(format!("zf-fuzz-crash-{name}.bin"));
                    let _ = std::fs::write(&keep, &input);
                    eprintln!("{name}: panic on the input saved as {}", keep.display());
                    std::panic::resume_unwind(p);
                }
                runs += 1;
            }
        }
        report.push(format!("{name}: {} seeds, {runs} runs", seeds.len()));
    }
    eprintln!("fuzz corpus: {}; no panic", report.join("; "));
}

/// A damaged Parquet file (found by this runner) whose decoder hands out a string column value
/// that is not UTF-8; it once reached chrono's time parser, which panicked on it.
#[test]
fn regression_parquet_string_that_is_not_utf8() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/parquet/regression-invalid-utf8.parquet");
    let data = std::fs::read(path).expect("seed");
    match zarr_fuse::ingest::Table::from_parquet_bytes(&data, "r.parquet") {
        Ok(t) => panic!("read {} rows from a damaged file", t.n_rows()),
        // release builds: the value is caught as not UTF-8; debug builds: the decoder's own
        // overflow checks fire first and the guard reports an unreadable file
        Err(e) => assert!(
            e.to_string().contains("not valid UTF-8")
                || e.to_string().contains("not a readable Parquet file"),
            "{e}"
        ),
    }
    zarr_fuse::fuzz::parquet(&data);
}

/// A 2 242-byte Parquet file (found by libFuzzer) whose dictionary page claims ~900 million
/// values: the decoder allocated them up front (7 GB). It is now refused before decoding.
#[test]
fn regression_parquet_dictionary_page_claiming_millions_of_values() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/parquet/regression-dictionary-claims.parquet");
    let data = std::fs::read(&path).expect("seed");
    match zarr_fuse::ingest::Table::from_parquet_bytes(&data, "d.parquet") {
        Ok(t) => panic!("read {} rows from a damaged file", t.n_rows()),
        Err(e) => assert!(e.to_string().contains("not a readable Parquet file"), "{e}"),
    }
    // the batch reader of `update` refuses it the same way
    let rows = zarr_fuse::ingest::Table::read_batches(
        &path,
        1024,
        |_| {},
        |_| Ok::<(), zarr_fuse::ingest::IngestError>(()),
    );
    assert!(rows.is_err());
    zarr_fuse::fuzz::parquet(&data);
}
