//! Input tables (CSV, Parquet) → named text columns with input line numbers.
//!
//! Cells stay text here; the schema layer parses them to typed values so that every error can
//! name the file, line, column and value.

mod json;
mod parquet;

pub use json::JsonShape;

use std::io::Read;
use std::path::Path;

/// Errors reading an input table.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Malformed CSV.
    #[error("{file}:{line}: {message}")]
    Csv {
        /// The file.
        file: String,
        /// 1-based line (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// An input option (`--set`, `--rename`) that does not fit the input.
    #[error("{file}: {message}")]
    Option {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing to read.
    #[error("{file}: the file is empty (a header line with column names is needed)")]
    Empty {
        /// The file.
        file: String,
    },
    /// A format we do not read.
    #[error("{file}: unsupported input format '{ext}' (use .csv, .parquet, .json, .ndjson, or --format)")]
    Unsupported {
        /// The file.
        file: String,
        /// Its extension.
        ext: String,
    },
}

/// The format of an input file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// Comma-separated text with a header line.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// JSON: an array of records, an object of columns, NDJSON, or yr.no's GeoJSON.
    Json,
    /// yr.no locationforecast 2.0 GeoJSON.
    Yrno,
}

impl InputFormat {
    /// The format named by a file's extension (`None` for an extension we do not read).
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        Some(match ext.as_str() {
            "parquet" | "pq" => InputFormat::Parquet,
            "csv" | "txt" | "" => InputFormat::Csv,
            "json" | "ndjson" | "jsonl" | "geojson" => InputFormat::Json,
            _ => return None,
        })
    }
}

/// How to read inputs besides their bytes: the format, constant columns and renames.
#[derive(Clone, Debug, Default)]
pub struct InputOptions {
    /// The format (`None`: by the file's extension).
    pub format: Option<InputFormat>,
    /// Constant columns added to every row (`--set COL=VALUE`); a column the input has is refused.
    pub set: Vec<(String, String)>,
    /// Input columns renamed (`--rename FROM=TO`); a missing column is refused.
    pub rename: Vec<(String, String)>,
}

impl InputOptions {
    /// Apply renames and constant columns to a batch.
    pub fn apply(&self, t: &mut Table) -> Result<(), IngestError> {
        let err = |message: String| IngestError::Option {
            file: t.source.clone(),
            message,
        };
        for (from, to) in &self.rename {
            let i = t.column(from).ok_or_else(|| {
                err(format!(
                    "--rename {from}={to}: the input has no column '{from}' (it has {})",
                    t.columns.join(", ")
                ))
            })?;
            if from != to && t.column(to).is_some() {
                return Err(err(format!(
                    "--rename {from}={to}: the input already has a column '{to}'"
                )));
            }
            t.columns[i].clone_from(to);
        }
        for (col, value) in &self.set {
            if t.column(col).is_some() {
                return Err(err(format!(
                    "--set {col}={value}: the input already has a column '{col}'; use --rename first"
                )));
            }
            let mut c = TextColumn::default();
            for _ in 0..t.n_rows() {
                c.push(Some(value));
            }
            t.columns.push(col.clone());
            t.cells.push(c);
        }
        Ok(())
    }
}

/// One column of text cells, stored as one string plus end offsets (compact: no allocation per
/// cell). An empty cell is NA.
#[derive(Debug, Clone, Default)]
pub struct TextColumn {
    text: String,
    ends: Vec<usize>,
}

impl TextColumn {
    /// Append a cell (`None` or empty = NA).
    pub fn push(&mut self, cell: Option<&str>) {
        if let Some(c) = cell {
            self.text.push_str(c);
        }
        self.ends.push(self.text.len());
    }

    /// Append a cell written with `Display` (a number: never empty).
    pub fn push_display(&mut self, v: impl std::fmt::Display) {
        use std::fmt::Write as _;
        let _ = write!(self.text, "{v}");
        self.ends.push(self.text.len());
    }

    /// Cell `row`, `None` when NA or out of range.
    pub fn get(&self, row: usize) -> Option<&str> {
        let end = *self.ends.get(row)?;
        let start = if row == 0 { 0 } else { self.ends[row - 1] };
        (end > start).then(|| &self.text[start..end])
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the column has no cells.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// A table of text cells, column by column.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Where it came from.
    pub source: String,
    /// Column names.
    pub columns: Vec<String>,
    /// The cells, one [`TextColumn`] per column.
    pub cells: Vec<TextColumn>,
    /// Input line of each row (header = line 1).
    pub lines: Vec<u64>,
    /// blake3 hex of the input bytes.
    pub blake3: String,
}

/// Hashes and counts the bytes read through it, and notes whether any was not whitespace.
struct Tee<R, F> {
    inner: R,
    hasher: blake3::Hasher,
    blank: bool,
    progress: F,
}

impl<R: Read, F: FnMut(u64)> Read for Tee<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        self.hasher.update(got);
        if self.blank && !got.iter().all(u8::is_ascii_whitespace) {
            self.blank = false;
        }
        (self.progress)(n as u64);
        Ok(n)
    }
}

