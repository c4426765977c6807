//! Full YAML → a positioned node tree: anchors, aliases and `<<` merge keys (spec/020).
//!
//! yaml-rust2's event parser gives every event a position; we build marked-yaml's node types from
//! the events ourselves (marked-yaml's own loader refuses anchors). An alias is a copy of its
//! anchor's node, so the expanded document is bounded: more than [`MAX_NODES`] nodes in all
//! (a "billion laughs" document) is refused before anything is copied.

use std::collections::{HashMap, HashSet};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{Marker, Node, Span};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker as YMarker;

/// The most nodes an expanded document may have (aliases counted as copies).
pub const MAX_NODES: usize = 100_000;

/// A YAML problem with its 1-based position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(super) struct YamlError {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

fn marker(m: &YMarker) -> Marker {
    Marker::new(0, m.index(), m.line(), m.col() + 1)
}

fn error(m: &YMarker, message: impl Into<String>) -> YamlError {
    YamlError {
        line: m.line(),
        column: m.col() + 1,
        message: message.into(),
    }
}

/// Parse the first document of a schema; `None` for an empty stream.
pub(super) fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    parse_with(text, false)
}

/// Parse the first document of `text`; `quoted_text`: a quoted scalar is text, as YAML says
/// (config and metadata files), else it coerces as schemas always did (spec/020).
pub(super) fn parse_with(text: &str, quoted_text: bool) -> Result<Option<Node>, YamlError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        quoted_text,
    };
    loop {
        let (ev, m) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart => {}
            Event::StreamEnd | Event::DocumentEnd => return Ok(None),
            ev => return b.node(ev, m).map(|(n, _)| Some(n)),
        }
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// anchor id → (node, its size in nodes)
    anchors: HashMap<usize, (Node, usize)>,
    /// nodes built so far, copies included
    nodes: usize,
    /// quoted scalars are text
    quoted_text: bool,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, YMarker), YamlError> {
        self.parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })
    }

    fn count(&mut self, n: usize, m: &YMarker) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(error(
                m,
                format!("the document expands to more than {MAX_NODES} nodes (aliases of aliases?); refused"),
            ));
        }
        Ok(())
    }

    /// The node that starts with `ev`, and its size in nodes.
    fn node(&mut self, ev: Event, m: YMarker) -> Result<(Node, usize), YamlError> {
        let (node, size, anchor) = match ev {
            Event::Alias(id) => {
                let size = self
                    .anchors
                    .get(&id)
                    .map(|(_, size)| *size)
                    .ok_or_else(|| error(&m, "alias to an anchor that is not defined before it"))?;
                self.count(size, &m)?;
                let n = self.anchors[&id].0.clone();
                return Ok((n, size));
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.count(1, &m)?;
                let mut s = MarkedScalarNode::new(Span::new_start(marker(&m)), value);
                // as marked-yaml loaded them before (spec/020): a quoted scalar still coerces
                // (`na_value: "-9999"` is a number), so schemas keep their meaning and digest;
                // only an explicit `!!str` keeps text as text
                let quoted = !matches!(style, yaml_rust2::scanner::TScalarStyle::Plain);
                if tag.is_some_and(|t| t.suffix == "str") || (self.quoted_text && quoted) {
                    s.set_coerce(false);
                }
                (Node::Scalar(s), 1, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.count(1, &m)?;
                let (items, size, end) = self.sequence()?;
                let span = Span::new_with_marks(marker(&m), marker(&end));
                (
                    Node::Sequence(MarkedSequenceNode::new(span, items)),
                    size + 1,
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                self.count(1, &m)?;
                let (map, size) = self.mapping(&m)?;
                (Node::Mapping(map), size + 1, anchor)
            }
            other => return Err(error(&m, format!("unexpected {other:?}"))),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        Ok((node, size))
    }

    fn sequence(&mut self) -> Result<(Vec<Node>, usize, YMarker), YamlError> {
        let mut items = vec![];
        let mut size = 0;
        loop {
            let (ev, m) = self.next()?;
            if ev == Event::SequenceEnd {
                return Ok((items, size, m));
            }
            let (n, s) = self.node(ev, m)?;
            items.push(n);
            size += s;
        }
    }

    /// A mapping's entries: explicit keys win over merged (`<<`) ones; an explicit key given
    /// twice is an error.
    fn mapping(&mut self, start: &YMarker) -> Result<(MarkedMappingNode, usize), YamlError> {
        let mut explicit: Vec<(MarkedScalarNode, Node)> = vec![];
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut merged: Vec<(MarkedScalarNode, Node)> = vec![];
        let mut merged_keys: HashSet<String> = HashSet::new();
        let mut size = 0;
        let end = loop {
            let (ev, km) = self.next()?;
            if ev == Event::MappingEnd {
                break km;
            }
            let (key, ks) = self.node(ev, km)?;
            let key = match key {
                Node::Scalar(k) => k,
                _ => return Err(error(&km, "a mapping key must be a scalar")),
            };
            let (ev, vm) = self.next()?;
            let (value, vs) = self.node(ev, vm)?;
            size += ks + vs;
            if key.as_str() == "<<" && key.may_coerce() {
                merge_into(&mut merged, &mut merged_keys, value, &vm)?;
                continue;
            }
            let line = key.span().start().map(|p| p.line()).unwrap_or(0);
            if let Some(first) = seen.insert(key.as_str().to_string(), line) {
                return Err(error(
                    &km,
                    format!("key '{}' given twice (first at line {first})", key.as_str()),
                ));
            }
            explicit.push((key, value));
        };
        let span = Span::new_with_marks(marker(start), marker(&end));
        let mut map = MarkedMappingNode::new_empty(span);
        for (k, v) in merged {
            if !seen.contains_key(k.as_str()) {
                map.insert(k, v);
            }
        }
        for (k, v) in explicit {
            map.insert(k, v);
        }
        Ok((map, size))
    }
}

/// Entries of a `<<` value (a mapping or a list of mappings; earlier ones win) appended to
/// `merged` where not already there.
fn merge_into(
    merged: &mut Vec<(MarkedScalarNode, Node)>,
    keys: &mut HashSet<String>,
    value: Node,
    m: &YMarker,
) -> Result<(), YamlError> {
    let maps = match value {
        Node::Mapping(map) => vec![map],
        Node::Sequence(seq) => seq
            .iter()
            .map(|n| n.as_mapping().cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| error(m, "'<<' takes a mapping or a list of mappings"))?,
        Node::Scalar(_) => return Err(error(m, "'<<' takes a mapping or a list of mappings")),
    };
    for map in maps {
        for (k, v) in map.iter() {
            if keys.insert(k.as_str().to_string()) {
                merged.push((k.clone(), v.clone()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(n: &'a Node, path: &[&str]) -> &'a Node {
        path.iter().fold(n, |n, k| {
            n.as_mapping()
                .and_then(|m| m.get_node(k))
                .unwrap_or_else(|| panic!("no {k}"))
        })
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let doc = "base: &b {unit: K, coords: [t]}\nfile: &f x.csv\na:\n  <<: *b\n  unit: degC\nb: *f\nc:\n  <<: [*b, {df_col: q}]\n";
        let n = parse(doc).unwrap().unwrap();
        let s = |p: &[&str]| get(&n, p).as_scalar().unwrap().as_str().to_string();
        assert_eq!(s(&["a", "unit"]), "degC");
        assert_eq!(s(&["b"]), "x.csv");
        assert_eq!(s(&["c", "unit"]), "K");
        assert_eq!(s(&["c", "df_col"]), "q");
        // position of a merged value is its definition's
        let line = get(&n, &["c", "unit"]).span().start().unwrap().line();
        assert_eq!(line, 1);
    }

    #[test]
    fn bad_aliases_and_duplicates_are_refused_with_positions() {
        let e = parse("a: *nope\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(e.message.contains("given twice"), "{e:?}");
        assert_eq!((e.line, e.column), (3, 1));
        assert!(parse("a: [1, 2\n").is_err());
    }

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let t = std::time::Instant::now();
        let e = parse(&doc).unwrap_err();
        assert!(e.message.contains("expands"), "{e:?}");
        assert!(t.elapsed().as_secs_f64() < 1.0);
    }
}
