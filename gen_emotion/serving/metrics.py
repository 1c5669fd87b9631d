"""``GET /metrics`` of ``gen-emotion serve``, in Prometheus' text format (prometheus-client): requests and errors
by route and status, latency histograms, model-call batch sizes, the texts waiting, texts served, the model's
load time and restarts. One registry per app (not the library's global one), so that each server counts its own."""

import time
from collections.abc import Callable
from typing import Any

ROUTES = ("/predict", "/health", "/metrics", "/docs", "/redoc", "/openapi.json")
ROUTES += ("/v1/models", "/v1/chat/completions", "/v1/completions")
"""The route label's values; any other path is counted as ``other`` (a scan of random paths adds no series)."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """The server's metrics, in their own registry."""

    def __init__(self, folders: list[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: the process start time says it (a serve process's own setting)
        self.registry = CollectorRegistry()
        common = {"registry": self.registry, "namespace": "gen_emotion"}
        self.requests = Counter("requests", "HTTP requests answered", ["route", "method", "status"], **common)
        self.errors = Counter("errors", "HTTP requests answered with a 4xx or 5xx", ["route", "status"], **common)
        self.latency = Histogram(
            "request_seconds", "time from request to answer", ["route"], buckets=LATENCY_BUCKETS, **common
        )
        self.batch = Histogram("batch_texts", "texts in each model call", buckets=BATCH_BUCKETS, **common)
        self.model_seconds = Histogram(
            "model_call_seconds", "time of each model call", buckets=LATENCY_BUCKETS, **common
        )
        self.queue = Gauge("queue_texts", "texts waiting for a model call", **common)
        self.texts_by = Counter("texts", "texts predicted and answered", ["folder"], **common)
        for folder in folders:  # each served run's series from the start, at 0
            self.texts_by.labels(folder)
        self.load_seconds = Gauge("model_load_seconds", "time the model took to load (the last load)", **common)
        self.restarts = Counter("model_restarts", "times a dead model worker was restarted", **common)

    def served(self, folder: str, texts: int) -> None:
        self.texts_by.labels(folder).inc(texts)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue.set_function(depth)

    def text(self) -> tuple[bytes, str]:
        """The exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Counting:
    """Counts every HTTP request by route, method and status (refusals before the routes included) and times it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def seen(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, seen)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
