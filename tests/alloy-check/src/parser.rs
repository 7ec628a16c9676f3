//! The Alloy grammar (`syntax/parser/internal.go` in grafana/alloy):
//!
//! ```text
//! File       = Body
//! Body       = [ Statement { terminator Statement } ]
//! Statement  = Attribute | Block
//! Attribute  = identifier "=" Expression
//! Block      = BlockName "{" Body "}"
//! BlockName  = identifier { "." identifier } [ string ]
//! Expression = binary operators over Unary, with `^` right-associative
//! Unary      = ( "!" | "-" ) Unary | Primary { "." identifier | "[" Expression "]" | "(" [ List ] ")" }
//! Primary    = identifier | string | number | float | bool | null | "(" Expression ")"
//!            | "[" [ List ] "]" | "{" [ Field { "," Field } [ "," ] ] "}"
//! Field      = ( string | identifier ) "=" Expression
//! ```
//!
//! Errors are collected and parsing resumes at the next statement, so one run reports them all.

use crate::diag::{Diagnostic, Source};
use crate::scanner::{Op, Tok, Token, is_identifier, scan};

#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    Attr(Attribute),
    Block(Block),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub pos: usize,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Name fragments: `otelcol.receiver.otlp` is `["otelcol", "receiver", "otlp"]`.
    pub name: Vec<String>,
    pub label: Option<String>,
    pub pos: usize,
    pub body: Vec<Stmt>,
}

impl Block {
    pub fn full_name(&self) -> String {
        self.name.join(".")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String, usize),
    Number(String, usize),
    Bool(bool, usize),
    Null(usize),
    Ident(String, usize),
    Access(Box<Expr>, String, usize),
    Index(Box<Expr>, Box<Expr>),
    Call(Box<Expr>, Vec<Expr>),
    Array(Vec<Expr>, usize),
    Object(Vec<(String, Expr)>, usize),
    Unary(Op, Box<Expr>, usize),
    Binary(Op, Box<Expr>, Box<Expr>),
    Paren(Box<Expr>),
}

impl Expr {
    /// Byte offset where the expression starts.
    pub fn pos(&self) -> usize {
        match self {
            Expr::Str(_, p)
            | Expr::Number(_, p)
            | Expr::Bool(_, p)
            | Expr::Null(p)
            | Expr::Ident(_, p)
            | Expr::Array(_, p)
            | Expr::Object(_, p)
            | Expr::Unary(_, _, p) => *p,
            Expr::Access(inner, _, _)
            | Expr::Index(inner, _)
            | Expr::Call(inner, _)
            | Expr::Binary(_, inner, _)
            | Expr::Paren(inner) => inner.pos(),
        }
    }

    /// `a.b.c` as `["a", "b", "c"]` when the expression is a plain access chain.
    pub fn path(&self) -> Option<Vec<String>> {
        match self {
            Expr::Ident(name, _) => Some(vec![name.clone()]),
            Expr::Access(inner, name, _) => {
                let mut p = inner.path()?;
                p.push(name.clone());
                Some(p)
            }
            _ => None,
        }
    }
}

/// Parses one file. Returns the statements that parsed and every lexical and syntax error.
pub fn parse(src: &Source) -> (Vec<Stmt>, Vec<Diagnostic>) {
    let (tokens, mut errors) = scan(src);
    let mut p = Parser {
        src,
        tokens,
        i: 0,
        errors: Vec::new(),
        depth: 0,
    };
    let body = p.body(None);
    errors.append(&mut p.errors);
    errors.sort_by_key(|d| (d.line, d.col));
    (body, errors)
}

struct Parser<'a> {
    src: &'a Source,
    tokens: Vec<Token>,
    i: usize,
    errors: Vec<Diagnostic>,
    /// Current nesting of blocks and expressions; bounded so hostile input cannot overflow
    /// the stack.
    depth: usize,
}

/// Deeper nesting than any real configuration needs.
const MAX_DEPTH: usize = 200;

const EOF: Token = Token {
    tok: Tok::Eof,
    pos: 0,
};

