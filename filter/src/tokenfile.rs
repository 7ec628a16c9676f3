//! Byte-preserving edits of the `tokens` list of a token file (CLI only, never in the .wasm).
//!
//! The file is never re-serialized. The list and its entries are located by line structure
//! (block-style YAML) or by a scan that records byte spans (JSON), and an edit replaces only
//! the bytes of one entry (or inserts one), so comments, key order, quoting and line endings
//! elsewhere stay as they were. What cannot be edited that way is refused with the reason:
//! a flow-style list that has entries (`tokens: [{…}]`), an entry written as `{…}` in YAML, a
//! `StringValue` configuration, several plugin configurations, tabs in indentation, YAML
//! anchors or tags on the path. The caller (`tokencmd`) re-validates every result with `check`
//! and compares it with the intended configuration before anything is written.

use std::ops::Range;

use serde_json::Value;

/// An entry to insert: keys in the order they are written.
pub type Entry = [(&'static str, Value)];

/// The token list of one file, located.
pub struct TokenFile<'a> {
    text: &'a str,
    eol: &'static str,
    list: List,
}

enum List {
    Yaml(YamlList),
    Json(JsonList),
}

impl<'a> TokenFile<'a> {
    /// Locates the plugin configuration's `tokens` list: at the top of a plain config, or at
    /// `resources[0].typed_config.config.configuration.value.tokens` of an ECDS file (the same
    /// rule `check` applies: a document with `tokens`, or without `resources`, is plain).
    pub fn locate(text: &'a str) -> Result<Self, String> {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let list = if serde_json::from_str::<Value>(text).is_ok() {
            List::Json(JsonList::locate(text)?)
        } else {
            List::Yaml(YamlList::locate(text)?)
        };
        Ok(TokenFile { text, eol, list })
    }

    /// How many entries the list has.
    pub fn len(&self) -> usize {
        match &self.list {
            List::Yaml(y) => y.items().len(),
            List::Json(j) => j.elems.len(),
        }
    }

    /// The text with `entry` appended to the list.
    pub fn append(&self, entry: &Entry) -> Result<String, String> {
        let splices = match &self.list {
            List::Yaml(y) => y.append(self.text, self.eol, entry),
            List::Json(j) => j.append(self.text, self.eol, entry),
        }?;
        Ok(apply(self.text, splices))
    }

    /// The text with `key: value` set in entry `index` (replaced, or added as its last key).
    pub fn set(&self, index: usize, key: &str, value: &Value) -> Result<String, String> {
        let splices = match &self.list {
            List::Yaml(y) => y.set(self.text, self.eol, index, key, value),
            List::Json(j) => j.set(self.text, self.eol, index, key, value),
        }?;
        Ok(apply(self.text, splices))
    }

    /// The text without entry `index`.
    pub fn remove(&self, index: usize) -> Result<String, String> {
        let splices = match &self.list {
            List::Yaml(y) => y.remove(self.text, index),
            List::Json(j) => j.remove(index),
        }?;
        Ok(apply(self.text, splices))
    }
}

/// Replace `range` of the text with `text`.
struct Splice {
    range: Range<usize>,
    text: String,
}

fn splice(range: Range<usize>, text: impl Into<String>) -> Splice {
    Splice {
        range,
        text: text.into(),
    }
}

fn apply(text: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| s.range.start);
    let mut out = String::with_capacity(text.len() + 512);
    let mut at = 0;
    for s in splices {
        out.push_str(text.get(at..s.range.start).unwrap_or_default());
        out.push_str(&s.text);
        at = s.range.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    out
}

/// A value as JSON with `, ` and `: ` separators: valid in YAML flow style and in JSON, and
/// always quoted, so no YAML reader can take a string for a number, a date or a boolean.
pub fn flow(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), flow(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

// ------------------------------------------------------------------------------------- YAML

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    Comment,
    Content,
}

#[derive(Clone, Copy)]
struct Line {
    start: usize,
    /// End of the line's text (before `\r\n` or `\n`).
    end: usize,
    /// Start of the next line.
    next: usize,
    /// Leading spaces.
    indent: usize,
    kind: Kind,
    /// A tab right after the leading spaces, on a content line: YAML forbids it there.
    tab: bool,
}

struct Yaml<'a> {
    text: &'a str,
    lines: Vec<Line>,
}

/// Lines of a block mapping; the content of `first.0` starts at column `first.1` (the first
/// key of a list item sits on the item's `- ` line).
#[derive(Clone)]
struct Region {
    lines: Range<usize>,
    first: Option<(usize, usize)>,
}

/// A key found in a block mapping.
struct KeyAt {
    line: usize,
    /// Byte offset just after the `:`.
    colon_end: usize,
    /// The value written on the key's own line (a scalar or a flow collection), if any.
    inline: Range<usize>,
    /// The lines after the key line that belong to its value.
    children: Range<usize>,
}

/// One entry of a block list.
#[derive(Clone)]
struct Item {
    first: usize,
    last_content: usize,
    /// The entry's block mapping, or None for an entry written as `{…}`.
    mapping: Option<Region>,
}

struct YamlList {
    lines: Vec<Line>,
    key_line: usize,
    /// Byte offset just after `tokens:`.
    colon_end: usize,
    key_indent: usize,
    body: YamlBody,
    /// How far block lists are indented under their key elsewhere in the file (0 or 2 …).
    seq_offset: usize,
}

enum YamlBody {
    /// `tokens: []`: the bytes of ` []` (from the colon to the bracket).
    EmptyFlow(Range<usize>),
    Block {
        dash: usize,
        items: Vec<Item>,
    },
}

fn line_no(i: usize) -> usize {
    i + 1
}

