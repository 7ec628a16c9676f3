//! `otlp-gate token …`: the token lifecycle on a token file (CLI only, never in the .wasm).
//!
//! Every editing command reads the file with `check`'s own extraction, edits only the entry
//! concerned (`tokenfile`), validates the whole result with `check` itself, verifies that the
//! file now holds exactly the intended configuration, and replaces the file atomically
//! (temporary file in the same directory, fsync, rename), so a watching Envoy never reads half
//! a file. A new token is printed once, alone on stdout; everything else goes to stderr.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use otlp_gate::config::{self, Config, Token};
use otlp_gate::route::Signal;
use otlp_gate::time::{format_rfc3339, parse_duration};
use serde_json::{Map, Value, json};

use crate::Failure;
use crate::tokenfile::TokenFile;

/// Prefix of generated tokens: lets secret scanners recognise a leaked otlp-gate token.
pub const TOKEN_PREFIX: &str = "otlpgate_";

pub const NEW_HELP: &str = r"  otlp-gate token new --id ID [--tenant T] [--signals logs,metrics,traces]
                      [--not-before TIME] [--expires TIME] [--rate RATE] [--source-cidr CIDR]
                      [--json]
      Print a fresh 256-bit token (once) and its config entry (only its sha256), indented
      for the `tokens:` list of envoy/otlp-gate.yaml; --json prints the entry as JSON.
      To put it into a token file, `token add` does it for you.
";
pub const ADD_HELP: &str = r"  otlp-gate token add FILE --id ID --tenant T [--signals logs,metrics,traces]
                      [--not-before TIME] [--expires TIME] [--rate RATE] [--source-cidr CIDR]
      Generate a token, insert its entry into FILE, validate the file as `check` does and
      replace it atomically. The token is printed once on stdout; the rest goes to stderr.
      TIME is RFC 3339 (2027-01-01T00:00:00Z) or from now (90d, 12h). RATE is
      requests/s, or rps=N,bps=N,burst=N. --source-cidr may repeat or list CIDRs with commas.
";
pub const ROTATE_HELP: &str = r"  otlp-gate token rotate FILE --id ID [--new-id ID2] [--overlap 7d] [--expires TIME]
      Add a new token with ID's tenant, signals, rate and source CIDRs (id ID2, default
      ID-YYYYMMDD), and make ID expire after the overlap (never later than it already
      did). Prints the new token once on stdout.
";
pub const REVOKE_HELP: &str = r"  otlp-gate token revoke FILE --id ID [--delete]
      Set `disabled: true` on ID (its requests are then refused and counted as
      `disabled`, so you see who still uses it), or remove the entry with --delete.
";
pub const LIST_HELP: &str = r"  otlp-gate token list FILE [--json]
      Every token: id, tenant, signals, validity and state (active, not yet valid,
      expiring within warn_before, expired, disabled).
";

/// What a command prints: `stdout` (a token, a table, JSON) and `stderr` (everything else).
#[derive(Debug, Default)]
pub struct Done {
    pub stdout: String,
    pub stderr: String,
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `token <cmd> …`; None for a command this module does not know.
pub fn run(cmd: &str, args: &[&str], now: i64) -> Option<Result<Done, Failure>> {
    Some(match cmd {
        "new" => new(args, now),
        "add" => add(args, now),
        "rotate" => rotate(args, now),
        "revoke" => revoke(args),
        "list" => list(args, now),
        "report" => crate::report::run(args, now),
        _ => return None,
    })
}

// ------------------------------------------------------------------------------------ flags

/// A command's arguments: an optional FILE, then `--flag value` pairs and switches.
struct Args<'a> {
    file: Option<&'a str>,
    flags: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    fn parse(
        cmd: &str,
        args: &[&'a str],
        file: bool,
        valued: &[&str],
        switches: &[&str],
    ) -> Result<Self, Failure> {
        let mut out = Args {
            file: None,
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            if switches.contains(&a) {
                out.flags.push((a, ""));
            } else if valued.contains(&a) {
                let v = it
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("{a} needs a value")))?;
                out.flags.push((a, v));
            } else if a.starts_with("--") {
                return Err(Failure::Usage(format!(
                    "unknown option {a} for `token {cmd}`"
                )));
            } else if file && out.file.is_none() {
                out.file = Some(a);
            } else {
                return Err(Failure::Usage(format!(
                    "unexpected argument {a:?} for `token {cmd}`"
                )));
            }
        }
        if file && out.file.is_none() {
            return Err(Failure::Usage(format!("`token {cmd}` needs a FILE")));
        }
        Ok(out)
    }

    fn get(&self, flag: &str) -> Option<&'a str> {
        self.flags
            .iter()
            .rev()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| *v)
    }

    fn all(&self, flag: &str) -> Vec<&'a str> {
        self.flags
            .iter()
            .filter(|(f, _)| *f == flag)
            .map(|(_, v)| *v)
            .collect()
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|(f, _)| *f == flag)
    }

    fn need(&self, flag: &str, cmd: &str) -> Result<&'a str, Failure> {
        self.get(flag)
            .ok_or_else(|| Failure::Usage(format!("`token {cmd}` needs {flag}")))
    }

    fn file(&self) -> &'a str {
        self.file.unwrap_or_default()
    }
}

const ENTRY_FLAGS: &[&str] = &[
    "--id",
    "--tenant",
    "--signals",
    "--not-before",
    "--expires",
    "--rate",
    "--source-cidr",
];

/// A time flag: RFC 3339 as given (the config's rules check it), or `90d`/`12h`/… from now.
fn when(v: &str, now: i64) -> Value {
    let relative = v.starts_with(|c: char| c.is_ascii_digit())
        && v.ends_with(['s', 'm', 'h', 'd'])
        && !v.contains(['-', ':']);
    match parse_duration(v).filter(|_| relative) {
        Some(d) => json!(format_rfc3339(now.saturating_add(d))),
        None => json!(v),
    }
}