impl Parser<'_> {
    fn cur(&self) -> &Token {
        self.tokens.get(self.i).unwrap_or(&EOF)
    }

    fn tok(&self) -> &Tok {
        &self.cur().tok
    }

    fn pos(&self) -> usize {
        self.tokens
            .get(self.i)
            .map_or(self.src.text.len(), |t| t.pos)
    }

    fn is_op(&self, op: Op) -> bool {
        *self.tok() == Tok::Op(op)
    }

    fn bump(&mut self) {
        if self.i < self.tokens.len() {
            self.i += 1;
        }
    }

    fn error(&mut self, pos: usize, msg: impl Into<String>) {
        // One error per position is enough; recovery can revisit the same token.
        let d = self.src.diag(pos, msg);
        if !self
            .errors
            .iter()
            .any(|e| e.line == d.line && e.col == d.col)
        {
            self.errors.push(d);
        }
    }

    fn expect(&mut self, op: Op) -> bool {
        if self.is_op(op) {
            self.bump();
            true
        } else {
            let what = self.tok().describe();
            self.error(self.pos(), format!("expected {:?}, got {what}", op.text()));
            false
        }
    }

    /// Statements until `until` (a closing brace) or the end of the file.
    fn body(&mut self, until: Option<Op>) -> Vec<Stmt> {
        let mut body = Vec::new();
        loop {
            // Blank lines between statements produce no tokens; stray terminators are skipped.
            while *self.tok() == Tok::Terminator {
                self.bump();
            }
            if *self.tok() == Tok::Eof || until.is_some_and(|op| self.is_op(op)) {
                return body;
            }
            let before = self.i;
            if let Some(stmt) = self.statement() {
                body.push(stmt);
            }
            if *self.tok() == Tok::Eof || until.is_some_and(|op| self.is_op(op)) {
                return body;
            }
            if *self.tok() == Tok::Terminator {
                self.bump();
            } else {
                let what = self.tok().describe();
                self.error(
                    self.pos(),
                    format!(
                        "expected end of line after statement, got {what} (one statement per line)"
                    ),
                );
                self.skip_statement();
                if self.i == before {
                    self.bump();
                }
            }
        }
    }

    /// Skips to the end of the current statement, keeping brackets balanced.
    fn skip_statement(&mut self) {
        let mut depth: i32 = 0;
        loop {
            match self.tok() {
                Tok::Eof => return,
                Tok::Terminator if depth <= 0 => return,
                Tok::Op(Op::LCurly | Op::LBrack | Op::LParen) => depth += 1,
                Tok::Op(Op::RCurly | Op::RBrack | Op::RParen) => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn statement(&mut self) -> Option<Stmt> {
        let start = self.pos();
        let Tok::Ident(first) = self.tok().clone() else {
            let what = self.tok().describe();
            self.error(start, format!("expected identifier, got {what}"));
            self.skip_statement();
            return None;
        };
        self.bump();
        let mut name = vec![first];
        while self.is_op(Op::Dot) {
            self.bump();
            if let Tok::Ident(part) = self.tok().clone() {
                name.push(part);
                self.bump();
            } else {
                let what = self.tok().describe();
                self.error(self.pos(), format!("expected identifier, got {what}"));
                self.skip_statement();
                return None;
            }
        }
        let mut label = None;
        let mut label_pos = 0;
        if let Tok::Str { value, raw } = self.tok().clone() {
            label_pos = self.pos();
            if raw {
                self.error(
                    label_pos,
                    "expected block label to be a double quoted string",
                );
            } else if !value.is_empty() && !is_identifier(&value) {
                self.error(
                    label_pos,
                    format!("expected block label to be a valid identifier, but got {value:?}"),
                );
            }
            label = Some(value);
            self.bump();
        }
        match self.tok().clone() {
            Tok::Op(Op::Assign) => {
                self.bump();
                if name.len() != 1 {
                    self.error(
                        start,
                        r#"attribute names may only consist of a single identifier with no ".""#,
                    );
                }
                if label.is_some() {
                    self.error(label_pos, "attribute names may not have labels");
                }
                let value = self.expression();
                Some(Stmt::Attr(Attribute {
                    name: name.join("."),
                    pos: start,
                    value,
                }))
            }
            Tok::Op(Op::LCurly) => {
                self.bump();
                if !self.enter() {
                    return None;
                }
                let body = self.body(Some(Op::RCurly));
                self.depth -= 1;
                self.expect(Op::RCurly);
                Some(Stmt::Block(Block {
                    name,
                    label: label.filter(|l| !l.is_empty()),
                    pos: start,
                    body,
                }))
            }
            other => {
                let what = other.describe();
                if name.len() == 1 && label.is_none() {
                    self.error(
                        self.pos(),
                        format!("expected attribute assignment or block body, got {what}"),
                    );
                } else {
                    self.error(self.pos(), format!("expected block body, got {what}"));
                }
                self.skip_statement();
                None
            }
        }
    }

    fn expression(&mut self) -> Expr {
        if !self.enter() {
            return Expr::Null(self.pos());
        }
        let e = self.binary(1);
        self.depth -= 1;
        e
    }

    /// Counts one level of nesting; past MAX_DEPTH reports an error and gives up on the file.
    fn enter(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            self.error(
                self.pos(),
                format!("nested more than {MAX_DEPTH} levels deep"),
            );
            self.i = self.tokens.len();
            return false;
        }
        self.depth += 1;
        true
    }

    fn binary(&mut self, min_prec: u8) -> Expr {
        let mut lhs = self.power();
        let mut chain = 0;
        loop {
            // `1 + 1 + ...` nests to the left: one level per operator.
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                self.error(
                    self.pos(),
                    format!("nested more than {MAX_DEPTH} levels deep"),
                );
                self.i = self.tokens.len();
                return lhs;
            }
            let Tok::Op(op) = *self.tok() else {
                return lhs;
            };
            let prec = op.precedence();
            // `^` is handled by `power`; anything else below min_prec ends this level.
            if prec == 0 || prec < min_prec || op == Op::Pow {
                return lhs;
            }
            self.bump();
            let rhs = self.binary(prec + 1);
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn power(&mut self) -> Expr {
        let lhs = self.unary();
        if self.is_op(Op::Pow) {
            self.bump();
            if !self.enter() {
                return lhs;
            }
            let rhs = self.power();
            self.depth -= 1;
            return Expr::Binary(Op::Pow, Box::new(lhs), Box::new(rhs));
        }
        lhs
    }

    fn unary(&mut self) -> Expr {
        if let Tok::Op(op @ (Op::Not | Op::Sub)) = *self.tok() {
            let pos = self.pos();
            self.bump();
            if !self.enter() {
                return Expr::Null(pos);
            }
            let inner = self.unary();
            self.depth -= 1;
            return Expr::Unary(op, Box::new(inner), pos);
        }
        let mut expr = self.primary();
        let mut chain = 0;
        loop {
            // `a.b[0](c)...`: each suffix nests the expression one level deeper.
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                self.error(
                    self.pos(),
                    format!("nested more than {MAX_DEPTH} levels deep"),
                );
                self.i = self.tokens.len();
                return expr;
            }
            match self.tok().clone() {
                Tok::Op(Op::Dot) => {
                    self.bump();
                    let pos = self.pos();
                    if let Tok::Ident(name) = self.tok().clone() {
                        self.bump();
                        expr = Expr::Access(Box::new(expr), name, pos);
                    } else {
                        let what = self.tok().describe();
                        self.error(pos, format!("expected identifier, got {what}"));
                        return expr;
                    }
                }
                Tok::Op(Op::LBrack) => {
                    self.bump();
                    let index = self.expression();
                    self.expect(Op::RBrack);
                    expr = Expr::Index(Box::new(expr), Box::new(index));
                }
                Tok::Op(Op::LParen) => {
                    self.bump();
                    let args = self.list(Op::RParen);
                    self.expect(Op::RParen);
                    expr = Expr::Call(Box::new(expr), args);
                }
                Tok::Str { .. } | Tok::Op(Op::LCurly) => {
                    // `a = foo "x" { ... }`: a block where a value belongs.
                    self.error(expr.pos(), "cannot use a block as an expression");
                    self.skip_statement();
                    return expr;
                }
                _ => return expr,
            }
        }
    }

    fn primary(&mut self) -> Expr {
        let pos = self.pos();
        let tok = self.tok().clone();
        match tok {
            Tok::Ident(name) => {
                self.bump();
                Expr::Ident(name, pos)
            }
            Tok::Str { value, .. } => {
                self.bump();
                Expr::Str(value, pos)
            }
            Tok::Number(n) | Tok::Float(n) => {
                self.bump();
                Expr::Number(n, pos)
            }
            Tok::Bool(b) => {
                self.bump();
                Expr::Bool(b, pos)
            }
            Tok::Null => {
                self.bump();
                Expr::Null(pos)
            }
            Tok::Op(Op::LParen) => {
                self.bump();
                let inner = self.expression();
                self.expect(Op::RParen);
                Expr::Paren(Box::new(inner))
            }
            Tok::Op(Op::LBrack) => {
                self.bump();
                let items = self.list(Op::RBrack);
                self.expect(Op::RBrack);
                Expr::Array(items, pos)
            }
            Tok::Op(Op::LCurly) => {
                self.bump();
                let fields = self.fields();
                self.expect(Op::RCurly);
                Expr::Object(fields, pos)
            }
            other => {
                let what = other.describe();
                self.error(pos, format!("expected expression, got {what}"));
                // Eat the rest of the expression.
                while !matches!(
                    self.tok(),
                    Tok::Eof
                        | Tok::Terminator
                        | Tok::Op(Op::RParen | Op::RCurly | Op::RBrack | Op::Comma)
                ) {
                    self.bump();
                }
                Expr::Null(pos)
            }
        }
    }

    /// `Expression { "," Expression } [ "," ]`; newlines are allowed after commas.
    fn list(&mut self, until: Op) -> Vec<Expr> {
        let mut items = Vec::new();
        self.skip_terminators();
        while !self.is_op(until) && *self.tok() != Tok::Eof {
            items.push(self.expression());
            self.skip_terminators_before(until);
            if self.is_op(until) {
                break;
            }
            if !self.is_op(Op::Comma) {
                let what = self.tok().describe();
                self.error(
                    self.pos(),
                    format!("missing ',' in expression list, got {what}"),
                );
                self.recover_to(until);
                break;
            }
            self.bump();
            self.skip_terminators();
        }
        items
    }

    fn fields(&mut self) -> Vec<(String, Expr)> {
        let mut fields = Vec::new();
        self.skip_terminators();
        while !self.is_op(Op::RCurly) && *self.tok() != Tok::Eof {
            let pos = self.pos();
            let key = match self.tok().clone() {
                Tok::Ident(k) | Tok::Str { value: k, .. } => {
                    self.bump();
                    k
                }
                other => {
                    let what = other.describe();
                    self.error(
                        pos,
                        format!("expected field name (string or identifier), got {what}"),
                    );
                    self.recover_to(Op::RCurly);
                    break;
                }
            };
            if !self.expect(Op::Assign) {
                self.recover_to(Op::RCurly);
                break;
            }
            let value = self.expression();
            fields.push((key, value));
            self.skip_terminators_before(Op::RCurly);
            if self.is_op(Op::RCurly) {
                break;
            }
            if !self.is_op(Op::Comma) {
                let what = self.tok().describe();
                self.error(self.pos(), format!("missing ',' in field list, got {what}"));
                self.recover_to(Op::RCurly);
                break;
            }
            self.bump();
            self.skip_terminators();
        }
        fields
    }

    /// Inside brackets a newline after a value inserts a terminator; the closing bracket
    /// may follow on the next line only after a trailing comma, as in Go.
    fn skip_terminators_before(&mut self, until: Op) {
        let mut j = self.i;
        while self.tokens.get(j).is_some_and(|t| t.tok == Tok::Terminator) {
            j += 1;
        }
        if j != self.i && self.tokens.get(j).is_some_and(|t| t.tok == Tok::Op(until)) {
            let pos = self.pos();
            self.error(
                pos,
                format!(
                    "missing ',' before newline (a {:?} on the next line needs a trailing comma)",
                    until.text()
                ),
            );
            self.i = j;
        }
    }

    fn skip_terminators(&mut self) {
        while *self.tok() == Tok::Terminator {
            self.bump();
        }
    }

    /// Skips to the closing bracket `until` at this nesting depth (not consuming it).
    fn recover_to(&mut self, until: Op) {
        let mut depth = 0;
        loop {
            match self.tok() {
                Tok::Eof => return,
                Tok::Op(op) if *op == until && depth == 0 => return,
                Tok::Op(Op::LCurly | Op::LBrack | Op::LParen) => depth += 1,
                Tok::Op(Op::RCurly | Op::RBrack | Op::RParen) => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                }
                _ => {}
            }
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Stmt> {
        let (body, errors) = parse(&Source::new("p.alloy", text));
        assert!(errors.is_empty(), "{text:?}: {errors:?}");
        body
    }

    fn first_error(text: &str) -> String {
        let (_, errors) = parse(&Source::new("p.alloy", text));
        errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| panic!("no error for {text:?}"))
    }

    #[test]
    fn blocks_labels_and_attributes() {
        let body = parse_ok(
            "// comment\nprometheus.scrape \"default\" {\n  targets = [{\"__address__\" = \"a:1\"}]\n  clustering { enabled = true }\n}\n\nlogging {\n  level = \"info\"\n}\n",
        );
        assert_eq!(body.len(), 2);
        let Stmt::Block(b) = &body[0] else { panic!() };
        assert_eq!(b.full_name(), "prometheus.scrape");
        assert_eq!(b.label.as_deref(), Some("default"));
        assert_eq!(b.body.len(), 2);
        let Stmt::Attr(a) = &b.body[0] else { panic!() };
        assert_eq!(a.name, "targets");
        let Expr::Array(items, _) = &a.value else {
            panic!()
        };
        let Expr::Object(fields, _) = &items[0] else {
            panic!()
        };
        assert_eq!(fields[0].0, "__address__");
    }

    #[test]
    fn expressions_and_precedence() {
        let body = parse_ok(
            "a = 1 + 2 * 3 ^ 2 ^ 2\nb = !x.y[0](1, \"s\",) || -z\nc = sys.env(\"HOME\")\nd = {\n  k = [1,\n    2,\n  ],\n}\n",
        );
        let Stmt::Attr(a) = &body[0] else { panic!() };
        // 1 + (2 * (3 ^ (2 ^ 2)))
        let Expr::Binary(Op::Add, _, rhs) = &a.value else {
            panic!("{:?}", a.value)
        };
        let Expr::Binary(Op::Mul, _, pow) = rhs.as_ref() else {
            panic!()
        };
        let Expr::Binary(Op::Pow, _, inner) = pow.as_ref() else {
            panic!()
        };
        assert!(matches!(inner.as_ref(), Expr::Binary(Op::Pow, _, _)));
        let Stmt::Attr(b) = &body[1] else { panic!() };
        assert!(matches!(b.value, Expr::Binary(Op::Or, _, _)));
        let Stmt::Attr(c) = &body[2] else { panic!() };
        let Expr::Call(f, args) = &c.value else {
            panic!()
        };
        assert_eq!(f.path(), Some(vec!["sys".into(), "env".into()]));
        assert_eq!(args.len(), 1);
    }

    #[test]
    fn syntax_errors_name_the_problem_and_the_place() {
        let cases = [
            (
                "a = 1 b = 2\n",
                "p.alloy:1:7: expected end of line after statement, got identifier \"b\" (one statement per line)",
            ),
            (
                "a.b = 1\n",
                r#"p.alloy:1:1: attribute names may only consist of a single identifier with no ".""#,
            ),
            (
                "a \"x\" = 1\n",
                "p.alloy:1:3: attribute names may not have labels",
            ),
            (
                "blk \"not-ident\" {\n}\n",
                "p.alloy:1:5: expected block label to be a valid identifier, but got \"not-ident\"",
            ),
            (
                "blk `raw` {\n}\n",
                "p.alloy:1:5: expected block label to be a double quoted string",
            ),
            (
                "blk {\n  a = 1\n",
                "p.alloy:3:1: expected \"}\", got end of file",
            ),
            (
                "a = [1\n]\n",
                "p.alloy:1:7: missing ',' before newline (a \"]\" on the next line needs a trailing comma)",
            ),
            (
                "a = [1\n2]\n",
                "p.alloy:1:7: missing ',' in expression list, got end of line",
            ),
            (
                "a = [1 2]\n",
                "p.alloy:1:8: missing ',' in expression list, got number 2",
            ),
            (
                "a = { 1 = 2 }\n",
                "p.alloy:1:7: expected field name (string or identifier), got number 1",
            ),
            (
                "a = \n",
                "p.alloy:2:1: expected expression, got end of file",
            ),
            ("a = )\n", "p.alloy:1:5: expected expression, got \")\""),
            (
                "a\n",
                "p.alloy:1:2: expected attribute assignment or block body, got end of line",
            ),
            (
                "a.b \"l\"\n",
                "p.alloy:1:8: expected block body, got end of line",
            ),
            (
                "a = x \"l\" { }\n",
                "p.alloy:1:5: cannot use a block as an expression",
            ),
            ("= 1\n", "p.alloy:1:1: expected identifier, got \"=\""),
        ];
        for (text, want) in cases {
            assert_eq!(first_error(text), want, "{text:?}");
        }
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        for text in [
            format!("a = {}1{}\n", "[".repeat(100_000), "]".repeat(100_000)),
            format!("a = {}1\n", "-".repeat(100_000)),
            format!("a = 1{}\n", " ^ 1".repeat(100_000)),
            format!("{}\n", "b {\n".repeat(100_000)),
            format!("a = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000)),
            format!("a = x{}\n", ".y".repeat(100_000)),
            format!("a = x{}\n", "()".repeat(100_000)),
            format!("a = 1{}\n", " + 1".repeat(100_000)),
        ] {
            let e = first_error(&text);
            assert!(e.contains("nested more than 200 levels deep"), "{e}");
        }
        // Real configurations are nowhere near the limit.
        parse_ok(&format!("a = {}1{}\n", "[".repeat(50), "]".repeat(50)));
    }

    #[test]
    fn parsing_goes_on_after_an_error() {
        let (body, errors) = parse(&Source::new(
            "p.alloy",
            "a = = 1\nb { c = 2 d = 3 }\ne = 4\n",
        ));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            body.iter()
                .any(|s| matches!(s, Stmt::Attr(a) if a.name == "e"))
        );
    }
}
