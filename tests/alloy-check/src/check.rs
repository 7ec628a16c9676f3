//! Checks a parsed configuration the way `alloy validate` would, without the Alloy binary:
//! every block is a known component or configuration block, components have unique labels,
//! arguments and nested blocks exist and have the documented types, required ones are present,
//! every `component.label.export` reference resolves to a declared component's export of the
//! right type, references form no cycle, and the tenant header survives the pipeline.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::diag::{Diagnostic, Source};
use crate::parser::{Block, Expr, Stmt, parse};
use crate::schema::{self, BlockSpec, Component, Kind, Rule, Ty};

/// What a valid configuration declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `name.label` of every component, in file order.
    pub components: Vec<String>,
    /// Configuration blocks such as `logging`.
    pub config_blocks: Vec<String>,
}

/// Checks sources that Alloy would load together (the `*.alloy` files of one directory).
pub fn check(sources: &[Source]) -> Result<Summary, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for src in sources {
        let (body, mut errs) = parse(src);
        errors.append(&mut errs);
        files.push(body);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut c = Checker {
        sources,
        errors: Vec::new(),
        decls: Vec::new(),
        edges: Vec::new(),
    };
    c.declare(&files);
    for i in 0..c.decls.len() {
        c.check_decl(i);
    }
    c.check_cycles();
    c.check_tenant_metadata();
    let mut errors = c.errors;
    if errors.is_empty() {
        let components = c
            .decls
            .iter()
            .filter(|d| d.schema.kind == Kind::Component)
            .map(|d| d.id.clone())
            .collect();
        let config_blocks = c
            .decls
            .iter()
            .filter(|d| d.schema.kind == Kind::ConfigBlock)
            .map(|d| d.id.clone())
            .collect();
        Ok(Summary {
            components,
            config_blocks,
        })
    } else {
        errors.sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        errors.dedup();
        Err(errors)
    }
}

/// One top-level block.
struct Decl<'a> {
    /// `otelcol.exporter.otlp.tempo`, or `logging`.
    id: String,
    label: Option<String>,
    schema: &'static Component,
    block: &'a Block,
    src: usize,
}

/// A reference to an export: used for the cycle and tenant checks.
struct Edge {
    from: usize,
    to: usize,
}

struct Checker<'a> {
    sources: &'a [Source],
    errors: Vec<Diagnostic>,
    decls: Vec<Decl<'a>>,
    edges: Vec<Edge>,
}

/// What a static look at an expression can tell about its value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    /// A string; the literal when it is one.
    Str(Option<String>),
    Number,
    Bool,
    Null,
    List(Vec<Val>),
    Object(Vec<Val>),
    /// A component export of a known type (`what` names it for messages).
    Export(Ty, String),
    Any,
}

impl Val {
    fn describe(&self) -> String {
        match self {
            Val::Str(_) => "a string".into(),
            Val::Number => "a number".into(),
            Val::Bool => "a bool".into(),
            Val::Null => "null".into(),
            Val::List(_) => "a list".into(),
            Val::Object(_) => "an object".into(),
            Val::Export(ty, what) => format!("{what} (a {})", ty.name()),
            Val::Any => "a value".into(),
        }
    }
}

impl<'a> Checker<'a> {
    fn error(&mut self, src: usize, pos: usize, msg: impl Into<String>) {
        if let Some(s) = self.sources.get(src) {
            self.errors.push(s.diag(pos, msg));
        }
    }

    fn at(&self, src: usize, pos: usize) -> String {
        self.sources.get(src).map_or_else(String::new, |s| {
            let (line, col) = s.line_col(pos);
            format!("{}:{line}:{col}", s.name)
        })
    }

