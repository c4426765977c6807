//! Parquet → [`Table`] of text cells (so that conversion and its errors are shared with CSV).
//! For Parquet inputs, "line N" in errors means row N (1-based, counting the header as line 1
//! like CSV, so the first data row is line 2).

use std::sync::Arc;

use arrow_array::types::*;
use arrow_array::{Array, BooleanArray, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{IngestError, Table, TextColumn};

fn ts(v: i64, unit: &TimeUnit, tz: &Option<Arc<str>>) -> String {
    let nanos = match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000_000),
        TimeUnit::Microsecond => v.saturating_mul(1_000),
        TimeUnit::Nanosecond => v,
    };
    let t = chrono::DateTime::from_timestamp_nanos(nanos);
    // a zoned timestamp is an instant (UTC); a naive one is local time in the source zone
    if tz.is_some() {
        t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    }
}

/// Append the cells of one column of a record batch whose first row is data row `first + 1`
/// to `out` (numbers written straight into the column's text, no string per cell).
fn cells_into(
    col: &dyn Array,
    file: &str,
    name: &str,
    first: u64,
    out: &mut TextColumn,
) -> Result<(), IngestError> {
    macro_rules! prim {
        ($t:ty) => {{
            let a = arrow_array::cast::as_primitive_array::<$t>(col);
            for i in 0..a.len() {
                if a.is_valid(i) {
                    out.push_display(a.value(i));
                } else {
                    out.push(None);
                }
            }
        }};
    }
    macro_rules! strings {
        ($t:ty) => {{
            let a = col
                .as_any()
                .downcast_ref::<$t>()
                .ok_or_else(|| bad(file, name, col))?;
            for i in 0..a.len() {
                if !a.is_valid(i) {
                    out.push(None);
                    continue;
                }
                // the Parquet decoder can hand out bytes that are not UTF-8 from a damaged
                // file (found by fuzzing): check before any string operation
                let text =
                    std::str::from_utf8(a.value(i).as_bytes()).map_err(|_| IngestError::Csv {
                        file: file.to_string(),
                        line: first + i as u64 + 2,
                        message: format!(
                            "column '{name}', row {}: not valid UTF-8 text",
                            first + i as u64 + 1
                        ),
                    })?;
                out.push(Some(text.trim()));
            }
        }};
    }
    match col.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        DataType::Float32 => prim!(Float32Type),
        DataType::Float64 => prim!(Float64Type),
        DataType::Boolean => {
            let a = col
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| bad(file, name, col))?;
            for i in 0..a.len() {
                out.push(a.is_valid(i).then(|| if a.value(i) { "1" } else { "0" }));
            }
        }
        DataType::Utf8 => strings!(StringArray),
        DataType::LargeUtf8 => strings!(LargeStringArray),
        DataType::Utf8View => strings!(StringViewArray),
        DataType::Timestamp(unit, tz) => {
            let a = match unit {
                TimeUnit::Second => {
                    arrow_array::cast::as_primitive_array::<TimestampSecondType>(col)
                        .values()
                        .to_vec()
                }
                TimeUnit::Millisecond => {
                    arrow_array::cast::as_primitive_array::<TimestampMillisecondType>(col)
                        .values()
                        .to_vec()
                }
                TimeUnit::Microsecond => {
                    arrow_array::cast::as_primitive_array::<TimestampMicrosecondType>(col)
                        .values()
                        .to_vec()
                }
                TimeUnit::Nanosecond => {
                    arrow_array::cast::as_primitive_array::<TimestampNanosecondType>(col)
                        .values()
                        .to_vec()
                }
            };
            for (i, v) in a.iter().enumerate() {
                out.push(col.is_valid(i).then(|| ts(*v, unit, tz)).as_deref());
            }
        }
        DataType::Date32 => {
            let a = arrow_array::cast::as_primitive_array::<Date32Type>(col);
            for i in 0..a.len() {
                let day = a
                    .is_valid(i)
                    .then(|| ts(i64::from(a.value(i)) * 86_400, &TimeUnit::Second, &None));
                out.push(day.as_deref().map(|d| &d[..10]));
            }
        }
        _ => return Err(bad(file, name, col)),
    }
    Ok(())
}

fn bad(file: &str, name: &str, col: &dyn Array) -> IngestError {
    IngestError::Csv {
        file: file.to_string(),
        line: 1,
        message: format!("column '{name}' has Parquet/Arrow type {} that zarr-fuse does not read (use numbers, strings, booleans, timestamps or dates)", col.data_type()),
    }
}

thread_local! {
    /// Set while this thread decodes Parquet under [`guarded`]: its panics are reported as errors.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`, turning a panic inside it (the Parquet decoder panics on some malformed files) into
/// `None`, without the panic message reaching the terminal.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    GUARDED.with(|g| g.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok();
    GUARDED.with(|g| g.set(false));
    out
}

