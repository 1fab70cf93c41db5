"""The server's Prometheus metrics (in the runtime's process-wide registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["API_REQUESTS", "API_SECONDS", "API_TTFT", "DEPLOYMENTS", "IN_FLIGHT", "SERVED"]

DEPLOYMENTS = Counter(
    "syllabus_server_deployments_total",
    "Deployment attempts by outcome: deployed, refused (eval gate), failed, duplicate "
    "(a redelivered training.completed for a model already handled)", ["outcome"])
SERVED = Gauge("syllabus_server_models", "Models deployed and ready in Triton")
API_REQUESTS = Counter(
    "syllabus_server_api_requests_total", "OpenAI-API requests by endpoint and status",
    ["endpoint", "status"])
API_SECONDS = Histogram(
    "syllabus_server_api_seconds", "OpenAI-API request latency (to the last token)",
    ["endpoint"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
API_TTFT = Histogram(
    "syllabus_server_time_to_first_token_seconds", "Streaming requests: time to the first token",
    ["endpoint"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
IN_FLIGHT = Gauge("syllabus_server_api_in_flight", "OpenAI-API requests being served")
