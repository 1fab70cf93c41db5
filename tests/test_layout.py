"""Guards on the layout DESIGN.md fixes: what each package may import, and the public API."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import syllabus.contracts as contracts
from syllabus.contracts import SUBJECT_MODELS, Event

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                here = path.relative_to(ROOT).parent.parts  # e.g. ("services", "ingest")
                base = here[: len(here) - node.level + 1]
                names.add(".".join(("syllabus", *base, *([node.module] if node.module else []))))
            elif node.module:
                names.add(node.module)
    return names


def test_contracts_import_only_pydantic_and_pluggy():
    code = ("import sys, syllabus.contracts\n"
            "bad = [m for m in ('nats', 'faststream', 'minio', 'torch', 'syllabus.services',"
            " 'numpy', 'starlette') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    for f in (ROOT / "contracts").glob("*.py"):
        for name in _imports(f):
            top = name.split(".")[0]
            assert top in {"pydantic", "pluggy", "syllabus", "__future__"} or \
                top in sys.stdlib_module_names, f"{f.name} imports {name}"
            assert not name.startswith("syllabus.services"), f"{f.name} imports {name}"


def test_plugins_never_import_services():
    for f in (ROOT / "plugins").rglob("*.py"):
        for name in _imports(f):
            assert not name.startswith("syllabus.services"), f"{f} imports {name}"


def test_services_do_not_import_each_other():
    # libraries every service may use: the runtime, the CLI, and the evaluation suites
    # (evals has no router and consumes nothing; the server's gate and the CLI run them)
    shared = {"runtime", "cli", "evals"}
    assert not hasattr(importlib.import_module("syllabus.services.evals"), "build_router")
    services = [p.name for p in (ROOT / "services").iterdir()
                if p.is_dir() and (p / "__init__.py").exists() and p.name not in shared]
    assert "ingest" in services
    for svc in services:
        for f in (ROOT / "services" / svc).rglob("*.py"):
            for name in _imports(f):
                parts = name.split(".")
                if parts[:2] == ["syllabus", "services"] and len(parts) > 2:
                    assert parts[2] in {svc, "runtime", "evals"}, f"{f} imports {name}"


def test_every_subject_has_a_model_and_every_model_a_dedup_id():
    for subject, model in SUBJECT_MODELS.items():
        assert subject.startswith("syllabus.") and subject.count(".") == 2, subject
        assert issubclass(model, Event)
        assert "dedup_id" in model.__dict__ or model is contracts.QARecord, model


def test_public_contract_api():
    expected = {
        "DocumentSubmitted", "ChunkCreated", "QARecord", "RecordDecision", "ApiSpecSubmitted",
        "ToolTrajectory", "TrainingRequested", "TrainingProgress", "TrainingCompleted",
        "TrainingFailed", "ModelDeployed", "DeadLetter", "Parser", "Chunker",
        "QuestionGenerator", "RationaleGenerator", "Filter", "Augmenter", "ToolAnnotator",
        "Teacher", "Exporter", "ArtifactStore", "hookimpl", "dlq_subject", "STREAM_NAME",
    }
    assert expected <= set(contracts.__all__)
    for name in contracts.__all__:
        assert hasattr(contracts, name), name