impl<'a> Yaml<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        let bytes = text.as_bytes();
        while start < text.len() {
            let nl = text[start..].find('\n').map(|p| start + p);
            let next = nl.map_or(text.len(), |p| p + 1);
            let mut end = nl.unwrap_or(text.len());
            if end > start && bytes.get(end - 1) == Some(&b'\r') {
                end -= 1;
            }
            let body = &text[start..end];
            let indent = body.bytes().take_while(|&b| b == b' ').count();
            let rest = &body[indent..];
            let trimmed = rest.trim_start_matches([' ', '\t']);
            let kind = if trimmed.is_empty() {
                Kind::Blank
            } else if trimmed.starts_with('#') {
                Kind::Comment
            } else {
                Kind::Content
            };
            lines.push(Line {
                start,
                end,
                next,
                indent,
                kind,
                tab: kind == Kind::Content && rest.starts_with('\t'),
            });
            start = next;
        }
        Yaml { text, lines }
    }

    fn line(&self, i: usize) -> Line {
        self.lines.get(i).copied().unwrap_or(Line {
            start: self.text.len(),
            end: self.text.len(),
            next: self.text.len(),
            indent: 0,
            kind: Kind::Blank,
            tab: false,
        })
    }

    fn content(&self, r: &Range<usize>) -> impl Iterator<Item = usize> + '_ {
        r.clone().filter(|&i| self.line(i).kind == Kind::Content)
    }

    fn col(&self, region: &Region, i: usize) -> usize {
        match region.first {
            Some((l, c)) if l == i => c,
            _ => self.line(i).indent,
        }
    }

    /// The text of line `i` from column `col`.
    fn text_at(&self, i: usize, col: usize) -> &'a str {
        let l = self.line(i);
        self.text.get(l.start + col..l.end).unwrap_or_default()
    }

    fn is_dash(&self, i: usize, col: usize) -> bool {
        let s = self.text_at(i, col);
        s == "-" || s.starts_with("- ") || s.starts_with("-\t")
    }

    /// The document's root mapping: every line, after `%` directives and a `---` marker.
    fn root(&self) -> Result<Region, String> {
        let all = 0..self.lines.len();
        let mut begin = 0;
        for i in self.content(&all) {
            let s = self.text_at(i, 0);
            if s.starts_with('%') {
                continue;
            }
            if let Some(after) = s.strip_prefix("---") {
                let rest = after.trim_start_matches([' ', '\t']);
                if !(rest.is_empty() || rest.starts_with('#')) {
                    return Err(format!(
                        "line {}: content on the `---` line is not supported",
                        line_no(i)
                    ));
                }
                begin = i + 1;
            }
            break;
        }
        let rest = begin..self.lines.len();
        for i in self.content(&rest) {
            let s = self.text_at(i, 0);
            let marker = |m: &str| {
                s.strip_prefix(m)
                    .is_some_and(|r| r.is_empty() || r.starts_with([' ', '\t']))
            };
            if marker("---") || marker("...") {
                if self.content(&(i + 1..self.lines.len())).next().is_some() {
                    return Err(format!(
                        "line {}: the file holds several YAML documents; a token file has one",
                        line_no(i)
                    ));
                }
                return Ok(Region {
                    lines: begin..i,
                    first: None,
                });
            }
        }
        Ok(Region {
            lines: rest,
            first: None,
        })
    }

    /// Parses `key:` at column `col` of line `i`: the key and the offset just after the colon.
    fn parse_key(&self, i: usize, col: usize) -> Result<(String, usize), String> {
        let l = self.line(i);
        let s = self.text_at(i, col);
        let at = l.start + col;
        let err = |what: &str| Err(format!("line {}: {what}", line_no(i)));
        let (key, rest_at) = match s.chars().next() {
            Some('"') => match closing_double(s) {
                Some(end) => (unescape_double(&s[1..end - 1]), end),
                None => return err("a quoted key must end on its line"),
            },
            Some('\'') => match closing_single(s) {
                Some(end) => (s[1..end - 1].replace("''", "'"), end),
                None => return err("a quoted key must end on its line"),
            },
            Some('?') => return err("complex keys (`? `) are not supported"),
            Some('{' | '[') => {
                return err(
                    "this mapping is written in flow style ({…}); otlp-gate edits block-style YAML only",
                );
            }
            Some('&' | '*' | '!' | '<') => {
                return err(
                    "YAML anchors, aliases, tags and merge keys are not supported on the way to `tokens`",
                );
            }
            _ => {
                let mut end = None;
                for (p, c) in s.char_indices() {
                    if c == ':' {
                        let after = s[p + 1..].chars().next();
                        if matches!(after, None | Some(' ' | '\t')) {
                            end = Some(p);
                            break;
                        }
                    }
                    if c == '#' && p > 0 && s[..p].ends_with([' ', '\t']) {
                        break;
                    }
                }
                match end {
                    Some(p) => (s[..p].trim_end().to_owned(), p),
                    None => return err("expected `key:`"),
                }
            }
        };
        let rest = &s[rest_at..];
        let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if !rest[ws..].starts_with(':') {
            return err("expected `:` after the key");
        }
        Ok((key, at + rest_at + ws + 1))
    }

    /// The value written on a key's line, after the colon: its byte range (without a comment).
    fn inline(&self, i: usize, colon_end: usize) -> Result<Range<usize>, String> {
        let l = self.line(i);
        let s = self.text.get(colon_end..l.end).unwrap_or_default();
        let ws = s.len() - s.trim_start_matches([' ', '\t']).len();
        let start = colon_end + ws;
        let len = scalar_len(&s[ws..]).map_err(|e| format!("line {}: {e}", line_no(i)))?;
        Ok(start..start + len)
    }

    /// Finds `key` in a block mapping.
    fn find(&self, region: &Region, key: &str) -> Result<Option<KeyAt>, String> {
        let mut content = self.content(&region.lines).peekable();
        let Some(&first) = content.peek() else {
            return Ok(None);
        };
        let m = self.col(region, first);
        let mut found: Option<(usize, usize)> = None;
        let mut last_inline_empty = false;
        for i in content {
            let col = self.col(region, i);
            if col < m {
                return Err(format!("line {}: unexpected indentation", line_no(i)));
            }
            if col > m {
                continue;
            }
            if self.line(i).tab && region.first.map(|f| f.0) != Some(i) {
                return Err(tab_error(i));
            }
            if self.is_dash(i, col) {
                if last_inline_empty {
                    continue; // a list item at the key's own indentation (compact style)
                }
                return Err(format!(
                    "line {}: expected `key:` in a mapping, found a list item",
                    line_no(i)
                ));
            }
            let (k, colon_end) = self.parse_key(i, col)?;
            last_inline_empty = self.inline(i, colon_end).is_ok_and(|r| r.is_empty());
            if k == key {
                if found.is_some() {
                    return Err(format!("line {}: `{key}` appears twice", line_no(i)));
                }
                found = Some((i, colon_end));
            }
        }
        let Some((line, colon_end)) = found else {
            return Ok(None);
        };
        let inline = self.inline(line, colon_end)?;
        let mut end = line + 1;
        while end < region.lines.end {
            let l = self.line(end);
            if l.kind == Kind::Content
                && l.indent <= m
                && !(l.indent == m && inline.is_empty() && self.is_dash(end, m))
            {
                break;
            }
            end += 1;
        }
        Ok(Some(KeyAt {
            line,
            colon_end,
            inline,
            children: line + 1..end,
        }))
    }

    /// The block mapping that is `key`'s value, following the path from `region`.
    fn descend(&self, region: &Region, key: &str, path: &str) -> Result<Region, String> {
        let at = self
            .find(region, key)?
            .ok_or_else(|| format!("`{path}` not found"))?;
        if !at.inline.is_empty() {
            let v = &self.text[at.inline.clone()];
            return Err(if v.starts_with(['{', '[']) {
                format!(
                    "line {}: `{path}` is written in flow style ({{…}}); otlp-gate edits block-style YAML only: rewrite it as an indented block",
                    line_no(at.line)
                )
            } else if key == "value" {
                format!(
                    "line {}: `{path}` is not a mapping: a google.protobuf.StringValue (JSON in a string) cannot be edited in place; write the configuration as a google.protobuf.Struct (a `value:` mapping), as envoy/otlp-gate.yaml does",
                    line_no(at.line)
                )
            } else {
                format!(
                    "line {}: `{path}` must be an indented block mapping",
                    line_no(at.line)
                )
            });
        }
        Ok(Region {
            lines: at.children,
            first: None,
        })
    }

    /// The entries of a block list in `lines`.
    fn items(&self, lines: &Range<usize>, path: &str) -> Result<(usize, Vec<Item>), String> {
        let mut content = self.content(lines).peekable();
        let Some(&first) = content.peek() else {
            return Err(format!(
                "`{path}` is empty (write `{path}: []` for no entries)"
            ));
        };
        let d = self.line(first).indent;
        let mut items: Vec<Item> = Vec::new();
        for i in content {
            let l = self.line(i);
            if l.indent < d {
                return Err(format!("line {}: unexpected indentation", line_no(i)));
            }
            if l.indent == d {
                if l.tab {
                    return Err(tab_error(i));
                }
                if !self.is_dash(i, d) {
                    return Err(format!(
                        "line {}: `{path}` must be a list of `- ` entries",
                        line_no(i)
                    ));
                }
                items.push(Item {
                    first: i,
                    last_content: i,
                    mapping: None,
                });
            } else if let Some(item) = items.last_mut() {
                item.last_content = i;
            }
        }
        let bounds: Vec<usize> = items
            .iter()
            .skip(1)
            .map(|it| it.first)
            .chain(std::iter::once(lines.end))
            .collect();
        for (item, end) in items.iter_mut().zip(bounds) {
            let after_dash = self.text_at(item.first, d + 1);
            let ws = after_dash.len() - after_dash.trim_start_matches([' ', '\t']).len();
            let rest = &after_dash[ws..];
            item.mapping = if rest.is_empty() || rest.starts_with('#') {
                Some(Region {
                    lines: item.first + 1..end,
                    first: None,
                })
            } else if rest.starts_with('{') {
                None
            } else {
                Some(Region {
                    lines: item.first..end,
                    first: Some((item.first, d + 1 + ws)),
                })
            };
        }
        Ok((d, items))
    }

    /// How far the file indents block lists under their keys (0 when it writes none).
    fn seq_offset(&self) -> usize {
        let mut prev: Option<usize> = None;
        for i in self.content(&(0..self.lines.len())) {
            let l = self.line(i);
            if let Some(p) = prev {
                let pl = self.line(p);
                let ptext = self.text.get(pl.start..pl.end).unwrap_or_default();
                let ptext = strip_comment(ptext).trim_end();
                if self.is_dash(i, l.indent) && ptext.ends_with(':') && l.indent >= pl.indent {
                    return l.indent - pl.indent;
                }
            }
            prev = Some(i);
        }
        0
    }
}

