"""Telemetry made and sent with the official OpenTelemetry Python SDK and its OTLP exporters.

Spans, log records and metrics are produced by the SDK's own providers (collected in memory), then
handed to a real OTLP exporter, whose `export()` result says whether the server accepted them:
  http-protobuf  opentelemetry-exporter-otlp-proto-http
  http-json      opentelemetry-exporter-otlp-json-http
  grpc           opentelemetry-exporter-otlp-proto-grpc
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
import requests
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

PROTOCOLS = ("http-protobuf", "http-json", "grpc")

# The exporters log each failure (status and reason, never headers); keep test output readable.
logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)


@dataclass
class Batch:
    """What one test sends: the SDK objects and what the receiver should see for them."""

    service: str
    spans: list
    logs: list
    metrics: object  # MetricsData
    span_names: list[str]
    log_bodies: list[str]
    metric_points: int


def make_batch(service: str, n_spans: int = 3, n_logs: int = 2, n_points: int = 4, tag: str = "") -> Batch:
    resource = Resource.create({"service.name": service})

    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    tracer = tracer_provider.get_tracer("otlp-gate-e2e")
    span_names = [f"{tag}span-{i}" for i in range(n_spans)]
    for name in span_names:
        with tracer.start_as_current_span(name):
            pass
    spans = list(span_exporter.get_finished_spans())
    tracer_provider.shutdown()

    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger = logger_provider.get_logger("otlp-gate-e2e")
    log_bodies = [f"{tag}log-{i}" for i in range(n_logs)]
    for body in log_bodies:
        logger.emit(body=body, severity_text="INFO")
    logs = list(log_exporter.get_finished_logs())
    logger_provider.shutdown()

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    counter = meter_provider.get_meter("otlp-gate-e2e").create_counter(f"{tag}requests")
    for i in range(n_points):  # one data point per distinct attribute set
        counter.add(i + 1, {"route": f"/r{i}"})
    metrics = reader.get_metrics_data()
    meter_provider.shutdown()

    return Batch(service, spans, logs, metrics, span_names, log_bodies, n_points)


def exporters(protocol: str, *, https_url: str, grpc_target: str, ca: Path, token: str | None,
              timeout: float = 5):
    """(span, log, metric) exporters for `protocol`, sending `Authorization: Bearer <token>`."""
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        kw = dict(endpoint=grpc_target, credentials=creds, headers=tuple(headers.items()), timeout=timeout)
        return OTLPSpanExporter(**kw), OTLPLogExporter(**kw), OTLPMetricExporter(**kw)
    base = f"{https_url}/observability/v1"
    kw = dict(certificate_file=str(ca), headers=headers, timeout=timeout)
    if protocol == "http-protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override the
        # exporter's certificate_file (psf/requests#3829); a session that ignores the
        # environment makes the exporter use exactly the CA it was given.
        def session():
            s = requests.Session()
            s.trust_env = False
            return s

        return (OTLPSpanExporter(endpoint=f"{base}/traces", session=session(), **kw),
                OTLPLogExporter(endpoint=f"{base}/logs", session=session(), **kw),
                OTLPMetricExporter(endpoint=f"{base}/metrics", session=session(), **kw))
    if protocol == "http-json":
        from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(protocol)
    return (OTLPSpanExporter(endpoint=f"{base}/traces", **kw),
            OTLPLogExporter(endpoint=f"{base}/logs", **kw),
            OTLPMetricExporter(endpoint=f"{base}/metrics", **kw))


def send(batch: Batch, protocol: str, **kw) -> dict[str, bool]:
    """Export the batch's three signals; {signal: accepted?} as the exporter reports it."""
    span_x, log_x, metric_x = exporters(protocol, **kw)
    try:
        return {
            "traces": span_x.export(batch.spans) == SpanExportResult.SUCCESS,
            "logs": log_x.export(batch.logs) == LogRecordExportResult.SUCCESS,
            "metrics": metric_x.export(batch.metrics) == MetricExportResult.SUCCESS,
        }
    finally:
        for x in (span_x, log_x, metric_x):
            x.shutdown()