    /// Registers top-level blocks, reporting unknown names, labels and duplicates.
    fn declare(&mut self, files: &'a [Vec<Stmt>]) {
        let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
        for (src, body) in files.iter().enumerate() {
            for stmt in body {
                let block = match stmt {
                    Stmt::Attr(a) => {
                        self.error(
                            src,
                            a.pos,
                            format!(
                                "attribute `{}` is not allowed at the top level: only components and configuration blocks are",
                                a.name
                            ),
                        );
                        continue;
                    }
                    Stmt::Block(b) => b,
                };
                let name = block.full_name();
                let Some(schema) = schema::component(&name) else {
                    let names: Vec<&str> = schema::COMPONENTS.iter().map(|c| c.name).collect();
                    let hint = closest(&name, &names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.error(
                        src,
                        block.pos,
                        format!(
                            "unknown component `{name}`{hint}; this checker knows: {}",
                            names.join(", ")
                        ),
                    );
                    continue;
                };
                let id = match (&schema.kind, &block.label) {
                    (Kind::Component, Some(label)) => format!("{name}.{label}"),
                    (Kind::Component, None) => {
                        self.error(
                            src,
                            block.pos,
                            format!("component `{name}` must have a label, e.g. {name} \"default\" {{ ... }}"),
                        );
                        continue;
                    }
                    (Kind::ConfigBlock, Some(_)) => {
                        self.error(
                            src,
                            block.pos,
                            format!("`{name}` block must not have a label"),
                        );
                        name.clone()
                    }
                    (Kind::ConfigBlock, None) => name.clone(),
                };
                if let Some(&(s0, p0)) = seen.get(&id) {
                    let first = self.at(s0, p0);
                    let what = match schema.kind {
                        Kind::Component => format!(
                            "component `{name}` with label {:?}",
                            block.label.as_deref().unwrap_or_default()
                        ),
                        Kind::ConfigBlock => format!("`{name}` block"),
                    };
                    self.error(
                        src,
                        block.pos,
                        format!("{what} is already declared at {first}"),
                    );
                    continue;
                }
                seen.insert(id.clone(), (src, block.pos));
                self.decls.push(Decl {
                    id,
                    label: block.label.clone(),
                    schema,
                    block,
                    src,
                });
            }
        }
    }

    fn check_decl(&mut self, i: usize) {
        let Some(d) = self.decls.get(i) else { return };
        let (schema, block, src) = (d.schema, d.block, d.src);
        let place = match &d.label {
            Some(l) => format!("{} {l:?}", schema.name),
            None => schema.name.to_owned(),
        };
        self.check_body(i, src, &place, block, &schema.body);
    }

    /// Checks a block body against its spec; `None` spec (opaque) only resolves references.
    fn check_body(
        &mut self,
        decl: usize,
        src: usize,
        place: &str,
        block: &Block,
        spec: &BlockSpec,
    ) {
        let mut attrs_seen: HashMap<&str, usize> = HashMap::new();
        let mut blocks_seen: HashMap<String, usize> = HashMap::new();
        for stmt in &block.body {
            match stmt {
                Stmt::Attr(a) => {
                    let val = self.infer(decl, src, &a.value);
                    if let Some(&first) = attrs_seen.get(a.name.as_str()) {
                        let at = self.at(src, first);
                        self.error(
                            src,
                            a.pos,
                            format!("attribute `{}` in {place} is already set at {at}", a.name),
                        );
                        continue;
                    }
                    attrs_seen.insert(&a.name, a.pos);
                    match spec.attrs.iter().find(|x| x.name == a.name) {
                        Some(attr) => {
                            if let Some(problem) = fits(&val, attr.ty) {
                                self.error(
                                    src,
                                    a.value.pos(),
                                    format!("`{}` in {place}: {problem}", a.name),
                                );
                            }
                        }
                        None => {
                            let mut names: Vec<&str> = spec.attrs.iter().map(|x| x.name).collect();
                            let hint = closest(&a.name, &names)
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                            names.sort_unstable();
                            let known = if names.is_empty() {
                                "it takes no arguments, only blocks".to_owned()
                            } else {
                                format!("known: {}", names.join(", "))
                            };
                            self.error(
                                src,
                                a.pos,
                                format!("unknown attribute `{}` in {place}{hint}; {known}", a.name),
                            );
                        }
                    }
                }
                Stmt::Block(b) => {
                    let name = b.full_name();
                    let inner_place = format!("{place} > {name}");
                    let count = blocks_seen.entry(name.clone()).or_insert(0);
                    *count += 1;
                    let count = *count;
                    let Some(sub) = spec.blocks.iter().find(|s| s.name == name) else {
                        let mut names: Vec<&str> = spec.blocks.iter().map(|s| s.name).collect();
                        let hint = closest(&name, &names)
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        names.sort_unstable();
                        let known = if names.is_empty() {
                            "it takes no blocks".to_owned()
                        } else {
                            format!("known: {}", names.join(", "))
                        };
                        self.error(
                            src,
                            b.pos,
                            format!("unknown block `{name}` in {place}{hint}; {known}"),
                        );
                        self.walk_opaque(decl, src, b);
                        continue;
                    };
                    if b.label.is_some() {
                        self.error(
                            src,
                            b.pos,
                            format!("block `{name}` in {place} takes no label"),
                        );
                    }
                    if count == 2 && !sub.repeatable {
                        self.error(
                            src,
                            b.pos,
                            format!("block `{name}` may appear only once in {place}"),
                        );
                    }
                    match sub.spec {
                        Some(inner) => self.check_body(decl, src, &inner_place, b, inner),
                        None => self.walk_opaque(decl, src, b),
                    }
                }
            }
        }
        for attr in spec.attrs.iter().filter(|a| a.required) {
            if !attrs_seen.contains_key(attr.name) {
                self.error(
                    src,
                    block.pos,
                    format!("missing required attribute `{}` in {place}", attr.name),
                );
            }
        }
        for sub in spec.blocks.iter().filter(|s| s.required) {
            if !blocks_seen.contains_key(sub.name) {
                self.error(
                    src,
                    block.pos,
                    format!("missing required block `{}` in {place}", sub.name),
                );
            }
        }
        for rule in spec.rules {
            match rule {
                Rule::ExactlyOne(names) => {
                    let set = names
                        .iter()
                        .filter(|n| attrs_seen.contains_key(**n))
                        .count();
                    if set != 1 {
                        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                        self.error(
                            src,
                            block.pos,
                            format!(
                                "exactly one of {} must be set in {place} ({set} set)",
                                list.join(", ")
                            ),
                        );
                    }
                }
                Rule::NotBoth(a, b) => {
                    let has_a: Vec<&str> = a
                        .iter()
                        .copied()
                        .filter(|n| attrs_seen.contains_key(n))
                        .collect();
                    let has_b: Vec<&str> = b
                        .iter()
                        .copied()
                        .filter(|n| attrs_seen.contains_key(n))
                        .collect();
                    if !has_a.is_empty() && !has_b.is_empty() {
                        self.error(
                            src,
                            block.pos,
                            format!(
                                "{place} sets {} and {}: use one form, not both",
                                has_a.join(", "),
                                has_b.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Resolves references inside a block whose contents are not in the table.
    fn walk_opaque(&mut self, decl: usize, src: usize, block: &Block) {
        for stmt in &block.body {
            match stmt {
                Stmt::Attr(a) => {
                    self.infer(decl, src, &a.value);
                }
                Stmt::Block(b) => self.walk_opaque(decl, src, b),
            }
        }
    }

    /// Infers what a static look can tell about an expression, resolving every reference in it.
    fn infer(&mut self, decl: usize, src: usize, e: &Expr) -> Val {
        match e {
            Expr::Str(s, _) => Val::Str(Some(s.clone())),
            Expr::Number(..) => Val::Number,
            Expr::Bool(..) => Val::Bool,
            Expr::Null(_) => Val::Null,
            Expr::Array(items, _) => {
                Val::List(items.iter().map(|i| self.infer(decl, src, i)).collect())
            }
            Expr::Object(fields, _) => {
                let mut keys: HashSet<&str> = HashSet::new();
                let mut vals = Vec::new();
                for (k, v) in fields {
                    if !keys.insert(k) {
                        self.error(src, v.pos(), format!("duplicate key {k:?} in object"));
                    }
                    vals.push(self.infer(decl, src, v));
                }
                Val::Object(vals)
            }
            Expr::Paren(inner) => self.infer(decl, src, inner),
            Expr::Ident(..) | Expr::Access(..) => match e.path() {
                Some(path) => self.resolve(decl, src, &path, e.pos()),
                None => {
                    // `x[0].field`: check what it starts from.
                    if let Expr::Access(inner, _, _) = e {
                        self.infer(decl, src, inner);
                    }
                    Val::Any
                }
            },
            Expr::Index(a, i) => {
                self.infer(decl, src, a);
                self.infer(decl, src, i);
                Val::Any
            }
            Expr::Call(f, args) => {
                for a in args {
                    self.infer(decl, src, a);
                }
                match f.path() {
                    Some(path) => {
                        self.resolve(decl, src, &path, f.pos());
                        let name = path.join(".");
                        let returns_string = name == "sys.env"
                            || name == "env"
                            || name.starts_with("string.")
                            || name == "file.path_join";
                        if returns_string {
                            Val::Str(None)
                        } else {
                            Val::Any
                        }
                    }
                    None => {
                        self.infer(decl, src, f);
                        Val::Any
                    }
                }
            }
            Expr::Unary(_, inner, _) => {
                self.infer(decl, src, inner);
                Val::Any
            }
            Expr::Binary(_, a, b) => {
                self.infer(decl, src, a);
                self.infer(decl, src, b);
                Val::Any
            }
        }
    }

    /// Resolves `a.b.c...`: a standard-library name, or `component.name.label.export`.
    fn resolve(&mut self, decl: usize, src: usize, path: &[String], pos: usize) -> Val {
        let Some(root) = path.first() else {
            return Val::Any;
        };
        if let Some((_, members)) = schema::STDLIB.iter().find(|(ns, _)| ns == root) {
            if let Some(member) = path.get(1)
                && !members.contains(&member.as_str())
            {
                let hint = closest(member, members)
                    .map(|s| format!(" (did you mean `{root}.{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    src,
                    pos,
                    format!("unknown identifier `{root}.{member}`{hint}"),
                );
            }
            return if root == "constants" && path.len() == 2 {
                Val::Str(None)
            } else {
                Val::Any
            };
        }
        if path.len() == 1 && schema::STDLIB_FUNCTIONS.contains(&root.as_str()) {
            return Val::Any;
        }
        for k in 1..path.len() {
            let name = path[..k].join(".");
            let label = &path[k];
            let id = format!("{name}.{label}");
            let Some(target) = self
                .decls
                .iter()
                .position(|d| d.id == id && d.schema.kind == Kind::Component)
            else {
                continue;
            };
            let schema = self.decls[target].schema;
            self.edges.push(Edge {
                from: decl,
                to: target,
            });
            let exports: Vec<&str> = schema.exports.iter().map(|(n, _)| *n).collect();
            let Some(export) = path.get(k + 1) else {
                let what = if exports.is_empty() {
                    "it exports nothing".to_owned()
                } else {
                    format!("use one of its exports: {}", exports.join(", "))
                };
                self.error(
                    src,
                    pos,
                    format!("`{id}` is a component, not a value; {what}"),
                );
                return Val::Any;
            };
            let Some((_, ty)) = schema.exports.iter().find(|(n, _)| n == export) else {
                let what = if exports.is_empty() {
                    "it exports nothing".to_owned()
                } else {
                    format!("its exports: {}", exports.join(", "))
                };
                self.error(
                    src,
                    pos,
                    format!("`{name}` has no export `{export}` ({what})"),
                );
                return Val::Any;
            };
            return if path.len() > k + 2 {
                Val::Any
            } else {
                Val::Export(*ty, format!("{id}.{export}"))
            };
        }
        // Not declared: say which part is wrong.
        for k in (1..path.len()).rev() {
            let name = path[..k].join(".");
            if let Some(schema) = schema::component(&name)
                && schema.kind == Kind::Component
            {
                let declared: Vec<String> = self
                    .decls
                    .iter()
                    .filter(|d| d.schema.name == name)
                    .filter_map(|d| d.label.clone())
                    .map(|l| format!("{l:?}"))
                    .collect();
                let which = if declared.is_empty() {
                    format!("no `{name}` is declared")
                } else {
                    format!("declared labels: {}", declared.join(", "))
                };
                self.error(
                    src,
                    pos,
                    format!(
                        "reference to undeclared component `{name}` with label {:?} ({which})",
                        path[k]
                    ),
                );
                return Val::Any;
            }
        }
        let full = path.join(".");
        let mut ids: Vec<&str> = self.decls.iter().map(|d| d.id.as_str()).collect();
        ids.extend(schema::STDLIB.iter().map(|(ns, _)| *ns));
        let hint = closest(&full, &ids)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        self.error(src, pos, format!("unknown identifier `{full}`{hint}"));
        Val::Any
    }

    /// Alloy refuses configurations whose references form a cycle.
    fn check_cycles(&mut self) {
        let n = self.decls.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &self.edges {
            if !next[e.from].contains(&e.to) {
                next[e.from].push(e.to);
            }
        }
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut state = vec![0u8; n];
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for start in 0..n {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some(&mut (node, ref mut idx)) = stack.last_mut() {
                if let Some(&to) = next[node].get(*idx) {
                    *idx += 1;
                    match state[to] {
                        0 => {
                            state[to] = 1;
                            stack.push((to, 0));
                        }
                        1 => {
                            let from = stack.iter().position(|(x, _)| *x == to).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[from..].iter().map(|(x, _)| *x).collect();
                            let mut key = cycle.clone();
                            key.sort_unstable();
                            if reported.insert(key) {
                                cycle.push(to);
                                let names: Vec<&str> =
                                    cycle.iter().map(|&i| self.decls[i].id.as_str()).collect();
                                let (src, pos) = (self.decls[to].src, self.decls[to].block.pos);
                                self.error(
                                    src,
                                    pos,
                                    format!("references form a cycle: {}", names.join(" -> ")),
                                );
                            }
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }

    /// `otelcol.auth.headers` docs: for `from_context` to work, receivers upstream must set
    /// `include_metadata = true` and every `otelcol.processor.batch` upstream must list the key
    /// in `metadata_keys`. Otherwise the tenant header is silently dropped (or batches mix
    /// tenants): an error here, because that is exactly what the gateway depends on.
    fn check_tenant_metadata(&mut self) {
        let n = self.decls.len();
        let mut prev: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &self.edges {
            prev[e.to].push(e.from);
        }
        let mut findings = Vec::new();
        for (ai, auth) in self.decls.iter().enumerate() {
            if auth.schema.name != "otelcol.auth.headers" {
                continue;
            }
            let keys: Vec<String> = auth
                .block
                .body
                .iter()
                .filter_map(|s| match s {
                    Stmt::Block(h) if h.full_name() == "header" => attr(h, "from_context"),
                    _ => None,
                })
                .filter_map(|e| match e {
                    Expr::Str(s, _) => Some(s.to_ascii_lowercase()),
                    _ => None,
                })
                .collect();
            if keys.is_empty() {
                continue;
            }
            // Everything upstream of the components that use this handler.
            let mut upstream: BTreeMap<usize, ()> = BTreeMap::new();
            let mut todo: Vec<usize> = prev[ai].clone();
            while let Some(x) = todo.pop() {
                if upstream.insert(x, ()).is_none() {
                    todo.extend(prev[x].iter().copied());
                }
            }
            for &u in upstream.keys() {
                let d = &self.decls[u];
                match d.schema.name {
                    "otelcol.processor.batch" => {
                        let listed: Vec<String> = match attr(d.block, "metadata_keys") {
                            Some(Expr::Array(items, _)) => items
                                .iter()
                                .filter_map(|i| match i {
                                    Expr::Str(s, _) => Some(s.to_ascii_lowercase()),
                                    _ => None,
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                        for k in &keys {
                            if !listed.contains(k) {
                                findings.push((d.src, d.block.pos, format!(
                                    "`{}` must list {k:?} in metadata_keys: `{}` reads it with from_context, and batching drops metadata keys it does not list (and would mix tenants in one batch)",
                                    d.id, auth.id
                                )));
                            }
                        }
                    }
                    "otelcol.receiver.otlp" => {
                        for server in d.block.body.iter().filter_map(|s| match s {
                            Stmt::Block(b) if matches!(b.full_name().as_str(), "grpc" | "http") => {
                                Some(b)
                            }
                            _ => None,
                        }) {
                            if !matches!(
                                attr(server, "include_metadata"),
                                Some(Expr::Bool(true, _))
                            ) {
                                findings.push((d.src, server.pos, format!(
                                    "`{}` > {} must set include_metadata = true: `{}` reads {:?} with from_context, which is empty otherwise",
                                    d.id, server.full_name(), auth.id, keys.join(", ")
                                )));
                            }
                            // The metadata is whatever the client sent: only an authenticated
                            // client (mutual TLS, or a server `auth` handler) may choose it.
                            let mutual_tls = server.body.iter().any(|s| {
                                matches!(s, Stmt::Block(t) if t.full_name() == "tls"
                                    && attr(t, "client_ca_file").is_some())
                            });
                            if !mutual_tls && attr(server, "auth").is_none() {
                                findings.push((d.src, server.pos, format!(
                                    "`{}` > {} must authenticate its clients (tls {{ client_ca_file = ... }} for mutual TLS, or `auth`): `{}` takes {:?} from what they send, so any client that reaches the port would choose the tenant",
                                    d.id, server.full_name(), auth.id, keys.join(", ")
                                )));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        for (src, pos, msg) in findings {
            self.error(src, pos, msg);
        }
    }
}

/// The value expression of attribute `name` directly in `block`.
fn attr<'b>(block: &'b Block, name: &str) -> Option<&'b Expr> {
    block.body.iter().find_map(|s| match s {
        Stmt::Attr(a) if a.name == name => Some(&a.value),
        _ => None,
    })
}

/// Why `val` does not fit `ty`, if it does not.
fn fits(val: &Val, ty: Ty) -> Option<String> {
    let mismatch = || Some(format!("expected {}, got {}", ty.name(), val.describe()));
    match (val, ty) {
        (Val::Any | Val::Null, _) => None,
        (Val::Str(_), Ty::Str | Ty::Secret) => None,
        (Val::Str(Some(s)), Ty::Duration) => parse_duration(s)
            .err()
            .map(|e| format!("invalid duration {s:?}: {e}")),
        (Val::Str(None), Ty::Duration) => None,
        (Val::Str(Some(s)), Ty::OneOf(allowed)) => {
            if allowed.contains(&s.as_str()) {
                None
            } else {
                Some(format!("must be one of {allowed:?}, got {s:?}"))
            }
        }
        (Val::Str(None), Ty::OneOf(_)) => None,
        (Val::Number, Ty::Number) | (Val::Bool, Ty::Bool) => None,
        (Val::List(items), Ty::StrList) => items
            .iter()
            .find_map(|i| fits(i, Ty::Str))
            .map(|p| format!("list item: {p}")),
        (Val::Object(vals), Ty::StrMap) => vals
            .iter()
            .find_map(|v| fits(v, Ty::Str))
            .map(|p| format!("object value: {p}")),
        (Val::Object(_), Ty::Map) => None,
        (Val::Export(Ty::Targets, _), Ty::Targets) => None,
        (Val::List(items), Ty::Targets) => items
            .iter()
            .find_map(|i| match i {
                Val::Object(vals) => vals.iter().find_map(|v| fits(v, Ty::Str)),
                Val::Any => None,
                other => Some(format!(
                    "expected a target object, got {}",
                    other.describe()
                )),
            })
            .map(|p| format!("target: {p}")),
        (Val::Export(Ty::Capsule(have), _), Ty::Capsule(want)) if *have == want => None,
        (Val::Export(Ty::Secret, _), Ty::Secret) => None,
        (Val::List(items), Ty::ListOf(cap)) => items
            .iter()
            .find_map(|i| fits(i, Ty::Capsule(cap)))
            .map(|p| format!("list item: {p}")),
        _ => mismatch(),
    }
}

/// Go's `time.ParseDuration`: `[-+]` then number-unit pairs, or a bare `0`.
pub fn parse_duration(s: &str) -> Result<(), String> {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err("empty".into());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!("expected a number at {rest:?}"));
        }
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err("missing unit (use ns, us, ms, s, m or h)".into());
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(format!("unknown unit {unit:?} (use ns, us, ms, s, m or h)"));
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

/// The candidate nearest to `name` by edit distance, if it is close enough to be a typo.
fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (levenshtein(name, c), *c))
        .filter(|(d, _)| *d <= limit && *d > 0)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Cap;

    #[test]
    fn durations_follow_go() {
        for ok in ["0", "1s", "200ms", "1m30s", "1.5h", "-2us", "3µs", "10ns"] {
            assert_eq!(parse_duration(ok), Ok(()), "{ok}");
        }
        for bad in ["", "1", "5 seconds", "1d", "s", "1..5s", "1s2"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(
            closest(
                "otelcol.exporter.otlphtp",
                &["otelcol.exporter.otlphttp", "loki.write"]
            ),
            Some("otelcol.exporter.otlphttp")
        );
        assert_eq!(
            closest("include_metdata", &["include_metadata", "endpoint"]),
            Some("include_metadata")
        );
        assert_eq!(closest("zzz", &["endpoint"]), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }

    #[test]
    fn capsule_types_must_match() {
        let receiver = Val::Export(
            Ty::Capsule(Cap::MetricsReceiver),
            "prometheus.remote_write.x.receiver".into(),
        );
        let consumer = Val::Export(
            Ty::Capsule(Cap::OtelConsumer),
            "otelcol.processor.batch.x.input".into(),
        );
        assert_eq!(
            fits(
                &Val::List(vec![consumer.clone()]),
                Ty::ListOf(Cap::OtelConsumer)
            ),
            None
        );
        let problem =
            fits(&Val::List(vec![receiver]), Ty::ListOf(Cap::OtelConsumer)).unwrap_or_default();
        assert!(problem.contains("expected otelcol.Consumer, got prometheus.remote_write.x.receiver (a MetricsReceiver)"), "{problem}");
        assert!(
            fits(&consumer, Ty::ListOf(Cap::OtelConsumer)).is_some(),
            "a list is required"
        );
        assert!(fits(&Val::Str(Some("x".into())), Ty::Bool).is_some());
        assert_eq!(fits(&Val::Str(None), Ty::Duration), None);
    }
}