impl Table {
    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Number of data rows.
    pub fn n_rows(&self) -> usize {
        self.lines.len()
    }

    /// Cell at `row`, `col`; `None` when NA.
    pub fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self.cells.get(col).and_then(|c| c.get(row))
    }

    /// Append a row of cells (`None` or empty = NA) read at input `line`.
    pub fn push_row<'a>(&mut self, line: u64, cells: impl IntoIterator<Item = Option<&'a str>>) {
        if self.cells.len() < self.columns.len() {
            self.cells
                .resize_with(self.columns.len(), TextColumn::default);
        }
        for (col, cell) in self.cells.iter_mut().zip(cells) {
            col.push(cell);
        }
        self.lines.push(line);
    }

    /// Parse CSV bytes; `source` names the input in errors.
    pub fn from_csv_bytes(bytes: &[u8], source: &str) -> Result<Table, IngestError> {
        Table::from_csv_reader(bytes, source, |_| {})
    }

    /// Parse CSV from a reader, calling `progress` with the number of bytes read as it goes.
    /// Memory is the compact text of the cells; the input itself is never held whole.
    pub fn from_csv_reader(
        reader: impl Read,
        source: &str,
        progress: impl FnMut(u64),
    ) -> Result<Table, IngestError> {
        single_batch(|on_batch| csv_batches(reader, source, progress, usize::MAX, on_batch))
    }

    /// Read a CSV or Parquet file (as [`Table::read`]) in batches of at most `batch_rows` rows,
    /// handing each to `on_batch` (at least one batch, possibly empty, so that every consumer
    /// sees the columns): only one batch of text is in memory at a time. Returns the blake3 of
    /// the input bytes. Row lines are those of the whole file.
    pub fn read_batches<E: From<IngestError>>(
        path: &Path,
        batch_rows: usize,
        progress: impl FnMut(u64),
        on_batch: impl FnMut(Table) -> Result<(), E>,
    ) -> Result<String, E> {
        Table::read_batches_with(
            path,
            &InputOptions::default(),
            batch_rows,
            progress,
            on_batch,
        )
    }

    /// [`Table::read_batches`] with input options: the format, `--set` and `--rename`.
    pub fn read_batches_with<E: From<IngestError>>(
        path: &Path,
        opts: &InputOptions,
        batch_rows: usize,
        mut progress: impl FnMut(u64),
        mut on_batch: impl FnMut(Table) -> Result<(), E>,
    ) -> Result<String, E> {
        let (file, format) = input_kind(path, opts.format)?;
        let read_err = |source| IngestError::Read {
            file: file.clone(),
            source,
        };
        let mut on_batch = |mut t: Table| -> Result<(), E> {
            opts.apply(&mut t)?;
            on_batch(t)
        };
        if let InputFormat::Json | InputFormat::Yrno = format {
            let bytes = std::fs::read(path).map_err(read_err)?;
            progress(bytes.len() as u64);
            let blake3 = blake3::hash(&bytes).to_hex().to_string();
            let shape = if format == InputFormat::Yrno {
                JsonShape::Yrno
            } else {
                JsonShape::Auto
            };
            on_batch(json::read_json(&bytes, &file, &blake3, shape)?)?;
            return Ok(blake3);
        }
        let f = std::fs::File::open(path).map_err(read_err)?;
        if format == InputFormat::Parquet {
            // the digest first (one streaming pass), then the row groups batch by batch
            let mut hasher = blake3::Hasher::new();
            let mut reader = std::io::BufReader::with_capacity(1 << 20, &f);
            let mut buf = vec![0u8; 1 << 20];
            let mut len = 0u64;
            loop {
                let n = reader.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                len += n as u64;
                progress(n as u64);
            }
            if len == 0 {
                return Err(IngestError::Empty { file }.into());
            }
            let blake3 = hasher.finalize().to_hex().to_string();
            let probe = f.try_clone().map_err(read_err)?;
            parquet::parquet_batches(f, probe, &blake3, &file, batch_rows, on_batch)?;
            Ok(blake3)
        } else {
            csv_batches(
                std::io::BufReader::with_capacity(1 << 16, f),
                &file,
                progress,
                batch_rows,
                on_batch,
            )
        }
    }

    /// Parse JSON bytes of any accepted shape (spec/023); `source` names the input in errors.
    pub fn from_json_bytes(
        bytes: &[u8],
        source: &str,
        shape: JsonShape,
    ) -> Result<Table, IngestError> {
        let blake3 = blake3::hash(bytes).to_hex().to_string();
        json::read_json(bytes, source, &blake3, shape)
    }

    /// Read a CSV (`.csv`, `.txt`, no extension) or Parquet (`.parquet`, `.pq`) file.
    pub fn read(path: &Path) -> Result<Table, IngestError> {
        Table::read_with_progress(path, |_| {})
    }

    /// The size in bytes of an input file (for a progress bar), 0 when unknown.
    pub fn input_len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// [`Table::read`], calling `progress` with the number of bytes read as it goes.
    pub fn read_with_progress(
        path: &Path,
        progress: impl FnMut(u64),
    ) -> Result<Table, IngestError> {
        single_batch(|on_batch| Table::read_batches(path, usize::MAX, progress, on_batch))
    }

    /// Decode Parquet bytes in batches of at most `batch_rows` rows (as [`Table::read_batches`]).
    pub fn parquet_bytes_batches<E: From<IngestError>>(
        bytes: &[u8],
        source: &str,
        batch_rows: usize,
        on_batch: impl FnMut(Table) -> Result<(), E>,
    ) -> Result<(), E> {
        if bytes.is_empty() {
            return Err(IngestError::Empty {
                file: source.into(),
            }
            .into());
        }
        let digest = blake3::hash(bytes).to_hex().to_string();
        let data = bytes::Bytes::copy_from_slice(bytes);
        parquet::parquet_batches(data.clone(), data, &digest, source, batch_rows, on_batch)
    }

    /// Parse Parquet bytes; `source` names the input in errors.
    pub fn from_parquet_bytes(bytes: &[u8], source: &str) -> Result<Table, IngestError> {
        parquet::read_parquet(bytes::Bytes::copy_from_slice(bytes), source)
    }
}

