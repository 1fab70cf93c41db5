"""The runtime every service shares: settings, the bus, the store, plugins, metrics, HTTP."""

from ._bus import Bus, HandlerContext, make_stream, replay
from ._http import build_http_app, error_response
from ._logging import configure_logging, log_context
from ._metrics import (
    CHUNKS,
    DEAD_LETTERS,
    DOCUMENTS,
    HANDLER_FAILURES,
    HANDLER_SECONDS,
    INGEST_BYTES,
    PARSE_SECONDS,
    READY,
    REGISTRY,
)
from ._nats_server import EmbeddedNats, find_binary, free_port
from ._plugins import LoadedPlugin, PluginError, PluginManager, Registered
from ._runtime import Runtime, open_store
from ._settings import (
    BusSettings,
    HttpSettings,
    IngestSettings,
    NatsSettings,
    Settings,
    StoreSettings,
    load_settings,
)
from ._store import InvalidKey, LocalStore, ObjectNotFound, S3Store, StoreError

__all__ = [
    "CHUNKS",
    "DEAD_LETTERS",
    "DOCUMENTS",
    "HANDLER_FAILURES",
    "HANDLER_SECONDS",
    "INGEST_BYTES",
    "PARSE_SECONDS",
    "READY",
    "REGISTRY",
    "Bus",
    "BusSettings",
    "EmbeddedNats",
    "HandlerContext",
    "HttpSettings",
    "IngestSettings",
    "InvalidKey",
    "LoadedPlugin",
    "LocalStore",
    "NatsSettings",
    "ObjectNotFound",
    "PluginError",
    "PluginManager",
    "Registered",
    "Runtime",
    "S3Store",
    "Settings",
    "StoreError",
    "StoreSettings",
    "build_http_app",
    "configure_logging",
    "error_response",
    "find_binary",
    "free_port",
    "load_settings",
    "log_context",
    "make_stream",
    "replay",
    "open_store",
]
