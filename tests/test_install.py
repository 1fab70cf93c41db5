"""The install step's sdist extraction (``tools/install.py``): only the members asked for,
and nothing outside the destination even from a tarball that names ``..``."""

from __future__ import annotations

import importlib.util
import io
import tarfile
from pathlib import Path


def _install_module():
    path = Path(__file__).parent.parent / "tools" / "install.py"
    spec = importlib.util.spec_from_file_location("syllabus_install", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_takes_the_named_members_and_nothing_outside_dest(tmp_path: Path):
    install = _install_module()
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name in ("pkg-1.0/vendor/llama.cpp/convert_hf_to_gguf.py",
                     "pkg-1.0/vendor/llama.cpp/gguf-py/gguf/__init__.py",
                     "pkg-1.0/vendor/llama.cpp/src/llama.cpp",
                     "pkg-1.0/vendor/llama.cpp/gguf-py/../../../../escaped.py"):
            data = b"x = 1\n"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    install._extract(sdist, str(dest), "pkg-1.0/vendor/llama.cpp/", install._CONVERTER)
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["pkg-1.0/vendor/llama.cpp/convert_hf_to_gguf.py",
                   "pkg-1.0/vendor/llama.cpp/gguf-py/gguf/__init__.py"]
    assert not list(tmp_path.rglob("escaped.py"))
