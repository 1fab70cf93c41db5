"""The plugin manager, through real entry points: the built-ins, a third-party package
(tests/fixtures/thirdparty, found on PYTHONPATH exactly as an installed one is), broken
plugins that must be reported and skipped, and the SYLLABUS_PLUGINS allow-list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from syllabus.services.runtime import PluginManager

FIXTURES = Path(__file__).parent / "fixtures"
SYLLABUS = str(Path(sys.executable).parent / "syllabus")


def _plugins_json(*extra_paths: Path, allow: str | None = None) -> dict[str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYLLABUS_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_paths)
    if allow is not None:
        env["SYLLABUS_PLUGINS"] = allow
    out = subprocess.run([SYLLABUS, "plugins", "--json"], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return {row["name"]: row for row in json.loads(out)}


def test_builtin_parsers_and_chunker_are_listed():
    rows = _plugins_json()
    for name in ("pdf", "html", "markdown", "text"):
        assert rows[name]["hooks"] == ["register_parsers"], rows[name]
        assert rows[name]["error"] is None
        assert rows[name]["version"] == "0.1.0"
    assert rows["structured-chunker"]["registers"] == ["Chunker:structured"]


def test_third_party_plugin_is_found_through_its_entry_point():
    rows = _plugins_json(FIXTURES / "thirdparty")
    notes = rows["notes"]
    assert notes["version"] == "1.2.3"
    assert notes["module"] == "syllabus_notes"
    assert notes["registers"] == ["Parser:notes"]
    assert notes["error"] is None


def test_broken_plugins_are_reported_and_skipped_but_the_rest_load():
    rows = _plugins_json(FIXTURES / "broken")
    assert "cannot be imported" in rows["explodes"]["error"]
    assert "register_spaceships" in rows["unknown-hook"]["error"]
    assert "does not implement Parser" in rows["wrong-object"]["error"]
    assert rows["pdf"]["error"] is None and rows["pdf"]["registers"] == ["Parser:pdf"]


def test_allow_list_restricts_what_loads():
    rows = _plugins_json(FIXTURES / "thirdparty", allow="notes,structured-chunker,missing-one")
    assert set(rows) == {"notes", "structured-chunker", "missing-one"}
    assert "not installed" in rows["missing-one"]["error"]


def test_registry_objects_carry_their_plugin_and_version():
    pm = PluginManager(allow={"pdf", "structured-chunker"})
    [pdf] = pm.objects("register_parsers")
    assert (pdf.plugin, pdf.version, pdf.name) == ("pdf", "0.1.0", "pdf")
    assert pm.get("register_chunkers", "structured").plugin == "structured-chunker"
