"""What every service is handed: settings, the bus, the store and the loaded plugins."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from syllabus.contracts import ArtifactStore

from ._bus import Bus
from ._plugins import PluginManager
from ._settings import Settings, StoreSettings
from ._store import LocalStore, S3Store
from ._teacher import ManagedTeacher, make_teacher

__all__ = ["Runtime", "open_store"]


def open_store(cfg: StoreSettings) -> ArtifactStore:
    if cfg.kind == "local":
        return LocalStore(cfg.path)
    if not cfg.endpoint:
        raise ValueError("store.kind is 's3' but no endpoint is set "
                         "(SYLLABUS_STORE__ENDPOINT=host:port)")
    if cfg.access_key is None or cfg.secret_key is None:
        raise ValueError("store.kind is 's3' but SYLLABUS_STORE__ACCESS_KEY or "
                         "SYLLABUS_STORE__SECRET_KEY is not set")
    return S3Store(endpoint=cfg.endpoint, access_key=cfg.access_key.get_secret_value(),
                   secret_key=cfg.secret_key.get_secret_value(), bucket=cfg.bucket,
                   secure=cfg.secure, region=cfg.region)


@dataclass
class Runtime:
    settings: Settings
    bus: Bus
    store: ArtifactStore
    plugins: PluginManager
    state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, *, store: ArtifactStore | None = None,
               plugins: PluginManager | None = None, client_name: str = "syllabus") -> Runtime:
        return cls(settings=settings, bus=Bus(settings, client_name=client_name),
                   store=store if store is not None else open_store(settings.store),
                   plugins=plugins or PluginManager(allow=settings.plugin_allow_list()))

    async def to_thread(self, fn, /, *args: Any, **kwargs: Any) -> Any:
        """Store calls block (the minio SDK is synchronous): run them off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def teacher(self) -> ManagedTeacher:
        """The configured teacher (made once per runtime, wrapped with cache and retries)."""
        if "teacher" not in self.state:
            self.state["teacher"] = make_teacher(self.settings.teacher, self.plugins, self.store)
        return self.state["teacher"]

    async def close(self) -> None:
        await self.bus.close()
        teacher = self.state.pop("teacher", None)
        if teacher is not None:
            await teacher.aclose()

    async def ready(self) -> dict[str, bool]:
        bus_ok = await self.bus.ping()
        try:
            await self.to_thread(self.store.ping)  # type: ignore[attr-defined]
            store_ok = True
        except Exception:
            store_ok = False
        return {"broker": bus_ok, "store": store_ok}
