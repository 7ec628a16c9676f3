//! YAML read the way Envoy 1.40 reads it, so `otlp-gate check` decides exactly as Envoy will.
//!
//! Envoy turns a YAML file into a `google.protobuf.Struct` with yaml-cpp and its own scalar rules
//! (`parseYamlNode` in source/common/protobuf/yaml_utility.cc), not YAML 1.1 or 1.2, and the
//! filter then validates what that Struct holds. This module reproduces those rules instead of
//! refusing every ambiguous spelling: a stricter `check` would refuse files Envoy accepts (`yes`
//! for a boolean), and the check must agree with Envoy both ways. Where Envoy's reading is likely
//! not what the operator meant, it leaves a [`Note`] that says how Envoy reads it and how to
//! write it instead. `tests/e2e/test_yaml_parity.py` holds this module to real Envoy.
//!
//! The rules, in Envoy's order, for a scalar:
//! - plain, untagged, and empty, `~`, `null`, `Null` or `NULL`: null;
//! - quoted, literal or folded without a tag, or tagged with the non-specific `!`: a string;
//! - otherwise (plain, or with any other tag, even `!!str`) the first that fits of: a boolean
//!   (`y`, `yes`, `true`, `on` and `n`, `no`, `false`, `off`, in lower case, UPPER case or
//!   Capitalized), a 64-bit integer as C's `strtoll` base 0 reads it (`010` is octal 8, `0x1F` is
//!   31; trailing white space allowed), which is a number when it fits 32 bits and otherwise the
//!   string of its decimal value; else the scalar as a string. Envoy 1.40 reads no fraction or
//!   exponent as a number: `0.5` and `1e3` are strings.
//!
//! Maps keep the last of duplicate keys; keys tagged `!ignore` are dropped; a null or non-scalar
//! key makes the file unreadable. Only the first YAML document counts.

use std::collections::HashMap;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Something about Envoy's reading of one value worth telling the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Where the value is in the document, as config errors name places (`tokens[0].disabled`).
    pub path: String,
    /// 1-based line of the value in the file.
    pub line: usize,
    pub message: String,
    /// Worth showing on its own (a reading the operator probably did not mean), or only next to
    /// a problem at the same place (it explains that problem).
    pub warn: bool,
}

/// A document as Envoy reads it, with notes on surprising readings.
#[derive(Debug)]
pub struct Reading {
    pub doc: Value,
    pub notes: Vec<Note>,
}

/// Reads YAML text as Envoy would. Errors name the line.
pub fn read(text: &str) -> Result<Reading, String> {
    let mut events = Events::default();
    Parser::new_from_str(text)
        .load(&mut events, true)
        .map_err(|e| format!("not YAML: {e}"))?;
    let mut cursor = Cursor {
        events: &events.0,
        at: 0,
        anchors: HashMap::new(),
    };
    let mut notes = Vec::new();
    // StreamStart, DocumentStart, the first document's root, ...
    cursor.skip_until_document()?;
    let root = cursor.node()?;
    if cursor.more_documents() {
        notes.push(Note {
            path: String::new(),
            line: 1,
            message: "the file holds more than one YAML document: Envoy reads only the first"
                .into(),
            warn: true,
        });
    }
    let doc = envoy_value(&root, "", &mut notes)?;
    Ok(Reading { doc, notes })
}

/// The notes at or below `prefix` (a document path), with paths made relative to it.
pub fn notes_under(notes: &[Note], prefix: &str) -> Vec<Note> {
    notes
        .iter()
        .filter_map(|n| {
            let rest = if prefix.is_empty() {
                Some(n.path.as_str())
            } else if n.path == prefix {
                Some("")
            } else {
                n.path.strip_prefix(prefix).and_then(|r| {
                    r.strip_prefix('.')
                        .or_else(|| r.starts_with('[').then_some(r))
                })
            }?;
            Some(Note {
                path: rest.to_owned(),
                ..n.clone()
            })
        })
        .collect()
}

#[derive(Default)]
struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

