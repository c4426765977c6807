//! The zarr-fuse schema language: a YAML tree of nodes with ATTRS, VARS and COORDS.
//!
//! Loading is strict (merge-semantics.md §1): an unknown key, a wrong type, a unit that does not
//! convert, a coordinate that does not exist, a composed component that is not a variable along
//! it — each an error naming `file:line:column`, the key path, and a suggestion where one fits.
//! Obsolete forms zarr-fuse still accepts load with a warning.

mod load;
mod yaml;

use serde_json::{json, Map, Value};

use crate::time::{Tick, Zone};
use crate::units::Unit;

pub use load::{load_file, load_str, yaml_to_json};
pub use yaml::MAX_NODES as MAX_YAML_NODES;

/// A schema error: where and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: {message}")]
pub struct SchemaError {
    /// The schema file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Key path in the schema, e.g. `child/VARS/temp/unit`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A warning at load: an obsolete form or an ignored key, with where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: warning: {message}")]
pub struct SchemaWarning {
    /// The schema file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Key path in the schema.
    pub path: String,
    /// What was decided.
    pub message: String,
}

/// A loaded schema.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Where it came from.
    pub file: String,
    /// The root node.
    pub root: NodeSchema,
    /// Warnings (obsolete forms, ignored keys).
    pub warnings: Vec<SchemaWarning>,
}

/// One node of the tree: a Zarr group holding one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSchema {
    /// `/`-separated path, `""` for the root.
    pub path: String,
    /// Group attributes.
    pub attrs: Map<String, Value>,
    /// Data variables, in schema order.
    pub vars: Vec<Variable>,
    /// Coordinates, in schema order.
    pub coords: Vec<Coord>,
    /// Child nodes.
    pub children: Vec<NodeSchema>,
}

/// Units of a variable.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitSpec {
    /// No unit.
    None,
    /// A physical unit.
    Physical(Unit),
    /// A datetime unit.
    Time {
        /// Resolution.
        tick: Tick,
        /// Source zone for naive times.
        tz: Zone,
        /// The zone as written.
        tz_text: Option<String>,
    },
}

/// Stored data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// int8 holding 0/1.
    Bool,
    /// Signed integer of this many bits.
    Int(u8),
    /// Unsigned integer of this many bits.
    UInt(u8),
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// UTF-8 string of at most this many characters.
    Str(usize),
    /// int64 ticks since the epoch.
    DateTime(Tick),
}

/// Allowed values.
#[derive(Debug, Clone, PartialEq)]
pub enum Range {
    /// Anything.
    Any,
    /// One of these values.
    Discrete(Vec<Value>),
    /// A closed interval (in the variable's unit).
    Interval(f64, f64),
}

/// A data variable.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    /// Name.
    pub name: String,
    /// Dimensions (coordinate names), in axis order.
    pub coords: Vec<String>,
    /// Stored unit.
    pub unit: UnitSpec,
    /// Unit of the input column.
    pub source_unit: UnitSpec,
    /// Stored type; `None` = inferred from the first contribution and then fixed.
    pub dtype: Option<DType>,
    /// NA sentinel as written (`None` = the type's default, none for integers).
    pub na_value: Option<Value>,
    /// Allowed values.
    pub range: Range,
    /// Description.
    pub description: Option<String>,
    /// Input column.
    pub df_col: String,
    /// Extra attributes.
    pub attrs: Map<String, Value>,
    /// Spellings read as NA in the input (`None` = the node's, else the defaults; spec/022).
    pub na_tokens: Option<Vec<String>>,
}

/// How new values on a coordinate are admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum StepLimits {
    /// Any new value.
    AnyNew,
    /// None once the axis holds values.
    NoNew,
    /// Minimum and maximum step, in the coordinate's unit (ticks for datetimes).
    Bounds(f64, f64),
}

/// Interpolation of contributions onto existing points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolate {
    /// Linear.
    Linear,
    /// Nearest point.
    Nearest,
}

/// A coordinate (a 1-D variable over itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Coord {
    /// The coordinate as a variable.
    pub var: Variable,
    /// Components of a composed coordinate (empty for a simple one).
    pub composed: Vec<String>,
    /// Keep values sorted.
    pub sorted: bool,
    /// Chunk length along this dimension; `None`: chosen when the node is first written (about
    /// 1 MiB a chunk, merge-semantics §1, spec/025), recorded in the array metadata.
    pub chunk_size: Option<u64>,
    /// New-value policy.
    pub step_limits: StepLimits,
    /// Interpolation (sorted only).
    pub interpolate: Option<Interpolate>,
}

