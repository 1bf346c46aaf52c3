"""labeltriage: LLM-assisted labelling with calibrated triage, active learning and Argilla review.

The steps of the loop as Python functions (see :mod:`labeltriage.api`)::

    import labeltriage as lt
    lt.prelabel("sentiment", "reviews.csv", "runs/r1")
    lt.calibrate("runs/r1", gold="gold.csv"); lt.route("runs/r1")
    lt.push("runs/r1"); lt.pull("runs/r1"); lt.agreement("runs/r1"); lt.publish("runs/r1")

Names load on first use, so ``import labeltriage`` (and ``labeltriage --help``) stays fast.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import Any

try:
    __version__ = metadata.version("labeltriage")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

_API = ("prelabel", "calibrate", "route", "push", "pull", "loop", "watch", "agreement", "publish", "connect_argilla",
        "gold_labels", "RunDir")  # fmt: skip
_ERRORS = ("LabeltriageError", "InputError", "ConfigError", "BackendError", "ReviewServerError")
__all__ = [*_API, *_ERRORS, "load_task_config", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("labeltriage.api"), name)
    if name in _ERRORS:
        return getattr(import_module("labeltriage.errors"), name)
    if name == "load_task_config":
        return import_module("labeltriage.config").load_task_config
    raise AttributeError(f"module 'labeltriage' has no attribute {name!r}")