/// A YAML node as yaml-cpp hands it to Envoy.
#[derive(Clone, Debug)]
enum Node {
    Null,
    Scalar {
        text: String,
        /// Read as a string without looking at the text (quoted, block, or tagged `!`).
        string: bool,
        /// Plain and untagged: the spellings notes are about.
        plain: bool,
        /// yaml-cpp's tag, `!ignore` matters on keys.
        tag: String,
        line: usize,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

struct Cursor<'e> {
    events: &'e [(Event, Marker)],
    at: usize,
    anchors: HashMap<usize, Node>,
}

impl Cursor<'_> {
    fn next(&mut self) -> Option<&(Event, Marker)> {
        let e = self.events.get(self.at);
        self.at += 1;
        e
    }

    fn skip_until_document(&mut self) -> Result<(), String> {
        loop {
            match self.next() {
                Some((Event::DocumentStart, _)) => return Ok(()),
                Some((Event::StreamEnd, _)) | None => {
                    return Err("the file holds no YAML document (Envoy reads it as null)".into());
                }
                Some(_) => {}
            }
        }
    }

    fn more_documents(&self) -> bool {
        self.events[self.at..]
            .iter()
            .skip_while(|(e, _)| matches!(e, Event::DocumentEnd))
            .any(|(e, _)| matches!(e, Event::DocumentStart))
    }

