"""components/object-storage against a real S3 API (moto_server): Loki and Tempo started with the
production object-storage configs (k8s/components/object-storage/{loki,tempo}.yaml, rendered by
backends.py), data pushed with the OpenTelemetry SDK as Alloy sends it (OTLP + X-Scope-OrgID),
the backend stopped gracefully, its local volume emptied, and the data read back from the
bucket by the restarted backend: for its tenant, and not for another tenant."""

from __future__ import annotations

import time

import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

import backends as bk
from conftest import batch, report

COMPONENT = bk.ROOT / "k8s/components/object-storage"


def loki_lines(url: str, tenant: str, service: str, must: bool = True) -> list[str] | None:
    """The log lines of `service` for `tenant`; with must=False, None when Loki answers 5xx or
    not within 20 s (a ring still settling after a replica left)."""
    now = time.time_ns()
    try:
        r = requests.get(f"{url}/loki/api/v1/query_range", headers={"X-Scope-OrgID": tenant},
                         timeout=90 if must else 20, params={
                             "query": f'{{service_name="{service}"}}', "start": now - 3600 * 10**9,
                             "end": now + 60 * 10**9, "limit": 100})
    except requests.Timeout:
        if must:
            raise
        return None  # a querier still waiting on the replica that left
    if not must and r.status_code >= 500:
        return None
    assert r.status_code == 200, f"Loki query for {tenant}: {r.status_code} {r.text[:300]}"
    return [line for stream in r.json()["data"]["result"] for _, line in stream["values"]]


def same(got: list[str] | None, want: list[str]) -> bool:
    return got is not None and sorted(got) == sorted(want)


def test_loki_replicas_share_a_ring_and_keep_logs_in_the_bucket(loki_bin, s3, tmp_path, marker):
    """Three replicas, as the component runs them: replication factor 3, memberlist, one bucket."""
    s3.create_bucket("loki-chunks")
    env = s3.env(LOKI_BUCKET="loki-chunks")
    replicas = [bk.Backend("loki", loki_bin, COMPONENT / "loki.yaml", tmp_path / f"loki-{i}", env=env, instance=i)
                for i in range(3)]
    for r in replicas:
        r.peers = [x.ports["memberlist"] for x in replicas]
    try:
        for r in replicas:
            r.start()
        report(f"3 Loki replicas rendered from {COMPONENT.name}/loki.yaml, changed: {', '.join(replicas[0].changed)}")
        b = batch(marker, marker)
        # Written through replica 0 (its distributor needs 2 of the 3 ingesters in the ring) ...
        exporter = OTLPLogExporter(endpoint=f"{replicas[0].url}/otlp/v1/logs",
                                   headers={"X-Scope-OrgID": "team-a"}, timeout=30)
        assert exporter.export(b.logs) == LogRecordExportResult.SUCCESS
        exporter.shutdown()
        # ... and read through replica 2 (its querier asks the ingesters it finds in the ring).
        bk.wait_for(lambda: sorted(loki_lines(replicas[2].url, "team-a", marker)) == sorted(b.log_bodies), 60,
                    "the logs through another replica")

        # One replica loses its volume: the others still hold the data; it rejoins empty.
        replicas[1].stop()
        replicas[1].wipe()
        bk.wait_for(lambda: same(loki_lines(replicas[2].url, "team-a", marker, must=False), b.log_bodies), 240,
                    "the logs from the two remaining replicas")
        replicas[1].start()
        bk.wait_for(lambda: same(loki_lines(replicas[1].url, "team-a", marker, must=False), b.log_bodies), 240,
                    "the logs through the replica that lost its volume")
        report("one replica stopped and emptied: the other two served the logs; it rejoined and serves them")

        # Every replica stops (each flushes its chunks to the bucket) and loses its volume.
        for r in replicas:
            r.stop()
        keys = s3.keys("loki-chunks")
        assert any(k.startswith("team-a/") for k in keys), f"no team-a chunk in the bucket: {keys[:20]}"
        assert any(k.startswith("index/") for k in keys), f"no TSDB index in the bucket: {keys[:20]}"
        report(f"bucket after the stop: {len(keys)} objects ({sum(k.startswith('team-a/') for k in keys)} "
              f"team-a chunks)")
        for r in replicas:
            r.wipe()
            r.start()
        lines = bk.wait_for(lambda: loki_lines(replicas[0].url, "team-a", marker, must=False), 240,
                            "the logs served from the bucket after the restart")
        assert sorted(lines) == sorted(b.log_bodies), "logs lost or duplicated"
        assert loki_lines(replicas[0].url, "team-b", marker) == [], "team-b reads team-a's logs"
        report(f"all three restarted with empty volumes: team-a reads its {len(lines)} log lines "
              f"(once each), team-b none")
    finally:
        for r in replicas:
            r.stop()


def tempo_trace(url: str, tenant: str, trace_id: str) -> int:
    return requests.get(f"{url}/api/traces/{trace_id}", headers={"X-Scope-OrgID": tenant}, timeout=30).status_code


def test_tempo_keeps_traces_in_the_bucket_across_an_empty_volume(tempo_bin, s3, tmp_path, marker):
    s3.create_bucket("tempo-traces")
    tempo = bk.Backend("tempo", tempo_bin, COMPONENT / "tempo.yaml", tmp_path / "tempo",
                       env=s3.env(TEMPO_BUCKET="tempo-traces")).start()
    report(f"tempo rendered from {COMPONENT.name}/tempo.yaml, changed: {', '.join(tempo.changed)}")
    try:
        b = batch(marker, marker)
        trace_id = format(b.spans[0].context.trace_id, "032x")
        exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{tempo.ports['otlp_grpc']}", insecure=True,
                                    headers=(("x-scope-orgid", "team-a"),), timeout=30)
        assert exporter.export(b.spans) == SpanExportResult.SUCCESS
        exporter.shutdown()
        # The live store cuts a block after max_block_duration and writes it to the bucket.
        blocks = bk.wait_for(lambda: [k for k in s3.keys("tempo-traces", "team-a/") if k.endswith("meta.json")],
                             240, "a team-a block in the bucket", interval=2)
        report(f"bucket: team-a block(s) {sorted({k.split('/')[1] for k in blocks})}")
        tempo.stop()

        tempo.wipe()
        tempo.start()
        bk.wait_for(lambda: tempo_trace(tempo.url, "team-a", trace_id) == 200, 180,
                    "the trace served from the bucket after the restart", interval=2)
        assert tempo_trace(tempo.url, "team-b", trace_id) == 404, "team-b reads team-a's trace"
        report(f"after an empty-volume restart: team-a reads trace {trace_id}, team-b gets 404")
    finally:
        tempo.stop()