/// A whole number as an integer, anything else as a float.
fn number(n: f64) -> Value {
    otlp_gate::structpb::number(n)
}

/// `--rate 100` (requests/s) or `--rate rps=100,bps=1048576,burst=200`.
fn rate(v: &str) -> Result<Value, Failure> {
    let mut out = Map::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').unwrap_or(("rps", part));
        let key = match key.trim() {
            "rps" | "requests_per_second" => "requests_per_second",
            "bps" | "bytes_per_second" => "bytes_per_second",
            "burst" => "burst",
            other => {
                return Err(Failure::Usage(format!(
                    "--rate: unknown key {other:?} (use rps=, bps=, burst=)"
                )));
            }
        };
        let n: f64 = val
            .trim()
            .parse()
            .map_err(|_| Failure::Usage(format!("--rate: {key} must be a number")))?;
        out.insert(key.into(), number(n));
    }
    Ok(Value::Object(out))
}

fn list_flag(values: impl Iterator<Item = impl AsRef<str>>) -> Vec<Value> {
    let mut out = Vec::new();
    for v in values {
        for item in v
            .as_ref()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            out.push(json!(item));
        }
    }
    out
}

/// A fresh token: 256 random bits, base64url, with the scanner-friendly prefix.
fn generate() -> Result<String, Failure> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| Failure::Invalid(format!("no randomness available: {e}\n")))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    ))
}

/// The entry the flags describe, keys in the order they are written.
fn entry(a: &Args, id: &str, token: &str, now: i64) -> Result<Vec<(&'static str, Value)>, Failure> {
    let mut e: Vec<(&'static str, Value)> = vec![
        ("id", json!(id)),
        (
            "sha256",
            json!(config::hex(&config::digest(token.as_bytes()))),
        ),
    ];
    if let Some(t) = a.get("--tenant") {
        e.push(("tenant", json!(t)));
    }
    if let Some(s) = a.get("--signals") {
        e.push(("signals", Value::Array(list_flag(std::iter::once(s)))));
    }
    if let Some(t) = a.get("--not-before") {
        e.push(("not_before", when(t, now)));
    }
    if let Some(t) = a.get("--expires") {
        e.push(("expires_at", when(t, now)));
    }
    if let Some(r) = a.get("--rate") {
        e.push(("rate", rate(r)?));
    }
    if a.has("--source-cidr") {
        e.push((
            "source_cidrs",
            Value::Array(list_flag(a.all("--source-cidr").into_iter())),
        ));
    }
    Ok(e)
}

fn object(entry: &[(&'static str, Value)]) -> Value {
    Value::Object(
        entry
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

// ------------------------------------------------------------------------------- token new

fn new(args: &[&str], now: i64) -> Result<Done, Failure> {
    let a = Args::parse("new", args, false, ENTRY_FLAGS, &["--json"])?;
    let id = a.need("--id", "new")?;
    let token = generate()?;
    let e = entry(&a, id, &token, now)?;
    // Validate the entry with the filter's own rules before printing anything.
    let probe = json!({ "tokens": [object(&e)] });
    if let Err(errors) = config::parse(probe.to_string().as_bytes()) {
        let list: Vec<String> = errors
            .iter()
            .map(|e| format!("  {}\n", e.to_string().replace("tokens[0].", "")))
            .collect();
        return Err(Failure::Invalid(format!(
            "token new: invalid entry:\n{}",
            list.concat()
        )));
    }
    let mut out = format!(
        "# New token {id:?}: shown once, store it in your secret manager and give it to the client:\n{token}\n\n"
    );
    if a.has("--json") {
        let inner: Vec<String> = e
            .iter()
            .map(|(k, v)| format!("{}:{}", json!(k), v))
            .collect();
        out.push_str(&format!(
            "# Config entry (append to \"tokens\"):\n{{{}}}\n",
            inner.join(",")
        ));
    } else {
        // Indented as the `tokens:` list of envoy/otlp-gate.yaml and the overlays' files.
        out.push_str(
            "# Config entry, indented for the `tokens:` list of envoy/otlp-gate.yaml (or let\n\
             # `otlp-gate token add FILE …` insert it, check the file and write it atomically):\n",
        );
        let file = "tokens: []\n";
        let placed = TokenFile::locate(file)
            .and_then(|f| f.append(&e))
            .map_err(|m| Failure::Invalid(format!("token new: {m}\n")))?;
        for line in placed.lines().skip(1) {
            out.push_str(&format!("{}{line}\n", " ".repeat(10)));
        }
    }
    Ok(Done {
        stdout: out,
        stderr: String::new(),
    })
}

// --------------------------------------------------------------------------- loading, writing

/// A token file as `check` reads it.
struct Loaded<'a> {
    file: &'a str,
    bytes: Vec<u8>,
    text: String,
    /// The plugin configuration, as JSON.
    config: Value,
    parsed: Config,
}

impl Loaded<'_> {
    fn tokens(&self) -> &[Value] {
        self.config
            .get("tokens")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    fn index(&self, id: &str) -> Result<usize, Failure> {
        self.tokens()
            .iter()
            .position(|t| t.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| Failure::Invalid(format!("{}: no token with id {id:?}\n", self.file)))
    }

    /// The configuration with `tokens` replaced.
    fn with_tokens(&self, tokens: Vec<Value>) -> Value {
        let mut c = self.config.clone();
        if let Some(obj) = c.as_object_mut() {
            obj.insert("tokens".into(), Value::Array(tokens));
        }
        c
    }

    fn locate(&self) -> Result<TokenFile<'_>, Failure> {
        let f = TokenFile::locate(&self.text)
            .map_err(|m| Failure::Invalid(format!("{}: {m}\n", self.file)))?;
        if f.len() != self.tokens().len() {
            return Err(Failure::Invalid(format!(
                "{}: found {} token entries by the file's layout but the configuration has {}; edit it by hand\n",
                self.file,
                f.len(),
                self.tokens().len()
            )));
        }
        Ok(f)
    }
}

/// The plugin configuration bytes `check` extracted, as JSON.
fn as_json(raw: &[u8]) -> Option<Value> {
    serde_json::from_slice(raw)
        .ok()
        .or_else(|| otlp_gate::structpb::decode(raw))
}

fn failure_text(f: Failure) -> String {
    match f {
        Failure::Usage(m) | Failure::Invalid(m) => m,
    }
}

/// Where a YAML file has a tab in a line's indentation (YAML forbids it there).
fn tab_hint(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    for (i, line) in text.lines().enumerate() {
        let rest = line.trim_start_matches(' ');
        if rest.starts_with('\t') && !rest.trim().is_empty() {
            return format!(
                "  hint: line {} has a tab in its indentation; YAML allows only spaces there\n",
                i + 1
            );
        }
    }
    String::new()
}

fn load(file: &str) -> Result<Loaded<'_>, Failure> {
    let bytes =
        fs::read(file).map_err(|e| Failure::Invalid(format!("{file}: cannot read: {e}\n")))?;
    if let Err(f) = crate::check(file, &bytes) {
        return Err(Failure::Invalid(format!(
            "{}{}{file}: does not pass `otlp-gate check`; fix that first (nothing was changed)\n",
            failure_text(f),
            tab_hint(&bytes)
        )));
    }
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| Failure::Invalid(format!("{file}: is not UTF-8 text\n")))?;
    let found = crate::extract_configs(file, &bytes)?;
    let [one] = found.as_slice() else {
        return Err(Failure::Invalid(format!(
            "{file}: holds {} plugin configurations; token editing works on a file with one\n",
            found.len()
        )));
    };
    let config = as_json(&one.raw)
        .ok_or_else(|| Failure::Invalid(format!("{file}: cannot read its configuration\n")))?;
    let parsed = config::parse(&one.raw)
        .map_err(|_| Failure::Invalid(format!("{file}: its configuration is invalid\n")))?;
    Ok(Loaded {
        file,
        bytes,
        text,
        config,
        parsed,
    })
}

