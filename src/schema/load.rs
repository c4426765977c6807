//! YAML → [`Schema`], strict, with positions.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};
use serde_json::{Map, Value};

use super::*;
use crate::units::Unit;

const NODE_KEYS: [&str; 3] = ["ATTRS", "VARS", "COORDS"];
const VAR_KEYS: [&str; 10] = [
    "na_tokens",
    "coords",
    "unit",
    "type",
    "na_value",
    "range",
    "description",
    "df_col",
    "source_unit",
    "attrs",
];
const COORD_KEYS: [&str; 5] = [
    "composed",
    "sorted",
    "chunk_size",
    "step_limits",
    "interpolate",
];

struct Ctx {
    file: String,
    warnings: Vec<SchemaWarning>,
}

fn pos(span: &Span) -> (usize, usize) {
    span.start()
        .map(|m| (m.line(), m.column()))
        .unwrap_or((0, 0))
}

impl Ctx {
    fn err(&self, span: &Span, path: &str, message: impl Into<String>) -> SchemaError {
        let (line, column) = pos(span);
        SchemaError {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn warn(&mut self, span: &Span, path: &str, message: impl Into<String>) {
        let (line, column) = pos(span);
        self.warnings.push(SchemaWarning {
            file: self.file.clone(),
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// An unknown key: an error when it looks like a typo of a key valid here (edit distance
    /// ≤ 2, merge-semantics §1), else a warning that it is ignored.
    fn unknown_key<'a>(
        &mut self,
        k: &MarkedScalarNode,
        path: &str,
        candidates: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), SchemaError> {
        let key = k.as_str();
        match typo_of(key, candidates) {
            Some(c) => Err(self.err(
                k.span(),
                &join(path, key),
                format!("unknown key '{key}' (did you mean '{c}'?)"),
            )),
            None => {
                self.warn(
                    k.span(),
                    &join(path, key),
                    format!("unknown key '{key}' ignored"),
                );
                Ok(())
            }
        }
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid key that `word` is most likely a typo of: within edit distance 2 (case counts).
fn typo_of<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let d = distance(word, c) + usize::from(word.to_lowercase() == c.to_lowercase());
            (d, c)
        })
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

/// `(did you mean 'x'?)` for the closest of `candidates`, if close enough.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let best = candidates.into_iter().map(|c| (distance(word, c), c)).min();
    match best {
        Some((d, c)) if d <= 2.max(word.len() * 2 / 5) && d > 0 => {
            format!(" (did you mean '{c}'?)")
        }
        _ => String::new(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}/{key}")
    }
}

/// A scalar as JSON (quoted scalars stay strings).
fn scalar_json(s: &MarkedScalarNode) -> Value {
    let t = s.as_str();
    if !s.may_coerce() {
        return Value::String(t.to_string());
    }
    match t {
        "null" | "~" | "" => return Value::Null,
        "true" | "True" => return Value::Bool(true),
        "false" | "False" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() {
            return Value::from(f);
        }
    }
    Value::String(t.to_string())
}

fn to_json(n: &Node) -> Value {
    match n {
        Node::Scalar(s) => scalar_json(s),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

fn is_null(n: &Node) -> bool {
    matches!(n, Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "null" | "~" | ""))
}

fn kind(n: &Node) -> &'static str {
    match n {
        Node::Scalar(_) => "a scalar",
        Node::Sequence(_) => "a list",
        Node::Mapping(_) => "a mapping",
    }
}

fn string(ctx: &Ctx, n: &Node, path: &str) -> Result<String, SchemaError> {
    match n {
        Node::Scalar(s) => Ok(s.as_str().to_string()),
        other => Err(ctx.err(
            other.span(),
            path,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn string_list(ctx: &Ctx, n: &Node, path: &str) -> Result<Vec<String>, SchemaError> {
    match n {
        Node::Scalar(s) => Ok(vec![s.as_str().to_string()]),
        Node::Sequence(seq) => seq.iter().map(|x| string(ctx, x, path)).collect(),
        Node::Mapping(m) => Err(ctx.err(
            m.span(),
            path,
            "expected a name or a list of names, found a mapping",
        )),
    }
}

fn number(ctx: &Ctx, n: &Node, path: &str) -> Result<f64, SchemaError> {
    match n {
        Node::Scalar(s) => s
            .as_str()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| ctx.err(s.span(), path, format!("'{}' is not a number", s.as_str()))),
        other => Err(ctx.err(
            other.span(),
            path,
            format!("expected a number, found {}", kind(other)),
        )),
    }
}

fn mapping<'a>(ctx: &Ctx, n: &'a Node, path: &str) -> Result<&'a MarkedMappingNode, SchemaError> {
    n.as_mapping().ok_or_else(|| {
        ctx.err(
            n.span(),
            path,
            format!("expected a mapping, found {}", kind(n)),
        )
    })
}

/// A unit name: pint's (spec/021); an unknown one is kept by its spelling with a warning (an error
/// only where a conversion needs it); `C` is pint's coulomb, with a warning that degC is likely meant.
fn physical_unit(ctx: &mut Ctx, s: &MarkedScalarNode, path: &str) -> Result<Unit, SchemaError> {
    let text = s.as_str();
    match Unit::parse(text) {
        Ok(u) => {
            if text.trim() == "C" {
                ctx.warn(
                    s.span(),
                    path,
                    "'C' is coulomb (electric charge), as in pint; for degrees Celsius write 'degC'",
                );
            }
            Ok(u)
        }
        Err(crate::units::UnitError::Unknown { atom, .. }) => {
            ctx.warn(
                s.span(),
                path,
                format!(
                    "unknown unit '{atom}' in '{text}': kept as written, values are not converted"
                ),
            );
            Ok(Unit::opaque(text))
        }
        Err(e) => Err(ctx.err(s.span(), path, format!("{e} (e.g. K, degC, m/s, hPa, %)"))),
    }
}

fn unit_spec(ctx: &mut Ctx, n: &Node, path: &str) -> Result<UnitSpec, SchemaError> {
    match n {
        _ if is_null(n) => Ok(UnitSpec::None),
        Node::Scalar(s) => physical_unit(ctx, s, path).map(UnitSpec::Physical),
        Node::Mapping(m) => {
            for (k, _) in m.iter() {
                if !["tick", "tz", "dayfirst", "yearfirst"].contains(&k.as_str()) {
                    return Err(ctx.err(
                        k.span(),
                        &join(path, k.as_str()),
                        format!(
                            "unknown key '{}'{}",
                            k.as_str(),
                            suggest(k.as_str(), ["tick", "tz"])
                        ),
                    ));
                }
            }
            let tick_node = m.get_node("tick").ok_or_else(|| {
                ctx.err(
                    m.span(),
                    path,
                    "a datetime unit needs 'tick' (e.g. {tick: s, tz: null})",
                )
            })?;
            let tick_text = string(ctx, tick_node, &join(path, "tick"))?;
            let tick = Tick::parse(&tick_text).ok_or_else(|| {
                ctx.err(
                    tick_node.span(),
                    &join(path, "tick"),
                    format!("tick '{tick_text}' is not one of D, h, m, s, ms, us, ns"),
                )
            })?;
            let (tz, tz_text) = match m.get_node("tz") {
                None => (Zone::utc(), None),
                Some(t) if is_null(t) => (Zone::utc(), None),
                Some(t) => {
                    let text = string(ctx, t, &join(path, "tz"))?;
                    let z = Zone::parse(Some(&text))
                        .map_err(|e| ctx.err(t.span(), &join(path, "tz"), e))?;
                    (z, Some(text))
                }
            };
            Ok(UnitSpec::Time { tick, tz, tz_text })
        }
        Node::Sequence(s) => Err(ctx.err(
            s.span(),
            path,
            "a unit is a string (e.g. 'K') or {tick, tz}",
        )),
    }
}

fn dtype(ctx: &Ctx, n: &Node, path: &str) -> Result<DType, SchemaError> {
    let t = string(ctx, n, path)?;
    let d = match t.as_str() {
        "bool" | "boolean" | "bool_" | "?" => DType::Bool,
        "int" | "int64" | "int_" | "i8" | "<i8" | "long" => DType::Int(64),
        "int8" | "i1" | "byte" => DType::Int(8),
        "int16" | "i2" | "<i2" | "short" => DType::Int(16),
        "int32" | "i4" | "<i4" | "intc" => DType::Int(32),
        "uint" | "uint64" | "u8" | "<u8" => DType::UInt(64),
        "uint8" | "u1" | "ubyte" => DType::UInt(8),
        "uint16" | "u2" | "<u2" => DType::UInt(16),
        "uint32" | "u4" | "<u4" => DType::UInt(32),
        "float" | "float64" | "f8" | "<f8" | "double" | "float_" => DType::F64,
        "float32" | "f4" | "<f4" | "single" => DType::F32,
        "str" | "string" | "object" | "U" => DType::Str(32),
        other => {
            if let Some(n) = other
                .strip_prefix("str[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse().ok())
            {
                DType::Str(n)
            } else if let Some(tick) = other
                .strip_prefix("datetime64[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(Tick::parse)
            {
                DType::DateTime(tick)
            } else {
                let known = [
                    "bool",
                    "int",
                    "int8",
                    "int16",
                    "int32",
                    "int64",
                    "uint",
                    "uint8",
                    "uint16",
                    "uint32",
                    "uint64",
                    "float",
                    "float32",
                    "float64",
                    "str[N]",
                    "datetime64[s]",
                ];
                return Err(ctx.err(
                    n.span(),
                    path,
                    format!(
                        "unknown type '{other}'{}; use one of {}",
                        suggest(other, known),
                        known.join(", ")
                    ),
                ));
            }
        }
    };
    Ok(d)
}

/// Where to point at for a unit problem: source_unit, else unit, else the entry.
fn unit_span(m: &MarkedMappingNode) -> Span {
    m.get_node("source_unit")
        .or_else(|| m.get_node("unit"))
        .map(|n| *n.span())
        .unwrap_or_else(|| *m.span())
}

/// `unit` and `source_unit` (default: the unit), which must convert into each other.
fn units(
    ctx: &mut Ctx,
    m: &MarkedMappingNode,
    path: &str,
) -> Result<(UnitSpec, UnitSpec), SchemaError> {
    let unit = match m.get_node("unit") {
        Some(u) => unit_spec(ctx, u, &join(path, "unit"))?,
        None => UnitSpec::None,
    };
    let source_unit = match m.get_node("source_unit") {
        Some(u) => unit_spec(ctx, u, &join(path, "source_unit"))?,
        None => unit.clone(),
    };
    match (&source_unit, &unit) {
        (UnitSpec::Physical(s), UnitSpec::Physical(t)) => {
            if let Err(e) = s.converter(t) {
                return Err(ctx.err(&unit_span(m), &join(path, "source_unit"), e.to_string()));
            }
        }
        (UnitSpec::Time { .. }, UnitSpec::Time { .. }) | (UnitSpec::None, UnitSpec::None) => {}
        (UnitSpec::None, UnitSpec::Physical(_)) => {}
        (s, t) => {
            let k = |u: &UnitSpec| match u {
                UnitSpec::None => "no unit",
                UnitSpec::Physical(_) => "a physical unit",
                UnitSpec::Time { .. } => "a datetime unit",
            };
            return Err(ctx.err(
                &unit_span(m),
                &join(path, "source_unit"),
                format!(
                    "source_unit is {} but unit is {}; they must convert",
                    k(s),
                    k(t)
                ),
            ));
        }
    }
    Ok((unit, source_unit))
}

/// The stored type: `type` (or `dtype`), else implied by the unit (merge-semantics §1).
fn var_type(
    ctx: &mut Ctx,
    m: &MarkedMappingNode,
    path: &str,
    unit: &UnitSpec,
) -> Result<Option<DType>, SchemaError> {
    let type_n = type_node(ctx, m, path);
    let mut dt = match type_n {
        Some(t) => Some(dtype(ctx, t, &join(path, "type"))?),
        None => None,
    };
    if let UnitSpec::Physical(u) = unit {
        if dt.is_none() && matches!(u.text.trim(), "bool" | "boolean") {
            dt = Some(DType::Bool);
        } else if dt.is_none() && u.text.trim() == "int" {
            dt = Some(DType::Int(64));
        }
    }
    match (unit, dt) {
        (UnitSpec::Time { tick, .. }, None) => dt = Some(DType::DateTime(*tick)),
        (UnitSpec::Time { .. }, Some(DType::DateTime(_))) => {}
        (UnitSpec::Time { .. }, Some(other)) => {
            let t = type_n.map(|n| *n.span()).unwrap_or_else(Span::new_blank);
            return Err(ctx.err(
                &t,
                &join(path, "type"),
                format!(
                    "type {} does not fit a datetime unit; use datetime64[tick] or leave type out",
                    other.name()
                ),
            ));
        }
        (UnitSpec::Physical(_), None) => dt = Some(DType::F64),
        (UnitSpec::Physical(_), Some(DType::Str(_) | DType::DateTime(_))) => {
            let t = type_n.map(|n| *n.span()).unwrap_or_else(Span::new_blank);
            return Err(ctx.err(
                &t,
                &join(path, "type"),
                "a physical unit needs a numeric type",
            ));
        }
        _ => {}
    }
    Ok(dt)
}

/// An integer or bool `na_value` must fit the type (it is the array's fill value on disk).
fn check_na_value(
    ctx: &Ctx,
    m: &MarkedMappingNode,
    path: &str,
    dt: Option<DType>,
    na_value: Option<&Value>,
) -> Result<(), SchemaError> {
    if let (Some(d), Some(n)) = (dt.filter(DType::is_integer), na_value) {
        let fits = match (d, n) {
            (DType::Bool, Value::Bool(_)) => true,
            (DType::Bool, v) => matches!(v.as_i64(), Some(0 | 1)),
            (DType::Int(b), v) => v
                .as_i64()
                .is_some_and(|i| b == 64 || (i >= -(1i64 << (b - 1)) && i < (1i64 << (b - 1)))),
            (DType::UInt(b), v) => v
                .as_i64()
                .is_some_and(|i| i >= 0 && (b == 64 || i < (1i64 << b))),
            _ => true,
        };
        if !fits {
            let span = m
                .get_node("na_value")
                .map(|n| *n.span())
                .unwrap_or_else(Span::new_blank);
            return Err(ctx.err(
                &span,
                &join(path, "na_value"),
                format!("na_value {n} does not fit type {}", d.name()),
            ));
        }
    }
    Ok(())
}

/// `range` (interval in the unit, or discrete values), and the obsolete `discrete` beside it.
fn range(
    ctx: &mut Ctx,
    m: &MarkedMappingNode,
    path: &str,
    unit: &UnitSpec,
) -> Result<Range, SchemaError> {
    let range = match m.get_node("range") {
        None => Range::Any,
        Some(r) if is_null(r) => Range::Any,
        Some(r) => {
            let rp = join(path, "range");
            let rm = mapping(ctx, r, &rp)?;
            let mut out = Range::Any;
            for (k, v) in rm.iter() {
                match k.as_str() {
                    "discrete" => match v {
                        Node::Sequence(s) => out = Range::Discrete(s.iter().map(to_json).collect()),
                        other => {
                            return Err(ctx.err(
                                other.span(),
                                &join(&rp, "discrete"),
                                "expected a list of allowed values",
                            ))
                        }
                    },
                    "interval" => {
                        let ip = join(&rp, "interval");
                        let s = v.as_sequence().ok_or_else(|| {
                            ctx.err(v.span(), &ip, "expected [min, max] or [min, max, unit]")
                        })?;
                        if s.len() < 2 || s.len() > 3 {
                            return Err(ctx.err(
                                s.span(),
                                &ip,
                                "expected [min, max] or [min, max, unit]",
                            ));
                        }
                        let (mut a, mut b) = (number(ctx, &s[0], &ip)?, number(ctx, &s[1], &ip)?);
                        if let Some(u) = s.get(2) {
                            let from = Unit::parse(&string(ctx, u, &ip)?)
                                .map_err(|e| ctx.err(u.span(), &ip, e.to_string()))?;
                            if let UnitSpec::Physical(to) = unit {
                                let f = from
                                    .converter(to)
                                    .map_err(|e| ctx.err(u.span(), &ip, e.to_string()))?;
                                (a, b) = (f(a), f(b));
                            }
                        }
                        if a > b {
                            return Err(ctx.err(
                                s.span(),
                                &ip,
                                format!("min {a} is greater than max {b}"),
                            ));
                        }
                        out = Range::Interval(a, b);
                    }
                    other => {
                        return Err(ctx.err(
                            k.span(),
                            &join(&rp, other),
                            format!(
                                "unknown key '{other}'{}",
                                suggest(other, ["discrete", "interval"])
                            ),
                        ))
                    }
                }
            }
            out
        }
    };
    let range = match (range, m.get_node("discrete")) {
        (r, None) => r,
        (Range::Any, Some(Node::Sequence(seq))) => {
            ctx.warn(
                seq.span(),
                &join(path, "discrete"),
                "obsolete 'discrete' outside 'range': write range: {discrete: [...]}",
            );
            Range::Discrete(seq.iter().map(to_json).collect())
        }
        (r, Some(d)) => {
            ctx.warn(
                d.span(),
                &join(path, "discrete"),
                "'discrete' outside 'range' ignored (not a list, or 'range' is given)",
            );
            r
        }
    };
    Ok(range)
}

/// Keys zarr-fuse accepts in a variable or coordinate entry that we read or ignore with a warning.
const LEGACY_KEYS: [&str; 3] = ["dtype", "discrete", "name"];

fn check_var_keys(
    ctx: &mut Ctx,
    m: &MarkedMappingNode,
    path: &str,
    is_coord: bool,
) -> Result<(), SchemaError> {
    let cands: Vec<&str> = if is_coord {
        VAR_KEYS.iter().chain(COORD_KEYS.iter()).copied().collect()
    } else {
        VAR_KEYS.to_vec()
    };
    for (k, _) in m.iter() {
        let key = k.as_str();
        let coord_key = COORD_KEYS.contains(&key) || key == "merge";
        if VAR_KEYS.contains(&key) || LEGACY_KEYS.contains(&key) || (is_coord && coord_key) {
            continue;
        }
        if coord_key {
            ctx.warn(
                k.span(),
                &join(path, key),
                format!("'{key}' belongs to COORDS entries; ignored in a variable"),
            );
            continue;
        }
        ctx.unknown_key(k, path, cands.iter().copied())?;
    }
    if let Some(n) = m.get_node("name") {
        ctx.warn(
            n.span(),
            &join(path, "name"),
            "'name' is implied by the entry's key; ignored",
        );
    }
    Ok(())
}

/// `type`, or the obsolete `dtype` (a warning; `type` wins when both are given).
fn type_node<'a>(ctx: &mut Ctx, m: &'a MarkedMappingNode, path: &str) -> Option<&'a Node> {
    let old = m.get_node("dtype");
    if let Some(d) = old {
        let msg = if m.get_node("type").is_some() {
            "obsolete 'dtype' ignored: 'type' is given"
        } else {
            "obsolete 'dtype': write 'type'"
        };
        ctx.warn(d.span(), &join(path, "dtype"), msg);
    }
    m.get_node("type").or(old).filter(|n| !is_null(n))
}

fn variable(
    ctx: &mut Ctx,
    name: &str,
    m: &MarkedMappingNode,
    path: &str,
    is_coord: bool,
) -> Result<Variable, SchemaError> {
    check_var_keys(ctx, m, path, is_coord)?;
    let coords = match m.get_node("coords") {
        Some(c) => string_list(ctx, c, &join(path, "coords"))?,
        None if is_coord => vec![name.to_string()],
        None => {
            return Err(ctx.err(
                m.span(),
                path,
                format!("variable '{name}' needs 'coords' (the dimensions it is indexed by)"),
            ))
        }
    };
    let (unit, source_unit) = units(ctx, m, path)?;
    let dt = var_type(ctx, m, path, &unit)?;
    let na_value = m.get_node("na_value").map(to_json);
    check_na_value(ctx, m, path, dt, na_value.as_ref())?;
    let range = range(ctx, m, path, &unit)?;
    let description = match m.get_node("description") {
        Some(d) => Some(string(ctx, d, &join(path, "description"))?),
        None => None,
    };
    let df_col = match m.get_node("df_col") {
        Some(d) if is_null(d) || d.as_scalar().is_some_and(|s| s.as_str() == "None") => {
            ctx.warn(
                d.span(),
                &join(path, "df_col"),
                "df_col: None means the entry's own name",
            );
            name.to_string()
        }
        Some(d) => string(ctx, d, &join(path, "df_col"))?,
        None => name.to_string(),
    };
    let na_tokens = match m.get_node("na_tokens") {
        Some(n) if !is_null(n) => Some(string_list(ctx, n, &join(path, "na_tokens"))?),
        _ => None,
    };
    let attrs = match m.get_node("attrs") {
        Some(a) => match to_json(a) {
            Value::Object(o) => o,
            Value::Null => Map::new(),
            _ => {
                return Err(ctx.err(
                    a.span(),
                    &join(path, "attrs"),
                    "expected a mapping of attributes",
                ))
            }
        },
        None => Map::new(),
    };
    Ok(Variable {
        name: name.to_string(),
        coords,
        unit,
        source_unit,
        dtype: dt,
        na_value,
        range,
        description,
        df_col,
        attrs,
        na_tokens,
    })
}

fn step_limits(
    ctx: &mut Ctx,
    n: &Node,
    path: &str,
    unit: &UnitSpec,
) -> Result<StepLimits, SchemaError> {
    if is_null(n) {
        ctx.warn(
            n.span(),
            path,
            "step_limits: null is the obsolete spelling of no_new",
        );
        return Ok(StepLimits::NoNew);
    }
    match n {
        Node::Scalar(s) => match s.as_str() {
            "any_new" => Ok(StepLimits::AnyNew),
            "no_new" => Ok(StepLimits::NoNew),
            other => Err(ctx.err(
                s.span(),
                path,
                format!(
                    "'{other}' is not any_new, no_new or [min, max, unit]{}",
                    suggest(other, ["any_new", "no_new"])
                ),
            )),
        },
        Node::Sequence(seq) if seq.is_empty() => Ok(StepLimits::AnyNew),
        Node::Sequence(seq) if seq.len() == 2 || seq.len() == 3 => {
            let (a, b) = (number(ctx, &seq[0], path)?, number(ctx, &seq[1], path)?);
            let scale = match seq.get(2) {
                None => 1.0,
                Some(u) => {
                    let from = Unit::parse(&string(ctx, u, path)?)
                        .map_err(|e| ctx.err(u.span(), path, e.to_string()))?;
                    let to = match unit {
                        UnitSpec::Physical(p) => p.clone(),
                        UnitSpec::Time { tick, .. } => Unit::parse(match tick {
                            Tick::Day => "day",
                            Tick::Hour => "h",
                            Tick::Minute => "min",
                            Tick::Second => "s",
                            Tick::Milli => "ms",
                            Tick::Micro => "us",
                            Tick::Nano => "ns",
                        })
                        .map_err(|e| ctx.err(u.span(), path, e.to_string()))?,
                        UnitSpec::None => from.clone(),
                    };
                    let f = from
                        .converter(&to)
                        .map_err(|e| ctx.err(u.span(), path, e.to_string()))?;
                    f(1.0)
                }
            };
            if a < 0.0 || b <= 0.0 || a > b {
                return Err(ctx.err(
                    seq.span(),
                    path,
                    format!("need 0 <= min <= max and max > 0, got [{a}, {b}]"),
                ));
            }
            Ok(StepLimits::Bounds(a * scale, b * scale))
        }
        Node::Mapping(m) => {
            let get = |k: &str| m.get_node(k);
            match (get("start"), get("end")) {
                (Some(s), Some(e)) => {
                    let mut items = vec![s.clone(), e.clone()];
                    if let Some(u) = get("unit") {
                        items.push(u.clone());
                    }
                    let seq = Node::Sequence(marked_yaml::types::MarkedSequenceNode::new(
                        *m.span(),
                        items,
                    ));
                    step_limits(ctx, &seq, path, unit)
                }
                _ => Err(ctx.err(m.span(), path, "expected {start, end, unit}")),
            }
        }
        other => Err(ctx.err(
            other.span(),
            path,
            "expected any_new, no_new or [min, max, unit]",
        )),
    }
}

fn coord(
    ctx: &mut Ctx,
    name: &str,
    m: &MarkedMappingNode,
    path: &str,
) -> Result<Coord, SchemaError> {
    let var = variable(ctx, name, m, path, true)?;
    if var.coords != [name.to_string()] {
        let span = m
            .get_node("coords")
            .map(|n| *n.span())
            .unwrap_or_else(Span::new_blank);
        return Err(ctx.err(
            &span,
            &join(path, "coords"),
            format!("a coordinate is indexed by itself; coords must be [{name}]"),
        ));
    }
    let composed = match m.get_node("composed") {
        Some(c) => string_list(ctx, c, &join(path, "composed"))?,
        None => vec![],
    };
    let sorted = match m.get_node("sorted") {
        None => composed.is_empty(),
        Some(Node::Scalar(s)) => match s.as_str() {
            "true" | "True" | "yes" => true,
            "false" | "False" | "no" => false,
            "None" | "null" | "~" => {
                ctx.warn(
                    s.span(),
                    &join(path, "sorted"),
                    "obsolete value: use true or false (taken as true)",
                );
                true
            }
            other => {
                return Err(ctx.err(
                    s.span(),
                    &join(path, "sorted"),
                    format!("'{other}' is not true or false"),
                ))
            }
        },
        Some(Node::Sequence(s)) if s.is_empty() => {
            ctx.warn(
                s.span(),
                &join(path, "sorted"),
                "obsolete value []: use false",
            );
            false
        }
        Some(other) => {
            return Err(ctx.err(
                other.span(),
                &join(path, "sorted"),
                "expected true or false",
            ))
        }
    };
    if sorted && !composed.is_empty() {
        let span = m
            .get_node("sorted")
            .map(|n| *n.span())
            .unwrap_or_else(Span::new_blank);
        return Err(ctx.err(
            &span,
            &join(path, "sorted"),
            "a composed coordinate cannot be sorted",
        ));
    }
    let chunk_size = match m.get_node("chunk_size") {
        None => None,
        Some(n) if is_null(n) => None,
        Some(n) => {
            let v = number(ctx, n, &join(path, "chunk_size"))?;
            if v < 1.0 || v.fract() != 0.0 {
                return Err(ctx.err(
                    n.span(),
                    &join(path, "chunk_size"),
                    format!("chunk_size must be a positive integer, got {v}"),
                ));
            }
            Some(v as u64)
        }
    };
    let mut limits = StepLimits::AnyNew;
    if let Some(old) = m.get_node("merge").filter(|n| {
        if is_null(n) || n.as_scalar().is_some_and(|s| s.as_str() == "None") {
            ctx.warn(
                n.span(),
                &join(path, "merge"),
                "obsolete 'merge: None' ignored",
            );
            false
        } else {
            true
        }
    }) {
        let om = mapping(ctx, old, &join(path, "merge"))?;
        ctx.warn(
            old.span(),
            &join(path, "merge"),
            "obsolete 'merge:' block; put step_limits directly under the coordinate",
        );
        if let Some(s) = om.get_node("step_limits") {
            limits = step_limits(ctx, s, &join(path, "merge/step_limits"), &var.unit)?;
        }
    }
    if let Some(s) = m.get_node("step_limits") {
        limits = step_limits(ctx, s, &join(path, "step_limits"), &var.unit)?;
    }
    let interpolate = match m.get_node("interpolate") {
        None => None,
        Some(n) if is_null(n) => None,
        Some(n) => match string(ctx, n, &join(path, "interpolate"))?.as_str() {
            "linear" => Some(Interpolate::Linear),
            "nearest" => Some(Interpolate::Nearest),
            other => {
                return Err(ctx.err(
                    n.span(),
                    &join(path, "interpolate"),
                    format!(
                        "'{other}' is not linear or nearest{}",
                        suggest(other, ["linear", "nearest"])
                    ),
                ))
            }
        },
    };
    if !sorted && (matches!(limits, StepLimits::Bounds(..)) || interpolate.is_some()) {
        return Err(ctx.err(
            m.span(),
            path,
            "step bounds and interpolate apply to sorted coordinates only",
        ));
    }
    Ok(Coord {
        var,
        composed,
        sorted,
        chunk_size,
        step_limits: limits,
        interpolate,
    })
}

fn node(ctx: &mut Ctx, m: &MarkedMappingNode, path: &str) -> Result<NodeSchema, SchemaError> {
    let mut out = NodeSchema {
        path: path.to_string(),
        attrs: Map::new(),
        vars: vec![],
        coords: vec![],
        children: vec![],
    };
    let here = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}/{k}")
        }
    };
    if let Some(a) = m.get_node("ATTRS") {
        out.attrs = match to_json(a) {
            Value::Object(o) => o,
            Value::Null => Map::new(),
            _ => return Err(ctx.err(a.span(), &here("ATTRS"), "ATTRS must be a mapping")),
        };
    }
    let mut var_nodes: Vec<(String, MarkedMappingNode, String)> = vec![];
    if let Some(v) = m.get_node("VARS") {
        if !is_null(v) {
            for (k, vn) in mapping(ctx, v, &here("VARS"))?.iter() {
                let p = format!("{}/{}", here("VARS"), k.as_str());
                let vm = mapping(ctx, vn, &p)?;
                var_nodes.push((k.as_str().to_string(), vm.clone(), p));
            }
        }
    }
    let mut coord_nodes: Vec<(String, MarkedMappingNode, String)> = vec![];
    if let Some(c) = m.get_node("COORDS") {
        if !is_null(c) {
            for (k, cn) in mapping(ctx, c, &here("COORDS"))?.iter() {
                let p = format!("{}/{}", here("COORDS"), k.as_str());
                let cm = if is_null(cn) {
                    MarkedMappingNode::new_empty(*cn.span())
                } else {
                    mapping(ctx, cn, &p)?.clone()
                };
                coord_nodes.push((k.as_str().to_string(), cm, p));
            }
        }
    }
    merge_vars_into_coords(ctx, &mut var_nodes, &mut coord_nodes);
    let node_na = match m.get_node("na_tokens") {
        Some(n) if !is_null(n) => Some(string_list(ctx, n, &here("na_tokens"))?),
        _ => None,
    };
    for (name, cm, p) in &coord_nodes {
        out.coords.push(coord(ctx, name, cm, p)?);
    }
    for (name, vm, p) in &var_nodes {
        out.vars.push(variable(ctx, name, vm, p, false)?);
    }
    for v in out
        .vars
        .iter_mut()
        .chain(out.coords.iter_mut().map(|c| &mut c.var))
    {
        if v.na_tokens.is_none() {
            v.na_tokens.clone_from(&node_na);
        }
    }
    implicit_coords(ctx, &mut out, &var_nodes, &mut coord_nodes)?;
    // composed components: variables along exactly that coordinate
    for (c, (_, cm, p)) in out.coords.iter().zip(&coord_nodes) {
        for comp in &c.composed {
            let span = cm
                .get_node("composed")
                .map(|n| *n.span())
                .unwrap_or_else(Span::new_blank);
            match out.var(comp) {
                None => {
                    let names: Vec<&str> = out.vars.iter().map(|v| v.name.as_str()).collect();
                    return Err(ctx.err(
                        &span,
                        &join(p, "composed"),
                        format!(
                            "component '{comp}' is not a variable in VARS{}",
                            suggest(comp, names)
                        ),
                    ));
                }
                Some(v) if v.coords != [c.name().to_string()] => {
                    return Err(ctx.err(
                        &span,
                        &join(p, "composed"),
                        format!(
                            "component '{comp}' must have coords [{}], not {:?}",
                            c.name(),
                            v.coords
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    for (k, child) in m.iter() {
        let key = k.as_str();
        if NODE_KEYS.contains(&key) || key == "na_tokens" {
            continue;
        }
        let cp = here(key);
        let shouting_typo = key
            .chars()
            .all(|c| !c.is_lowercase())
            .then(|| typo_of(key, NODE_KEYS))
            .flatten();
        if let (Node::Mapping(_), Some(c)) = (child, shouting_typo) {
            return Err(ctx.err(
                k.span(),
                &cp,
                format!("unknown key '{key}' (did you mean '{c}'?); a child node needs a lower-case letter in its name"),
            ));
        }
        match child {
            Node::Mapping(cm) => {
                check_node_name(ctx, k, &cp)?;
                out.children.push(node(ctx, cm, &cp)?)
            }
            other => {
                ctx.warn(
                    k.span(),
                    &cp,
                    format!(
                        "'{key}' is {}, not a child node (a mapping) nor ATTRS, VARS or COORDS; ignored",
                        kind(other)
                    ),
                );
            }
        }
    }
    Ok(out)
}

/// A node name is one path segment (merge-semantics §1).
fn check_node_name(ctx: &Ctx, k: &MarkedScalarNode, path: &str) -> Result<(), SchemaError> {
    let name = k.as_str();
    let why = if name.trim().is_empty() {
        "is empty"
    } else if name.contains('/') || name.contains('\\') {
        "contains a path separator"
    } else if name == "." || name == ".." {
        "is a relative path"
    } else if name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(ctx.err(
        k.span(),
        path,
        format!("node name '{name}' {why}; a node name is one path segment"),
    ))
}

type Entries = Vec<(String, MarkedMappingNode, String)>;

/// Obsolete form: a name in both VARS and COORDS is one coordinate that takes the variable's keys
/// (unit, source_unit, type, df_col, description, ...) unless the COORDS entry sets them.
fn merge_vars_into_coords(ctx: &mut Ctx, vars: &mut Entries, coords: &mut Entries) {
    vars.retain(|(name, vm, p)| {
        let Some((_, cm, _)) = coords.iter_mut().find(|(c, _, _)| c == name) else {
            return true;
        };
        for (k, v) in vm.iter() {
            if k.as_str() != "coords" && cm.get_node(k.as_str()).is_none() {
                cm.insert(k.clone(), v.clone());
            }
        }
        ctx.warn(
            vm.span(),
            p,
            format!("'{name}' is in both VARS and COORDS (obsolete); merged into the coordinate"),
        );
        false
    });
}

/// Dimensions that VARS use but COORDS does not define become coordinates with default settings
/// (as zarr-fuse does), with a warning; names close to a defined coordinate stay an error.
fn implicit_coords(
    ctx: &mut Ctx,
    out: &mut NodeSchema,
    vars: &Entries,
    coords: &mut Entries,
) -> Result<(), SchemaError> {
    for (i, (_, vm, p)) in vars.iter().enumerate() {
        for d in out.vars[i].coords.clone() {
            if out.coord(&d).is_some() {
                continue;
            }
            let span = vm
                .get_node("coords")
                .map(|n| *n.span())
                .unwrap_or_else(Span::new_blank);
            // short names (t, x, lat, lon) are too close to each other to call one a typo
            let defined: Vec<&str> = coords
                .iter()
                .map(|(c, _, _)| c.as_str())
                .filter(|c| c.chars().count() >= 4)
                .collect();
            let typo = (d.chars().count() >= 4)
                .then(|| typo_of(&d, defined.iter().copied()))
                .flatten();
            if let Some(c) = typo {
                return Err(ctx.err(
                    &span,
                    &join(p, "coords"),
                    format!("coordinate '{d}' does not exist in COORDS (did you mean '{c}'?)"),
                ));
            }
            ctx.warn(
                &span,
                &join(p, "coords"),
                format!("coordinate '{d}' is not in COORDS; created with default settings"),
            );
            let cp = join(&join(&out.path, "COORDS"), &d);
            let empty = MarkedMappingNode::new_empty(span);
            out.coords.push(coord(ctx, &d, &empty, &cp)?);
            coords.push((d.clone(), empty, cp));
        }
    }
    Ok(())
}

/// Load a schema from YAML text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Schema, SchemaError> {
    let mut ctx = Ctx {
        file: file.to_string(),
        warnings: vec![],
    };
    if text.trim().is_empty() {
        return Err(SchemaError {
            file: file.into(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the schema is empty".into(),
        });
    }
    let root = super::yaml::parse(text)
        .map_err(|e| SchemaError {
            file: file.into(),
            line: e.line,
            column: e.column,
            path: String::new(),
            message: format!("invalid YAML: {}", e.message),
        })?
        .ok_or_else(|| SchemaError {
            file: file.into(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the schema is empty".into(),
        })?;
    let m = root
        .as_mapping()
        .ok_or_else(|| ctx.err(root.span(), "", "the top level must be a mapping"))?;
    let root = node(&mut ctx, m, "")?;
    Ok(Schema {
        file: file.into(),
        root,
        warnings: ctx.warnings,
    })
}

/// Parse a YAML document that is not a schema (a config, release metadata) into JSON: plain
/// scalars coerced as in ATTRS, quoted ones kept as text (`station: "007"`).
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    match super::yaml::parse_with(text, true) {
        Ok(Some(n)) => Ok(to_json(&n)),
        Ok(None) => Ok(Value::Object(Map::new())),
        Err(e) => Err(format!(
            "line {} column {}: {}",
            e.line, e.column, e.message
        )),
    }
}

/// Load a schema file.
pub fn load_file(path: &std::path::Path) -> Result<Schema, SchemaError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| SchemaError {
        file: file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| SchemaError {
        file: file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })?;
    load_str(&text, &file)
}
