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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # type checkers see the real signatures; at run time they load on first use
    from curation.adapters.argilla_io import PullReport, PushReport
    from curation.adapters.labelstudio_io import LabelStudioPushReport
    from curation.adapters.loop import RoundResult
    from labeltriage.api import (
        AgreementResult,
        CalibrationResult,
        GoldCollectResult,
        GoldDrawResult,
        PrelabelResult,
        PublishResult,
        RoutingResult,
        RunDir,
        agreement,
        calibrate,
        collect_gold,
        connect_argilla,
        draw_gold,
        gold_labels,
        loop,
        prelabel,
        publish,
        pull,
        push,
        route,
        second_opinion,
        student_label,
        watch,
    )
    from labeltriage.config import load_task_config
    from labeltriage.errors import BackendError, ConfigError, InputError, LabeltriageError, ReviewServerError
    from labeltriage.label_studio import (
        connect_label_studio,
        pull_label_studio,
        push_label_studio,
        round_label_studio,
        serve_backend,
    )
    from labeltriage.rundir import RunDirError

try:
    __version__ = metadata.version("labeltriage")
except metadata.PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"

_API = ("prelabel", "calibrate", "route", "push", "pull", "loop", "watch", "agreement", "publish", "connect_argilla",
        "gold_labels", "draw_gold", "collect_gold", "second_opinion", "student_label",
        "RunDir", "AgreementResult", "PrelabelResult", "CalibrationResult",
        "RoutingResult", "PublishResult", "GoldDrawResult", "GoldCollectResult")  # fmt: skip
_ERRORS = ("LabeltriageError", "InputError", "UsageError", "ConfigError", "BackendError", "ReviewServerError")
# what push, pull and loop return, and the error a missing or malformed run file raises: name -> module
_ELSEWHERE = {
    "PushReport": "curation.adapters.argilla_io",
    "PullReport": "curation.adapters.argilla_io",
    "RoundResult": "curation.adapters.loop",
    "RunDirError": "labeltriage.rundir",
    # Label Studio as the review tool (Argilla is the default)
    "connect_label_studio": "labeltriage.label_studio",
    "push_label_studio": "labeltriage.label_studio",
    "pull_label_studio": "labeltriage.label_studio",
    "round_label_studio": "labeltriage.label_studio",
    "serve_backend": "labeltriage.label_studio",
    "LabelStudioPushReport": "curation.adapters.labelstudio_io",
}
__all__ = [
    "AgreementResult", "BackendError", "CalibrationResult", "ConfigError", "GoldCollectResult", "GoldDrawResult",
    "InputError", "LabeltriageError", "PrelabelResult", "PublishResult", "PullReport", "PushReport",
    "ReviewServerError", "RoundResult", "RoutingResult", "RunDir", "RunDirError", "UsageError", "__version__",
    "agreement", "calibrate", "collect_gold", "connect_argilla", "draw_gold", "gold_labels", "load_task_config", "loop",
    "prelabel", "publish", "pull", "push", "route", "second_opinion", "student_label", "watch",
    "connect_label_studio", "push_label_studio",
    "pull_label_studio", "round_label_studio", "serve_backend", "LabelStudioPushReport",
]  # fmt: skip


def __dir__() -> list[str]:  # tab completion in notebooks sees the lazy names
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("labeltriage.api"), name)
    if name in _ERRORS:
        return getattr(import_module("labeltriage.errors"), name)
    if name in _ELSEWHERE:
        return getattr(import_module(_ELSEWHERE[name]), name)
    if name == "load_task_config":
        return import_module("labeltriage.config").load_task_config
    raise AttributeError(f"module 'labeltriage' has no attribute {name!r}")