/// Validates `text` as `check` does, verifies that it holds exactly `expected`, and replaces
/// the file atomically. Returns `check`'s summary of the new file.
fn commit(l: &Loaded, text: &str, expected: &Value) -> Result<String, Failure> {
    let file = l.file;
    let summary = crate::check(file, text.as_bytes()).map_err(|f| {
        Failure::Invalid(format!(
            "{}{file}: refused: the file would not pass `otlp-gate check` after this change; nothing was written\n",
            failure_text(f)
        ))
    })?;
    let got = crate::extract_configs(file, text.as_bytes())
        .ok()
        .and_then(|found| found.into_iter().next())
        .and_then(|f| config::parse(&f.raw).ok())
        .map(|c| c.sha256_hex);
    let want = config::parse(expected.to_string().as_bytes())
        .ok()
        .map(|c| c.sha256_hex);
    if got.is_none() || got != want {
        return Err(Failure::Invalid(format!(
            "{file}: refused: the edited file would not hold exactly the intended change (a layout otlp-gate cannot edit safely); nothing was written. Edit it by hand and run `otlp-gate check`\n"
        )));
    }
    write_atomic(file, &l.bytes, text)?;
    Ok(summary)
}

/// Replaces `file` (its target, if it is a symlink) with `text`: a temporary file in the same
/// directory, fsync, rename, fsync of the directory. Refuses if the file changed since it was
/// read (another edit in between would otherwise be lost).
fn write_atomic(file: &str, read: &[u8], text: &str) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::Invalid(format!("{file}: {what}: {e}; nothing was written\n"))
    };
    let real = fs::canonicalize(file).map_err(|e| fail("cannot resolve", e))?;
    let dir = real
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = fs::metadata(&real).map_err(|e| fail("cannot stat", e))?;
    if fs::read(&real).map_err(|e| fail("cannot read", e))? != read {
        return Err(Failure::Invalid(format!(
            "{file}: changed while this command ran; nothing was written: run it again\n"
        )));
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(
        ".{name}.otlp-gate-{}-{stamp}.tmp",
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(meta.permissions())?;
        f.sync_all()?;
        fs::rename(&tmp, &real)?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        fail("cannot write", e)
    })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

const APPLY: &str = "Next: apply it (Kubernetes: kubectl apply --server-side -k k8s/overlays/<env>); \
Envoy reloads the token file without a restart.\n";

// ------------------------------------------------------------------------------- token add

fn add(args: &[&str], now: i64) -> Result<Done, Failure> {
    let a = Args::parse("add", args, true, ENTRY_FLAGS, &[])?;
    let id = a.need("--id", "add")?;
    let l = load(a.file())?;
    if a.get("--tenant").is_none() && l.parsed.default_tenant.is_none() {
        return Err(Failure::Usage(
            "`token add` needs --tenant (the file has no default_tenant)".into(),
        ));
    }
    let token = generate()?;
    let e = entry(&a, id, &token, now)?;
    let text = l
        .locate()?
        .append(&e)
        .map_err(|m| Failure::Invalid(format!("{}: {m}\n", l.file)))?;
    let mut tokens = l.tokens().to_vec();
    tokens.push(object(&e));
    let summary = commit(&l, &text, &l.with_tokens(tokens))?;
    Ok(Done {
        stdout: format!("{token}\n"),
        stderr: format!(
            "added token {id:?} to {}; the token above is shown once: store it in your secret manager and give it to the client\n{}{APPLY}",
            l.file,
            indent(&summary)
        ),
    })
}

// ---------------------------------------------------------------------------- token rotate

