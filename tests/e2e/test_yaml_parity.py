"""`otlp-gate check` against real Envoy 1.40, spelling by spelling (issue: a file `check` passes
must not be one Envoy reads differently).

Every scalar spelling below goes, unchanged, into every place of a token file where a scalar can
stand. Each file is run through `otlp-gate check` and loaded into a running Envoy through ECDS
(the kubelet-style swap production uses). The two must agree on accepting or refusing it, and
when both accept, the configuration the filter loaded must be the one `check` described: the
content hash the filter logs as it loads the file (and reports on /healthz) equals the one
`check` printed (a hash over every value, after the filter's own parsing).

Nothing here predicts an outcome: the test only compares the two. (`filter/src/envoy_yaml.rs`
has unit tests with what Envoy makes of each spelling.)
"""

from __future__ import annotations

import re
import time

import pytest

import conftest
import render
import stack as st

# Scalar spellings, written into the YAML exactly as they are here.
SPELLINGS = [
    # booleans, YAML 1.1 and 1.2, in every case yaml-cpp knows, and one it does not
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
    "true", "True", "TRUE", "false", "False", "FALSE", "yEs", "tRUE",
    # nulls and empties
    "~", "null", "Null", "NULL", "", "''", '""',
    # integers: small, the 32-bit edge, past 2^53, 2^63 and 2^64, signs, octal, hex, YAML 1.2 octal
    "0", "7", "-1", "+5", "2147483647", "2147483648", "-2147483649", "5000000000",
    "9007199254740993", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
    "18446744073709551616", "010", "08", "0x1F", "0o17", "1_000",
    # fractions, exponents, infinities
    "0.5", ".5", "1.0", "1e3", "1E+3", "5e9", ".inf", "-.inf", ".nan", "inf", "NaN",
    # quoted, tagged
    '"yes"', "'010'", '"5000000000"', '"0.5"', "'~'", "!!str 5", "! yes", "!!int '7'",
    # values that are right for some places
    "60s", "team-b", "x-custom", "dry_run", "10.1.2.0/24", "2027-01-01T00:00:00Z", "logs",
]

# Where a scalar can go: the template marks each place with <<its path>>.
TOKEN_SHA = "5" * 63 + "a"
PLAINTEXT = "parity-Pq7Lm2Vz9Kc4Rb8Nw3Yd6Ht1Jp5Gs0"
TEMPLATE = """path_prefix: <<path_prefix>>
tenant_header: <<tenant_header>>
default_tenant: <<default_tenant>>
identity_header: <<identity_header>>
accept_basic: <<accept_basic>>
api_key_header: <<api_key_header>>
realm: <<realm>>
mode: <<mode>>
default_rate:
  requests_per_second: <<default_rate.requests_per_second>>
  bytes_per_second: <<default_rate.bytes_per_second>>
  burst: <<default_rate.burst>>
failed_auth:
  enabled: <<failed_auth.enabled>>
  max_failures: <<failed_auth.max_failures>>
  window: <<failed_auth.window>>
  cooldown: <<failed_auth.cooldown>>
  table_size: <<failed_auth.table_size>>
trusted_proxies:
- <<trusted_proxies[0]>>
warn_before: <<warn_before>>
tokens:
- id: <<tokens[0].id>>
  sha256: <<tokens[0].sha256>>
  tenant: <<tokens[0].tenant>>
  signals:
  - <<tokens[0].signals[0]>>
  not_before: <<tokens[0].not_before>>
  expires_at: <<tokens[0].expires_at>>
  disabled: <<tokens[0].disabled>>
  rate:
    requests_per_second: <<tokens[0].rate.requests_per_second>>
    bytes_per_second: <<tokens[0].rate.bytes_per_second>>
    burst: <<tokens[0].rate.burst>>
  source_cidrs:
  - <<tokens[0].source_cidrs[0]>>
  mode: <<tokens[0].mode>>
- id: plain
  token: <<tokens[1].token>>
"""
BASELINE = {
    "path_prefix": "/observability", "tenant_header": "x-scope-orgid", "default_tenant": "fallback",
    "identity_header": "x-otlp-token-id", "accept_basic": "true", "api_key_header": "x-api-key",
    "realm": "otlp", "mode": "enforce",
    "default_rate.requests_per_second": "50", "default_rate.bytes_per_second": "5000000",
    "default_rate.burst": "100",
    "failed_auth.enabled": "true", "failed_auth.max_failures": "30", "failed_auth.window": "60s",
    "failed_auth.cooldown": "300s", "failed_auth.table_size": "4096",
    "trusted_proxies[0]": "10.0.0.0/8", "warn_before": "14d",
    "tokens[0].id": "parity", "tokens[0].sha256": f'"{TOKEN_SHA}"', "tokens[0].tenant": "team-a",
    "tokens[0].signals[0]": "traces", "tokens[0].not_before": "2020-01-01T00:00:00Z",
    "tokens[0].expires_at": "2099-01-01T00:00:00Z", "tokens[0].disabled": "false",
    "tokens[0].rate.requests_per_second": "5", "tokens[0].rate.bytes_per_second": "50000",
    "tokens[0].rate.burst": "10", "tokens[0].source_cidrs[0]": "192.0.2.0/24",
    "tokens[0].mode": "enforce", "tokens[1].token": PLAINTEXT,
}
PLACES = list(BASELINE)
PLACEHOLDER_KEY = "otlp_gate_parity_placeholder"
LOADED = re.compile(r"configuration loaded: generation \d+, \d+ token\(s\), sha256 ([0-9a-f]{64})")


