"""The plugin manager: entry-point group ``syllabus``, pluggy underneath.

* ``SYLLABUS_PLUGINS`` (comma-separated entry-point names) restricts what loads.
* A plugin that raises while it loads, or implements a hook that does not exist
  (``check_pending``), is reported by name and skipped; it never takes a service down.
* Registered objects are checked against their Protocol, so a wrong object fails at load,
  not when the first message arrives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from syllabus import contracts
from syllabus.contracts import HOOK_KINDS, PROJECT, hookspecs

__all__ = ["LoadedPlugin", "PluginError", "PluginManager", "Registered"]

log = logging.getLogger("syllabus.plugins")


class PluginError(RuntimeError):
    pass


@dataclass
class Registered:
    """One object a plugin registered, with where it came from."""

    obj: Any
    kind: str
    plugin: str
    version: str

    @property
    def name(self) -> str:
        return str(getattr(self.obj, "name", None) or getattr(self.obj, "kind", None) or "?")


@dataclass
class LoadedPlugin:
    name: str
    module: str
    version: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


class PluginManager:
    def __init__(self, *, allow: set[str] | None = None,
                 eps: list[EntryPoint] | None = None) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[LoadedPlugin] = []
        self._registry: dict[str, list[Registered]] | None = None
        found = list(eps) if eps is not None else list(entry_points(group=PROJECT))
        for ep in sorted(found, key=lambda e: e.name):
            if allow is not None and ep.name not in allow:
                continue
            self._load(ep)
        if allow is not None:
            missing = allow - {p.name for p in self.plugins}
            for name in sorted(missing):
                self.plugins.append(LoadedPlugin(name=name, module="?", version="?",
                                                 error="named in SYLLABUS_PLUGINS but not installed"))
                log.error("plugin %s is named in SYLLABUS_PLUGINS but not installed", name)

    def _load(self, ep: EntryPoint) -> None:
        version = ep.dist.version if ep.dist is not None else "0"
        info = LoadedPlugin(name=ep.name, module=ep.value, version=version)
        self.plugins.append(info)
        try:
            module = ep.load()
            self.pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin is reported and skipped
            info.error = f"failed to load: {type(exc).__name__}: {exc}"
            log.error("plugin %s %s", ep.name, info.error)
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=ep.name)
            info.error = f"invalid hook implementation: {exc}"
            log.error("plugin %s %s", ep.name, info.error)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])

    @property
    def errors(self) -> dict[str, str]:
        return {p.name: p.error for p in self.plugins if p.error}

    def registry(self) -> dict[str, list[Registered]]:
        """Call every ``register_*`` hook once and check each object against its Protocol."""
        if self._registry is not None:
            return self._registry
        out: dict[str, list[Registered]] = {hook: [] for hook in HOOK_KINDS}
        by_name = {p.name: p for p in self.plugins}
        for hook, proto_name in HOOK_KINDS.items():
            proto = getattr(contracts, proto_name)
            caller = getattr(self.pm.hook, hook)
            for impl in caller.get_hookimpls():
                plugin = by_name[impl.plugin_name]
                got: list[Any] = []
                try:
                    impl.function(register=got.append)
                except Exception as exc:
                    plugin.error = f"{hook} raised {type(exc).__name__}: {exc}"
                    log.error("plugin %s %s", plugin.name, plugin.error)
                    continue
                for obj in got:
                    if not isinstance(obj, proto):
                        plugin.error = (f"{hook} registered {obj!r}, which does not implement "
                                        f"{proto_name}")
                        log.error("plugin %s %s", plugin.name, plugin.error)
                        continue
                    out[hook].append(Registered(obj=obj, kind=proto_name, plugin=plugin.name,
                                                version=plugin.version))
        self._registry = out
        return out

    def objects(self, hook: str) -> list[Registered]:
        return self.registry()[hook]

    def get(self, hook: str, name: str) -> Registered:
        for reg in self.objects(hook):
            if reg.name == name:
                return reg
        known = ", ".join(r.name for r in self.objects(hook)) or "none"
        raise PluginError(f"no {HOOK_KINDS[hook]} named {name!r} is registered (known: {known})")