fn tab_error(i: usize) -> String {
    format!(
        "line {}: a tab in the indentation; YAML allows only spaces there",
        line_no(i)
    )
}

/// The text before a ` #` comment (good enough for `key:` lines, whose keys are plain).
fn strip_comment(s: &str) -> &str {
    let mut cut = s.len();
    for (p, _) in s.match_indices('#') {
        if p == 0 || s[..p].ends_with([' ', '\t']) {
            cut = p;
            break;
        }
    }
    &s[..cut]
}

/// Length of a `"…"` string at the start of `s`, including both quotes.
fn closing_double(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Length of a `'…'` string at the start of `s` (`''` is a quote inside it).
fn closing_single(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn unescape_double(s: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{s}\"")).unwrap_or_else(|_| s.to_owned())
}

/// Length of the YAML value at the start of `s` (a key's inline value), without a trailing
/// comment or spaces; an error for what does not end on its line or cannot be edited.
fn scalar_len(s: &str) -> Result<usize, String> {
    match s.chars().next() {
        None | Some('#') => Ok(0),
        Some('"') => closing_double(s).ok_or_else(|| "a quoted value must end on its line".into()),
        Some('\'') => closing_single(s).ok_or_else(|| "a quoted value must end on its line".into()),
        Some('[' | '{') => {
            let mut depth = 0usize;
            let mut i = 0;
            let b = s.as_bytes();
            while i < b.len() {
                match b[i] {
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Ok(i + 1);
                        }
                    }
                    b'"' => i += closing_double(&s[i..]).ok_or("unterminated string")? - 1,
                    b'\'' => i += closing_single(&s[i..]).ok_or("unterminated string")? - 1,
                    _ => {}
                }
                i += 1;
            }
            Err("a flow collection ([…] or {…}) must end on its line".into())
        }
        Some('|' | '>') => Err("block scalars (| or >) are not supported here".into()),
        Some('&' | '*' | '!') => {
            Err("YAML anchors, aliases and tags are not supported here".into())
        }
        Some(_) => Ok(strip_comment(s).trim_end_matches([' ', '\t']).len()),
    }
}

