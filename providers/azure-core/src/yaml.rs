//! A YAML node tree built from `saphyr-parser` events, keeping what Go's `yaml.v3` decoder looks
//! at when it fills the upstream provider's structs: the raw text and style of every scalar (so
//! `objectVersion: 0123` stays `"0123"`), tags, and the order and uniqueness of mapping keys.
//! Only the first document of a stream is read, as `yaml.Unmarshal` does.
//!
//! Kept hand-written over a serde YAML crate (`serde_norway`, which the host uses) for two reasons:
//! serde decoding loses what yaml.v3 compatibility needs (a scalar's raw text and quoting style,
//! duplicate keys, tags), and this tree over the small `saphyr-parser` costs the wasm guest far
//! less than a serde YAML stack.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Nesting deeper than this is rejected (the provider's documents are two levels deep).
const MAX_DEPTH: usize = 64;
/// Aliases may not expand a document beyond this many nodes ("billion laughs").
const MAX_NODES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub value: String,
    /// Plain (unquoted, not a block scalar): only plain scalars resolve to null, bool or int.
    pub plain: bool,
    /// The tag, when one was written: `!!str` is `Some("tag:yaml.org,2002:str")`.
    pub tag: Option<String>,
}

impl Scalar {
    /// Whether the scalar decodes to Go's zero value (`~`, `null`, empty, or `!!null`).
    pub fn is_null(&self) -> bool {
        match self.tag.as_deref() {
            Some(CORE_NULL) => true,
            Some(_) => false,
            None => {
                self.plain && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
        }
    }
}

pub const CORE_PREFIX: &str = "tag:yaml.org,2002:";
const CORE_NULL: &str = "tag:yaml.org,2002:null";

impl Node {
    /// YAML's name for the node kind, for error messages in the style of `yaml.v3`.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(s) if s.is_null() => "!!null",
            Node::Scalar(_) => "!!str",
            Node::Sequence(_) => "!!seq",
            Node::Mapping(_) => "!!map",
        }
    }

    fn size(&self) -> usize {
        match self {
            Node::Scalar(_) => 1,
            Node::Sequence(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Mapping(pairs) => {
                1 + pairs
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

enum Frame {
    Sequence {
        items: Vec<Node>,
        anchor: usize,
    },
    Mapping {
        pairs: Vec<(Node, Node)>,
        key: Option<Node>,
        anchor: usize,
    },
}

/// Parses the first document of `text`; `None` when the stream holds no document.
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;

    while let Some(event) = parser.next_event() {
        let (event, _span) = event.map_err(|e| YamlError(e.to_string()))?;
        let completed = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::Nothing => None,
            Event::StreamEnd | Event::DocumentEnd => {
                if root.is_some() || event == Event::StreamEnd {
                    break;
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => {
                let scalar = Node::Scalar(Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag.map(|t| format!("{}{}", t.handle, t.suffix)),
                });
                if anchor != 0 {
                    anchors.insert(anchor, scalar.clone());
                }
                Some(scalar)
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError("unknown anchor".to_string()))?;
                nodes += node.size();
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Sequence {
                    items: Vec::new(),
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Mapping {
                    pairs: Vec::new(),
                    key: None,
                    anchor,
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match stack.pop() {
                    Some(Frame::Sequence { items, anchor }) => (Node::Sequence(items), anchor),
                    Some(Frame::Mapping { pairs, anchor, .. }) => (Node::Mapping(pairs), anchor),
                    None => return Err(YamlError("unbalanced collection".to_string())),
                };
                if anchor != 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
        };
        if stack.len() > MAX_DEPTH {
            return Err(YamlError("document nested too deeply".to_string()));
        }
        let Some(node) = completed else { continue };
        nodes += 1;
        if nodes > MAX_NODES {
            return Err(YamlError(
                "document too large (aliases expand to too many nodes)".to_string(),
            ));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { pairs, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => pairs.push((k, node)),
            },
        }
    }
    Ok(root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scalar(value: &str, plain: bool) -> Node {
        Node::Scalar(Scalar {
            value: value.to_string(),
            plain,
            tag: None,
        })
    }

    #[test]
    fn keeps_raw_scalars_and_styles() {
        let node = parse("a: 0123\nb: '7'\nc:\nd: |\n  x\n").unwrap().unwrap();
        let Node::Mapping(pairs) = node else {
            panic!("not a mapping")
        };
        assert_eq!(pairs[0], (scalar("a", true), scalar("0123", true)));
        assert_eq!(pairs[1].1, scalar("7", false));
        assert_eq!(pairs[2].1, scalar("", true));
        assert_eq!(pairs[3].1, scalar("x\n", false));
    }

    #[test]
    fn reads_only_the_first_document() {
        let node = parse("a: 1\n---\nb: [\n").unwrap().unwrap();
        assert_eq!(
            node,
            Node::Mapping(vec![(scalar("a", true), scalar("1", true))])
        );
        assert_eq!(parse("# nothing\n").unwrap(), None);
    }

    #[test]
    fn expands_aliases_within_bounds() {
        let node = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        let Node::Mapping(pairs) = node else {
            panic!("not a mapping")
        };
        assert_eq!(pairs[0].1, pairs[1].1);
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h"])
        {
            bomb.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse(&bomb).is_err());
        assert!(parse(&"[".repeat(200)).is_err());
    }
}
