#!/usr/bin/env python3
"""The one install command: ``python3 tools/install.py`` (the README's step 1, and CI's).

1. Makes the virtual environment ``.venv`` (``--venv`` to put it elsewhere).
2. Builds llama-cpp-python, the ``local`` teacher's engine, for *this* CPU. It has no wheel
   on PyPI, and a plain source build (``GGML_NATIVE=ON``) crashes on CPUs that advertise
   AMX (a general protection fault in ``ggml_backend_amx_mul_mat``). So the build is not
   native: it turns on exactly the instruction sets ``/proc/cpuinfo`` lists (AVX, AVX2,
   FMA, F16C, BMI2, the AVX-512 family, AVX-VNNI) and keeps AMX off. The wheel is kept in
   ``~/.cache/syllabus/wheels/<cpu features>/``, so a second install on the same kind of
   CPU takes seconds instead of about 8 minutes, and a wheel built for one CPU is never
   installed on another.
3. Builds llama.cpp's native ``llama-server`` (parallel slots, continuous batching: the
   ``local`` teacher's faster engine, ``benchmarks/bench_engine.py``) from the llama.cpp
   sources that llama-cpp-python's sdist vendors, with the same CPU options, statically
   linked, only that target; about 6 more minutes on 2 cores. The binary is kept in
   ``~/.cache/syllabus/bin/<cpu features>/`` and copied to ``.venv/bin/llama-server``,
   where the ``local`` teacher finds it. ``--no-llama-server`` skips it (the teacher then
   runs llama-cpp-python's server).
4. Copies llama.cpp's ``convert_hf_to_gguf.py`` (with its ``conversion`` and ``gguf-py``
   packages) from the same sdist to ``.venv/share/syllabus/llama.cpp-<version>/``: ``syllabus run
   --teacher bootstrap`` turns the fine-tuned model M0 into a GGUF file with it, for the
   ``local`` teacher to serve. Seconds (pip keeps the sdist it downloaded).
5. Installs the project, editable, with its ``dev`` extras (everything the tests and the
   benchmarks need, the ``local`` teacher included).

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA = "llama-cpp-python"
LLAMA_VERSION = "0.3.36"
#: ggml's x86 options, by the /proc/cpuinfo flag that allows each
_X86 = {
    "GGML_AVX": "avx", "GGML_AVX2": "avx2", "GGML_FMA": "fma", "GGML_F16C": "f16c",
    "GGML_BMI2": "bmi2", "GGML_AVX512": "avx512f", "GGML_AVX512_VBMI": "avx512vbmi",
    "GGML_AVX512_VNNI": "avx512_vnni", "GGML_AVX512_BF16": "avx512_bf16",
    "GGML_AVX_VNNI": "avx_vnni",
}
#: never on: the AMX kernels crash where the CPU advertises them
_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cmake_args() -> list[str]:
    """The llama.cpp build options for this machine."""
    args = ["-DGGML_NATIVE=OFF"]
    if platform.machine() in ("x86_64", "AMD64"):
        flags = cpu_flags()
        args += [f"-D{opt}={'ON' if flag in flags else 'OFF'}" for opt, flag in _X86.items()]
        args += [f"-D{opt}=OFF" for opt in _OFF]
    return args


def build_llama_server(pip: list[str], python: str, build: list[str], key: str,
                       venv: Path) -> None:
    """``llama-server`` from the vendored llama.cpp of the llama-cpp-python sdist, cached
    per CPU kind, copied into the venv's ``bin``."""
    cache = Path(os.environ.get("SYLLABUS_BIN", Path.home() / ".cache" / "syllabus" / "bin")) \
        / f"llama-server-{LLAMA_VERSION}-{key}"
    binary = cache / "llama-server"
    if not binary.is_file():
        print(f"building llama.cpp's llama-server ({' '.join(build)}); this takes about 6 "
              "minutes on 2 cores, once per kind of CPU", flush=True)
        run([*pip, "install", "cmake", "ninja"])
        tools = Path(python).parent
        with tempfile.TemporaryDirectory(prefix="syllabus-llama-server-") as tmp:
            _extract(_sdist(pip, tmp), tmp)
            [src] = Path(tmp).glob("llama_cpp_python-*/vendor/llama.cpp")
            out = Path(tmp) / "build"
            run([str(tools / "cmake"), "-S", str(src), "-B", str(out), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={tools / 'ninja'}", "-DCMAKE_BUILD_TYPE=Release",
                 "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                 "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF",
                 "-DLLAMA_USE_PREBUILT_UI=OFF", *build])
            jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else os.cpu_count() or 1
            run([str(tools / "cmake"), "--build", str(out), "--target", "llama-server",
                 "-j", str(jobs)])
            cache.mkdir(parents=True, exist_ok=True)
            _replace(out / "bin" / "llama-server", binary)
    _replace(binary, venv / "bin" / "llama-server")


