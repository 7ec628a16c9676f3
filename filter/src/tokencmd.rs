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
