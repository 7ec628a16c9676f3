//! Tokens of the Alloy configuration syntax, following `syntax/scanner/scanner.go` in
//! grafana/alloy: Go-style automatic statement terminators (a newline after an identifier,
//! literal, `)`, `]` or `}` ends the statement), `//` and `/* */` comments, double-quoted strings
//! with Go escapes, backtick raw strings, and no single-quoted strings.

use crate::diag::{Diagnostic, Source};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Number(String),
    Float(String),
    /// A decoded string; `raw` is true for a backtick string (not allowed as a block label).
    Str {
        value: String,
        raw: bool,
    },
    Bool(bool),
    Null,
    Op(Op),
    Terminator,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Not,
    Assign,
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    LCurly,
    RCurly,
    LParen,
    RParen,
    LBrack,
    RBrack,
    Comma,
    Dot,
}

impl Op {
    pub fn text(self) -> &'static str {
        match self {
            Op::Or => "||",
            Op::And => "&&",
            Op::Not => "!",
            Op::Assign => "=",
            Op::Eq => "==",
            Op::Neq => "!=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Pow => "^",
            Op::LCurly => "{",
            Op::RCurly => "}",
            Op::LParen => "(",
            Op::RParen => ")",
            Op::LBrack => "[",
            Op::RBrack => "]",
            Op::Comma => ",",
            Op::Dot => ".",
        }
    }

    /// Binary precedence as in `syntax/token/token.go` (0: not a binary operator).
    pub fn precedence(self) -> u8 {
        match self {
            Op::Or => 1,
            Op::And => 2,
            Op::Eq | Op::Neq | Op::Lt | Op::Lte | Op::Gt | Op::Gte => 3,
            Op::Add | Op::Sub => 4,
            Op::Mul | Op::Div | Op::Mod => 5,
            Op::Pow => 6,
            _ => 0,
        }
    }
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("identifier {s:?}"),
            Tok::Number(s) | Tok::Float(s) => format!("number {s}"),
            Tok::Str { .. } => "string".into(),
            Tok::Bool(b) => format!("{b}"),
            Tok::Null => "null".into(),
            Tok::Op(op) => format!("{:?}", op.text()),
            Tok::Terminator => "end of line".into(),
            Tok::Eof => "end of file".into(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Splits a source into tokens. Lexical errors are reported and scanning goes on, so one run
/// shows every problem.
pub fn scan(src: &Source) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut s = Scanner {
        src,
        bytes: src.text.as_bytes(),
        i: 0,
        insert_term: false,
        out: Vec::new(),
        errors: Vec::new(),
    };
    if src.text.starts_with('\u{feff}') {
        s.i = 3;
    }
    s.run();
    (s.out, s.errors)
}

struct Scanner<'a> {
    src: &'a Source,
    bytes: &'a [u8],
    i: usize,
    insert_term: bool,
    out: Vec<Token>,
    errors: Vec<Diagnostic>,
}