    fn node(&mut self) -> Result<Node, String> {
        let Some((event, mark)) = self.next() else {
            return Err("the YAML ends early".into());
        };
        let line = mark.line();
        let (node, anchor) = match event.clone() {
            Event::Alias(id) => {
                return self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("line {line}: an alias to an unknown anchor"));
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let plain = style == TScalarStyle::Plain && tag.is_none();
                let node = if plain && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Node::Null
                } else {
                    Node::Scalar {
                        string: tag.as_deref() == Some("!")
                            || (tag.is_none() && style != TScalarStyle::Plain),
                        plain,
                        tag: tag.unwrap_or_default(),
                        text,
                        line,
                    }
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                while !matches!(self.events.get(self.at), Some((Event::SequenceEnd, _))) {
                    items.push(self.node()?);
                }
                self.at += 1;
                (Node::Seq(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut pairs = Vec::new();
                while !matches!(self.events.get(self.at), Some((Event::MappingEnd, _))) {
                    let key = self.node()?;
                    let value = self.node()?;
                    pairs.push((key, value));
                }
                self.at += 1;
                (Node::Map(pairs), anchor)
            }
            other => return Err(format!("line {line}: unexpected YAML event {other:?}")),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// yaml-cpp's booleans: these words in lower case, UPPER case or Capitalized.
fn envoy_bool(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let flexible = b.iter().all(u8::is_ascii_lowercase)
        || b.first().is_some_and(u8::is_ascii_uppercase)
            && (b[1..].iter().all(u8::is_ascii_lowercase)
                || b[1..].iter().all(u8::is_ascii_uppercase));
    if !flexible {
        return None;
    }
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "true" | "on" => Some(true),
        "n" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// yaml-cpp's `int64_t`: the whole text as `strtoll(text, 0)` reads it (sign, then `0x` hex, a
/// leading `0` octal, or decimal), white space allowed only at the end, no overflow.
fn envoy_int(s: &str) -> Option<i64> {
    let t = s.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let b = t.as_bytes();
    let (negative, body) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let (radix, digits) = match body {
        [b'0', b'x' | b'X', rest @ ..] if !rest.is_empty() => (16, rest),
        [b'0', rest @ ..] if !rest.is_empty() => (8, rest),
        _ => (10, body),
    };
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: i128 = 0;
    for &c in digits {
        let d = char::from(c).to_digit(radix)?;
        magnitude = magnitude * i128::from(radix) + i128::from(d);
        if magnitude > 1 << 63 {
            return None;
        }
    }
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// Whether plain text would be a float in YAML 1.2 (and to most readers): Envoy makes it a string.
fn looks_fractional(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | ".nan" | "inf" | "nan" | "infinity") {
        return true;
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    exponent_ok
        && digits(whole)
        && digits(fraction)
        && !(whole.is_empty() && fraction.is_empty())
        && (mantissa.contains('.') || exponent.is_some())
}

fn scalar_value(
    text: &str,
    string: bool,
    plain: bool,
    line: usize,
    path: &str,
    notes: &mut Vec<Note>,
) -> Value {
    let note = |notes: &mut Vec<Note>, warn: bool, message: String| {
        notes.push(Note {
            path: path.to_owned(),
            line,
            message,
            warn,
        });
    };
    if string {
        return Value::String(text.to_owned());
    }
    if let Some(b) = envoy_bool(text) {
        if plain && text != "true" && text != "false" {
            note(
                notes,
                true,
                format!(
                    "`{text}` is read by Envoy as the boolean {b}; write {b}, or quote it if you meant the text"
                ),
            );
        }
        return Value::Bool(b);
    }
    if let Some(n) = envoy_int(text) {
        let canonical = n.to_string();
        if let Ok(small) = i32::try_from(n) {
            if plain && canonical != text {
                note(
                    notes,
                    true,
                    format!(
                        "`{text}` is read by Envoy as the number {small} (a leading 0 makes it octal, 0x hex): quote it if you meant the text, else write {small}"
                    ),
                );
            }
            return Value::from(small);
        }
        if plain {
            note(
                notes,
                false,
                format!(
                    "`{text}` is read by Envoy as the string \"{canonical}\": Envoy turns whole numbers beyond ±2147483647 into strings"
                ),
            );
        }
        return Value::String(canonical);
    }
    if plain && looks_fractional(text) {
        note(
            notes,
            false,
            format!(
                "`{text}` is read by Envoy as the string \"{text}\": Envoy 1.40 reads no YAML fraction or exponent as a number"
            ),
        );
    }
    Value::String(text.to_owned())
}

fn envoy_value(node: &Node, path: &str, notes: &mut Vec<Note>) -> Result<Value, String> {
    Ok(match node {
        Node::Null => Value::Null,
        Node::Scalar {
            text,
            string,
            plain,
            line,
            ..
        } => scalar_value(text, *string, *plain, *line, path, notes),
        Node::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| envoy_value(item, &format!("{path}[{i}]"), notes))
                .collect::<Result<_, _>>()?,
        ),
        Node::Map(pairs) => {
            let mut map = Map::new();
            for (key, value) in pairs {
                let (name, line) = match key {
                    Node::Scalar { tag, .. } if tag == "!ignore" => continue,
                    Node::Scalar { text, line, .. } => (text.clone(), *line),
                    Node::Null => {
                        return Err(format!(
                            "{}: a null key (Envoy cannot read the file)",
                            if path.is_empty() { "top level" } else { path }
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "{}: a list or map as a key (Envoy cannot read the file)",
                            if path.is_empty() { "top level" } else { path }
                        ));
                    }
                };
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let v = envoy_value(value, &child, notes)?;
                if map.insert(name.clone(), v).is_some() {
                    notes.push(Note {
                        path: child,
                        line,
                        message: format!("`{name}` is given twice here: Envoy keeps the last"),
                        warn: true,
                    });
                }
            }
            Value::Object(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(scalar: &str) -> Value {
        read(&format!("v: {scalar}\n")).unwrap().doc["v"].clone()
    }

    /// Each spelling and what Envoy 1.40 made of it (observed through its config dump; the e2e
    /// suite checks the same against the running binary).
    #[test]
    fn scalars_as_envoy_reads_them() {
        let table: &[(&str, Value)] = &[
            ("y", json!(true)),
            ("N", json!(false)),
            ("Yes", json!(true)),
            ("YES", json!(true)),
            ("yEs", json!("yEs")),
            ("off", json!(false)),
            ("On", json!(true)),
            ("TRUE", json!(true)),
            ("tRUE", json!("tRUE")),
            ("~", Value::Null),
            ("null", Value::Null),
            ("NULL", Value::Null),
            ("nULL", json!("nULL")),
            ("", Value::Null),
            ("''", json!("")),
            ("\"true\"", json!("true")),
            ("'5'", json!("5")),
            ("5", json!(5)),
            ("+5", json!(5)),
            ("-0", json!(0)),
            ("2147483647", json!(2_147_483_647)),
            ("2147483648", json!("2147483648")),
            ("-2147483649", json!("-2147483649")),
            ("9223372036854775807", json!("9223372036854775807")),
            ("9223372036854775808", json!("9223372036854775808")),
            ("010", json!(8)),
            ("08", json!("08")),
            ("0o17", json!("0o17")),
            ("0x1F", json!(31)),
            ("-0x10", json!(-16)),
            ("0x", json!("0x")),
            ("0x7FFFFFFFFF", json!("549755813887")),
            ("0.5", json!("0.5")),
            ("1e3", json!("1e3")),
            (".inf", json!(".inf")),
            ("NaN", json!("NaN")),
            ("!!str 5", json!(5)),
            ("! 5", json!("5")),
            ("!!int \"5\"", json!(5)),
            ("!!int \"5 \"", json!(5)),
            ("!!int \" 5\"", json!(" 5")),
            ("!foo 7", json!(7)),
            ("!!str true", json!(true)),
            ("!!null ~", json!("~")),
            ("!!str", json!("")),
            ("2027-01-01T00:00:00Z", json!("2027-01-01T00:00:00Z")),
            ("12g", json!("12g")),
            ("|\n  yes", json!("yes\n")),
        ];
        for (scalar, want) in table {
            assert_eq!(&one(scalar), want, "{scalar:?}");
        }
    }

    #[test]
    fn structure_as_envoy_reads_it() {
        let r = read(
            "dup: 1\ndup: 2\n!ignore gone: 3\n1: one\na: &A {x: [yes, 010]}\nb: *A\n---\nz: 1\n",
        )
        .unwrap();
        assert_eq!(
            r.doc,
            json!({"dup": 2, "1": "one", "a": {"x": [true, 8]}, "b": {"x": [true, 8]}})
        );
        let messages: Vec<&str> = r.notes.iter().map(|n| n.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("more than one YAML document")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("given twice")),
            "{messages:?}"
        );
        assert!(read("~: 1\n").is_err(), "a null key");
        assert!(read("[a]: 1\n").is_err(), "a list as a key");
        assert!(read("").is_err(), "no document");
        assert!(read("a: [1\n").is_err(), "not YAML");
        assert!(read("a: *nowhere\n").is_err(), "an unknown alias");
    }

    #[test]
    fn notes_say_how_envoy_reads_a_spelling_and_where() {
        let r = read("tokens:\n- disabled: yes\n  rate: {requests_per_second: 0.5, bytes_per_second: 5000000000}\n  max: 010\n  ok: true\n")
            .unwrap();
        let found: Vec<(String, usize, bool)> = r
            .notes
            .iter()
            .map(|n| (n.path.clone(), n.line, n.warn))
            .collect();
        assert_eq!(
            found,
            vec![
                ("tokens[0].disabled".to_owned(), 2, true),
                ("tokens[0].rate.requests_per_second".to_owned(), 3, false),
                ("tokens[0].rate.bytes_per_second".to_owned(), 3, false),
                ("tokens[0].max".to_owned(), 4, true),
            ]
        );
        assert!(r.notes[0].message.contains("boolean true"));
        assert!(r.notes[2].message.contains("\"5000000000\""));
        let under = notes_under(&r.notes, "tokens[0].rate");
        assert_eq!(under.len(), 2);
        assert_eq!(under[0].path, "requests_per_second");
        assert_eq!(notes_under(&r.notes, "tokens").len(), 4);
        assert_eq!(notes_under(&r.notes, "tokens")[0].path, "[0].disabled");
    }

    #[test]
    fn integers_as_strtoll_base_0() {
        for (s, want) in [
            ("0", Some(0)),
            ("00", Some(0)),
            ("0777", Some(511)),
            ("09", None),
            ("0X1f", Some(31)),
            ("+0x10", Some(16)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("-9223372036854775809", None),
            ("1_000", None),
            ("1.0", None),
            ("-", None),
            ("+", None),
            ("--5", None),
            ("5\t\n", Some(5)),
        ] {
            assert_eq!(envoy_int(s), want, "{s:?}");
        }
    }
}