impl DType {
    /// The schema spelling.
    pub fn name(&self) -> String {
        match self {
            DType::Bool => "bool".into(),
            DType::Int(b) => format!("int{b}"),
            DType::UInt(b) => format!("uint{b}"),
            DType::F32 => "float32".into(),
            DType::F64 => "float64".into(),
            DType::Str(n) => format!("str[{n}]"),
            DType::DateTime(t) => format!("datetime64[{}]", t.as_str()),
        }
    }

    /// Whether values of this type are integers.
    pub fn is_integer(&self) -> bool {
        matches!(self, DType::Bool | DType::Int(_) | DType::UInt(_))
    }
}

fn unit_json(u: &UnitSpec) -> Value {
    match u {
        UnitSpec::None => Value::Null,
        UnitSpec::Physical(p) => json!(p.text),
        UnitSpec::Time { tick, tz_text, .. } => json!({"tick": tick.as_str(), "tz": tz_text}),
    }
}

impl Variable {
    /// The normalised form (every key present; `na_tokens` only where set, so that schemas
    /// written before it keep their digest).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "coords": self.coords,
            "unit": unit_json(&self.unit),
            "source_unit": unit_json(&self.source_unit),
            "type": self.dtype.map(|d| d.name()),
            "na_value": self.na_value,
            "range": match &self.range {
                Range::Any => Value::Null,
                Range::Discrete(v) => json!({"discrete": v}),
                Range::Interval(a, b) => json!({"interval": [a, b]}),
            },
            "description": self.description,
            "df_col": self.df_col,
            "attrs": self.attrs,
        });
        if let (Some(t), Some(o)) = (&self.na_tokens, v.as_object_mut()) {
            o.insert("na_tokens".into(), json!(t));
        }
        v
    }
}

impl Coord {
    /// The coordinate's name.
    pub fn name(&self) -> &str {
        &self.var.name
    }

    /// The normalised form.
    pub fn to_json(&self) -> Value {
        let mut v = self.var.to_json();
        if let Some(o) = v.as_object_mut() {
            o.insert("composed".into(), json!(self.composed));
            o.insert("sorted".into(), json!(self.sorted));
            o.insert("chunk_size".into(), json!(self.chunk_size));
            o.insert(
                "step_limits".into(),
                match &self.step_limits {
                    StepLimits::AnyNew => json!("any_new"),
                    StepLimits::NoNew => json!("no_new"),
                    StepLimits::Bounds(a, b) => json!([a, b]),
                },
            );
            o.insert(
                "interpolate".into(),
                match self.interpolate {
                    None => Value::Null,
                    Some(Interpolate::Linear) => json!("linear"),
                    Some(Interpolate::Nearest) => json!("nearest"),
                },
            );
        }
        v
    }
}

impl NodeSchema {
    /// The node's own dataset schema, normalised (children not included).
    pub fn to_json(&self) -> Value {
        let vars: Map<String, Value> = self
            .vars
            .iter()
            .map(|v| (v.name.clone(), v.to_json()))
            .collect();
        let coords: Map<String, Value> = self
            .coords
            .iter()
            .map(|c| (c.name().to_string(), c.to_json()))
            .collect();
        json!({"ATTRS": self.attrs, "VARS": vars, "COORDS": coords})
    }

    /// Find a coordinate.
    pub fn coord(&self, name: &str) -> Option<&Coord> {
        self.coords.iter().find(|c| c.name() == name)
    }

    /// Find a variable.
    pub fn var(&self, name: &str) -> Option<&Variable> {
        self.vars.iter().find(|v| v.name == name)
    }

    /// Every node of the subtree, depth first.
    pub fn walk(&self) -> Vec<&NodeSchema> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }
}

impl Schema {
    /// The schema when it has no warnings; else the first warning as an error (`--strict`).
    pub fn strict(self) -> Result<Schema, SchemaError> {
        match self.warnings.first() {
            None => Ok(self),
            Some(w) => Err(SchemaError {
                file: w.file.clone(),
                line: w.line,
                column: w.column,
                path: w.path.clone(),
                message: format!(
                    "{} (an error with --strict; {} warning(s) in all)",
                    w.message,
                    self.warnings.len()
                ),
            }),
        }
    }

    /// The normalised schema of the whole tree: node path → node schema (canonical JSON).
    pub fn to_json(&self) -> Value {
        let nodes: Map<String, Value> = self
            .root
            .walk()
            .into_iter()
            .map(|n| (n.path.clone(), n.to_json()))
            .collect();
        json!({"zarr_fuse_schema": 1, "nodes": nodes})
    }

    /// blake3 (hex) of the normalised schema.
    pub fn digest(&self) -> String {
        blake3::hash(self.to_json().to_string().as_bytes())
            .to_hex()
            .to_string()
    }

    /// A node by path (`""` or `/` for the root, `a/b` otherwise).
    pub fn node(&self, path: &str) -> Option<&NodeSchema> {
        let p = path.trim_matches('/');
        self.root.walk().into_iter().find(|n| n.path == p)
    }
}
