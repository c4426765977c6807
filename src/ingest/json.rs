//! JSON inputs → a [`Table`] of text cells (spec/023): an array of records, an object of columns,
//! NDJSON (one record a line), and the yr.no locationforecast 2.0 GeoJSON.
//!
//! Row "lines" are the record numbers (1-based, +1 as if a header were line 1) for a JSON array or
//! an object of columns, and the real line for NDJSON; for yr.no, the index in `timeseries` + 2.

use serde_json::{Map, Value};

use super::{IngestError, Table, TextColumn};

/// The shapes a JSON input may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonShape {
    /// Decide from the document.
    Auto,
    /// yr.no locationforecast 2.0 (`properties.timeseries`).
    Yrno,
}

fn bad(file: &str, line: u64, message: impl Into<String>) -> IngestError {
    IngestError::Csv {
        file: file.into(),
        line,
        message: message.into(),
    }
}

/// Columns in order of first appearance, filled row by row.
#[derive(Default)]
struct Builder {
    columns: Vec<String>,
    index: std::collections::HashMap<String, usize>,
    cells: Vec<TextColumn>,
    lines: Vec<u64>,
}

impl Builder {
    fn col(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.columns.len();
        self.columns.push(name.to_string());
        self.index.insert(name.to_string(), i);
        let mut c = TextColumn::default();
        for _ in 0..self.lines.len() {
            c.push(None);
        }
        self.cells.push(c);
        i
    }

    /// One row from (column, value) pairs; columns it lacks are NA.
    fn row<'a>(
        &mut self,
        file: &str,
        line: u64,
        values: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> Result<(), IngestError> {
        let n = self.lines.len();
        for (k, v) in values {
            let c = self.col(k);
            if self.cells[c].len() > n {
                return Err(bad(
                    file,
                    line,
                    format!("column '{k}' given twice in one record"),
                ));
            }
            push_value(&mut self.cells[c], v)
                .map_err(|what| bad(file, line, format!("column '{k}': {what}")))?;
        }
        self.lines.push(line);
        for c in &mut self.cells {
            if c.len() == n {
                c.push(None);
            }
        }
        Ok(())
    }

    fn finish(self, file: &str, blake3: &str) -> Table {
        Table {
            source: file.into(),
            columns: self.columns,
            cells: self.cells,
            lines: self.lines,
            blake3: blake3.into(),
        }
    }
}

fn push_value(col: &mut TextColumn, v: &Value) -> Result<(), String> {
    match v {
        Value::Null => col.push(None),
        Value::String(s) => col.push(Some(s)),
        Value::Bool(b) => col.push(Some(if *b { "true" } else { "false" })),
        Value::Number(n) => col.push_display(n),
        Value::Array(_) | Value::Object(_) => {
            return Err("a nested list or object is not a cell value (flatten it first)".into())
        }
    }
    Ok(())
}

/// Parse a JSON input of any accepted shape.
pub(super) fn read_json(
    bytes: &[u8],
    file: &str,
    blake3: &str,
    shape: JsonShape,
) -> Result<Table, IngestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        bad(
            file,
            0,
            format!("not valid UTF-8 text (byte {})", e.valid_up_to()),
        )
    })?;
    if text.trim().is_empty() {
        return Err(IngestError::Empty { file: file.into() });
    }
    let doc: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(whole) => {
            if shape == JsonShape::Yrno {
                return Err(bad(
                    file,
                    whole.line() as u64,
                    format!("invalid JSON: {whole}"),
                ));
            }
            // NDJSON: one record a line
            return ndjson(text, file, blake3).map_err(|e| match e {
                IngestError::Csv { line: 1, .. } => bad(
                    file,
                    whole.line() as u64,
                    format!("invalid JSON: {whole} (not NDJSON either)"),
                ),
                other => other,
            });
        }
    };
    if shape == JsonShape::Yrno || is_yrno(&doc) {
        return yrno(&doc, file, blake3);
    }
    match &doc {
        Value::Array(records) => {
            let mut b = Builder::default();
            for (i, r) in records.iter().enumerate() {
                let line = i as u64 + 2;
                let obj = r
                    .as_object()
                    .ok_or_else(|| bad(file, line, format!("record {} is not an object", i + 1)))?;
                b.row(file, line, obj.iter().map(|(k, v)| (k.as_str(), v)))?;
            }
            Ok(b.finish(file, blake3))
        }
        Value::Object(cols) if !cols.is_empty() && cols.values().all(Value::is_array) => {
            columns(cols, file, blake3)
        }
        _ => Err(bad(
            file,
            1,
            "not an accepted JSON shape: tried an array of records, an object of columns \
             (equal-length lists), NDJSON and yr.no locationforecast (properties.timeseries)",
        )),
    }
}