impl Scanner<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.i + ahead).copied()
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.src.text.get(i..).and_then(|s| s.chars().next())
    }

    fn error(&mut self, pos: usize, msg: impl Into<String>) {
        self.errors.push(self.src.diag(pos, msg));
    }

    fn push(&mut self, tok: Tok, pos: usize, insert_term: bool) {
        self.out.push(Token { tok, pos });
        self.insert_term = insert_term;
    }

    fn run(&mut self) {
        loop {
            // Whitespace; a newline only counts when a terminator is pending.
            while let Some(b) = self.peek(0) {
                if b == b' ' || b == b'\t' || b == b'\r' || (b == b'\n' && !self.insert_term) {
                    self.i += 1;
                } else {
                    break;
                }
            }
            let pos = self.i;
            let Some(ch) = self.char_at(pos) else {
                if self.insert_term {
                    self.push(Tok::Terminator, pos, false);
                }
                self.out.push(Token { tok: Tok::Eof, pos });
                return;
            };
            if is_letter(ch) {
                let word = self.identifier();
                let tok = match word.as_str() {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "null" => Tok::Null,
                    _ => Tok::Ident(word),
                };
                self.push(tok, pos, true);
                continue;
            }
            if ch.is_ascii_digit()
                || (ch == '.' && self.peek(1).is_some_and(|b| b.is_ascii_digit()))
            {
                let tok = self.number();
                self.push(tok, pos, true);
                continue;
            }
            self.i += ch.len_utf8();
            let next = self.peek(0);
            let op = match ch {
                '\n' => {
                    self.push(Tok::Terminator, pos, false);
                    continue;
                }
                '"' => {
                    let value = self.string(pos, '"');
                    self.push(Tok::Str { value, raw: false }, pos, true);
                    continue;
                }
                '`' => {
                    let value = self.string(pos, '`');
                    self.push(Tok::Str { value, raw: true }, pos, true);
                    continue;
                }
                '\'' => {
                    self.error(pos, "illegal single-quoted string; use double quotes");
                    let value = self.string(pos, '\'');
                    self.push(Tok::Str { value, raw: false }, pos, true);
                    continue;
                }
                '/' if next == Some(b'/') || next == Some(b'*') => {
                    if self.insert_term && self.comment_reaches_line_end(pos) {
                        // The comment ends the statement; scan it on the next round.
                        self.i = pos;
                        self.push(Tok::Terminator, pos, false);
                        continue;
                    }
                    self.comment(pos);
                    self.insert_term = false;
                    continue;
                }
                '|' | '&' => {
                    if next == Some(ch as u8) {
                        self.i += 1;
                    } else {
                        self.error(self.i, format!("missing second {ch} in {ch}{ch}"));
                    }
                    if ch == '|' { Op::Or } else { Op::And }
                }
                '!' => self.two(Op::Not, Op::Neq),
                '=' => self.two(Op::Assign, Op::Eq),
                '<' => self.two(Op::Lt, Op::Lte),
                '>' => self.two(Op::Gt, Op::Gte),
                '+' => Op::Add,
                '-' => Op::Sub,
                '*' => Op::Mul,
                '/' => Op::Div,
                '%' => Op::Mod,
                '^' => Op::Pow,
                '{' => Op::LCurly,
                '}' => Op::RCurly,
                '(' => Op::LParen,
                ')' => Op::RParen,
                '[' => Op::LBrack,
                ']' => Op::RBrack,
                ',' => Op::Comma,
                '.' => Op::Dot,
                other => {
                    if other == '\u{feff}' {
                        self.error(pos, "illegal byte order mark");
                    } else {
                        self.error(pos, format!("illegal character {other:?}"));
                    }
                    continue;
                }
            };
            let term = matches!(op, Op::RCurly | Op::RParen | Op::RBrack);
            self.push(Tok::Op(op), pos, term);
        }
    }

    /// `=` after the first character turns e.g. `<` into `<=`.
    fn two(&mut self, single: Op, with_eq: Op) -> Op {
        if self.peek(0) == Some(b'=') {
            self.i += 1;
            with_eq
        } else {
            single
        }
    }

    fn identifier(&mut self) -> String {
        let start = self.i;
        while let Some(c) = self.char_at(self.i) {
            if is_letter(c) || c.is_numeric() {
                self.i += c.len_utf8();
            } else {
                break;
            }
        }
        self.src.text[start..self.i].to_owned()
    }

    fn number(&mut self) -> Tok {
        let start = self.i;
        let mut float = false;
        self.digits();
        if self.peek(0) == Some(b'.') {
            float = true;
            self.i += 1;
            self.digits();
        }
        if matches!(self.peek(0), Some(b'e' | b'E')) {
            float = true;
            self.i += 1;
            if matches!(self.peek(0), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.error(start, "exponent has no digits");
            }
        }
        let text = self.src.text[start..self.i].to_owned();
        if float {
            Tok::Float(text)
        } else {
            Tok::Number(text)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// Reads up to the closing quote (already past the opening one) and decodes escapes.
    fn string(&mut self, start: usize, quote: char) -> String {
        let raw = quote == '`';
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.char_at(self.i) else {
                self.error(start, "string literal not terminated");
                break;
            };
            if c == '\n' && !raw {
                self.error(start, "string literal not terminated");
                break;
            }
            self.i += c.len_utf8();
            if c == quote {
                break;
            }
            if c == '\\' && !raw {
                self.escape(&mut bytes);
                continue;
            }
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                self.error(start, "string escapes produce invalid UTF-8");
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) {
        let at = self.i.saturating_sub(1);
        let Some(c) = self.char_at(self.i) else {
            self.error(at, "escape sequence not terminated");
            return;
        };
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            self.i += 1;
            out.push(b);
            return;
        }
        let (count, base, max, is_byte) = match c {
            '0'..='7' => (3, 8, 255, true),
            'x' => {
                self.i += 1;
                (2, 16, 255, true)
            }
            'u' => {
                self.i += 1;
                (4, 16, 0x10ffff, false)
            }
            'U' => {
                self.i += 1;
                (8, 16, 0x10ffff, false)
            }
            _ => {
                self.error(at, "unknown escape sequence");
                return;
            }
        };
        let mut value: u32 = 0;
        for _ in 0..count {
            let digit = self.peek(0).and_then(|b| (b as char).to_digit(base));
            let Some(d) = digit else {
                let what = self.char_at(self.i).map_or_else(
                    || "escape sequence not terminated".to_owned(),
                    |c| format!("illegal character {c:?} in escape sequence"),
                );
                self.error(at, what);
                return;
            };
            value = value * base + d;
            self.i += 1;
        }
        if value > max || (0xd800..0xe000).contains(&value) {
            self.error(at, "escape sequence is invalid Unicode code point");
            return;
        }
        if is_byte {
            out.push(value as u8);
        } else if let Some(ch) = char::from_u32(value) {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
    }

    /// Consumes a comment starting at `start` (the first '/').
    fn comment(&mut self, start: usize) {
        if self.peek(0) == Some(b'/') {
            while self.peek(0).is_some_and(|b| b != b'\n') {
                self.i += 1;
            }
            return;
        }
        self.i += 1; // the '*'
        while let Some(b) = self.peek(0) {
            self.i += 1;
            if b == b'*' && self.peek(0) == Some(b'/') {
                self.i += 1;
                return;
            }
        }
        self.error(start, "block comment not terminated");
    }

    /// Whether the comment(s) starting at `start` run to the end of the line (or file), which
    /// makes them end a statement (`findLineEnd` in the Go scanner).
    fn comment_reaches_line_end(&self, start: usize) -> bool {
        let b = self.bytes;
        let mut i = start;
        loop {
            match (b.get(i), b.get(i + 1)) {
                (Some(b'/'), Some(b'/')) => return true,
                (Some(b'/'), Some(b'*')) => {
                    i += 2;
                    loop {
                        match b.get(i) {
                            None => return true,
                            Some(b'\n') => return true,
                            Some(b'*') if b.get(i + 1) == Some(&b'/') => {
                                i += 2;
                                break;
                            }
                            Some(_) => i += 1,
                        }
                    }
                    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r')) {
                        i += 1;
                    }
                    match b.get(i) {
                        None | Some(b'\n') => return true,
                        Some(b'/') => continue,
                        Some(_) => return false,
                    }
                }
                _ => return false,
            }
        }
    }
}

fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

/// Whether `s` is a valid identifier (block labels must be).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_letter) && chars.all(|c| is_letter(c) || c.is_numeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> (Vec<Tok>, Vec<String>) {
        let src = Source::new("t.alloy", text);
        let (t, e) = scan(&src);
        (
            t.into_iter().map(|t| t.tok).collect(),
            e.into_iter().map(|d| d.to_string()).collect(),
        )
    }

    fn ident(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    fn string(s: &str) -> Tok {
        Tok::Str {
            value: s.into(),
            raw: false,
        }
    }

    #[test]
    fn newlines_end_statements_only_after_values() {
        let (t, e) = toks("a = [\n  1,\n]\nb {\n}\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            t,
            vec![
                ident("a"),
                Tok::Op(Op::Assign),
                Tok::Op(Op::LBrack),
                Tok::Number("1".into()),
                Tok::Op(Op::Comma),
                Tok::Op(Op::RBrack),
                Tok::Terminator,
                ident("b"),
                Tok::Op(Op::LCurly),
                Tok::Op(Op::RCurly),
                Tok::Terminator,
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn end_of_file_ends_the_last_statement() {
        let (t, _) = toks("x = true");
        assert_eq!(t[t.len() - 2..], [Tok::Terminator, Tok::Eof]);
    }

    #[test]
    fn comments_are_skipped_and_a_trailing_comment_ends_the_statement() {
        let (t, e) =
            toks("a = 1 // one\nb = 2 /* two */\nc = a /* inline */ + 1\n/* only\n comment */");
        assert!(e.is_empty(), "{e:?}");
        let terminators = t.iter().filter(|t| **t == Tok::Terminator).count();
        assert_eq!(terminators, 3, "{t:?}");
        assert!(t.contains(&Tok::Op(Op::Add)));
    }

    #[test]
    fn strings_decode_go_escapes() {
        let (t, e) = toks(r#"s = "a\"b\\c\n\t\x41\101\u00e9\U0001F600" r = `raw\n "q"`"#);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(t[2], string("a\"b\\c\n\tAAé😀"));
        assert_eq!(
            t[5],
            Tok::Str {
                value: "raw\\n \"q\"".into(),
                raw: true
            }
        );
    }

    #[test]
    fn numbers_floats_bools_null_and_operators() {
        let (t, e) = toks("x = -1.5e3 + .5 * 2 ^ 3 >= 4 && !false || null != 7 % 2\n");
        assert!(e.is_empty(), "{e:?}");
        assert!(t.contains(&Tok::Float("1.5e3".into())));
        assert!(t.contains(&Tok::Float(".5".into())));
        assert!(t.contains(&Tok::Number("7".into())));
        for op in [
            Op::Sub,
            Op::Add,
            Op::Mul,
            Op::Pow,
            Op::Gte,
            Op::And,
            Op::Not,
            Op::Or,
            Op::Neq,
            Op::Mod,
        ] {
            assert!(t.contains(&Tok::Op(op)), "{op:?}");
        }
        assert!(t.contains(&Tok::Bool(false)) && t.contains(&Tok::Null));
    }

    #[test]
    fn lexical_errors_are_reported_with_positions() {
        let cases = [
            ("s = \"open\n", "t.alloy:1:5: string literal not terminated"),
            (
                "s = 'x'\n",
                "t.alloy:1:5: illegal single-quoted string; use double quotes",
            ),
            ("s = \"\\q\"\n", "t.alloy:1:6: unknown escape sequence"),
            (
                "s = \"\\x4\"\n",
                "t.alloy:1:6: illegal character '\"' in escape sequence",
            ),
            (
                "s = \"\\uD800\"\n",
                "t.alloy:1:6: escape sequence is invalid Unicode code point",
            ),
            ("a = b | c\n", "t.alloy:1:8: missing second | in ||"),
            ("a = 1e\n", "t.alloy:1:5: exponent has no digits"),
            ("a = 1 $\n", "t.alloy:1:7: illegal character '$'"),
            (
                "/* never closed",
                "t.alloy:1:1: block comment not terminated",
            ),
        ];
        for (text, want) in cases {
            let (_, e) = toks(text);
            assert_eq!(e.first().map(String::as_str), Some(want), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("default"));
        assert!(is_identifier("_x9"));
        assert!(is_identifier("é"));
        assert!(!is_identifier("9x"));
        assert!(!is_identifier("a-b"));
        assert!(!is_identifier(""));
    }
}
