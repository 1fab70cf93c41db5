"""OCR of PDF pages that have no text layer (the ``ocr`` extra).

The engine is RapidOCR on ONNX Runtime (``rapidocr-onnxruntime``): PaddleOCR's PP-OCRv4
detection and recognition models, converted to ONNX, ship inside the wheel (16 MB), so
nothing is downloaded at run time. Its text-direction classifier is off: on upright pages
it turned some lines upside down, and they were lost; a page scanned upside down is
therefore not read (its confidence is low, and it is named). It was chosen over:

* ``rapidocr`` 2.x/3.x and ``rapidocr-ng``/``rapidocrlite``, which fetch their models on
  first use;
* Tesseract (``pytesseract`` and the wrappers), which needs a system binary and its
  language data that pip does not install;
* EasyOCR, Surya and docTR, which download their weights and need torch.

The recognition model (``ch_PP-OCRv4_rec``) reads Latin script (English, German, French
and other Western European languages, with accents) and Chinese; other scripts are not
recognised. A page is rendered with pypdfium2 at ``DPI`` (200), capped at ``MAX_PIXELS``
so that a page with a huge media box cannot take the memory, and the recognised lines are
joined in reading order (top to bottom, then left to right). A page's confidence is the
mean of its lines' recognition scores, weighted by their lengths.

The engine runs in one worker process of its own (a spawned interpreter, started on the
first scanned page and kept): ONNX Runtime crashed with a segmentation fault when it was
imported into a process that had loaded torch, as ``syllabus run`` does. Pages go to it as
PNG bytes, one at a time (a lock; the services run parsers in threads); a worker that dies
is started again once, and then ``OcrFailed`` names the error.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["DPI", "MAX_PIXELS", "MIN_CONFIDENCE", "OcrFailed", "OcrPage", "available",
           "ocr_image"]

#: the resolution a page is rendered at for OCR
DPI = 200
#: the most pixels a rendered page may have (about an A3 page at 200 dpi)
MAX_PIXELS = 12_000_000
#: seconds one page may take in the worker before it is stopped
PAGE_TIMEOUT = 300
#: pages whose OCR confidence is under this are left out, and named in a warning
MIN_CONFIDENCE = 0.6

_LOCK = threading.Lock()
#: the worker process that runs the engine (``_pool``)
_POOL: Any = None
#: the engine, in the worker process only
_ENGINE: Any = None


class OcrFailed(RuntimeError):
    """The OCR engine could not run (its worker process failed to start or died)."""


@dataclass(frozen=True)
class OcrPage:
    """What OCR read on one page: its text and its confidence (0..1; 0 when no line)."""

    text: str
    confidence: float
    lines: int
    #: why the page could not be read at all (it could not be rendered or OCR'd)
    error: str = ""


def available() -> bool:
    """Whether the ``ocr`` extra is installed. It is looked up, not imported: ONNX Runtime
    is only ever imported in the OCR worker process (see ``ocr_image``)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def _engine() -> Any:
    global _ENGINE
    if _ENGINE is None:
        from rapidocr_onnxruntime import RapidOCR

        # no direction classifier: on upright pages it turned some lines over and they were
        # lost (bench_ingest --only ocr: 69 % of the characters read with it, 100 % without)
        _ENGINE = RapidOCR(use_cls=False)
    return _ENGINE


def _read(png: bytes) -> list[tuple[list[tuple[float, float]], str, float]]:
    """In the worker: the engine's lines for one page image (PNG bytes)."""
    import numpy as np
    from PIL import Image

    result, _ = _engine()(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    return [([(float(x), float(y)) for x, y in box], str(text), float(score))
            for box, text, score in (result or [])]


def _pool() -> Any:
    global _POOL
    if _POOL is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # a fresh interpreter (spawn): ONNX Runtime crashed (SIGSEGV) when it was imported
        # into a process that had loaded torch, as `syllabus run` and the tests do. The
        # worker exits when this process does (its end of the pipe closes).
        _POOL = ProcessPoolExecutor(max_workers=1,
                                    mp_context=multiprocessing.get_context("spawn"))
        atexit.register(_shutdown)  # before interpreter teardown, not during it
    return _POOL


def _shutdown() -> None:
    global _POOL
    pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _lines(png: bytes) -> list[tuple[list[tuple[float, float]], str, float]]:
    global _POOL
    from concurrent.futures.process import BrokenProcessPool

    with _LOCK:
        for attempt in (1, 2):  # a worker that died is started again, once
            try:
                return _pool().submit(_read, png).result(timeout=PAGE_TIMEOUT)
            except TimeoutError as exc:  # a hung worker: stop it, start a fresh one next
                pool, _POOL = _POOL, None
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.kill()
                pool.shutdown(wait=False, cancel_futures=True)
                raise OcrFailed(f"OCR of one page took over {PAGE_TIMEOUT} s") from exc
            except BrokenProcessPool as exc:
                _POOL = None
                if attempt == 2:
                    raise OcrFailed(f"the OCR worker process died ({exc})") from exc
            except Exception as exc:  # the engine failed to load or to run
                raise OcrFailed(f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable")


def render_scale(width_pt: float, height_pt: float) -> float:
    """pypdfium2's render scale for a page of that size: ``DPI``, or less when the page
    would have more than ``MAX_PIXELS`` pixels."""
    scale = DPI / 72
    pixels = max(width_pt, 1.0) * max(height_pt, 1.0) * scale * scale
    if pixels > MAX_PIXELS:
        scale *= (MAX_PIXELS / pixels) ** 0.5
    return scale


def ocr_image(image: Any) -> OcrPage:
    """OCR of one page image (a PIL image)."""
    png = io.BytesIO()
    image.convert("L").save(png, "PNG", compress_level=1)
    result = _lines(png.getvalue())
    if not result:
        return OcrPage(text="", confidence=0.0, lines=0)
    # each line: (4 corner points, text, score); reading order by the top-left corner,
    # lines whose tops are within half a line's height of each other read left to right
    items = []
    for box, text, score in result:
        xs = [p[0] for p in box]
        ys = [p[1] for p in box]
        items.append((min(ys), max(ys) - min(ys), min(xs), str(text).strip(), float(score)))
    items.sort(key=lambda it: (it[0], it[2]))
    rows: list[list[tuple[float, float, float, str, float]]] = []
    for item in items:
        if rows and item[0] - rows[-1][0][0] < 0.5 * max(rows[-1][0][1], 1.0):
            rows[-1].append(item)
        else:
            rows.append([item])
    lines = [" ".join(it[3] for it in sorted(row, key=lambda it: it[2]) if it[3])
             for row in rows]
    text = "\n".join(line for line in lines if line)
    weight = sum(len(it[3]) for it in items) or 1
    confidence = sum(len(it[3]) * it[4] for it in items) / weight
    return OcrPage(text=text, confidence=round(confidence, 4), lines=len(items))