/// `base-YYYYMMDD` (a date suffix replaced, not stacked), `-2`, `-3` … if taken.
fn next_id(old: &str, today: &str, taken: impl Fn(&str) -> bool) -> String {
    let date_suffix = |s: &str| {
        s.len() > 9
            && s.as_bytes()[s.len() - 9] == b'-'
            && s[s.len() - 8..].bytes().all(|b| b.is_ascii_digit())
    };
    let mut base = old;
    if let Some((b, n)) = base.rsplit_once('-')
        && n.bytes().all(|c| c.is_ascii_digit())
        && n.len() < 4
        && date_suffix(b)
    {
        base = b;
    }
    if date_suffix(base) {
        base = &base[..base.len() - 9];
    }
    let base = &base[..base.len().min(64 - 12)];
    let base = base.trim_end_matches(['-', '_']);
    let mut candidate = format!("{base}-{today}");
    let mut n = 2;
    while taken(&candidate) {
        candidate = format!("{base}-{today}-{n}");
        n += 1;
    }
    candidate
}

fn rotate(args: &[&str], now: i64) -> Result<Done, Failure> {
    let a = Args::parse(
        "rotate",
        args,
        true,
        &["--id", "--new-id", "--overlap", "--expires"],
        &[],
    )?;
    let id = a.need("--id", "rotate")?;
    let overlap = match a.get("--overlap") {
        None => 7 * 86_400,
        Some(v) => parse_duration(v).filter(|d| *d >= 0).ok_or_else(|| {
            Failure::Usage(format!("--overlap {v:?}: use a duration like 7d, 12h or 0"))
        })?,
    };
    let l = load(a.file())?;
    let i = l.index(id)?;
    let old = l.tokens().get(i).cloned().unwrap_or_default();
    let today: String = format_rfc3339(now)[..10].replace('-', "");
    let new_id = match a.get("--new-id") {
        Some(n) => n.to_owned(),
        None => next_id(id, &today, |c| l.parsed.has_id(c)),
    };
    let token = generate()?;
    let mut e: Vec<(&'static str, Value)> = vec![
        ("id", json!(new_id)),
        (
            "sha256",
            json!(config::hex(&config::digest(token.as_bytes()))),
        ),
    ];
    for key in ["tenant", "signals", "rate", "source_cidrs", "mode"] {
        if let Some(v) = old.get(key).filter(|v| !v.is_null()) {
            e.push((key, v.clone()));
        }
    }
    if let Some(t) = a.get("--expires") {
        e.push(("expires_at", when(t, now)));
    }

    let mut tokens = l.tokens().to_vec();
    let current = l.parsed.tokens.get(i).and_then(|t| t.expires_at);
    let until = now.saturating_add(overlap);
    let mut notes = String::new();
    let mut text = l.text.clone();
    if current.is_none_or(|c| until < c) {
        let v = json!(format_rfc3339(until));
        text = l
            .locate()?
            .set(i, "expires_at", &v)
            .map_err(|m| Failure::Invalid(format!("{}: {m}\n", l.file)))?;
        if let Some(t) = tokens.get_mut(i).and_then(Value::as_object_mut) {
            t.insert("expires_at".into(), v);
        }
        notes.push_str(&format!(
            "token {id:?} now expires at {} (overlap {})\n",
            format_rfc3339(until),
            a.get("--overlap").unwrap_or("7d")
        ));
    } else {
        notes.push_str(&format!(
            "token {id:?} keeps its earlier expiry, {}\n",
            format_rfc3339(current.unwrap_or_default())
        ));
    }
    if l.parsed.tokens.get(i).is_some_and(|t| t.disabled) {
        notes.push_str(&format!("note: {id:?} is disabled; {new_id:?} is not\n"));
    }
    let text = TokenFile::locate(&text)
        .and_then(|f| f.append(&e))
        .map_err(|m| Failure::Invalid(format!("{}: {m}\n", l.file)))?;
    tokens.push(object(&e));
    let summary = commit(&l, &text, &l.with_tokens(tokens))?;
    Ok(Done {
        stdout: format!("{token}\n"),
        stderr: format!(
            "added token {new_id:?} (same tenant, signals and limits as {id:?}) to {}; the token above is shown once: give it to the client\n{notes}{}{APPLY}\
             Then switch the client to the new token and watch {id:?} in `otlp-gate token report`.\n",
            l.file,
            indent(&summary)
        ),
    })
}

// ---------------------------------------------------------------------------- token revoke

fn revoke(args: &[&str]) -> Result<Done, Failure> {
    let a = Args::parse("revoke", args, true, &["--id"], &["--delete"])?;
    let id = a.need("--id", "revoke")?;
    let l = load(a.file())?;
    let i = l.index(id)?;
    let mut tokens = l.tokens().to_vec();
    let (text, what) = if a.has("--delete") {
        tokens.remove(i);
        let text = l.locate()?.remove(i);
        (text, "removed")
    } else {
        if l.parsed.tokens.get(i).is_some_and(|t| t.disabled) {
            return Ok(Done {
                stdout: String::new(),
                stderr: format!("token {id:?} is already disabled; {} unchanged\n", l.file),
            });
        }
        if let Some(t) = tokens.get_mut(i).and_then(Value::as_object_mut) {
            t.insert("disabled".into(), json!(true));
        }
        (l.locate()?.set(i, "disabled", &json!(true)), "disabled")
    };
    let text = text.map_err(|m| Failure::Invalid(format!("{}: {m}\n", l.file)))?;
    let summary = commit(&l, &text, &l.with_tokens(tokens))?;
    Ok(Done {
        stdout: String::new(),
        stderr: format!(
            "token {id:?} {what} in {}; once applied, its requests get 401 invalid_token\n{}{APPLY}",
            l.file,
            indent(&summary)
        ),
    })
}

// ------------------------------------------------------------------------------ token list