/// The one table of a read in a single batch (`usize::MAX` rows), with the input's digest.
fn single_batch(
    read: impl FnOnce(&mut dyn FnMut(Table) -> Result<(), IngestError>) -> Result<String, IngestError>,
) -> Result<Table, IngestError> {
    let mut whole = None;
    let blake3 = read(&mut |t| {
        whole = Some(t);
        Ok(())
    })?;
    let mut table = whole.unwrap_or_default();
    table.blake3 = blake3;
    Ok(table)
}

/// The file name for errors and the format: the given one, else by extension (others refused).
fn input_kind(
    path: &Path,
    given: Option<InputFormat>,
) -> Result<(String, InputFormat), IngestError> {
    let file = path.display().to_string();
    match given.or_else(|| InputFormat::from_path(path)) {
        Some(f) => Ok((file, f)),
        None => Err(IngestError::Unsupported {
            ext: path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_string(),
            file,
        }),
    }
}

/// Parse CSV from `reader` in batches of at most `batch_rows` rows (see [`Table::read_batches`]);
/// returns the blake3 of the bytes read.
fn csv_batches<E: From<IngestError>>(
    reader: impl Read,
    source: &str,
    progress: impl FnMut(u64),
    batch_rows: usize,
    mut on_batch: impl FnMut(Table) -> Result<(), E>,
) -> Result<String, E> {
    let mut tee = Tee {
        inner: reader,
        hasher: blake3::Hasher::new(),
        blank: true,
        progress,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(&mut tee);
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { .. } => {
                "not valid UTF-8 text (save the file as UTF-8)".to_string()
            }
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("ragged row: {len} fields where the header has {expected_len}")
            }
            csv::ErrorKind::Io(e) => format!("cannot read: {e}"),
            _ => e.to_string(),
        };
        IngestError::Csv {
            file: source.into(),
            line,
            message,
        }
    };
    let columns: Vec<String> = rdr
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    check_unique_columns(source, &columns)?;
    let empty = || Table {
        source: source.into(),
        cells: vec![TextColumn::default(); columns.len()],
        columns: columns.clone(),
        ..Default::default()
    };
    let mut table = empty();
    let mut batches = 0usize;
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e).into()),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        table.push_row(line, rec.iter().map(|c| Some(c.trim())));
        if table.n_rows() >= batch_rows {
            on_batch(std::mem::replace(&mut table, empty()))?;
            batches += 1;
        }
    }
    drop(rdr);
    if tee.blank {
        return Err(IngestError::Empty {
            file: source.into(),
        }
        .into());
    }
    if table.n_rows() > 0 || batches == 0 {
        on_batch(table)?;
    }
    Ok(tee.hasher.finalize().to_hex().to_string())
}

/// A header that names a column twice is an error naming both columns (merge-semantics §2.4).
pub(crate) fn check_unique_columns(source: &str, columns: &[String]) -> Result<(), IngestError> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, c) in columns.iter().enumerate() {
        if let Some(first) = seen.insert(c.as_str(), i) {
            return Err(IngestError::Csv {
                file: source.into(),
                line: 1,
                message: format!(
                    "column '{c}' appears twice in the header (columns {} and {}); rename one",
                    first + 1,
                    i + 1
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_with_lines_and_na() {
        let t = Table::from_csv_bytes(b"t,temp\n0,10\n1,\n", "x.csv").unwrap();
        assert_eq!(t.columns, vec!["t", "temp"]);
        assert_eq!((t.cell(1, 0), t.cell(1, 1)), (Some("1"), None));
        assert_eq!(t.lines, vec![2, 3]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Table::from_csv_bytes(b"", "e.csv"),
            Err(IngestError::Empty { .. })
        ));
        match Table::from_csv_bytes(b"a,b\n1,2\n3\n", "r.csv") {
            Err(IngestError::Csv { line, message, .. }) => {
                assert_eq!(line, 3);
                assert!(message.contains("ragged"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Table::from_csv_bytes(b"a,b\n1,\xff\n", "u.csv"),
            Err(IngestError::Csv { .. })
        ));
    }
}