fn ndjson(text: &str, file: &str, blake3: &str) -> Result<Table, IngestError> {
    let mut b = Builder::default();
    for (i, l) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l)
            .map_err(|e| bad(file, line, format!("invalid JSON record: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad(file, line, "an NDJSON line must be an object"))?;
        b.row(file, line, obj.iter().map(|(k, v)| (k.as_str(), v)))?;
    }
    Ok(b.finish(file, blake3))
}

fn columns(cols: &Map<String, Value>, file: &str, blake3: &str) -> Result<Table, IngestError> {
    let len = cols
        .values()
        .filter_map(Value::as_array)
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let mut t = Table {
        source: file.into(),
        blake3: blake3.into(),
        lines: (0..len as u64).map(|i| i + 2).collect(),
        ..Default::default()
    };
    for (k, v) in cols {
        let list = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
        if list.len() != len {
            return Err(bad(
                file,
                1,
                format!(
                    "column '{k}' has {} values where others have {len}",
                    list.len()
                ),
            ));
        }
        let mut c = TextColumn::default();
        for (i, x) in list.iter().enumerate() {
            push_value(&mut c, x)
                .map_err(|what| bad(file, i as u64 + 2, format!("column '{k}': {what}")))?;
        }
        t.columns.push(k.clone());
        t.cells.push(c);
    }
    Ok(t)
}

fn is_yrno(doc: &Value) -> bool {
    doc.pointer("/properties/timeseries")
        .is_some_and(Value::is_array)
}

/// yr.no locationforecast 2.0: one row per `properties.timeseries` entry; `time`, every key of
/// `data.instant.details` and of `data.next_1_hours.details` (NA where an entry has only longer
/// periods), and `longitude`, `latitude`, `altitude` from the GeoJSON point.
fn yrno(doc: &Value, file: &str, blake3: &str) -> Result<Table, IngestError> {
    let series = doc
        .pointer("/properties/timeseries")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(
                file,
                1,
                "a yr.no locationforecast document needs properties.timeseries (a list)",
            )
        })?;
    let point = doc
        .pointer("/geometry/coordinates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut b = Builder::default();
    b.col("time");
    for (i, entry) in series.iter().enumerate() {
        let line = i as u64 + 2;
        let time = entry
            .get("time")
            .filter(|t| t.is_string())
            .ok_or_else(|| bad(file, line, format!("timeseries[{i}] has no 'time' text")))?;
        let mut row: Vec<(String, &Value)> = vec![("time".into(), time)];
        let details = |p: &str| entry.pointer(p).and_then(Value::as_object);
        let instant = details("/data/instant/details");
        if let Some(d) = instant {
            row.extend(d.iter().map(|(k, v)| (k.clone(), v)));
        }
        if let Some(d) = details("/data/next_1_hours/details") {
            for (k, v) in d {
                let name = if instant.is_some_and(|i| i.contains_key(k)) {
                    format!("next_1_hours.{k}")
                } else {
                    k.clone()
                };
                row.push((name, v));
            }
        }
        for (name, v) in ["longitude", "latitude", "altitude"].iter().zip(&point) {
            row.push(((*name).into(), v));
        }
        b.row(file, line, row.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    Ok(b.finish(file, blake3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Table, IngestError> {
        read_json(text.as_bytes(), "t.json", "x", JsonShape::Auto)
    }

    fn col(t: &Table, name: &str) -> Vec<Option<String>> {
        let c = t.column(name).unwrap_or_else(|| panic!("no column {name}"));
        (0..t.n_rows())
            .map(|r| t.cell(r, c).map(str::to_string))
            .collect()
    }

    #[test]
    fn records_columns_and_ndjson_give_the_same_table() {
        let a = read(r#"[{"t": 1, "v": 2.5}, {"t": 2, "v": null, "ok": true}]"#).unwrap();
        let b = read(r#"{"t": [1, 2], "v": [2.5, null], "ok": [null, true]}"#).unwrap();
        let c = read("{\"t\": 1, \"v\": 2.5}\n\n{\"t\": 2, \"ok\": true}\n").unwrap();
        for t in [&a, &b, &c] {
            assert_eq!(col(t, "t"), [Some("1".into()), Some("2".into())]);
            assert_eq!(col(t, "v")[1], None);
            assert_eq!(col(t, "ok"), [None, Some("true".into())]);
        }
        assert_eq!(c.lines, [1, 3]);
    }

    #[test]
    fn bad_shapes_say_what_was_tried() {
        let e = read("42").unwrap_err().to_string();
        assert!(e.contains("tried an array of records"), "{e}");
        let e = read(r#"[{"a": [1]}]"#).unwrap_err().to_string();
        assert!(e.contains("t.json:2: column 'a'"), "{e}");
        let e = read(r#"{"a": [1, 2], "b": [1]}"#).unwrap_err().to_string();
        assert!(e.contains("'b' has 1 values"), "{e}");
        let e = read_json(br#"{"type": "Feature"}"#, "y.json", "x", JsonShape::Yrno)
            .unwrap_err()
            .to_string();
        assert!(e.contains("properties.timeseries"), "{e}");
        assert!(read("{\"a\": 1}\n{oops\n")
            .unwrap_err()
            .to_string()
            .contains("t.json:"));
    }

    #[test]
    fn yrno_rows_have_instant_and_next_hour_details_and_the_point() {
        let doc = r#"{"type": "Feature",
          "geometry": {"type": "Point", "coordinates": [15.1, 50.7, 420]},
          "properties": {"timeseries": [
            {"time": "2026-11-24T01:00:00Z", "data": {
              "instant": {"details": {"air_temperature": 1.5, "wind_speed": 3}},
              "next_1_hours": {"summary": {"symbol_code": "rain"}, "details": {"precipitation_amount": 0.4}}}},
            {"time": "2026-11-24T06:00:00Z", "data": {
              "instant": {"details": {"air_temperature": -0.5, "wind_speed": 2}},
              "next_6_hours": {"details": {"precipitation_amount": 2.0}}}}]}}"#;
        let t = read(doc).unwrap();
        assert_eq!(t.n_rows(), 2);
        assert_eq!(col(&t, "air_temperature")[1].as_deref(), Some("-0.5"));
        assert_eq!(col(&t, "precipitation_amount"), [Some("0.4".into()), None]);
        assert_eq!(col(&t, "longitude")[0].as_deref(), Some("15.1"));
        assert_eq!(col(&t, "altitude")[1].as_deref(), Some("420"));
        assert_eq!(t.columns[0], "time");
    }
}