/// Refuse a file whose dictionary pages claim more values than their bytes can hold: the decoder
/// (parquet 60) allocates the claimed count up front, so a 2 KiB file could ask for gigabytes
/// (found by libFuzzer, spec/014). A value takes at least one bit, so `num_values` may be at most
/// eight times the page's (decompressed) length.
fn check_dictionaries<R>(data: R, file: &str) -> Result<(), IngestError>
where
    R: parquet::file::reader::ChunkReader + 'static,
{
    use parquet::column::page::Page;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let err = |message: String| IngestError::Csv {
        file: file.to_string(),
        line: 0,
        message: format!("not a readable Parquet file: {message}"),
    };
    let reader = SerializedFileReader::new(data).map_err(|e| err(e.to_string()))?;
    let meta = reader.metadata();
    for rg in 0..reader.num_row_groups() {
        let group = reader.get_row_group(rg).map_err(|e| err(e.to_string()))?;
        for col in 0..meta.row_group(rg).num_columns() {
            let mut pages = group
                .get_column_page_reader(col)
                .map_err(|e| err(e.to_string()))?;
            while let Some(page) = pages.peek_next_page().map_err(|e| err(e.to_string()))? {
                if !page.is_dict {
                    pages.skip_next_page().map_err(|e| err(e.to_string()))?;
                    continue;
                }
                if let Some(Page::DictionaryPage {
                    buf, num_values, ..
                }) = pages.get_next_page().map_err(|e| err(e.to_string()))?
                {
                    if u64::from(num_values) > buf.len() as u64 * 8 {
                        return Err(err(format!(
                            "row group {rg}, column {}: a dictionary page claims {num_values} values in {} bytes",
                            meta.row_group(rg).column(col).column_path(),
                            buf.len()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Read Parquet bytes. A file the decoder cannot read is an error, never a panic.
pub(super) fn read_parquet(data: bytes::Bytes, file: &str) -> Result<Table, IngestError> {
    if data.is_empty() {
        return Err(IngestError::Empty { file: file.into() });
    }
    let blake3 = blake3::hash(&data).to_hex().to_string();
    let mut whole = None;
    parquet_batches(data.clone(), data, &blake3, file, usize::MAX, |t| {
        whole = Some(t);
        Ok::<(), IngestError>(())
    })?;
    Ok(whole.unwrap_or_default())
}

/// Decode Parquet from `data` in batches of at most `batch_rows` rows (see
/// [`Table::read_batches`]); every table carries `blake3`. `probe` is a second handle on the same
/// bytes, read first to check the dictionary pages. A file the decoder cannot read is an error,
/// never a panic.
pub(super) fn parquet_batches<R, E>(
    data: R,
    probe: R,
    blake3: &str,
    file: &str,
    batch_rows: usize,
    mut on_batch: impl FnMut(Table) -> Result<(), E>,
) -> Result<(), E>
where
    R: parquet::file::reader::ChunkReader + 'static,
    E: From<IngestError>,
{
    let err = |message: String| IngestError::Csv {
        file: file.to_string(),
        line: 0,
        message,
    };
    let unreadable = || err("not a readable Parquet file: it is corrupt or truncated".into());
    guarded(|| check_dictionaries(probe, file)).unwrap_or_else(|| Err(unreadable()))?;
    let mut reader = guarded(|| {
        ParquetRecordBatchReaderBuilder::try_new(data)
            .and_then(|b| b.with_batch_size(batch_rows.clamp(1, 65_536)).build())
            .map_err(|e| err(format!("not a readable Parquet file: {e}")))
    })
    .unwrap_or_else(|| Err(unreadable()))?;
    let empty = |columns: Vec<String>| Table {
        source: file.into(),
        blake3: blake3.into(),
        cells: vec![TextColumn::default(); columns.len()],
        columns,
        ..Default::default()
    };
    let mut table = empty(vec![]);
    let mut batches = 0usize;
    let mut row = 0u64;
    loop {
        let Some(batch) = guarded(|| reader.next()).ok_or_else(unreadable)? else {
            break;
        };
        let batch = batch.map_err(|e| err(format!("reading row {}: {e}", row + 1)))?;
        if table.columns.is_empty() {
            table = empty(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            );
        }
        let n = batch.num_rows();
        if table.n_rows() > 0 && table.n_rows() + n > batch_rows {
            let columns = table.columns.clone();
            on_batch(std::mem::replace(&mut table, empty(columns)))?;
            batches += 1;
        }
        // column by column into the table's text columns (a reader batch is at most
        // `batch_rows` rows when that is at most 65 536, and tables gather batches up to it)
        for ((c, name), out) in batch
            .columns()
            .iter()
            .zip(&table.columns)
            .zip(&mut table.cells)
        {
            cells_into(c.as_ref(), file, name, row, out)?;
        }
        // data row r (1-based) is at "line" r + 1, as in a CSV file with its header
        table
            .lines
            .extend((row + 1..=row + n as u64).map(|r| r + 1));
        row += n as u64;
        if table.n_rows() >= batch_rows {
            let columns = table.columns.clone();
            on_batch(std::mem::replace(&mut table, empty(columns)))?;
            batches += 1;
        }
    }
    if table.n_rows() > 0 || batches == 0 {
        on_batch(table)?;
    }
    Ok(())
}