impl YamlList {
    fn locate(text: &str) -> Result<Self, String> {
        let y = Yaml::new(text);
        let root = y.root()?;
        let has = |k: &str| y.find(&root, k).map(|f| f.is_some());
        let (tokens_in, path) = if has("tokens")? || !has("resources")? {
            (root, "tokens".to_owned())
        } else {
            let res = y.find(&root, "resources")?.ok_or("`resources` not found")?;
            if !res.inline.is_empty() {
                return Err(format!(
                    "line {}: `resources` must be a block list (`- ` entries)",
                    line_no(res.line)
                ));
            }
            let (_, items) = y.items(&res.children, "resources")?;
            if items.len() != 1 {
                return Err(format!(
                    "the file has {} resources; token editing supports exactly one otlp-gate resource",
                    items.len()
                ));
            }
            let mut region = items
                .first()
                .and_then(|i| i.mapping.clone())
                .ok_or("resources[0] is written in flow style ({…}); otlp-gate edits block-style YAML only")?;
            let mut path = String::from("resources[0]");
            for key in ["typed_config", "config", "configuration", "value"] {
                path = format!("{path}.{key}");
                region = y.descend(&region, key, &path)?;
            }
            (region, format!("{path}.tokens"))
        };
        let at = y
            .find(&tokens_in, "tokens")?
            .ok_or_else(|| format!("`{path}` not found"))?;
        let key_indent = y.col(&tokens_in, at.line);
        let inline = &text[at.inline.clone()];
        let body = if inline.is_empty() {
            let (dash, items) = y.items(&at.children, &path)?;
            YamlBody::Block { dash, items }
        } else if inline.starts_with('[') && inline[1..inline.len() - 1].trim().is_empty() {
            YamlBody::EmptyFlow(at.colon_end..at.inline.end)
        } else if inline.starts_with('[') {
            return Err(format!(
                "line {}: `{path}` is a flow-style list ([…]) with entries; otlp-gate edits block lists only: rewrite it with one `- ` entry per token (as envoy/otlp-gate.yaml does), then run this again",
                line_no(at.line)
            ));
        } else {
            return Err(format!(
                "line {}: `{path}` must be a list",
                line_no(at.line)
            ));
        };
        let seq_offset = y.seq_offset();
        Ok(YamlList {
            lines: y.lines,
            key_line: at.line,
            colon_end: at.colon_end,
            key_indent,
            body,
            seq_offset,
        })
    }

    fn items(&self) -> &[Item] {
        match &self.body {
            YamlBody::Block { items, .. } => items,
            YamlBody::EmptyFlow(_) => &[],
        }
    }

    fn line(&self, i: usize) -> Option<&Line> {
        self.lines.get(i)
    }

    /// Entry lines: `- k: v` then `k: v` at the entry's key column.
    fn entry_text(entry: &Entry, dash: usize, key_col: usize, eol: &str) -> String {
        let key_col = key_col.max(dash + 2);
        let mut out = String::new();
        for (n, (k, v)) in entry.iter().enumerate() {
            if n == 0 {
                out.push_str(&" ".repeat(dash));
                out.push('-');
                out.push_str(&" ".repeat(key_col - dash - 1));
            } else {
                out.push_str(&" ".repeat(key_col));
            }
            out.push_str(&format!("{k}: {}{eol}", flow(v)));
        }
        out
    }

    /// The column where an item's keys start.
    fn key_col(&self, text: &str, item: &Item) -> usize {
        match &item.mapping {
            Some(Region {
                first: Some((_, c)),
                ..
            }) => *c,
            Some(r) => r
                .lines
                .clone()
                .filter_map(|i| self.line(i))
                .find(|l| l.kind == Kind::Content)
                .map_or(0, |l| l.indent),
            None => {
                // `- {…}`: keys of a block entry would go two columns right of the dash.
                let l = self.line(item.first);
                l.map_or(0, |l| {
                    text.get(l.start..l.end)
                        .map_or(0, |s| s.len() - s.trim_start().len())
                }) + 2
            }
        }
    }

