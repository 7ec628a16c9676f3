//! Hostile input never crashes the checker: random token soup and random byte-level damage to
//! the real configuration always end in a result (usually a list of errors), never a panic.

use alloy_check::{Source, check};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "otelcol.receiver.otlp",
    "\"x\"",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "=",
    "==",
    ",",
    ".",
    "\n",
    "a",
    "output",
    "logs",
    "1",
    "1.5e3",
    "true",
    "null",
    "\"\\u00e9\"",
    "`raw`",
    "//c\n",
    "/* c */",
    "!",
    "-",
    "^",
    "||",
    "&&",
    "sys.env",
    "\"unterminated",
    "'",
    "\\",
    "ü",
    "\t",
    "otelcol.processor.batch.default.input",
    "prometheus.scrape",
    "forward_to",
    "targets",
];

#[test]
fn random_token_soup_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(60);
        let text: String = (0..len)
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect::<Vec<_>>()
            .join(" ");
        let _ = check(&[Source::new("soup.alloy", text)]);
    }
}

#[test]
fn damaged_real_config_never_panics_and_is_mostly_refused() {
    let path = format!("{}/../../alloy/config.alloy", env!("CARGO_MANIFEST_DIR"));
    let good = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(good.len() > 1000, "{path}");
    let mut rng = Rng(42);
    let mut refused = 0;
    let rounds = 2000;
    for _ in 0..rounds {
        let mut chars: Vec<char> = good.chars().collect();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(chars.len());
            match rng.below(3) {
                0 => {
                    chars.remove(at);
                }
                1 => chars.insert(at, ['{', '}', '"', '=', '\n', '.', 'x'][rng.below(7)]),
                _ => {
                    let other = rng.below(chars.len());
                    chars.swap(at, other);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        if check(&[Source::new("damaged.alloy", text)]).is_err() {
            refused += 1;
        }
    }
    // Damage inside comments or string values can leave a valid config; most damage must not.
    assert!(
        refused * 2 > rounds,
        "only {refused} of {rounds} damaged copies refused"
    );
}
