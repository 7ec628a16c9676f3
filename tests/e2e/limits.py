"""The size limits of every hop, read from the files the bundle deploys (never restated here):
client -> Envoy (envoy/envoy.yaml) -> Alloy's receiver and batches (alloy/config.alloy) -> Loki,
Mimir, Tempo (k8s/base/*/). Used by the offline size-chain test and by tests/backends, which
sends the largest batch Alloy's settings can produce.

Backend defaults that the configs do not set are taken from the pinned versions' sources (cited
at each constant)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVOY = ROOT / "envoy" / "envoy.yaml"
ALLOY = ROOT / "alloy" / "config.alloy"
K8S = ROOT / "k8s" / "base"

MiB = 1 << 20
# A full batch may average this many bytes per item (span, log record, data point) and still be
# accepted everywhere; the README's size chain states it. Real items are mostly 0.3-2 KiB.
ITEM_BUDGET = 4096

# Loki 3.7.6 pkg/distributor/distributor.go: -distributor.max-recv-msg-size 100<<20 (the OTLP
# push body, compressed), -distributor.max-decompressed-size 5000<<20.
LOKI_DEFAULT_MAX_RECV = 100 * MiB
# dskit server (Loki 3.7.6 vendor/github.com/grafana/dskit/server/server.go):
# -server.grpc-max-recv-msg-size-bytes 4 MiB.
DSKIT_GRPC_DEFAULT = 4 * MiB
# Mimir 3.1: -distributor.max-otlp-request-size, 100 MiB of uncompressed OTLP (Mimir CHANGELOG
# 2.14 "#8574"; pkg/distributor/distributor.go maxOTLPRequestSizeFlag).
MIMIR_DEFAULT_MAX_OTLP = 100 * MiB
# Alloy v1.18.1 loki.write endpoint batch_size default "1MiB" (the platform tenant's logs).
LOKI_WRITE_BATCH = 1 * MiB
# Alloy v1.18.1 prometheus.remote_write queue_config max_samples_per_send default 2000.
REMOTE_WRITE_MAX_SAMPLES = 2000


def alloy_block(text: str, header: str) -> str:
    """The body of the block whose header (e.g. `otelcol.processor.batch "per_tenant"` or
    `grpc`) opens with `{` at the start of a line; braces in strings are not expected here."""
    m = re.search(r"^\s*" + re.escape(header) + r"\s*\{", text, re.M)
    if not m:
        raise AssertionError(f"{header!r} block not found")
    depth, i = 1, m.end()
    while depth:
        if i >= len(text):
            raise AssertionError(f"{header!r} block is not closed")
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def alloy_attr(block: str, name: str) -> str | None:
    """A top-level attribute of a block body (nested blocks skipped), without quotes."""
    depth = 0
    for line in block.splitlines():
        s = line.split("//")[0].strip()
        if depth == 0:
            m = re.match(rf"{re.escape(name)}\s*=\s*(.+)$", s)
            if m:
                return m.group(1).strip().strip('"')
        depth += s.count("{") - s.count("}")
    return None


def size(value: str) -> int:
    """Alloy's byte sizes (alecthomas/units: 16MiB binary, 16MB decimal) or a plain number."""
    m = re.fullmatch(r"(\d+)\s*([KMG]i?B)?", str(value).strip())
    if not m:
        raise AssertionError(f"cannot read size {value!r}")
    unit = {None: 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m.group(2)]
    return int(m.group(1)) * unit


def loki_size(value: str) -> int:
    """Loki's flagext.ByteSize (pkg/util/flagext/bytesize.go): upper-cased, then c2h5oh/datasize,
    whose KB/MB/GB are binary; "32MiB" becomes "32MIB" and is refused at start."""
    m = re.fullmatch(r"(\d+)\s*([KMG]B)?", str(value).strip().upper())
    if not m:
        raise AssertionError(f"Loki refuses the size {value!r} (use e.g. 32MB, which is 32 MiB)")
    return int(m.group(1)) * {None: 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[m.group(2)]


@dataclass
class Alloy:
    grpc_max_recv: int
    http_max_body: int
    batch_max_items: int
    batch_items: int


def alloy(text: str | None = None) -> Alloy:
    text = text if text is not None else ALLOY.read_text()
    receiver = alloy_block(text, 'otelcol.receiver.otlp "gateway"')
    batch = alloy_block(text, 'otelcol.processor.batch "per_tenant"')
    return Alloy(
        grpc_max_recv=size(alloy_attr(alloy_block(receiver, "grpc"), "max_recv_msg_size") or "4MiB"),
        http_max_body=size(alloy_attr(alloy_block(receiver, "http"), "max_request_body_size") or "20MiB"),
        batch_max_items=int(alloy_attr(batch, "send_batch_max_size") or 0),
        batch_items=int(alloy_attr(batch, "send_batch_size") or 8192),
    )


def envoy_max_request(doc: dict | None = None) -> int:
    doc = doc if doc is not None else yaml.safe_load(ENVOY.read_text())
    found = []
    for lst in doc["static_resources"]["listeners"]:
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                for hf in f.get("typed_config", {}).get("http_filters", []):
                    if hf.get("name") == "envoy.filters.http.buffer":
                        found.append(hf["typed_config"]["max_request_bytes"])
    if len(found) != 1:
        raise AssertionError(f"expected one buffer filter in envoy.yaml, found {len(found)}")
    return found[0]


def load(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


def tenants(overrides: dict) -> dict:
    return (overrides or {}).get("overrides") or {}