#: what ``install_converter`` takes from the sdist's vendored llama.cpp
_CONVERTER = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _sdist(pip: list[str], tmp: str) -> Path:
    """llama-cpp-python's sdist, downloaded into ``tmp`` (pip's cache answers a second
    time)."""
    run([*pip, "download", "--no-deps", "--no-binary", LLAMA, "-d", tmp,
         f"{LLAMA}=={LLAMA_VERSION}"])
    [sdist] = Path(tmp).glob("llama_cpp_python-*.tar.gz")
    return sdist


def _extract(sdist: Path, dest: str, under: str | None = None,
             names: tuple[str, ...] = ()) -> None:
    """The sdist into ``dest``; with ``under``, only its members below that folder whose
    names there start with one of ``names``."""
    with tarfile.open(sdist) as tar:
        members = None if under is None else [
            m for m in tar.getmembers()
            if m.name.startswith(under) and m.name[len(under):].startswith(names)
            and ".." not in Path(m.name).parts]  # nothing outside dest, filter or not
        # the "data" filter (no absolute paths, links out or devices) from 3.11.4
        tar.extractall(dest, members=members,
                       **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def install_converter(pip: list[str], venv: Path) -> None:
    """llama.cpp's HF-to-GGUF converter into ``<venv>/share/syllabus/llama.cpp-<version>/``
    (where ``syllabus run --teacher bootstrap`` looks for it)."""
    dest = venv / "share" / "syllabus" / f"llama.cpp-{LLAMA_VERSION}"
    if (dest / _CONVERTER[0]).is_file():
        return
    with tempfile.TemporaryDirectory(prefix="syllabus-convert-") as tmp:
        sdist = _sdist(pip, tmp)
        root = f"{sdist.name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        _extract(sdist, tmp, root, _CONVERTER)
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(Path(tmp) / root, part)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(part, dest)


def _replace(src: Path, dst: Path) -> None:
    """Copy ``src`` over ``dst`` atomically: an interrupted copy leaves no half binary
    behind, and a running ``dst`` is replaced, not written into."""
    part = dst.with_name(dst.name + ".part")
    shutil.copy2(src, part)
    os.replace(part, dst)


def run(cmd: list[str], **kw: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)  # noqa: S603 - our own commands


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--no-llama-server", action="store_true",
                        help="do not build llama.cpp's native llama-server")
    args = parser.parse_args()

    venv = args.venv
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]

    build = cmake_args()
    key = hashlib.sha256(" ".join([platform.machine(), *build]).encode()).hexdigest()[:16]
    wheels = Path(os.environ.get("SYLLABUS_WHEELS", Path.home() / ".cache" / "syllabus"
                                 / "wheels")) / f"{LLAMA}-{LLAMA_VERSION}-{key}"
    if not any(wheels.glob("llama_cpp_python-*.whl")):
        print(f"building {LLAMA} {LLAMA_VERSION} for this CPU ({' '.join(build)}); this "
              "takes about 8 minutes on 2 cores, once per kind of CPU", flush=True)
        wheels.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CMAKE_ARGS": " ".join(build)}
        # --no-cache-dir: pip's own wheel cache does not know the CPU it was built for
        run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", str(wheels),
             f"{LLAMA}=={LLAMA_VERSION}"], env=env)
    # the engine from the wheel built for this CPU, then the project (whose `local` extra
    # asks for that same version, so pip keeps it)
    run([*pip, "install", "--find-links", str(wheels), f"{LLAMA}[server]=={LLAMA_VERSION}"])
    if not args.no_llama_server:
        build_llama_server(pip, python, build, key, venv)
    install_converter(pip, venv)
    run([*pip, "install", "-e", f"{ROOT}[dev]"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
