//! Where each value of a YAML file stands, so that validation can point at it.
//!
//! serde_yaml gives typed values but no positions once deserialization
//! succeeds; the cross-reference checks still need `file:line:col` for every
//! problem. This module walks the same text with yaml-rust2's event parser and
//! records, for each node, the position of its value and of its key, keyed by
//! the same path syntax serde_yaml uses in its own messages (`servers[1].web`).
//! It decides nothing about validity with two exceptions that must run
//! before any parser sees the text: documents nested deeper than
//! `MAX_DEPTH` or with more than `MAX_NODES` values are refused (serde_yaml
//! and this index slow down with depth, and no definitions file needs
//! either), and keys that appear twice in one mapping are reported (serde
//! would keep the last one silently in maps such as `php_ini`).

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a definitions file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The line, counted from 1.
    pub line: usize,
    /// The column in characters, counted from 1.
    pub column: usize,
}

impl Position {
    /// The first character of a file, where problems of a whole file are
    /// reported.
    pub const START: Position = Position { line: 1, column: 1 };

    fn from_marker(marker: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Position {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// Deepest nesting of mappings and sequences a definitions file may have.
pub const MAX_DEPTH: usize = 24;
/// Most values (scalars, mappings, sequences) a definitions file may have.
pub const MAX_NODES: usize = 100_000;

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    TooDeep(Position),
    TooManyNodes(Position),
}

/// Positions of every node of one YAML document, by path.
#[derive(Debug, Default)]
pub struct SourceMap {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
    /// Keys that appear a second time in their mapping: (path, position of
    /// the repetition, position of the first).
    pub duplicates: Vec<(String, Position, Position)>,
}

impl SourceMap {
    /// Indexes `text`. A document that does not parse yields the part read
    /// before the error: serde_yaml reports the syntax error with its own
    /// position.
    pub fn index(text: &str) -> Result<Self, Refusal> {
        let mut indexer = Indexer::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            let (event, marker) = match parser.next_token() {
                Ok(next) => next,
                // The scanner has a nesting limit of its own.
                Err(error) if error.info().contains("recursion limit") => {
                    return Err(Refusal::TooDeep(Position::from_marker(*error.marker())));
                }
                // serde_yaml reports syntax errors with its own position.
                Err(_) => break,
            };
            if event == Event::StreamEnd {
                break;
            }
            let at = Position::from_marker(marker);
            indexer.nodes += 1;
            if indexer.nodes > MAX_NODES {
                return Err(Refusal::TooManyNodes(at));
            }
            indexer.event(event, at);
            if indexer.stack.len() > MAX_DEPTH {
                return Err(Refusal::TooDeep(at));
            }
        }
        Ok(indexer.map)
    }

    /// The position of the value at `path`, or of its nearest ancestor that
    /// has one (the document start at worst).
    pub fn value(&self, path: &str) -> Position {
        let mut path = path;
        loop {
            if let Some(position) = self.values.get(path) {
                return *position;
            }
            match parent(path) {
                Some(up) => path = up,
                None => return Position::START,
            }
        }
    }

    /// The position of the key that holds `path` in its mapping; the value's
    /// position for sequence items and the root.
    pub fn key(&self, path: &str) -> Position {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

#[derive(Debug)]
enum Frame {
    Mapping {
        path: String,
        key: Option<String>,
        /// Keys seen so far, to report repetitions.
        seen: HashSet<String>,
        /// A block mapping's start marker points past its first key; the
        /// first key's position is the one a reader expects.
        awaiting_position: bool,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    map: SourceMap,
    nodes: usize,
}

impl Indexer {
    fn event(&mut self, event: Event, at: Position) {
        match event {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Mapping {
                    path,
                    key,
                    seen,
                    awaiting_position,
                }) = self.stack.last_mut()
                    && key.is_none()
                {
                    if *awaiting_position {
                        self.map.values.insert(path.clone(), at);
                        *awaiting_position = false;
                    }
                    let child = join(path, &text);
                    if seen.insert(text) {
                        self.map.keys.insert(child.clone(), at);
                    } else {
                        let first = self.map.keys.get(&child).copied().unwrap_or(at);
                        self.map.duplicates.push((child.clone(), at, first));
                    }
                    *key = Some(child);
                    return;
                }
                let path = self.next_child();
                self.map.values.entry(path).or_insert(at);
            }
            Event::Alias(_) => {
                self.next_child();
            }
            Event::SequenceStart(..) => {
                let path = self.next_child();
                self.map.values.entry(path.clone()).or_insert(at);
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.next_child();
                let known = self.map.values.contains_key(&path);
                self.stack.push(Frame::Mapping {
                    path,
                    key: None,
                    seen: HashSet::new(),
                    awaiting_position: !known,
                });
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    path,
                    awaiting_position: true,
                    ..
                }) = self.stack.pop()
                {
                    self.map.values.entry(path).or_insert(at);
                }
            }
            Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }

    /// The path of the node that starts now, advancing the parent's cursor.
    fn next_child(&mut self) -> String {
        match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Sequence { path, next }) => {
                let child = format!("{path}[{next}]");
                *next += 1;
                child
            }
            Some(Frame::Mapping { key, .. }) => key.take().unwrap_or_default(),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: production
php: [\"8.2\", \"8.3\"]
servers:
  - name: web-1
    web_server: true
  - { name: jobs-1, port: 2222 }
empty: {}
";

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn scalars_in_block_and_flow_collections() {
        let map = SourceMap::index(DOC).expect("indexes");
        assert_eq!(map.value("name"), at(1, 7));
        assert_eq!(map.value("php[1]"), at(2, 14));
        assert_eq!(map.value("servers[0].name"), at(4, 11));
        assert_eq!(map.value("servers[1].port"), at(6, 27));
        assert_eq!(map.key("servers[0].web_server"), at(5, 5));
    }

    #[test]
    fn a_mapping_item_stands_at_its_first_key() {
        let map = SourceMap::index(DOC).expect("indexes");
        assert_eq!(map.value("servers[0]"), at(4, 5));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let map = SourceMap::index(DOC).expect("indexes");
        assert_eq!(map.value("servers[0].missing"), at(4, 5));
        assert_eq!(map.value("nothing.here"), Position::START);
    }

    #[test]
    fn broken_yaml_gives_what_was_read_before_the_error() {
        let map = SourceMap::index("a: [\n").expect("indexes");
        assert_eq!(map.value("a"), at(1, 4));
    }

    #[test]
    fn a_key_given_twice_is_reported_with_both_positions() {
        let map = SourceMap::index("php_ini:\n  a: 1\n  b: 2\n  a: 3\n").expect("indexes");
        assert_eq!(
            map.duplicates,
            [("php_ini.a".to_owned(), at(4, 3), at(2, 3))]
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        for deep in [
            format!("a: {}{}", "[".repeat(40_000), "]".repeat(40_000)),
            format!("{}x", "- ".repeat(40_000)),
            format!("a: {}1{}", "{b: ".repeat(30), "}".repeat(30)),
            (0..100)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect(),
        ] {
            let refused = SourceMap::index(&deep);
            assert!(
                matches!(refused, Err(Refusal::TooDeep(_))),
                "{:?}",
                &deep[..20]
            );
        }
        let wide = format!("a: [{}]", "1,".repeat(MAX_NODES));
        assert!(matches!(
            SourceMap::index(&wide),
            Err(Refusal::TooManyNodes(_))
        ));
    }
}