    /// Where to insert after line `i`, and the line ending to put first if it has none.
    fn after(&self, text: &str, i: usize, eol: &str) -> (usize, String) {
        let l = self.line(i);
        let next = l.map_or(text.len(), |l| l.next);
        let ends = l.is_some_and(|l| l.next > l.end);
        (next, if ends { String::new() } else { eol.to_owned() })
    }

    fn append(&self, text: &str, eol: &str, entry: &Entry) -> Result<Vec<Splice>, String> {
        match &self.body {
            YamlBody::Block { dash, items } => {
                let last = items.last().ok_or("the token list is empty")?;
                let key_col = self.key_col(text, last);
                let (at, lead) = self.after(text, last.last_content, eol);
                Ok(vec![splice(
                    at..at,
                    lead + &Self::entry_text(entry, *dash, key_col, eol),
                )])
            }
            YamlBody::EmptyFlow(brackets) => {
                let dash = self.key_indent + self.seq_offset;
                let (at, lead) = self.after(text, self.key_line, eol);
                Ok(vec![
                    splice(brackets.clone(), ""),
                    splice(at..at, lead + &Self::entry_text(entry, dash, dash + 2, eol)),
                ])
            }
        }
    }

    fn item(&self, index: usize) -> Result<&Item, String> {
        self.items()
            .get(index)
            .ok_or_else(|| format!("no token entry number {index}"))
    }

    fn remove(&self, text: &str, index: usize) -> Result<Vec<Splice>, String> {
        let item = self.item(index)?;
        let from = self.line(item.first).map_or(text.len(), |l| l.start);
        let to = self.line(item.last_content).map_or(text.len(), |l| l.next);
        let mut out = vec![splice(from..to, "")];
        if self.items().len() == 1 {
            // The list would become null: write it as an empty list instead.
            out.push(splice(self.colon_end..self.colon_end, " []"));
        }
        Ok(out)
    }

    fn set(
        &self,
        text: &str,
        eol: &str,
        index: usize,
        key: &str,
        value: &Value,
    ) -> Result<Vec<Splice>, String> {
        let item = self.item(index)?;
        let region = item.mapping.clone().ok_or_else(|| {
            format!(
                "line {}: this token entry is written in flow style ({{…}}); rewrite it as a block (one key per line), then run this again",
                line_no(item.first)
            )
        })?;
        let y = Yaml {
            text,
            lines: self.lines.clone(),
        };
        let region = Region {
            lines: region.lines.start..item.last_content + 1,
            first: region.first,
        };
        match y.find(&region, key)? {
            Some(at) => {
                if at.inline.is_empty() || y.content(&at.children).next().is_some() {
                    return Err(format!(
                        "line {}: `{key}` spans several lines; write it on one line, then run this again",
                        line_no(at.line)
                    ));
                }
                Ok(vec![splice(at.inline, flow(value))])
            }
            None => {
                let key_col = self.key_col(text, item);
                let (at, lead) = self.after(text, item.last_content, eol);
                Ok(vec![splice(
                    at..at,
                    format!("{lead}{}{key}: {}{eol}", " ".repeat(key_col), flow(value)),
                )])
            }
        }
    }
}

// ------------------------------------------------------------------------------------- JSON

/// A JSON value and where it is.
#[derive(Clone)]
struct JNode {
    span: Range<usize>,
    kind: JKind,
}

#[derive(Clone)]
enum JKind {
    Object(Vec<(String, usize, JNode)>),
    Array(Vec<JNode>),
    Scalar,
}

struct JsonScan<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl JsonScan<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON byte {}: {what}", self.pos))
    }

    fn string(&mut self) -> Result<Range<usize>, String> {
        let start = self.pos;
        let len =
            closing_double(&self.s[start..]).map_or_else(|| self.err("unterminated string"), Ok)?;
        self.pos += len;
        Ok(start..self.pos)
    }

    fn value(&mut self, depth: usize) -> Result<JNode, String> {
        if depth > 128 {
            return self.err("nested too deeply");
        }
        self.ws();
        let start = self.pos;
        let kind = match self.b.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        if self.b.get(self.pos) != Some(&b'"') {
                            return self.err("expected a key");
                        }
                        let k = self.string()?;
                        let key: String = serde_json::from_str(&self.s[k.clone()])
                            .map_err(|e| format!("JSON byte {}: {e}", k.start))?;
                        self.ws();
                        if self.b.get(self.pos) != Some(&b':') {
                            return self.err("expected `:`");
                        }
                        self.pos += 1;
                        let v = self.value(depth + 1)?;
                        members.push((key, k.start, v));
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return self.err("expected `,` or `}`"),
                        }
                    }
                }
                JKind::Object(members)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut elems = Vec::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        elems.push(self.value(depth + 1)?);
                        self.ws();
                        match self.b.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return self.err("expected `,` or `]`"),
                        }
                    }
                }
                JKind::Array(elems)
            }
            Some(b'"') => {
                self.string()?;
                JKind::Scalar
            }
            Some(_) => {
                while self.b.get(self.pos).is_some_and(|c| {
                    !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return self.err("expected a value");
                }
                JKind::Scalar
            }
            None => return self.err("unexpected end"),
        };
        Ok(JNode {
            span: start..self.pos,
            kind,
        })
    }
}

