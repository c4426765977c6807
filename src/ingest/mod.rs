//! Input tables (CSV; Parquet later) → named text columns with input line numbers.
//!
//! Cells stay text here; the schema layer parses them to typed values so that every error can
//! name the file, line, column and value.

mod parquet;

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
    /// Nothing to read.
    #[error("{file}: the file is empty (a header line with column names is needed)")]
    Empty {
        /// The file.
        file: String,
    },
    /// A format we do not read.
    #[error("{file}: unsupported input format '{ext}' (use .csv or .parquet)")]
    Unsupported {
        /// The file.
        file: String,
        /// Its extension.
        ext: String,
    },
}

/// A table of text cells; `None` is an empty (NA) cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Where it came from.
    pub source: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<Option<String>>>,
    /// Input line of each row (header = line 1).
    pub lines: Vec<u64>,
    /// blake3 hex of the input bytes.
    pub blake3: String,
}

impl Table {
    /// Index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Parse CSV bytes; `source` names the input in errors.
    pub fn from_csv_bytes(bytes: &[u8], source: &str) -> Result<Table, IngestError> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(IngestError::Empty {
                file: source.into(),
            });
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes);
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
        let mut table = Table {
            source: source.into(),
            columns,
            blake3: blake3::hash(bytes).to_hex().to_string(),
            ..Default::default()
        };
        for rec in rdr.records() {
            let rec = rec.map_err(csv_err)?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            table.rows.push(
                rec.iter()
                    .map(|c| {
                        let c = c.trim();
                        (!c.is_empty()).then(|| c.to_string())
                    })
                    .collect(),
            );
            table.lines.push(line);
        }
        Ok(table)
    }

    /// Read a CSV (`.csv`, `.txt`, no extension) or Parquet (`.parquet`, `.pq`) file.
    pub fn read(path: &Path) -> Result<Table, IngestError> {
        let file = path.display().to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_parquet = ext == "parquet" || ext == "pq";
        if !(is_parquet || ext == "csv" || ext == "txt" || ext.is_empty()) {
            return Err(IngestError::Unsupported { file, ext });
        }
        let bytes = std::fs::read(path).map_err(|source| IngestError::Read {
            file: file.clone(),
            source,
        })?;
        if is_parquet {
            parquet::read_parquet(&bytes, &file)
        } else {
            Table::from_csv_bytes(&bytes, &file)
        }
    }

    /// Parse Parquet bytes; `source` names the input in errors.
    pub fn from_parquet_bytes(bytes: &[u8], source: &str) -> Result<Table, IngestError> {
        parquet::read_parquet(bytes, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_csv_with_lines_and_na() {
        let t = Table::from_csv_bytes(b"t,temp\n0,10\n1,\n", "x.csv").unwrap();
        assert_eq!(t.columns, vec!["t", "temp"]);
        assert_eq!(t.rows[1], vec![Some("1".into()), None]);
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