def config_text(place: str | None, spelling: str) -> str:
    values = dict(BASELINE)
    if place is not None:
        values[place] = spelling
    return re.sub(r"<<([^>]+)>>", lambda m: values[m.group(1)], TEMPLATE)


def token_file(config: str, version: str) -> str:
    """The production ECDS document with `config` (YAML text) as the plugin configuration.

    The plugin's `name` carries `version`: Envoy skips a resource whose content equals the last
    one it received, even a refused one, and reports that as a successful update without loading
    anything (seen with 1.40: `yes` after `true` in a place that refuses booleans). A unique name
    makes Envoy judge every file; the filter never reads the name."""
    doc = render.token_doc({PLACEHOLDER_KEY: True}, version)
    render.plugin_config(doc)["name"] = f"otlp-gate-{version}"
    text = render.dump(doc)
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.strip() == f"{PLACEHOLDER_KEY}: true"]
    assert len(at) == 1, "placeholder not found in the rendered token file"
    indent = lines[at[0]][: len(lines[at[0]]) - len(lines[at[0]].lstrip())]
    body = "".join(indent + line + "\n" if line else "\n" for line in config.splitlines())
    return "".join(lines[: at[0]]) + body + "".join(lines[at[0] + 1:])


def cli_verdict(path) -> tuple[bool, str | None, str]:
    out = st.cli_check(path)
    m = re.search(r"config sha256 \(healthz reports it once this config is loaded\): ([0-9a-f]{64})", out.stdout)
    if out.returncode == 0 and m:
        return True, m.group(1), out.stdout
    assert out.returncode == 1, f"check exited {out.returncode}: {out.stderr}"
    return False, None, out.stderr


class Envoy:
    """An Envoy with one worker, loading each file through ECDS."""

    def __init__(self, s: st.Stack):
        self.s = s

    def counters(self) -> tuple[int, int, int]:
        r = st.request(f"{self.s.admin_url}/stats?filter=^{re.escape(st.ECDS_STATS)}update_&format=json",
                       timeout=5)
        assert r is not None and r.status == 200
        values = {x["name"].rsplit(".", 1)[1]: x.get("value", 0) for x in r.json()["stats"] if "name" in x}
        return (values.get("update_success", 0), values.get("update_rejected", 0),
                values.get("update_failure", 0))

    def verdict(self, text: str, expect_hash: str | None) -> tuple[bool, str | None]:
        before = self.counters()
        log = self.s.envoy.err_path
        offset = log.stat().st_size
        self.s.swap_text(text)

        def moved():
            now = self.counters()
            return now if now != before else None

        now = st.wait_until(moved, 20, "Envoy to take up the token file", interval=0.01,
                            diagnose=self.s.envoy.tail)
        if now[0] == before[0]:
            return False, None
        # Accepted: what the filter loaded, as it logs it (every VM logs the same line; the
        # probe's /healthz cannot tell when the file moves `path_prefix`).
        def loaded():
            with open(log, "rb") as f:
                f.seek(offset)
                found = LOADED.findall(f.read().decode(errors="replace"))
            return found[-1] if found else None

        return True, st.wait_until(loaded, 5, "the filter's log line for the loaded file", interval=0.01)


@pytest.fixture(scope="module")
def envoy(workdir, module, cli):
    conftest.register_secret(PLAINTEXT)
    first = {"tokens": [{"id": "boot", "sha256": TOKEN_SHA, "tenant": "t"}]}
    s = st.Stack(workdir / "parity", first, concurrency=1, haproxy=False).start()
    yield Envoy(s)
    s.close()


def test_baseline_is_accepted_by_both(envoy, tmp_path):
    path = tmp_path / "otlp-gate.yaml"
    text = token_file(config_text(None, ""), "baseline")
    path.write_text(text)
    ok, digest, out = cli_verdict(path)
    assert ok, out
    assert envoy.verdict(text, digest) == (True, digest)


def test_every_spelling_in_every_place_reads_the_same_in_check_and_envoy(envoy, tmp_path):
    path = tmp_path / "otlp-gate.yaml"
    mismatches, counts = [], {"both accept": 0, "both refuse": 0}
    started = time.monotonic()
    for n, (place, spelling) in enumerate((p, s) for p in PLACES for s in SPELLINGS):
        text = token_file(config_text(place, spelling), f"parity-{n}")
        path.write_text(text)
        cli_ok, cli_hash, _ = cli_verdict(path)
        envoy_ok, envoy_hash = envoy.verdict(text, cli_hash)
        if (cli_ok, cli_hash) != (envoy_ok, envoy_hash):
            mismatches.append(f"{place}: {spelling!r}: check {'accepts ' + cli_hash[:12] if cli_ok else 'refuses'}, "
                              f"Envoy {'accepts ' + str(envoy_hash)[:12] if envoy_ok else 'refuses'}")
        else:
            counts["both accept" if cli_ok else "both refuse"] += 1
    conftest.report(f"YAML parity: {len(PLACES)} places x {len(SPELLINGS)} spellings = "
                    f"{len(PLACES) * len(SPELLINGS)} token files; check and Envoy agree on "
                    f"{counts['both accept']} accepted (same config hash) and {counts['both refuse']} refused, "
                    f"{len(mismatches)} disagreements ({time.monotonic() - started:.0f} s)")
    assert not mismatches, "\n".join(mismatches)
    assert counts["both accept"] > len(PLACES) and counts["both refuse"] > len(PLACES), counts