impl JNode {
    /// The member `key` (the last one, as serde_json reads duplicates).
    fn get(&self, key: &str) -> Option<&JNode> {
        match &self.kind {
            JKind::Object(m) => m.iter().rev().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }
}

struct JsonList {
    /// The `[…]` of the list.
    span: Range<usize>,
    elems: Vec<JNode>,
}

/// The whitespace that starts the line holding `pos`, if only whitespace precedes `pos` there.
fn json_indent(text: &str, pos: usize) -> Option<&str> {
    let start = text[..pos].rfind('\n').map_or(0, |p| p + 1);
    let before = &text[start..pos];
    before.trim().is_empty().then_some(before)
}

impl JsonList {
    fn locate(text: &str) -> Result<Self, String> {
        let mut scan = JsonScan {
            s: text,
            b: text.as_bytes(),
            pos: 0,
        };
        let root = scan.value(0)?;
        let plain = root.get("tokens").is_some() || root.get("resources").is_none();
        let (node, path) = if plain {
            (root.get("tokens"), "tokens".to_owned())
        } else {
            let res = match root.get("resources").map(|r| &r.kind) {
                Some(JKind::Array(items)) => items,
                _ => return Err("`resources` must be a list".into()),
            };
            let [first] = res.as_slice() else {
                return Err(format!(
                    "the file has {} resources; token editing supports exactly one otlp-gate resource",
                    res.len()
                ));
            };
            let value = first
                .get("typed_config")
                .and_then(|n| n.get("config"))
                .and_then(|n| n.get("configuration"))
                .and_then(|n| n.get("value"));
            if let Some(JNode {
                kind: JKind::Scalar,
                ..
            }) = value
            {
                return Err("resources[0].typed_config.config.configuration.value is a google.protobuf.StringValue (JSON in a string), which cannot be edited in place; write the configuration as a google.protobuf.Struct (a `value` object)".into());
            }
            (
                value.and_then(|v| v.get("tokens")),
                "resources[0].typed_config.config.configuration.value.tokens".to_owned(),
            )
        };
        match node {
            Some(JNode {
                span,
                kind: JKind::Array(elems),
            }) => Ok(JsonList {
                span: span.clone(),
                elems: elems.clone(),
            }),
            Some(_) => Err(format!("`{path}` must be a list")),
            None => Err(format!("`{path}` not found")),
        }
    }

