"""Offline checks on the deployed configurations that a reading could miss and a real cluster
would hit (issue 14): the size chain holds hop by hop, no backend writes under a read-only root,
mutual TLS is configured on both sides of the Envoy -> Alloy hop, Alloy's platform scraping is
bounded, and the exemplar label is the one the datasources link. Each check is also run on a
broken copy, which it must refuse."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

import limits
from limits import MiB

COMPOSE = yaml.safe_load((limits.ROOT / "compose.yaml").read_text())


# ----------------------------------------------------------------------------- size chain


def chain_problems(envoy_max: int, alloy: limits.Alloy, loki: dict, loki_over: dict, tempo: dict,
                   tempo_over: dict, mimir: dict, mimir_over: dict) -> tuple[list[str], list[str]]:
    """(table rows, problems): every hop must accept what the hop before it may send."""
    rows, problems = [], []

    def need(hop: str, limit: int, required: int, what: str):
        rows.append(f"{hop:<52} {limit:>12,}  needs >= {required:>12,} ({what})")
        if limit < required:
            problems.append(f"{hop}: {limit:,} < {required:,} ({what})")

    receiver = min(alloy.grpc_max_recv, alloy.http_max_body)
    need("Alloy receiver, per request (gRPC / HTTP)", receiver, envoy_max, "Envoy's max request")
    full_batch = alloy.batch_max_items * limits.ITEM_BUDGET
    if alloy.batch_max_items <= 0:
        problems.append("otelcol.processor.batch: send_batch_max_size must be set (0 = unbounded batches)")
    batch = max(receiver, full_batch)
    why = f"a single request, or {alloy.batch_max_items} items x {limits.ITEM_BUDGET} B"

    # Tempo: the OTLP gRPC receiver Alloy exports to, and the ingestion burst (a batch larger than
    # the burst is refused as rate-limited for ever).
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]
    need("Tempo OTLP gRPC max_recv_msg_size_mib", grpc.get("max_recv_msg_size_mib", 4) * MiB, batch, why)
    for tenant, o in {"(defaults)": tempo["overrides"]["defaults"], **limits.tenants(tempo_over)}.items():
        ing = (o or {}).get("ingestion") or {}
        need(f"Tempo burst_size_bytes {tenant}", ing.get("burst_size_bytes", 0), batch, why)

    # Loki: the OTLP push body, then the tenant's and the stream's bursts (MiB for the tenant).
    dist = loki.get("distributor") or {}
    need("Loki distributor max_recv_msg_size", dist.get("max_recv_msg_size", limits.LOKI_DEFAULT_MAX_RECV), batch, why)
    # ... which the distributor forwards to the ingester over Loki's own gRPC server, in a larger
    # representation: that server must take at least what the distributor accepts.
    need("Loki server grpc_server_max_recv_msg_size (distributor -> ingester)",
         (loki.get("server") or {}).get("grpc_server_max_recv_msg_size", limits.DSKIT_GRPC_DEFAULT),
         dist.get("max_recv_msg_size", limits.LOKI_DEFAULT_MAX_RECV), "Loki's push limit")
    lc = loki["limits_config"]
    for tenant, o in {"(defaults)": lc, **limits.tenants(loki_over)}.items():
        merged = {**lc, **(o or {})}  # Loki merges runtime overrides onto limits_config
        required, what = (limits.LOKI_WRITE_BATCH, "loki.write batch_size") if tenant == "platform" else (batch, why)
        need(f"Loki ingestion_burst_size_mb {tenant}", int(merged["ingestion_burst_size_mb"] * MiB), required, what)
        need(f"Loki per_stream_rate_limit_burst {tenant}", limits.loki_size(merged["per_stream_rate_limit_burst"]),
             required, what)

    # Mimir: the OTLP body, and the burst in samples (at least one per data point).
    md = mimir.get("distributor") or {}
    need("Mimir distributor max_otlp_request_size", md.get("max_otlp_request_size", limits.MIMIR_DEFAULT_MAX_OTLP),
         batch, why)
    ml = mimir["limits"]
    for tenant, o in {"(defaults)": ml, **limits.tenants(mimir_over)}.items():
        merged = {**ml, **(o or {})}
        required, what = ((limits.REMOTE_WRITE_MAX_SAMPLES, "remote_write max_samples_per_send") if tenant == "platform"
                          else (alloy.batch_max_items, "send_batch_max_size data points"))
        need(f"Mimir ingestion_burst_size (samples) {tenant}", merged["ingestion_burst_size"], required, what)
    return rows, problems


def deployed_chain(**replace):
    args = dict(envoy_max=limits.envoy_max_request(), alloy=limits.alloy(),
                loki=limits.load("loki/loki.yaml"), loki_over=limits.load("loki/overrides.yaml"),
                tempo=limits.load("tempo/tempo.yaml"), tempo_over=limits.load("tempo/overrides.yaml"),
                mimir=limits.load("mimir/mimir.yaml"), mimir_over=limits.load("mimir/overrides.yaml"))
    args.update(replace)
    return chain_problems(**args)


def test_every_hop_accepts_what_the_hop_before_it_may_send():
    rows, problems = deployed_chain()
    print("\n".join(rows))
    assert not problems, "\n".join(problems)


def test_the_size_chain_check_catches_the_defects_it_is_for():
    tempo = limits.load("tempo/tempo.yaml")
    del tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["max_recv_msg_size_mib"]
    _, problems = deployed_chain(tempo=tempo)
    assert any("Tempo OTLP gRPC" in p for p in problems), "Tempo's 4 MiB default must be refused"

    text = limits.ALLOY.read_text()
    assert "send_batch_max_size        = 8192" in text
    _, problems = deployed_chain(alloy=limits.alloy(text.replace("send_batch_max_size        = 8192",
                                                                 "send_batch_max_size        = 20000")))
    assert any("Tempo" in p for p in problems), "a bigger batch than the backends take must be refused"

    over = {"overrides": {"team-a": {"ingestion": {"rate_limit_bytes": 1, "burst_size_bytes": 15000000}}}}
    _, problems = deployed_chain(tempo_over=over)
    assert any("burst_size_bytes team-a" in p for p in problems)

    small = limits.alloy()
    small.grpc_max_recv = 4 * MiB
    _, problems = deployed_chain(alloy=small)
    assert any("Alloy receiver" in p for p in problems)


# ----------------------------------------------------------------------------- writable paths


# Path-valued settings whose defaults are relative (under the image's working directory `/`,
# read-only here) or otherwise outside the data volume, per backend; each must be set to a path
# on the data volume. Mimir 3.1: pkg/util/activitytracker/activity_tracker.go
# (./metrics-activity.log), pkg/ruler/ruler.go (./data-ruler/), blocks storage ./tsdb/,
# ./tsdb-sync/, ./data-compactor/, filesystem dirs blocks and ruler. Loki 3.7: everything derives
# from common.path_prefix (pkg/loki/config_wrapper.go applyPathPrefixDefaults). Tempo 3.0: the
# WAL, blocks and generator paths.
MUST_SET = {
    "mimir": [("activity_tracker", "filepath"), ("ruler", "rule_path"), ("blocks_storage", "tsdb", "dir"),
              ("blocks_storage", "bucket_store", "sync_dir"), ("compactor", "data_dir"),
              ("blocks_storage", "filesystem", "dir"), ("alertmanager", "data_dir"),
              ("alertmanager_storage", "filesystem", "dir")],
    "loki": [("common", "path_prefix"), ("compactor", "working_directory")],
    "tempo": [("storage", "trace", "wal", "path"), ("storage", "trace", "local", "path"),
              ("metrics_generator", "storage", "path"), ("live_store", "wal", "path"),
              ("live_store", "shutdown_marker_dir"), ("backend_scheduler", "local_work_path")],
}
# Files a backend only reads (they may sit on a read-only mount).
READ_ONLY_OK = {("runtime_config", "file"), ("overrides", "per_tenant_override_config"),
                ("alertmanager", "fallback_config_file"), ("ruler_storage", "local", "directory")}
# Directories read as <dir>/<tenant>/...: the mounts are below them (one per tenant).
PARENT_OF_MOUNTS = {("ruler_storage", "local", "directory")}


def mounts(backend: str) -> list[tuple[str, bool]]:
    """(mount path, writable) of the backend in the StatefulSet and in compose.yaml."""
    sts = limits.load(f"{backend}/statefulset.yaml")
    ctr = sts["spec"]["template"]["spec"]["containers"][0]
    out = [(m["mountPath"], not m.get("readOnly", False)) for m in ctr["volumeMounts"]]
    svc = COMPOSE["services"][backend]
    for v in svc.get("volumes", []):
        parts = v.split(":")
        out.append((parts[1], len(parts) < 3 or parts[2] != "ro"))
    out += [(t.split(":")[0], True) for t in svc.get("tmpfs", [])]
    return out


def path_problems(backend: str, cfg: dict) -> list[str]:
    problems = []
    for key in MUST_SET[backend]:
        node = cfg
        for k in key:
            node = (node or {}).get(k) if isinstance(node, dict) else None
        if not isinstance(node, str):
            problems.append(f"{backend}: {'.'.join(key)} is not set: its default is not on the data volume")
    # Both deployments must have every path under a mount (writable unless only read).
    where = mounts(backend)
    k8s = [(p, w) for p, w in where[:len(limits.load(f"{backend}/statefulset.yaml")["spec"]["template"]["spec"]
                                         ["containers"][0]["volumeMounts"])]]
    compose = where[len(k8s):]

    def walk(node, key):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, key + (k,))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and re.match(r"^\.{0,2}/", node) and "://" not in node:
            if not node.startswith("/"):
                problems.append(f"{backend}: {'.'.join(key)} = {node!r} is relative (the working directory is /)")
                return
            for name, table in (("k8s", k8s), ("compose", compose)):
                under = [w for m, w in table if node == m or node.startswith(m.rstrip("/") + "/")
                         or (key in PARENT_OF_MOUNTS and m.startswith(node.rstrip("/") + "/"))]
                if not under:
                    problems.append(f"{backend}: {'.'.join(key)} = {node} is on no {name} mount (read-only root)")
                elif not any(under) and key[-2:] not in READ_ONLY_OK and key not in READ_ONLY_OK:
                    problems.append(f"{backend}: {'.'.join(key)} = {node} is on a read-only {name} mount")

    walk(cfg, ())
    return problems


@pytest.mark.parametrize("backend,file", [("loki", "loki/loki.yaml"), ("mimir", "mimir/mimir.yaml"),
                                          ("tempo", "tempo/tempo.yaml")])
def test_backends_write_only_to_their_volumes(backend, file):
    assert not path_problems(backend, limits.load(file))


def test_the_path_check_catches_mimirs_activity_tracker():
    cfg = limits.load("mimir/mimir.yaml")
    broken = copy.deepcopy(cfg)
    del broken["activity_tracker"]
    assert any("activity_tracker.filepath is not set" in p for p in path_problems("mimir", broken))
    broken = copy.deepcopy(cfg)
    broken["ruler"]["rule_path"] = "./data-ruler/"
    assert any("relative" in p for p in path_problems("mimir", broken))
    broken = copy.deepcopy(cfg)
    broken["compactor"]["data_dir"] = "/etc/mimir/config/compactor"
    assert any("read-only" in p for p in path_problems("mimir", broken))


# ----------------------------------------------------------------------------- mutual TLS


CLIENT_DIR = "/etc/otlp-gate/alloy-client-tls"
ALLOY_TLS = "/etc/alloy-tls"


def mtls_problems(envoy: dict, sds: dict, alloy_text: str, compose: dict) -> list[str]:
    problems = []
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    for name, alpn in (("alloy_http", "http/1.1"), ("alloy_grpc", "h2")):
        ts = (clusters[name].get("transport_socket") or {}).get("typed_config") or {}
        ctx = ts.get("common_tls_context") or {}
        sds_cfg = (ctx.get("tls_certificate_sds_secret_configs") or [{}])[0]
        vc = ctx.get("validation_context") or {}
        if not ts.get("@type", "").endswith("UpstreamTlsContext"):
            problems.append(f"envoy {name}: no UpstreamTlsContext")
            continue
        if sds_cfg.get("name") != "alloy_client" or not sds_cfg.get("sds_config"):
            problems.append(f"envoy {name}: no client certificate (SDS alloy_client)")
        if vc.get("trusted_ca", {}).get("filename") != f"{CLIENT_DIR}/ca.crt" or not vc.get("match_typed_subject_alt_names"):
            problems.append(f"envoy {name}: Alloy's certificate is not verified (trusted CA + SAN)")
        if ctx.get("alpn_protocols") != [alpn]:
            problems.append(f"envoy {name}: ALPN must be {alpn}")
    secret = sds["resources"][0]
    files = secret["tls_certificate"]
    if (files["certificate_chain"]["filename"], files["private_key"]["filename"], files["watched_directory"]["path"]) != (
            f"{CLIENT_DIR}/tls.crt", f"{CLIENT_DIR}/tls.key", CLIENT_DIR):
        problems.append("alloy-client-sds.yaml: must read and watch " + CLIENT_DIR)
    receiver = limits.alloy_block(alloy_text, 'otelcol.receiver.otlp "gateway"')
    for server in ("grpc", "http"):
        try:
            tls = limits.alloy_block(limits.alloy_block(receiver, server), "tls")
        except AssertionError:
            problems.append(f"alloy {server}: no tls block")
            continue
        want = {"cert_file": f"{ALLOY_TLS}/tls.crt", "key_file": f"{ALLOY_TLS}/tls.key",
                "client_ca_file": f"{ALLOY_TLS}/ca.crt"}
        for k, v in want.items():
            if limits.alloy_attr(tls, k) != v:
                problems.append(f"alloy {server}: tls {k} must be {v}")
    mounts_of = {s: {v.split(":")[1]: v.split(":")[0] for v in compose["services"][s].get("volumes", [])}
                 for s in ("envoy", "alloy")}
    if mounts_of["envoy"].get(CLIENT_DIR) != "gateway-tls" or mounts_of["alloy"].get(ALLOY_TLS) != "alloy-tls":
        problems.append("compose: the certificate volumes are not mounted where Envoy and Alloy read them")
    if mounts_of["envoy"].get("/etc/envoy/alloy-client-sds.yaml") != "./envoy/alloy-client-sds.yaml":
        problems.append("compose: Envoy lacks its SDS file")
    return problems


def deployed_mtls():
    return (yaml.safe_load(limits.ENVOY.read_text()),
            yaml.safe_load((limits.ROOT / "envoy" / "alloy-client-sds.yaml").read_text()),
            limits.ALLOY.read_text(), copy.deepcopy(COMPOSE))


def test_mutual_tls_is_configured_on_both_sides():
    assert not mtls_problems(*deployed_mtls())


def test_the_mtls_check_catches_a_missing_side():
    envoy, sds, alloy_text, compose = deployed_mtls()
    del envoy["static_resources"]["clusters"][0]["transport_socket"]
    assert any("no UpstreamTlsContext" in p for p in mtls_problems(envoy, sds, alloy_text, compose))
    envoy, sds, alloy_text, compose = deployed_mtls()
    cut = alloy_text.replace(f'      client_ca_file  = "{ALLOY_TLS}/ca.crt"\n', "", 1)
    assert cut != alloy_text
    assert any("client_ca_file" in p for p in mtls_problems(envoy, sds, cut, compose))


# ----------------------------------------------------------------------------- the rest


def test_platform_scraping_is_bounded_to_listed_namespaces():
    text = (limits.ROOT / "alloy" / "kubernetes.alloy").read_text()
    pods = limits.alloy_block(text, 'discovery.kubernetes "pods"')
    assert "own_namespace = true" in limits.alloy_block(pods, "namespaces")
    scrape = limits.alloy_block(text, 'prometheus.scrape "annotated_pods"')
    for attr in ("sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit"):
        assert int(limits.alloy_attr(scrape, attr) or 0) > 0, attr


def test_exemplars_are_kept_and_linked_by_the_label_tempo_writes():
    mimir = limits.load("mimir/mimir.yaml")
    assert mimir["limits"]["max_global_exemplars_per_user"] > 0, "Mimir drops exemplars at 0 (its default)"
    label = limits.load("tempo/tempo.yaml")["overrides"]["defaults"]["metrics_generator"]["trace_id_label_name"]
    ds = limits.load("grafana/datasources.yaml")["datasources"]
    links = [d["name"] for x in ds for d in (x.get("jsonData") or {}).get("exemplarTraceIdDestinations", [])]
    assert links and set(links) == {label}, f"datasources link {links}, Tempo writes {label!r}"


def test_grafana_metrics_endpoint_is_off_everywhere():
    sts = limits.load("grafana/statefulset.yaml")
    env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env.get("GF_METRICS_ENABLED") == "false"
    assert COMPOSE["services"]["grafana"]["environment"].get("GF_METRICS_ENABLED") == "false"
    assert "admin" not in str(COMPOSE["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]).split(":-")[1:]


def test_plain_http_redirects_keep_the_method_and_body():
    docs = [d for d in yaml.safe_load_all((limits.K8S / "ingress.yaml").read_text()) if d]
    for d in docs:
        ann = d["metadata"]["annotations"]
        assert ann.get("haproxy.org/ssl-redirect-code") == "308", d["metadata"]["name"]