/// A token's state at `now`, as `list` and `report` show it.
pub fn state(t: &Token, now: i64, warn_before: i64) -> &'static str {
    if t.disabled {
        "disabled"
    } else if t.not_before.is_some_and(|nb| now < nb) {
        "not yet valid"
    } else if t.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else if t.expires_at.is_some_and(|e| e - now <= warn_before) {
        "expiring"
    } else {
        "active"
    }
}

pub fn signals(t: &Token) -> Vec<&'static str> {
    Signal::ALL
        .iter()
        .filter(|s| t.allows(**s))
        .map(|s| s.as_str())
        .collect()
}

fn time_or_dash(t: Option<i64>) -> String {
    t.map_or_else(|| "-".to_owned(), format_rfc3339)
}

/// Left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let w = widths.get(c).copied().unwrap_or(0);
            line.push_str(cell);
            if c + 1 < r.len() {
                line.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn list(args: &[&str], now: i64) -> Result<Done, Failure> {
    let a = Args::parse("list", args, true, &[], &["--json"])?;
    let file = a.file();
    let bytes =
        fs::read(file).map_err(|e| Failure::Invalid(format!("{file}: cannot read: {e}\n")))?;
    crate::check(file, &bytes)?;
    let found = crate::extract_configs(file, &bytes)?;
    let mut json_out = Vec::new();
    let mut text = String::new();
    for f in &found {
        let cfg = config::parse(&f.raw)
            .map_err(|_| Failure::Invalid(format!("{}: invalid\n", f.location)))?;
        let raw = as_json(&f.raw).unwrap_or_default();
        let raw_tokens = raw.get("tokens").and_then(Value::as_array);
        let mut rows = vec![
            ["ID", "TENANT", "SIGNALS", "NOT BEFORE", "EXPIRES", "STATE"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for (n, t) in cfg.tokens.iter().enumerate() {
            let st = state(t, now, cfg.warn_before_secs);
            let raw_t = raw_tokens.and_then(|r| r.get(n));
            let field = |k: &str| raw_t.and_then(|r| r.get(k)).cloned().unwrap_or(Value::Null);
            json_out.push(json!({
                "location": f.location,
                "id": t.id,
                "tenant": t.tenant,
                "signals": signals(t),
                "not_before": t.not_before.map(format_rfc3339),
                "expires_at": t.expires_at.map(format_rfc3339),
                "state": st.replace(' ', "_"),
                "disabled": t.disabled,
                "dry_run": t.dry_run,
                "rate": field("rate"),
                "source_cidrs": field("source_cidrs"),
            }));
            rows.push(vec![
                t.id.clone(),
                t.tenant.clone().unwrap_or_else(|| "-".into()),
                signals(t).join(","),
                time_or_dash(t.not_before),
                time_or_dash(t.expires_at),
                st.to_owned(),
            ]);
        }
        if found.len() > 1 {
            text.push_str(&format!("# {}\n", f.location));
        }
        text.push_str(&table(&rows));
    }
    Ok(Done {
        stdout: if a.has("--json") {
            format!("{}\n", Value::Array(json_out))
        } else {
            text
        },
        stderr: String::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::tokenfile::tests::FIXTURES;
    use proptest::prelude::*;

    /// 2026-06-01T00:00:00Z
    const NOW: i64 = 1_780_272_000;

    /// A fresh directory with `text` as its only file; returns the file's path.
    fn file_with(name: &str, text: &str) -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "otlp-gate-tokencmd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name.rsplit('/').next().unwrap());
        fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn cmd(c: &str, args: &[&str]) -> Result<Done, String> {
        run(c, args, NOW).unwrap().map_err(failure_text)
    }

    /// (id, disabled, expires_at, sha256 hex) of every token, as `check` reads the file.
    fn tokens_of(file: &str) -> Vec<(String, bool, Option<i64>, String)> {
        let bytes = fs::read(file).unwrap();
        if let Err(f) = crate::check(file, &bytes) {
            panic!("check fails:\n{}", failure_text(f));
        }
        let found = crate::extract_configs(file, &bytes).ok().unwrap();
        let cfg = config::parse(&found[0].raw).unwrap();
        cfg.tokens
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    t.disabled,
                    t.expires_at,
                    config::hex(&t.digest),
                )
            })
            .collect()
    }

    #[test]
    fn add_prints_the_token_alone_and_stores_only_its_digest() {
        let file = file_with("otlp-gate.yaml", FIXTURES[0].1);
        let done = cmd(
            "add",
            &[
                &file,
                "--id",
                "team-c",
                "--tenant",
                "team-c",
                "--signals",
                "logs",
                "--expires",
                "30d",
            ],
        )
        .unwrap();
        let token = done.stdout.trim_end();
        assert!(token.starts_with(TOKEN_PREFIX) && !token.contains('\n'));
        assert!(!done.stderr.contains(token) && done.stderr.contains("OK: 3 token(s)"));
        let text = fs::read_to_string(&file).unwrap();
        assert!(!text.contains(token));
        let t = tokens_of(&file);
        assert_eq!(t[2].0, "team-c");
        assert_eq!(t[2].2, Some(NOW + 30 * 86_400));
        assert_eq!(t[2].3, config::hex(&config::digest(token.as_bytes())));
    }

    #[test]
    fn refusals_use_checks_messages_and_change_nothing() {
        let original = FIXTURES[0].1;
        let file = file_with("otlp-gate.yaml", original);
        let e = cmd(
            "add",
            &[&file, "--id", "team-a-example", "--tenant", "team-a"],
        )
        .unwrap_err();
        assert!(
            e.contains("tokens[2].id: duplicate id \"team-a-example\" (also tokens[0])")
                && e.contains("nothing was written"),
            "{e}"
        );
        let e = cmd(
            "add",
            &[&file, "--id", "x", "--tenant", "a|b", "--signals", "spans"],
        )
        .unwrap_err();
        assert!(
            e.contains("tokens[2].tenant: contains '|'") && e.contains("tokens[2].signals[0]"),
            "{e}"
        );
        let e = cmd(
            "add",
            &[&file, "--id", "x", "--tenant", "t", "--expires", "soon"],
        )
        .unwrap_err();
        assert!(e.contains("tokens[2].expires_at"), "{e}");
        let e = cmd("add", &[&file, "--id", "x"]).unwrap_err();
        assert!(e.contains("--tenant"), "{e}");
        let e = cmd("rotate", &[&file, "--id", "nobody"]).unwrap_err();
        assert!(e.contains("no token with id \"nobody\""), "{e}");
        let e = cmd(
            "add",
            &[&file, "--id", "x", "--tenant", "t", "--rate", "fast"],
        )
        .unwrap_err();
        assert!(e.contains("--rate"), "{e}");
        assert_eq!(fs::read_to_string(&file).unwrap(), original);

        // A file that fails check is not edited; a tab in the indentation is pointed at.
        let tab = file_with(
            "tab.yaml",
            include_str!("../tests/fixtures/tokenfiles/tab.yaml"),
        );
        let e = cmd("revoke", &[&tab, "--id", "a"]).unwrap_err();
        assert!(
            e.contains("line 4 has a tab in its indentation") && e.contains("fix that first"),
            "{e}"
        );
        let flow = file_with(
            "f.yaml",
            include_str!("../tests/fixtures/tokenfiles/flow-list.yaml"),
        );
        let e = cmd("add", &[&flow, "--id", "b", "--tenant", "t"]).unwrap_err();
        assert!(e.contains("flow-style list"), "{e}");
        let two = "{\"resources\": [RES, RES]}".replace(
            "RES",
            "{\"typed_config\": {\"@type\": \"type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\", \"config\": {\"configuration\": {\"@type\": \"type.googleapis.com/google.protobuf.Struct\", \"value\": {\"tokens\": []}}}}}",
        );
        let two = file_with("two.json", &two);
        let e = cmd("add", &[&two, "--id", "b", "--tenant", "t"]).unwrap_err();
        assert!(e.contains("holds 2 plugin configurations"), "{e}");
        assert!(
            cmd("list", &[&two])
                .unwrap()
                .stdout
                .contains("resources[1]")
        );
    }

    #[test]
    fn default_tenant_makes_tenant_optional() {
        let file = file_with(
            "e.yaml",
            include_str!("../tests/fixtures/tokenfiles/empty-flow.yaml"),
        );
        cmd("add", &[&file, "--id", "a"]).unwrap();
        assert_eq!(tokens_of(&file)[0].0, "a");
    }

    #[test]
    fn rotate_copies_scopes_and_shortens_the_old_expiry_only() {
        let text = "tokens:\n- id: svc-20260101\n  sha256: \"0000000000000000000000000000000000000000000000000000000000000001\"\n  tenant: t\n  signals: [traces]\n  rate: {requests_per_second: 5}\n  source_cidrs: [10.0.0.0/8]\n  expires_at: \"2026-06-03T00:00:00Z\"\n";
        let file = file_with("r.yaml", text);
        let done = cmd(
            "rotate",
            &[
                &file,
                "--id",
                "svc-20260101",
                "--expires",
                "2027-01-01T00:00:00Z",
            ],
        )
        .unwrap();
        let token = done.stdout.trim_end();
        let t = tokens_of(&file);
        // 7 days of overlap would be later than the current expiry: it stays.
        assert_eq!(t[0].2, Some(NOW + 2 * 86_400), "{}", done.stderr);
        assert!(done.stderr.contains("keeps its earlier expiry"));
        assert_eq!(t[1].0, "svc-20260601");
        assert_eq!(t[1].3, config::hex(&config::digest(token.as_bytes())));
        let new_text = fs::read_to_string(&file).unwrap();
        assert!(new_text.ends_with(
            "  tenant: \"t\"\n  signals: [\"traces\"]\n  rate: {\"requests_per_second\": 5}\n  source_cidrs: [\"10.0.0.0/8\"]\n  expires_at: \"2027-01-01T00:00:00Z\"\n"
        ), "{new_text}");
        // Again the same day: the next free id; the old one now expires after the overlap.
        cmd(
            "rotate",
            &[&file, "--id", "svc-20260601", "--overlap", "1h"],
        )
        .unwrap();
        let t = tokens_of(&file);
        assert_eq!(t[1].2, Some(NOW + 3600));
        assert_eq!(t[2].0, "svc-20260601-2");
        assert_eq!(t[2].2, None);
        let e = cmd(
            "rotate",
            &[&file, "--id", "svc-20260601", "--overlap", "soon"],
        )
        .unwrap_err();
        assert!(e.contains("--overlap"));
        let e = cmd(
            "rotate",
            &[&file, "--id", "svc-20260601", "--new-id", "svc-20260101"],
        )
        .unwrap_err();
        assert!(e.contains("duplicate id"), "{e}");
    }

    #[test]
    fn next_ids() {
        let none = |_: &str| false;
        assert_eq!(next_id("team-a", "20260601", none), "team-a-20260601");
        assert_eq!(
            next_id("team-a-20250101", "20260601", none),
            "team-a-20260601"
        );
        assert_eq!(
            next_id("team-a-20260601-3", "20260601", none),
            "team-a-20260601"
        );
        assert_eq!(
            next_id("team-a", "20260601", |c| c == "team-a-20260601"
                || c == "team-a-20260601-2"),
            "team-a-20260601-3"
        );
        let long = "x".repeat(64);
        let id = next_id(&long, "20260601", none);
        assert!(config::valid_id(&id) && id.len() <= 64, "{id}");
    }

    #[test]
    fn revoke_disables_or_deletes() {
        let file = file_with(
            "c.yaml",
            include_str!("../tests/fixtures/tokenfiles/comments.yaml"),
        );
        cmd("revoke", &[&file, "--id", "team-b"]).unwrap();
        assert!(tokens_of(&file)[1].1);
        let before = fs::read(&file).unwrap();
        let done = cmd("revoke", &[&file, "--id", "team-b"]).unwrap();
        assert!(done.stderr.contains("already disabled"));
        assert_eq!(fs::read(&file).unwrap(), before);
        cmd("revoke", &[&file, "--id", "team-b", "--delete"]).unwrap();
        let ids: Vec<String> = tokens_of(&file).into_iter().map(|t| t.0).collect();
        assert_eq!(ids, ["team-a", "team-c"]);
    }

    #[test]
    fn list_shows_every_state() {
        let text = r#"{"warn_before": "14d", "tokens": [
            {"id": "a", "sha256": "0000000000000000000000000000000000000000000000000000000000000001", "tenant": "t"},
            {"id": "b", "sha256": "0000000000000000000000000000000000000000000000000000000000000002", "tenant": "t", "expires_at": "2026-06-05T00:00:00Z", "signals": ["logs"]},
            {"id": "c", "sha256": "0000000000000000000000000000000000000000000000000000000000000003", "expires_at": "2026-01-01T00:00:00Z"},
            {"id": "d", "sha256": "0000000000000000000000000000000000000000000000000000000000000004", "disabled": true, "rate": {"requests_per_second": 2}},
            {"id": "e", "sha256": "0000000000000000000000000000000000000000000000000000000000000005", "not_before": "2027-01-01T00:00:00Z"}]}"#;
        let file = file_with("l.json", text);
        let out = cmd("list", &[&file]).unwrap().stdout;
        let states: Vec<&str> = out
            .lines()
            .skip(1)
            .map(|l| l.rsplit("  ").next().unwrap())
            .collect();
        assert_eq!(
            states,
            ["active", "expiring", "expired", "disabled", "not yet valid"],
            "{out}"
        );
        assert!(out.contains("b   t       logs    "), "{out}");
        let json: Value =
            serde_json::from_str(&cmd("list", &[&file, "--json"]).unwrap().stdout).unwrap();
        assert_eq!(json[4]["state"], "not_yet_valid");
        assert_eq!(json[3]["rate"]["requests_per_second"], 2);
        assert_eq!(json[2]["tenant"], Value::Null);
    }

    #[test]
    fn writes_are_atomic_keep_mode_and_follow_symlinks() {
        use std::os::unix::fs::PermissionsExt as _;
        let file = file_with("m.yaml", FIXTURES[0].1);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let link = format!("{file}.link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        cmd("add", &[&link, "--id", "x", "--tenant", "t"]).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert_eq!(tokens_of(&file).len(), 3);
        // Changed since it was read: nothing is written.
        let e = write_atomic(&file, b"something else", "tokens: []\n").unwrap_err();
        assert!(failure_text(e).contains("changed while"));
        assert_eq!(tokens_of(&file).len(), 3);
        let dir = Path::new(&file).parent().unwrap();
        let leftovers = fs::read_dir(dir).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        });
        assert_eq!(leftovers.count(), 0);
    }

    #[test]
    fn token_new_prints_an_indented_entry_or_json() {
        let out = cmd(
            "new",
            &[
                "--id",
                "n",
                "--tenant",
                "t",
                "--rate",
                "rps=5,burst=10",
                "--source-cidr",
                "10.0.0.0/8",
            ],
        )
        .unwrap()
        .stdout;
        let token = out.lines().nth(1).unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == TOKEN_PREFIX.len() + 43);
        assert!(
            out.contains("\n          - id: \"n\"\n            sha256: \""),
            "{out}"
        );
        assert!(
            out.contains("            rate: {\"burst\": 10, \"requests_per_second\": 5}\n"),
            "{out}"
        );
        let json = cmd("new", &["--id", "n", "--json"]).unwrap().stdout;
        let entry: Value = serde_json::from_str(json.lines().last().unwrap()).unwrap();
        assert_eq!(entry["id"], "n");
        assert!(
            cmd("new", &["--id", "n", "--signals", "spans"])
                .unwrap_err()
                .contains("signals[0]")
        );
    }

    /// Line-level diff (LCS): the old lines no longer there and the new lines not there before.
    fn diff<'a>(old: &'a str, new: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
        let a: Vec<&str> = old.split_inclusive('\n').collect();
        let b: Vec<&str> = new.split_inclusive('\n').collect();
        let mut l = vec![vec![0u16; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                l[i][j] = if a[i] == b[j] {
                    l[i + 1][j + 1] + 1
                } else {
                    l[i + 1][j].max(l[i][j + 1])
                };
            }
        }
        let (mut i, mut j, mut removed, mut added) = (0, 0, vec![], vec![]);
        while i < a.len() || j < b.len() {
            if i < a.len() && j < b.len() && a[i] == b[j] {
                i += 1;
                j += 1;
            } else if j < b.len() && (i == a.len() || l[i][j + 1] >= l[i + 1][j]) {
                added.push(b[j]);
                j += 1;
            } else {
                removed.push(a[i]);
                i += 1;
            }
        }
        // A JSON line that only gained or lost its trailing comma is not a change of content.
        let strip = |s: &str| s.trim_end().trim_end_matches(',').to_owned();
        let r: Vec<&str> = removed
            .iter()
            .copied()
            .filter(|x| !added.iter().any(|y| strip(x) == strip(y)))
            .collect();
        let ad: Vec<&str> = added
            .iter()
            .copied()
            .filter(|y| !removed.iter().any(|x| strip(x) == strip(y)))
            .collect();
        (r, ad)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add { signals: bool, expires: bool },
        Rotate(usize),
        Disable(usize),
        Delete(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<bool>(), any::<bool>())
                .prop_map(|(signals, expires)| Op::Add { signals, expires }),
            any::<usize>().prop_map(Op::Rotate),
            any::<usize>().prop_map(Op::Disable),
            any::<usize>().prop_map(Op::Delete),
        ]
    }

    /// A command's result, or None when it refused an entry written as `{…}` (the one thing
    /// the fixtures hold that cannot be changed in place).
    fn refused_in_flow_style(r: Result<Done, String>) -> Option<Done> {
        match r {
            Ok(d) => Some(d),
            Err(e) if e.contains("written in flow style") => None,
            Err(e) => panic!("{e}"),
        }
    }

    const ENTRY_KEYS: &[&str] = &[
        "id",
        "sha256",
        "tenant",
        "signals",
        "expires_at",
        "rate",
        "source_cidrs",
        "disabled",
        "tokens",
        "{",
        "}",
        "]",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        /// After any sequence of add/rotate/revoke on any fixture: `check` passes, the tokens
        /// are exactly what the commands meant, and no line outside the edited entries changed.
        #[test]
        fn edits_keep_check_passing_and_other_lines_identical(
            base in 0..FIXTURES.len(),
            ops in proptest::collection::vec(op(), 1..7),
        ) {
            let (name, text) = FIXTURES[base];
            let file = file_with(name, text);
            let mut model = tokens_of(&file);
            let mut added = 0;
            for op in ops {
                let old = fs::read_to_string(&file).unwrap();
                let pick = |n: usize| model.get(n % model.len().max(1)).map(|t| t.0.clone());
                let mut want_removed: Option<String> = None; // a digest the removed lines carry
                // The digest of the entry changed in place: a line of it may change (a JSON
                // entry on one line is that line).
                let mut target: Option<String> = None;
                let result = match &op {
                    Op::Add { signals, expires } => {
                        added += 1;
                        let id = format!("p{added}");
                        let mut args = vec![file.as_str(), "--id", &id, "--tenant", "t"];
                        if *signals { args.extend(["--signals", "logs,traces"]); }
                        if *expires { args.extend(["--expires", "90d"]); }
                        let done = cmd("add", &args).unwrap();
                        let digest = config::hex(&config::digest(done.stdout.trim_end().as_bytes()));
                        model.push((id, false, expires.then_some(NOW + 90 * 86_400), digest));
                        Some(())
                    }
                    Op::Rotate(n) => pick(*n).and_then(|id| {
                        let done = refused_in_flow_style(cmd("rotate", &[&file, "--id", &id, "--overlap", "2d"]))?;
                        let i = model.iter().position(|t| t.0 == id).unwrap();
                        target = Some(model[i].3.clone());
                        let until = NOW + 2 * 86_400;
                        if model[i].2.is_none_or(|e| until < e) { model[i].2 = Some(until); }
                        let digest = config::hex(&config::digest(done.stdout.trim_end().as_bytes()));
                        let new_id = tokens_of(&file).last().unwrap().0.clone();
                        model.push((new_id, false, None, digest));
                        Some(())
                    }),
                    Op::Disable(n) => pick(*n).and_then(|id| {
                        let i = model.iter().position(|t| t.0 == id).unwrap();
                        if model[i].1 {
                            return None; // already disabled: nothing changes (tested elsewhere)
                        }
                        refused_in_flow_style(cmd("revoke", &[&file, "--id", &id]))?;
                        target = Some(model[i].3.clone());
                        model[i].1 = true;
                        Some(())
                    }),
                    Op::Delete(n) => pick(*n).map(|id| {
                        cmd("revoke", &[&file, "--id", &id, "--delete"]).unwrap();
                        let i = model.iter().position(|t| t.0 == id).unwrap();
                        want_removed = Some(model.remove(i).3);
                    }),
                };
                if result.is_none() {
                    // Nothing to rotate, disable or delete, or an entry that cannot be edited.
                    prop_assert_eq!(fs::read_to_string(&file).unwrap(), old);
                    continue;
                }
                let new = fs::read_to_string(&file).unwrap();
                prop_assert_eq!(&tokens_of(&file), &model, "{:?} on {}", op, name);
                if old.contains("\r\n") {
                    prop_assert!(new.split_inclusive('\n').all(|l| l.ends_with("\r\n")), "{}", new);
                }
                if old.lines().count() < 2 {
                    continue; // a one-line JSON file: the model check above is what holds
                }
                let (removed, added_lines) = diff(&old, &new);
                let digests: Vec<&String> = model.iter().map(|t| &t.3).collect();
                let in_target = |r: &str| target.as_ref().is_some_and(|t| r.contains(t.as_str()));
                match &op {
                    Op::Add { .. } | Op::Rotate(_) => {
                        // Nothing removed but an empty `tokens: []` and an expiry being shortened.
                        for r in &removed {
                            prop_assert!(r.contains("[]") || (matches!(op, Op::Rotate(_)) && (r.contains("expires_at") || in_target(r))), "{:?}: removed {:?}", op, r);
                        }
                        prop_assert!(removed.len() <= 1, "{:?}: removed {:?}", op, removed);
                    }
                    Op::Disable(_) => {
                        prop_assert!(removed.len() <= 1 && removed.iter().all(|r| r.contains("disabled") || in_target(r)), "removed {:?}", removed);
                    }
                    Op::Delete(_) => {
                        let gone = want_removed.unwrap();
                        let joined = removed.concat();
                        prop_assert!(joined.contains(&gone), "{}", joined);
                        prop_assert!(digests.iter().all(|d| !joined.contains(d.as_str())), "{}", joined);
                        // The entry's own lines: no comment or blank line around it goes along.
                        let entry: Vec<&&str> = removed.iter().filter(|r| !r.contains("tokens")).collect();
                        for edge in [entry.first(), entry.last()].into_iter().flatten() {
                            let t = edge.trim();
                            prop_assert!(!t.is_empty() && !t.starts_with('#'), "removed {:?}", removed);
                        }
                    }
                }
                for a in &added_lines {
                    prop_assert!(ENTRY_KEYS.iter().any(|k| a.contains(k)), "{:?}: added {:?}", op, a);
                }
            }
        }
    }
}