    fn append(&self, text: &str, eol: &str, entry: &Entry) -> Result<Vec<Splice>, String> {
        let compact = {
            let inner: Vec<String> = entry
                .iter()
                .map(|(k, v)| format!("\"{k}\": {}", flow(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        };
        let Some(last) = self.elems.last() else {
            let inner = self.span.start + 1..self.span.end - 1;
            return Ok(vec![splice(inner, compact)]);
        };
        let prev_end = match self.elems.len() {
            1 => self.span.start + 1,
            n => self
                .elems
                .get(n - 2)
                .map_or(self.span.start + 1, |p| p.span.end),
        };
        let between = &text[prev_end..last.span.start];
        let indent = json_indent(text, last.span.start);
        let (sep, body) = match indent {
            Some(ind) if between.contains('\n') => {
                let body = if text[last.span.clone()].contains('\n') {
                    let unit = match &last.kind {
                        JKind::Object(m) => m
                            .first()
                            .and_then(|(_, k, _)| json_indent(text, *k))
                            .and_then(|mi| mi.strip_prefix(ind))
                            .filter(|u| !u.is_empty())
                            .unwrap_or("  "),
                        _ => "  ",
                    };
                    let members: Vec<String> = entry
                        .iter()
                        .map(|(k, v)| format!("{ind}{unit}\"{k}\": {}", flow(v)))
                        .collect();
                    format!("{{{eol}{}{eol}{ind}}}", members.join(&format!(",{eol}")))
                } else {
                    compact
                };
                (format!(",{eol}{ind}"), body)
            }
            _ => (", ".to_owned(), compact),
        };
        Ok(vec![splice(
            last.span.end..last.span.end,
            format!("{sep}{body}"),
        )])
    }

    fn remove(&self, index: usize) -> Result<Vec<Splice>, String> {
        let n = self.elems.len();
        let e = self
            .elems
            .get(index)
            .ok_or_else(|| format!("no token entry number {index}"))?;
        let range = if n == 1 {
            self.span.start + 1..self.span.end - 1
        } else if let Some(next) = self.elems.get(index + 1) {
            e.span.start..next.span.start
        } else {
            let prev = self
                .elems
                .get(index - 1)
                .map_or(e.span.start, |p| p.span.end);
            prev..e.span.end
        };
        Ok(vec![splice(range, "")])
    }

    fn set(
        &self,
        text: &str,
        eol: &str,
        index: usize,
        key: &str,
        value: &Value,
    ) -> Result<Vec<Splice>, String> {
        let e = self
            .elems
            .get(index)
            .ok_or_else(|| format!("no token entry number {index}"))?;
        let JKind::Object(members) = &e.kind else {
            return Err(format!("token entry {index} is not an object"));
        };
        if let Some(v) = e.get(key) {
            return Ok(vec![splice(v.span.clone(), flow(value))]);
        }
        let Some((_, key_at, last)) = members.last() else {
            let inner = e.span.start + 1..e.span.end - 1;
            return Ok(vec![splice(inner, format!("\"{key}\": {}", flow(value)))]);
        };
        let sep = match json_indent(text, *key_at) {
            Some(ind) if text[e.span.start..*key_at].contains('\n') => format!(",{eol}{ind}"),
            _ => ", ".to_owned(),
        };
        Ok(vec![splice(
            last.span.end..last.span.end,
            format!("{sep}\"{key}\": {}", flow(value)),
        )])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    pub(crate) const FIXTURES: &[(&str, &str)] = &[
        (
            "envoy/otlp-gate.yaml",
            include_str!("../../envoy/otlp-gate.yaml"),
        ),
        (
            "k8s/overlays/dev/otlp-gate.yaml",
            include_str!("../../k8s/overlays/dev/otlp-gate.yaml"),
        ),
        (
            "k8s/overlays/production/otlp-gate.yaml",
            include_str!("../../k8s/overlays/production/otlp-gate.yaml"),
        ),
        (
            "comments.yaml",
            include_str!("../tests/fixtures/tokenfiles/comments.yaml"),
        ),
        (
            "crlf.yaml",
            include_str!("../tests/fixtures/tokenfiles/crlf.yaml"),
        ),
        (
            "empty-flow.yaml",
            include_str!("../tests/fixtures/tokenfiles/empty-flow.yaml"),
        ),
        (
            "pyyaml.yaml",
            include_str!("../tests/fixtures/tokenfiles/pyyaml.yaml"),
        ),
        (
            "flow-item.yaml",
            include_str!("../tests/fixtures/tokenfiles/flow-item.yaml"),
        ),
        (
            "plain-crlf.json",
            include_str!("../tests/fixtures/tokenfiles/plain-crlf.json"),
        ),
        (
            "ecds-compact.json",
            include_str!("../tests/fixtures/tokenfiles/ecds-compact.json"),
        ),
    ];

    fn entry(id: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("id", json!(id)),
            ("sha256", json!(config_hex(id))),
            ("tenant", json!("t")),
            ("signals", json!(["logs", "traces"])),
        ]
    }

    fn config_hex(id: &str) -> String {
        otlp_gate::config::hex(&otlp_gate::config::digest(id.as_bytes()))
    }

    /// The token ids `check` reads from `text`.
    fn ids(name: &str, text: &str) -> Vec<String> {
        if let Err(crate::Failure::Invalid(m) | crate::Failure::Usage(m)) =
            crate::check(name, text.as_bytes())
        {
            panic!("{name}: check failed:\n{m}\n{text}");
        }
        let found = crate::extract_configs(name, text.as_bytes()).ok().unwrap();
        let cfg = otlp_gate::config::parse(&found[0].raw).unwrap();
        cfg.tokens.iter().map(|t| t.id.clone()).collect()
    }

    #[test]
    fn every_fixture_round_trips_add_set_remove() {
        for (name, text) in FIXTURES {
            let before = ids(name, text);
            let f = TokenFile::locate(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(f.len(), before.len(), "{name}");
            let added = f.append(&entry("new-one")).unwrap();
            let mut want = before.clone();
            want.push("new-one".into());
            assert_eq!(ids(name, &added), want, "{name}");
            // Appending adds bytes and changes none: the old text is the new one minus the entry.
            let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
            if !text.contains("[]") && !name.ends_with("compact.json") {
                assert!(added.len() > text.len(), "{name}");
                for line in added.split_inclusive('\n') {
                    assert!(
                        !text.contains("\r\n") || line.ends_with(eol),
                        "{name}: {line:?}"
                    );
                }
            }
            // Removing the new entry gives the original bytes back.
            let f2 = TokenFile::locate(&added).unwrap();
            assert_eq!(f2.remove(before.len()).unwrap(), *text, "{name}");
            // Disable the new entry: one line more, everything else as it was.
            let disabled = f2.set(before.len(), "disabled", &json!(true)).unwrap();
            assert!(disabled.contains("\"disabled\": true") || disabled.contains("disabled: true"));
            let f3 = TokenFile::locate(&disabled).unwrap();
            assert_eq!(f3.remove(before.len()).unwrap(), *text, "{name}");
        }
    }

    #[test]
    fn yaml_edits_touch_only_the_entry() {
        let text = include_str!("../tests/fixtures/tokenfiles/comments.yaml");
        let f = TokenFile::locate(text).unwrap();
        assert_eq!(f.len(), 3);
        // Replacing a value keeps its comment; a missing key becomes the entry's last line.
        let out = f.set(2, "disabled", &json!(true)).unwrap();
        assert_eq!(
            out,
            text.replace(
                "disabled: false  # still in use",
                "disabled: true  # still in use"
            )
        );
        let out = f
            .set(2, "expires_at", &json!("2031-01-01T00:00:00Z"))
            .unwrap();
        assert!(out.contains("expires_at: \"2031-01-01T00:00:00Z\" # contract end"));
        let out = f
            .set(0, "expires_at", &json!("2031-01-01T00:00:00Z"))
            .unwrap();
        assert_eq!(
            out,
            text.replace(
                "      - traces\n",
                "      - traces\n    expires_at: \"2031-01-01T00:00:00Z\"\n"
            )
        );
        // Removing the middle entry takes its lines only (the comments around it stay).
        let out = f.remove(1).unwrap();
        assert!(out.contains("# --- team B") && !out.contains("team-b\""));
        assert_eq!(
            out.lines().count(),
            text.lines().count() - 5,
            "the dash line and its four keys"
        );
        // An entry appended after the last one uses its layout, before trailing comments.
        let out = f.append(&entry("d")).unwrap();
        assert!(
            out.contains("      expires_at: \"2030-01-01T00:00:00Z\" # contract end\n  -   id: \"d\"\n      sha256: ")
        );
        assert!(out.contains("  # - id: retired"));
    }

    #[test]
    fn empty_lists_become_block_lists_and_back() {
        let text = include_str!("../tests/fixtures/tokenfiles/empty-flow.yaml");
        let f = TokenFile::locate(text).unwrap();
        assert_eq!(f.len(), 0);
        let out = f.append(&entry("first")).unwrap();
        // The file indents its lists by two: the new list does too.
        assert!(
            out.contains(
                "            tokens:   # filled by `otlp-gate token add`\n              - id: \"first\"\n                sha256:"
            ),
            "{out}"
        );
        let back = TokenFile::locate(&out).unwrap().remove(0).unwrap();
        assert_eq!(back, text);
        let json = "{\"tokens\": [ ], \"realm\": \"x\"}";
        let out = TokenFile::locate(json)
            .unwrap()
            .append(&entry("a"))
            .unwrap();
        assert!(out.starts_with("{\"tokens\": [{\"id\": \"a\""));
        assert_eq!(
            TokenFile::locate(&out).unwrap().remove(0).unwrap(),
            "{\"tokens\": [], \"realm\": \"x\"}"
        );
    }

    #[test]
    fn what_cannot_be_edited_safely_is_refused() {
        let refuse = |text: &str, want: &str| match TokenFile::locate(text) {
            Ok(_) => panic!("accepted {text:?}"),
            Err(e) => assert!(e.contains(want), "{want:?} in {e:?}"),
        };
        refuse(
            include_str!("../tests/fixtures/tokenfiles/flow-list.yaml"),
            "flow-style list",
        );
        refuse(
            include_str!("../tests/fixtures/tokenfiles/tab.yaml"),
            "line 4: a tab in the indentation",
        );
        refuse("tokens:\n\t- id: a\n", "line 2: a tab");
        let string_value = "resources:\n- typed_config:\n    config:\n      configuration:\n        value: '{\"tokens\": []}'\n";
        refuse(string_value, "StringValue");
        refuse("resources:\n- typed_config: {config: {}}\n", "flow style");
        refuse("resources:\n- a: 1\n- b: 2\n", "2 resources");
        refuse("tokens: []\n---\ntokens: []\n", "several YAML documents");
        refuse("tokens: &t []\n", "anchors");
        refuse("tokens:\n", "is empty");
        refuse("realm: x\n", "`tokens` not found");
        refuse("tokens:\n  - a\n - b\n", "unexpected indentation");
        refuse(
            "{\"resources\": [{\"typed_config\": {\"config\": {\"configuration\": {\"value\": \"{}\"}}}}]}",
            "StringValue",
        );
        refuse("{\"tokens\": {}}", "must be a list");
        // An entry written as {…} can be removed or followed, not changed in place.
        let f =
            TokenFile::locate(include_str!("../tests/fixtures/tokenfiles/flow-item.yaml")).unwrap();
        assert!(
            f.set(0, "disabled", &json!(true))
                .unwrap_err()
                .contains("flow style")
        );
        assert!(f.set(1, "disabled", &json!(true)).is_ok());
        assert!(f.remove(0).unwrap().starts_with("tokens:\n- id: b\n"));
        // A value over several lines is not rewritten.
        let multi = "tokens:\n- id: a\n  expires_at:\n    \"2030-01-01T00:00:00Z\"\n";
        let e = TokenFile::locate(multi)
            .unwrap()
            .set(0, "expires_at", &json!("x"))
            .unwrap_err();
        assert!(e.contains("line 3") && e.contains("several lines"), "{e}");
        let block = "tokens:\n- id: a\n  expires_at: |\n    2030\n";
        assert!(
            TokenFile::locate(block)
                .unwrap()
                .set(0, "expires_at", &json!("x"))
                .is_err()
        );
    }

    #[test]
    fn a_file_without_a_final_newline_gets_one_before_the_entry() {
        let text = "tokens:\n- id: a\n  sha256: \"0000000000000000000000000000000000000000000000000000000000000001\"";
        let out = TokenFile::locate(text)
            .unwrap()
            .append(&entry("b"))
            .unwrap();
        assert!(out.starts_with(&format!("{text}\n- id: \"b\"\n")), "{out}");
        let out = TokenFile::locate(text)
            .unwrap()
            .set(0, "tenant", &json!("t"))
            .unwrap();
        assert_eq!(out, format!("{text}\n  tenant: \"t\"\n"));
    }

    #[test]
    fn values_are_written_quoted_so_no_yaml_reader_retypes_them() {
        assert_eq!(
            flow(&json!("2027-01-01T00:00:00Z")),
            "\"2027-01-01T00:00:00Z\""
        );
        assert_eq!(flow(&json!(["logs", "no"])), "[\"logs\", \"no\"]");
        assert_eq!(
            flow(&json!({"requests_per_second": 1.5, "burst": 3})),
            "{\"burst\": 3, \"requests_per_second\": 1.5}"
        );
        assert_eq!(flow(&json!("a\"b\u{1}")), "\"a\\\"b\\u0001\"");
    }

    #[test]
    fn json_layouts_are_kept() {
        let text = include_str!("../tests/fixtures/tokenfiles/plain-crlf.json");
        let f = TokenFile::locate(text).unwrap();
        let out = f.append(&entry("c")).unwrap();
        assert!(
            out.contains("\"tenant\": \"t\"},\r\n    {\"id\": \"c\", \"sha256\": "),
            "{out}"
        );
        let out = f.set(0, "disabled", &json!(true)).unwrap();
        assert!(
            out.contains("      \"tenant\": \"t\",\r\n      \"disabled\": true\r\n    },"),
            "{out}"
        );
        let out = f.set(1, "tenant", &json!("u")).unwrap();
        assert!(out.contains("\"tenant\": \"u\"}"));
        let out = f.remove(0).unwrap();
        assert!(out.contains("\"tokens\": [\r\n    {\"id\": \"b\""), "{out}");
        let out = f.remove(1).unwrap();
        assert!(out.contains("\"tenant\": \"t\"\r\n    }\r\n  ]"), "{out}");
        // A pretty list of pretty entries gets a pretty entry.
        let pretty = "{\n  \"tokens\": [\n    {\n      \"id\": \"a\"\n    }\n  ]\n}\n";
        let out = TokenFile::locate(pretty)
            .unwrap()
            .append(&entry("b"))
            .unwrap();
        assert!(
            out.contains("    },\n    {\n      \"id\": \"b\",\n      \"sha256\": "),
            "{out}"
        );
    }
}
