"""The Python API: one function per step of the loop, over a run directory.

Each function takes the run directory (a path or a :class:`~labeltriage.rundir.RunDir`), reads
the files the step needs, writes the files it makes (docs/CONTRACTS.md) and returns a typed
result a notebook can inspect; nothing is printed. The ``labeltriage`` command only parses
options, calls these and renders the results. Errors are :class:`labeltriage.errors.LabeltriageError`
subclasses whose message names the file, key or record and the fix.

    >>> import labeltriage as lt
    >>> run = lt.prelabel("sentiment", "reviews.csv", "runs/r1", model="smollm2")
    >>> cal = lt.calibrate("runs/r1", gold="gold.csv")
    >>> routing = lt.route("runs/r1")
    >>> lt.push("runs/r1"); lt.pull("runs/r1")
    >>> report = lt.agreement("runs/r1"); published = lt.publish("runs/r1")

Where a record's label comes from, one hop per step: ``prelabel`` (pipelines.runner) ->
``calibrate`` (curation.heldout, curation.calibration) -> ``route`` (curation.routing) ->
``push``/``pull`` (curation.adapters.argilla_io) -> ``publish`` (curation.consensus, curation.publish).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from labeltriage.cascade import CASCADE_COLUMN, CASCADE_FILE, cascade_digest, check_cascade, settings_after_gold
from labeltriage.errors import (
    EXIT_BATCH_PENDING,
    EXIT_BUDGET_STOP,
    EXIT_RECORDS_FAILED,
    ConfigError,
    InputError,
    ReviewServerError,
    UsageError,
)
from labeltriage.rundir import ASSISTED_SHOWN_FILE, RunDir, RunDirError, mixed_confidence_kinds

if TYPE_CHECKING:
    import pandas as pd

    from curation.adapters.argilla_io import PullReport, PushReport
    from curation.adapters.loop import RoundResult
    from curation.calibration import Calibrator
    from curation.calibration import Method as CalibrationMethod
    from curation.certify import Certificate, GoldPlan
    from curation.publish import FinalDataset
    from curation.routing import BoundMethod, ThresholdChoice
    from labeltriage.config import TaskConfig
    from pipelines.runner import RunResult

PathLike = str | Path
CALIBRATION_METHODS = ("isotonic", "temperature", "platt", "histogram")
MIN_GOLD_TO_CALIBRATE = 10
ROUTES = ("auto_accept", "human_review", "spot_check", "gold")  # routed.parquet's route values
CONSENSUS_METHODS = ("majority", "dawid-skene")
TIE_POLICIES = ("abstain", "llm", "random")


def _run_dir(run_dir: PathLike | RunDir, config: PathLike | None = None) -> RunDir:
    if isinstance(run_dir, RunDir):
        return run_dir if config is None else RunDir(run_dir.path, config)
    return RunDir(run_dir, config)


# ------------------------------------------------------------------------------------------------
# prelabel
# ------------------------------------------------------------------------------------------------
@dataclass
class PrelabelResult:
    """What :func:`prelabel` did. ``frame`` is prelabels.parquet (one row per input row)."""

    frame: pd.DataFrame
    summary: dict[str, Any]  # run.json
    notes: list[str]  # how the input was read (encoding, gold column, repeated texts)
    paths: tuple[Path, Path]  # prelabels.parquet, run.json
    run: RunResult

    @property
    def outcome(self) -> str:
        """``done``, ``batch_pending``, ``budget_stop`` or ``records_failed`` (see :attr:`exit_code`)."""
        if self.summary.get("pending_batch"):
            return "batch_pending"
        if self.summary.get("stopped"):
            return "budget_stop"
        if self.summary["totals"].get("failed_errors"):
            return "records_failed"
        return "done"

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this outcome (labeltriage.errors)."""
        return {
            "done": 0,
            "batch_pending": EXIT_BATCH_PENDING,
            "budget_stop": EXIT_BUDGET_STOP,
            "records_failed": EXIT_RECORDS_FAILED,
        }[self.outcome]


def prelabel(
    config: PathLike | TaskConfig,
    input_path: PathLike,
    run_dir: PathLike,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    encoding: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    base_url: str | None = None,
    max_cost: float | None = None,
    limit: int | None = None,
    examples: PathLike | None = None,
    parallel: int | None = None,
    show_progress: bool = False,
    llm: Any = None,
) -> PrelabelResult:
    """Pre-label ``input_path`` with an LLM into ``run_dir`` (prelabels.parquet, run.json).

    ``config`` is a task config path, the name of a shipped one (``"sentiment"``, ``"aspects"``)
    or a loaded :class:`~labeltriage.config.TaskConfig`. ``backend``/``model``/``base_url``
    override the config's model (a ``.gguf`` model is a file path); ``parallel`` the local
    backend's decoding width (``model.parallel``). ``max_cost`` (USD) stops before
    the budget is exceeded, keeping finished work; a rerun resumes from the per-record cache with
    no repeated model call. With ``retrieval.k`` > 0 in the config each record's prompt carries its
    k most similar labelled records (:mod:`labeltriage.example_pool`: the input's gold column,
    ``examples`` (a file with ``text`` and ``label``), the run's collected gold and pulled reviews),
    never its own; run.json's ``retrieval`` says how many. ``llm`` injects a distilabel LLM
    (tests). Raises ConfigError (``examples`` with retrieval off), InputError (unreadable input)
    or BackendError (model missing, API key unset).
    """
    from labeltriage.config import TaskConfig, load_task_config
    from pipelines.io import load_records
    from pipelines.runner import input_notes, input_summary, run_prelabel, with_overrides, write_outputs

    task = config if isinstance(config, TaskConfig) else load_task_config(config)
    task = with_overrides(task, backend=backend, model=model, parallel=parallel)
    task, cost_basis = _priced_for_endpoint(task, base_url)
    if cost_basis.startswith("unknown") and max_cost is not None:
        raise ConfigError(f"max_cost needs the price of this endpoint, which is {cost_basis}")
    if max_cost is not None and max_cost < 0:
        raise InputError(f"max_cost must be >= 0 (got {max_cost}); pass a budget in USD")
    records = load_records(input_path, text_column or task.text_column, limit=limit, id_column=id_column,
                           encoding=encoding)  # fmt: skip
    notes = input_notes(input_summary(records))
    retrieval = None
    if examples is not None and not task.retrieval.k:
        raise ConfigError(
            f"{task.source_path or task.name}: retrieval.k is 0, so --examples would not be used. "
            "Fix: set `retrieval: {k: 4}` in the config"
        )
    from labeltriage.example_pool import POOL_FILE, attach_examples, retrieval_note

    if not task.retrieval.k:  # a pool left by an earlier run with retrieval would describe nothing now
        (Path(run_dir) / POOL_FILE).unlink(missing_ok=True)
    else:
        records, retrieval = attach_examples(task, records, Path(run_dir), Path(examples) if examples else None)
        notes.append(retrieval_note(retrieval))
    result = run_prelabel(task, records, run_dir, max_cost=max_cost, show_progress=show_progress, llm=llm,
                          write=False)  # fmt: skip
    result.summary["cost_basis"] = cost_basis
    if retrieval is not None:  # counted on the output: a long text may have dropped its examples
        shown = result.frame["example_ids"].map(lambda ids: ids is not None and len(ids) > 0)
        result.summary["retrieval"] = retrieval | {"records_with_examples": int(shown.sum())}
    if cost_basis.startswith("unknown"):
        result.summary["totals"]["cost_usd"] = None
        result.summary["totals"]["cost_usd_this_run"] = None
    write_outputs(result, Path(run_dir))
    out = Path(run_dir)
    return PrelabelResult(result.frame, result.summary, notes, (out / "prelabels.parquet", out / "run.json"), result)


def _is_local_endpoint(url: str | None) -> bool:
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _priced_for_endpoint(task: TaskConfig, base_url: str | None) -> tuple[TaskConfig, str]:
    """The config with ``base_url`` applied and the price that holds there, and how cost is counted.

    A task config's ``model.price`` is the price of the endpoint that config names (no
    ``base_url``: OpenAI's). Pointed elsewhere, that price does not hold: a local or private
    endpoint (llama.cpp, vLLM, Ollama on this network) is not billed per token, any other endpoint's
    price is unknown and the run reports no cost rather than a borrowed one."""
    from labeltriage.config import Price

    model = task.model
    if model.backend == "local":
        return task, "not billed: a local model"
    if base_url and base_url != model.base_url:
        if _is_local_endpoint(base_url):
            price, basis = Price(), f"not billed: a local endpoint ({base_url})"
        else:
            price = Price()
            basis = (f"unknown: model.price is for {model.base_url or 'the OpenAI API'}, not {base_url}; "
                     "set model.price in a task config that names this base_url")  # fmt: skip
        return task.model_copy(update={"model": model.model_copy(update={"base_url": base_url, "price": price})}), basis
    if _is_local_endpoint(model.base_url) and model.price == Price():
        return task, f"not billed: a local endpoint ({model.base_url})"
    price = model.price
    return task, f"model.price of the task config: ${price.input}/${price.output} per 1M input/output tokens"


# ------------------------------------------------------------------------------------------------
# gold labels (calibrate, route)
# ------------------------------------------------------------------------------------------------
COMBINED_FILE = "combined_confidence.parquet"
COMBINED_COLUMN = "confidence_combined"


def _prelabels(run: RunDir) -> pd.DataFrame:
    """prelabels.parquet, with the combined confidence ``calibrate`` fitted and the cascade's score
    ``second-opinion`` wrote (if any) as columns."""
    frame = run.table("prelabels.parquet", required_columns=("id", "llm_label", "status"))
    for file_name, column in ((COMBINED_FILE, COMBINED_COLUMN), (CASCADE_FILE, CASCADE_COLUMN)):
        if (run / file_name).is_file():
            extra = run.table(file_name, required_columns=("id", column))
            scores = dict(zip(extra["id"].astype(str), extra[column], strict=True))
            frame[column] = frame["id"].astype(str).map(scores).astype(float)
    return frame


def _fit_combined(run: RunDir, prelabels: pd.DataFrame, labels: pd.Series, seed: int) -> dict[str, Any]:
    """Cross-fit the combined confidence on the gold (:func:`curation.signals.cross_fit_confidence`),
    write it to combined_confidence.parquet and put it in ``prelabels``; returns its report."""
    import pandas as pd

    from curation.adapters.loop import run_embeddings
    from curation.signals import SIGNALS, cross_fit_confidence, signal_features

    ok = (prelabels["status"].astype(str) == "ok").to_numpy()
    rows = prelabels[ok]
    embeddings = run_embeddings(run.path, rows["text"].astype(str).tolist())
    x, names = signal_features(rows, embeddings, seed=seed)
    has_gold, correct = _gold_mask(prelabels, labels, np.zeros(len(prelabels)))
    try:
        fitted = cross_fit_confidence(x, has_gold[ok], correct[has_gold], seed=seed, names=names)
    except ValueError as exc:
        fix = "add gold rows, or calibrate one signal (--confidence-column)"
        raise InputError(f"combined confidence: {exc}; {fix}") from None
    scores = np.full(len(prelabels), np.nan)
    scores[ok] = fitted.scores
    prelabels[COMBINED_COLUMN] = scores
    frame = pd.DataFrame({"id": prelabels["id"].astype(str), COMBINED_COLUMN: scores})
    frame.to_parquet(run / "combined_confidence.parquet", index=False)
    weights = np.mean([list(m.coefficients().values()) for m in fitted.models], axis=0)
    return {
        "method": "logistic regression on the signals, cross-fitted on the gold (curation.signals; "
        "Chernozhukov et al. 2018): each gold record scored by a model that never saw it",
        "signals": {name: SIGNALS[name] for name in names},
        "weights": dict(zip(names, weights.round(4).tolist(), strict=True)),
        "n_splits": fitted.n_splits,
        "file": COMBINED_FILE,
    }


def _confidence(frame: pd.DataFrame, column: str, path: Path, cascade_digest: str | None = None) -> np.ndarray:
    """One kind of confidence per ok record, or InputError: a calibrator fitted on a mixture of
    kinds (log-prob for some records, stated for others) certifies neither. The cascade's score
    must be there and made for these first answers (and, given calibrator.json's
    ``cascade_digest``, be the score calibrate saw): :func:`labeltriage.cascade.check_cascade`."""
    if column == CASCADE_COLUMN:
        check_cascade(RunDir(path.parent), frame, cascade_digest)
    if column not in frame.columns:
        choices = [c for c in frame.columns if "confidence" in c and frame[c].dtype.kind in "fiu"]
        raise InputError(f"{path}: no column {column!r}; pass a confidence column, one of {choices}")
    ok = (frame["status"].astype(str) == "ok").to_numpy()
    values = frame[column].to_numpy(dtype=np.float64)
    if column == "llm_confidence" and (kinds := mixed_confidence_kinds(frame)):
        counts, kind = ", ".join(f"{k} {n}" for k, n in kinds.items()), next(k for k in kinds if k != "stated")
        raise InputError(
            f"{path}: llm_confidence mixes kinds ({counts}): the backend gave no {kind} confidence for some records. "
            "Fix: --confidence-column confidence_stated (every record has it), or rerun prelabel on a backend that "
            "returns log-probs"
        )
    missing = int((ok & ~np.isfinite(values)).sum())
    if missing and column != "llm_confidence":
        raise InputError(
            f"{path}: {column} is missing on {missing} ok record(s) (the backend did not give that kind). Fix: "
            "--confidence-column confidence_stated, or llm_confidence"
        )
    return values


def gold_labels(
    run: PathLike | RunDir, gold: PathLike | None = None, gold_column: str | None = None, notes: list[str] | None = None
) -> pd.Series:
    """Gold label per row of the run's prelabels (:meth:`labeltriage.rundir.RunDir.gold_labels`)."""
    return _run_dir(run).gold_labels(gold, gold_column, notes)


def _threshold_pool(prelabels: pd.DataFrame, raw: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the records a threshold applies to: ok with a confidence, not held for
    review (instruction-like text), one row per distinct text. The gold is a sample of these."""
    pool = (prelabels["status"].astype(str) == "ok").to_numpy() & np.isfinite(raw)
    if "instruction_like" in prelabels.columns:
        pool &= ~prelabels["instruction_like"].fillna(False).astype(bool).to_numpy()
    if "duplicate_of" in prelabels.columns:
        pool &= prelabels["duplicate_of"].isna().to_numpy()
    return pool


def _gold_mask(prelabels: pd.DataFrame, labels: pd.Series, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(has_gold, correct) per row. A repeated text (duplicate_of set) counts once: its first row."""
    ok = (prelabels["status"].astype(str) == "ok").to_numpy() & np.isfinite(conf)
    if "duplicate_of" in prelabels.columns:
        ok &= prelabels["duplicate_of"].isna().to_numpy()
    has_gold = labels.notna().to_numpy() & ok
    correct = (prelabels["llm_label"].astype(str).to_numpy() == labels.astype(str).to_numpy()) & has_gold
    return has_gold, correct


# ------------------------------------------------------------------------------------------------
# calibrate
# ------------------------------------------------------------------------------------------------
@dataclass
class CalibrationResult:
    """What :func:`calibrate` measured and wrote. ``report`` is calibration.json."""

    calibrator: Calibrator
    report: dict[str, Any]
    n_gold: int
    accuracy: float  # the LLM's accuracy on all the gold
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def shown(self) -> tuple[dict[str, Any], str]:
        """(before/after metrics to show, where they come from): held-out when there is a split."""
        held = self.report["held_out"]
        if held:
            return held, f"held-out {held['n_held_out']}, fitted on the other {held['n_fit']}"
        return self.report["in_sample"], "IN-SAMPLE: fitted on these records"


def second_opinion(
    run_dir: PathLike | RunDir,
    second_config: PathLike | TaskConfig,
    *,
    config: PathLike | None = None,
    below: float = 1.0,
    base_url: str | None = None,
    max_cost: float | None = None,
    examples: PathLike | None = None,
    parallel: int | None = None,
    show_progress: bool = False,
    llm: Any = None,
) -> dict[str, Any]:
    """A cascade before humans: a second labeller on the records the first answer was unsure of.

    ``second_config`` (another model, or the same model with another prompt; the run's label set)
    answers the ok records whose ``llm_confidence`` is below ``below`` (1.0: all), pre-labelled
    into RUN/second_opinion/ (cached: a rerun makes no call). Writes cascade_confidence.parquet
    (``confidence_cascade``: the two answers' mean confidence where they agree, the first's times
    the second's doubt where they differ; :mod:`curation.cascade`, after FrugalGPT, Chen et al.
    2023) and second_opinion.json (counts, the second run's ``exit_code``, every setting tried).
    Then ``calibrate(run, confidence_column="confidence_cascade")`` and ``route``: the certificate
    covers whatever the cascade accepts (route refuses a score changed since calibrate); the
    published label stays the first answer's. ``max_cost`` (USD) bounds the second run;
    ``examples`` is a second config's retrieved-example pool (``retrieval.k`` > 0; not the gold
    calibrate will use, or the gold would have taught the score it tests). For k
    samples of the same model, ``second_config`` is a copy of the run's config with
    ``confidence: {routing: consistency, consistency_samples: k}`` (1 + k calls per record).
    Raises ConfigError (another label set, multi-label, the run's own config unchanged, ``below``
    outside (0, 1]), InputError (no ok pre-label), RunDirError or the prelabel step's
    BackendError. ``llm`` injects a distilabel LLM (tests).
    """
    from labeltriage.cascade import second_opinion as ask_second
    from labeltriage.config import TaskConfig, load_task_config

    task = second_config if isinstance(second_config, TaskConfig) else load_task_config(second_config)
    if base_url:  # before the checks: the same config on another endpoint is another labeller
        task = task.model_copy(update={"model": task.model.model_copy(update={"base_url": base_url})})

    def prelabel_subset(task: TaskConfig, input_file: Path, out_dir: Path) -> tuple[pd.DataFrame, int, list[str]]:
        result = prelabel(task, input_file, out_dir, text_column="text", id_column="id", base_url=base_url,
                          max_cost=max_cost, parallel=parallel, examples=examples, show_progress=show_progress,
                          llm=llm)  # fmt: skip
        return result.frame, result.exit_code, result.notes

    return ask_second(_run_dir(run_dir, config), task, prelabel_subset, below=below)


def calibrate(
    run_dir: PathLike | RunDir,
    *,
    gold: PathLike | None = None,
    gold_column: str | None = None,
    method: CalibrationMethod = "isotonic",
    confidence_column: str | None = None,
    holdout: float = 0.3,
    n_bins: int = 15,
    seed: int = 0,
) -> CalibrationResult:
    """Fit a confidence calibrator for the run's pre-labels on gold labels; report ECE held out.

    Metrics (ECE uniform and equal-mass, MCE, Brier, AUROC; top-label, ``n_bins`` equal-width
    bins) are measured on a stratified held-out share ``holdout`` of the gold for a calibrator
    fitted on the rest (:func:`curation.heldout.evaluate_calibrator`); the saved calibrator is
    refitted on all gold. Writes calibrator.json, calibration.json and reliability.png.

    ``confidence_column``: the raw confidence, default ``llm_confidence``, or
    ``confidence_combined`` when the task config says ``confidence.combined``: then one
    confidence is first learned from every signal (log-prob, label distribution, stated,
    consistency, kNN label agreement and LLM-student agreement on the shipped embeddings),
    cross-fitted on the gold (:mod:`curation.signals`), and written to
    combined_confidence.parquet; ``route`` certifies on it.
    Raises InputError (no or too little gold, all right or all wrong).
    """
    from curation.calibration import ReliabilityPanel, reliability_diagram, save_reliability_diagram
    from curation.heldout import evaluate_calibrator
    from labeltriage.jsonio import write_json

    if method not in CALIBRATION_METHODS:
        raise InputError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if not 0 <= holdout <= 0.9:
        raise InputError(f"holdout must be in [0, 0.9] (0 = in-sample figures only), got {holdout}")
    if not 2 <= n_bins <= 100:
        raise InputError(f"n_bins must be in [2, 100], got {n_bins}")
    run = _run_dir(run_dir)
    prelabels = _prelabels(run)
    if confidence_column is None:
        task = run.task_config_or_none()
        confidence_column = COMBINED_COLUMN if task is not None and task.confidence.combined else "llm_confidence"
    if gold is None and (run / "gold.parquet").is_file():  # the gold drawn and labelled in the product
        gold = run / "gold.parquet"
    notes: list[str] = []
    labels = gold_labels(run, gold, gold_column, notes)
    combined = _fit_combined(run, prelabels, labels, seed) if confidence_column == COMBINED_COLUMN else None
    conf = _confidence(prelabels, confidence_column, run / "prelabels.parquet")
    has_gold, correct = _gold_mask(prelabels, labels, conf)
    n_gold = int(has_gold.sum())
    if n_gold < MIN_GOLD_TO_CALIBRATE:
        raise InputError(
            f"only {n_gold} ok pre-labels have a gold label (need >= {MIN_GOLD_TO_CALIBRATE}, ideally hundreds); "
            "add gold rows"
        )
    c, y = conf[has_gold], correct[has_gold]
    if y.all() or not y.any():
        kind = "right" if y.all() else "wrong"
        raise InputError(
            f"all {n_gold} gold pre-labels are {kind}: a calibrator needs both right and wrong ones; add gold rows"
        )
    evaluation = evaluate_calibrator(c, y, method=method, holdout=holdout, n_bins=n_bins, seed=seed)
    kind = confidence_column.removeprefix("confidence_")
    if confidence_column == "llm_confidence" and "confidence_kind" in prelabels.columns:
        kinds = prelabels.loc[has_gold, "confidence_kind"].dropna().unique().tolist()
        kind = kinds[0] if len(kinds) == 1 else kind
    gold_source = str(Path(gold).resolve()) if gold else "prelabels.parquet:gold_label"
    report: dict[str, Any] = {
        "method": method,
        "confidence_column": confidence_column,
        "confidence_kind": kind,  # what the calibrated score is: stated, logprob or consistency
        "gold": gold_source,
        "gold_column": gold_column,
        "n_gold": n_gold,
        "ece_convention": f"top-label, {n_bins} equal-width right-closed bins (also equal-mass), L1 weighted",
        "warnings": list(evaluation.warnings),
        "held_out": evaluation.held_out,
        "in_sample_because": evaluation.in_sample_because,
        "in_sample": evaluation.in_sample,
        "combined": combined,
    }
    calibrator = evaluation.calibrator
    calibrator.meta.update(
        {
            "confidence_column": confidence_column,
            "confidence_kind": kind,
            "gold": gold_source,
            "gold_column": gold_column,
        }
    )
    if confidence_column == CASCADE_COLUMN:  # route refuses a score changed after this
        calibrator.meta["cascade_digest"] = report["cascade_digest"] = cascade_digest(run)
    calibrator.save(run / "calibrator.json")
    write_json(run / "calibration.json", report)
    panels = []
    if evaluation.held_out is not None and evaluation.held_mask is not None:
        held = evaluation.held_out
        panels.append(
            ReliabilityPanel(f"calibrated, held-out {held['n_held_out']} (fitted on the other {held['n_fit']})",
                             evaluation.held_calibrated, y[evaluation.held_mask])
        )  # fmt: skip
    figure = reliability_diagram(c, y, calibrated=calibrator.transform(c), n_bins=n_bins,
                                 title=f"{run.path.name} ({method})", calibrated_in_sample=True,
                                 extra_panels=panels)  # fmt: skip
    save_reliability_diagram(figure, run / "reliability.png")
    paths = {name: run / name for name in ("calibrator.json", "calibration.json", "reliability.png")}
    return CalibrationResult(calibrator, report, n_gold, float(y.mean()), notes, list(evaluation.warnings), paths)


# ------------------------------------------------------------------------------------------------
# route
# ------------------------------------------------------------------------------------------------
@dataclass
class RoutingResult:
    """What :func:`route` decided. ``routed`` is routed.parquet, ``report`` routing.json.

    ``threshold`` is the :class:`~curation.certify.Certificate` (``method="fixed-sequence"``) or the
    per-threshold scan's :class:`~curation.routing.ThresholdChoice` (``method="scan"``);
    ``statement`` says in one sentence what is guaranteed; ``plan`` is the gold planner's answer
    (:class:`~curation.certify.GoldPlan`; None for the scan)."""

    routed: pd.DataFrame
    report: dict[str, Any]
    threshold: Certificate | ThresholdChoice
    counts: dict[str, int]
    target_precision: float
    confidence_level: float
    method: str
    statement: str
    plan: GoldPlan | None = None
    notes: list[str] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)


def _same_route_as_first(prelabels: pd.DataFrame, routes: np.ndarray) -> np.ndarray:
    """A repeated text (duplicate_of set) takes the route of its first row: one decision per text."""
    if "duplicate_of" not in prelabels.columns or not prelabels["duplicate_of"].notna().any():
        return routes
    index = {rid: i for i, rid in enumerate(prelabels["id"].astype(str))}
    routes = routes.copy()
    for i, first in enumerate(prelabels["duplicate_of"]):
        if first is not None and first == first and str(first) in index:
            routes[i] = routes[index[str(first)]]
    return routes


THRESHOLD_METHODS = ("fixed-sequence", "scan")


def route(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    gold: PathLike | None = None,
    gold_column: str | None = None,
    target_precision: float | None = None,
    spot_check_rate: float | None = None,
    blind_share: float | None = None,
    review_audit_rate: float | None = None,
    guided_start: bool | None = None,
    confidence_level: float = 0.95,
    method: str = "fixed-sequence",
    bound: BoundMethod = "wilson",
    seed: int = 0,
) -> RoutingResult:
    """Route the run's pre-labels to auto_accept, human_review or spot_check at a stated precision.

    ``method="fixed-sequence"`` (default, :func:`curation.certify.certify_threshold`): thresholds on
    the raw confidence, from strict to loose, each tested with an exact one-sided binomial test on
    the gold, stopping at the first failure (Bauer 1991; Learn-then-Test, Angelopoulos et al.
    2021). What it states holds family-wise: with probability >= ``confidence_level`` over the gold
    draw, the precision of the records auto-accepted at the chosen threshold is >= the target,
    provided the gold is a random sample of the run. ``method="scan"`` is the earlier
    per-threshold scan (:func:`curation.routing.choose_threshold`: the loosest threshold whose own
    ``bound`` lower bound reaches the target); it is NOT family-wise valid (measured 6-9% violations
    where 5% is stated, benchmarks/results/guarantee.json) and is kept for comparison only.

    Failed pre-labels and instruction-like texts always go to human review; a repeated text takes
    its first row's route. Targets come from the arguments, else the task config's
    ``thresholds``, else 0.95 / 5%; ``guided_start`` (None: the config's
    ``thresholds.guided_start``) starts the fixed sequence where the scores expect a precision
    well above the target. Needs calibrator.json (the calibrated confidence is shown to
    reviewers and sets the review priority) and the gold ``calibrate`` used (or ``gold``). Writes
    routed.parquet and routing.json (with the gold planner's answer: how much gold the target
    needs and which records to label next).

    Raises InputError (a bad argument, no gold, a confidence kind the run does not have),
    RunDirError (calibrate not run), ConfigError (the run's task config is gone or invalid).
    """
    from curation.calibration import load_calibrator
    from curation.certify import certify_threshold, plan_gold
    from curation.routing import (
        choose_threshold,
        coverage_precision_curve,
        errors_caught_table,
        priority_scores,
        route_records,
    )
    from labeltriage.config import check_target_precision
    from labeltriage.jsonio import write_json
    from labeltriage.trust import certificate_identity

    if method not in THRESHOLD_METHODS:
        raise UsageError(f"unknown threshold method {method!r}; choose one of {', '.join(THRESHOLD_METHODS)}")
    if bound not in ("wilson", "clopper-pearson"):
        raise UsageError(f"unknown bound {bound!r}; choose wilson or clopper-pearson")
    for name, value in (("target_precision", target_precision), ("confidence_level", confidence_level)):
        if value is not None and not 0 < value < 1:
            raise UsageError(f"{name} must be in (0, 1), got {value}")
    shares = (
        ("spot_check_rate", spot_check_rate),
        ("blind_share", blind_share),
        ("review_audit_rate", review_audit_rate),
    )
    for name, share in shares:
        if share is not None and not 0 <= share <= 1:
            raise UsageError(f"{name} must be in [0, 1], got {share}")
    run = _run_dir(run_dir, config)
    prelabels = _prelabels(run)
    try:
        calibrator = load_calibrator(run.require("calibrator.json"))
    except ValueError as exc:
        raise RunDirError(str(exc)) from None
    task = run.task_config_or_none()
    target = target_precision if target_precision is not None else (task.thresholds.target_precision if task else 0.95)
    spot_rate = spot_check_rate if spot_check_rate is not None else (task.thresholds.spot_check_rate if task else 0.05)
    blind_rate = blind_share if blind_share is not None else (task.thresholds.blind_share if task else 0.0)
    audit_rate = (
        review_audit_rate if review_audit_rate is not None else (task.thresholds.review_audit_rate if task else 0.0)
    )
    guided = guided_start if guided_start is not None else (task.thresholds.guided_start if task else False)
    conf_col = calibrator.meta.get("confidence_column", "llm_confidence")
    notes: list[str] = []
    tried_after_gold = settings_after_gold(run) if conf_col == CASCADE_COLUMN else 0
    if tried_after_gold:
        notes.append(f"the cascade's setting was changed {tried_after_gold} time(s) after calibrate had seen the "
                     "gold (second_opinion.json settings_tried): the stated confidence holds for one score fixed in "
                     "advance, not the best of several tried on the same gold; draw fresh gold for an honest "
                     "certificate")  # fmt: skip
    # the cascade's score: the one calibrate saw, not one changed since
    raw = _confidence(prelabels, conf_col, run / "prelabels.parquet", calibrator.meta.get("cascade_digest"))
    if gold is None and calibrator.meta.get("gold") not in (None, "prelabels.parquet:gold_label"):
        gold = Path(calibrator.meta["gold"])
        if not gold.is_file():
            raise InputError(f"{gold} (the gold `calibrate` used) is gone: pass --gold FILE")
    labels = gold_labels(run, gold, gold_column or calibrator.meta.get("gold_column"), notes)
    ok = (prelabels["status"].astype(str) == "ok").to_numpy() & np.isfinite(raw)
    calibrated = np.full(raw.shape[0], np.nan)
    if ok.any():
        calibrated[ok] = calibrator.transform(raw[ok])
    has_gold, correct = _gold_mask(prelabels, labels, raw)
    if has_gold.sum() == 0:
        raise InputError("no ok pre-label has a gold label: cannot choose a threshold; pass --gold FILE")
    if task is not None:
        task.check_target_precision(target)
    elif (answered := prelabels["llm_label"].dropna()).map(lambda label: isinstance(label, str)).all():
        # no task recorded: the single-label run's own labels, answered or gold
        check_target_precision(target, len(set(answered) | set(labels.dropna().astype(str))))
    flagged = (
        prelabels["instruction_like"].fillna(False).astype(bool).to_numpy()
        if "instruction_like" in prelabels.columns
        else np.zeros(len(prelabels), dtype=bool)
    )
    pool = _threshold_pool(prelabels, raw)
    ids = prelabels["id"].astype(str)
    # a record reviewers already saw with the LLM's suggestion can be neither auto-accepted nor
    # audited blind (its answers are anchored): it stays in review
    shown_assisted, shown_blind = run.shown()
    shown = ids.isin(shown_assisted).to_numpy()
    # a record reviewers saw blind stays blind: adding the suggestion now would mix anchored answers in
    was_blind = ids.isin(shown_blind).to_numpy()
    # gold drawn in the product but not answered yet: still in reviewers' hands, blind
    drawn = ids.isin(set(run.json("gold_draw.json", default={}).get("ids", []))).to_numpy()
    plan = None
    threshold: Certificate | ThresholdChoice
    if method == "fixed-sequence":
        certificate = certify_threshold(raw[has_gold], correct[has_gold], target, confidence_level,
                                        pool_scores=raw[pool], to_calibrated=calibrator.transform,
                                        guided_start=guided)  # fmt: skip
        threshold, scores, statement = certificate, raw, certificate.statement
        cut = certificate.threshold if certificate.threshold is not None else np.inf
        plan = plan_gold(raw[has_gold], correct[has_gold], raw[pool], target, confidence_level,
                         calibrated_pool=calibrated[pool], unlabelled=~(has_gold | drawn)[pool], seed=seed,
                         guided_start=guided)  # fmt: skip
        suggest_ids = prelabels["id"].astype(str).to_numpy()[np.flatnonzero(pool)[plan.suggest_indices]].tolist()
    else:
        threshold = choose_threshold(calibrated[has_gold], correct[has_gold], target, confidence_level, bound)
        scores, cut = calibrated, threshold.threshold
        statement = (
            f"Per-threshold scan ({bound}, NOT family-wise valid): the chosen threshold's own {confidence_level:.0%} "
            f"lower bound of precision is {threshold.lower_bound:.3f}"
            if threshold.achievable
            else "Per-threshold scan: no threshold reaches the target"
        )
    # a record whose label the gold gives is published with that label: not auto-accepted, audited or reviewed
    known = labels.notna().to_numpy()
    routes = route_records(np.where(ok, scores, np.nan), ok, cut, spot_rate, seed=seed,
                           needs_review=flagged | (shown & ~known) | (drawn & ~known), gold=known)  # fmt: skip
    n_shown_kept = int((shown & ~known & ok & (np.where(ok, scores, -np.inf) >= cut)).sum())
    if n_shown_kept:
        notes.append(
            f"{n_shown_kept} record(s) above the threshold stay in review: reviewers already saw them with the "
            f"LLM's suggestion ({ASSISTED_SHOWN_FILE}), so they can be neither auto-accepted nor audited blind"
        )
    routes = _same_route_as_first(prelabels, routes)
    gold_source = {
        "path": str(gold) if gold is not None else None,
        "column": gold_column or calibrator.meta.get("gold_column"),
    }
    identity = certificate_identity(
        run, prelabels["id"].astype(str).to_numpy()[known], labels.to_numpy()[known], conf_col
    )
    # a threshold the blind audits showed wrong is not certified again: while the model, prompt,
    # settings and confidence column are the same, drift evidence at a raw threshold t refutes every
    # threshold at or below t (more gold, or a new calibrator, does not answer it); a stricter one is
    # a new question
    previous = run.json("routing.json", default={})
    carried: dict[str, Any] = {}
    stopped_before = False
    kept = ("model", "prompt_hash", "generation_settings", "confidence_column")
    # every threshold blind audits ever refuted, kept across routes (a route that certifies nothing,
    # or a stricter one, must not forget them)
    refutations = list(previous.get("refuted_thresholds") or [])
    last = (previous.get("threshold") or {}) if isinstance(previous.get("threshold"), dict) else {}
    if (previous.get("audit_monitor") or {}).get("state") == "drift" and last.get("threshold") is not None:
        entry = {"threshold": float(last["threshold"]),
                 **{k: (previous.get("certificate_identity") or {}).get(k) for k in kept}}  # fmt: skip
        if entry not in refutations:
            refutations.append(entry)
    applying = [r["threshold"] for r in refutations if all(r.get(k) == identity.get(k) for k in kept)]
    refuted = max(applying) if applying else None
    if refuted is not None and np.isfinite(cut) and cut <= refuted:
        carried = {k: previous[k] for k in ("audit_monitor", "auto_accept_stopped") if k in previous}
        stopped_before = True
        statement = (
            f"Not applied: blind audits refuted precision >= the target at raw threshold {refuted:.4g} with this "
            f"model, prompt and settings, and the threshold certified now ({cut:.4g}) is at or below it"
        )
        notes.append(
            f"auto-accept stays stopped: blind audits showed drift below the target at raw threshold {refuted:.4g} "
            "with this model, prompt and settings; a threshold at or below it is not certified again (more gold "
            "or a new calibrator does not answer the audits); change the model or prompt, or a stricter target"
        )
    routed = prelabels.copy()
    routed["gold_label"] = labels.where(labels.notna(), None).astype(object)
    routed["calibrated_confidence"] = calibrated
    if stopped_before:  # nothing auto-accepted, the audit sample neither: both to review (see revoke_auto_accept)
        stopping = np.isin(routes, ["auto_accept", "spot_check"])
        before_stop = np.full(len(routes), None, dtype=object)
        before_stop[stopping] = routes[stopping]
        routed["route_before_stop"] = before_stop
        routes = np.where(stopping, "human_review", routes).astype(object)
    routed["route"] = routes.astype(str)
    # a random share of the review queue reviewed blind: the unbiased LLM-vs-reviewer agreement
    queue = np.flatnonzero((routes == "human_review") & ok & ~shown & ~drawn)
    blind = np.zeros(len(routed), dtype=bool)
    wanted_blind = math.ceil(blind_rate * queue.size - 1e-9)
    kept = queue[was_blind[queue]]  # the blind share drawn before and pushed stays; the rest is topped up
    fresh = np.random.default_rng([seed, 1]).permutation(queue[~was_blind[queue]])
    blind[kept] = True
    blind[fresh[: max(wanted_blind - kept.size, 0)]] = True
    blind |= drawn & ~known  # pushed blind by `gold draw`: pushing it again must not add the suggestion
    blind |= was_blind & (routes == "human_review")
    if int(blind[queue].sum()) != wanted_blind:
        notes.append(
            f"blind share: {int(blind[queue].sum())} of the {queue.size} records open to it are blind, not "
            f"{wanted_blind} ({blind_rate:g}): records reviewers saw blind stay blind, and those they saw with "
            "the suggestion cannot turn blind"
        )
    routed["blind"] = blind
    # a random share of the assisted review queue is shown a second time, blind: the review audit
    assisted = np.flatnonzero((routes == "human_review") & ok & ~blind & ~drawn)
    review_audit = np.zeros(len(routed), dtype=bool)
    picked = np.random.default_rng([seed, 2]).permutation(assisted)[: math.ceil(audit_rate * assisted.size - 1e-9)]
    review_audit[picked] = True
    routed["review_audit"] = review_audit
    if review_audit.any() and task is not None and task.argilla.min_submitted < 2:
        notes.append(
            f"review audits with argilla.min_submitted = {task.argilla.min_submitted}: the UI closes an ::audit copy "
            "after one answer, often by the record's own reviewer, whose answer is not counted; set it to 2 or more"
        )
    routed["priority"] = priority_scores(calibrated, ok)
    routed.to_parquet(run / "routed.parquet", index=False)
    g_conf, g_y = calibrated[has_gold], correct[has_gold]
    curve = coverage_precision_curve(g_conf, g_y, confidence_level, bound)
    counts = {r: int((routes == r).sum()) for r in ROUTES}
    report = {
        "thresholds_from": str(run.config_path()) if task else "defaults",
        "method": method,
        "statement": statement,
        "threshold": threshold.to_dict(),
        "threshold_on": "raw confidence (" + conf_col + ")" if method == "fixed-sequence" else "calibrated confidence",
        "calibrator": calibrator.method,
        "confidence_column": conf_col,
        "confidence_kind": calibrator.meta.get("confidence_kind"),
        "n_records": int(len(routed)),
        "n_failed": int((~ok).sum()),
        "n_instruction_like": int(flagged.sum()),
        "n_duplicate_rows": int(prelabels["duplicate_of"].notna().sum()) if "duplicate_of" in prelabels else 0,
        "routes": counts,
        "blind_share": blind_rate,
        "n_blind_review": int(blind.sum()),
        "review_audit_rate": audit_rate,
        "n_review_audits": int(review_audit.sum()),
        "seed": seed,
        # what route used (its arguments, else the task config's thresholds, else the defaults)
        "settings_used": {
            "target_precision": target,
            "confidence_level": confidence_level,
            "spot_check_rate": spot_rate,
            "blind_share": blind_rate,
            "review_audit_rate": audit_rate,
            "guided_start": guided,
        },
        "applied": not stopped_before,
        "refuted_thresholds": refutations,
        "certificate_identity": identity,
        "cascade_settings_after_gold": tried_after_gold if conf_col == CASCADE_COLUMN else None,
        "gold_source": gold_source,
        **carried,
        # which records to label next: ids, not positions (the planner's indices are into the pool)
        "gold_plan": {**plan.to_dict(), "suggest_ids": suggest_ids} if plan is not None else None,
        "coverage_precision_curve": {k: v.tolist() for k, v in curve.items()},
        "errors_caught": errors_caught_table(g_conf, g_y) if not g_y.all() else None,
    }
    write_json(run / "routing.json", report)
    paths = {"routed": run / "routed.parquet", "routing": run / "routing.json"}
    return RoutingResult(routed, report, threshold, counts, target, confidence_level, method, statement, plan,
                         notes, paths)  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Argilla: push, pull, loop
# ------------------------------------------------------------------------------------------------
def connect_argilla(api_url: str | None = None, api_key: str | None = None) -> Any:
    """An Argilla SDK client: the arguments, else ARGILLA_API_URL / ARGILLA_API_KEY, else the local stack.

    Raises ReviewServerError saying why the server cannot be used: down, the API key refused,
    or its database unreachable (see :func:`curation.adapters.argilla_io.why_server_refuses`).
    """
    import os

    import argilla as rg

    from argilla_stack.stack import Stack, StackError
    from curation.adapters.argilla_io import why_server_refuses

    api_url = api_url or os.environ.get("ARGILLA_API_URL")
    api_key = api_key or os.environ.get("ARGILLA_API_KEY")
    if not (api_url and api_key):
        try:
            api_url, api_key = Stack().credentials()
        except StackError as exc:
            raise ReviewServerError(
                f"{exc}, or set ARGILLA_API_URL and ARGILLA_API_KEY for another Argilla server"
            ) from None
    try:
        return rg.Argilla(api_url=api_url, api_key=api_key, timeout=120)
    except Exception as exc:  # the SDK's errors for every failure: diagnosed by a probe
        raise ReviewServerError(why_server_refuses(api_url, api_key, exc)) from exc


def _dataset(client: Any, task: TaskConfig, run: RunDir) -> Any:
    dataset = client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    if dataset is None:
        raise ReviewServerError(
            f"no dataset {task.argilla.workspace}/{task.argilla.dataset} in Argilla; run `labeltriage push {run.path}`"
        )
    return dataset


def push(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    client: Any = None,
    include_auto: bool = False,
    round_number: int | None = None,
    batch_size: int = 500,
    vectors: bool = True,
    limit: int | None = None,
    on_batch: Callable[[int], None] | None = None,
    llm: Any = None,
) -> PushReport:
    """Push the run's review queue to Argilla: suggestion, score, reasoning, priority metadata.

    Records routed to human_review and spot_check (and auto_accept with ``include_auto``) go to
    the dataset named in the task config's ``argilla`` section; the LLM label is the suggestion
    (score = calibrated confidence, agent = model/prompt_hash). Reruns create no duplicates and
    resume an interrupted push (push_checkpoint.json). ``vectors`` embeds the pushed texts (384-d,
    "find similar" in the UI). ``limit``: at most this many records not pushed before, the blind
    audits (spot_check) first, then by priority (:func:`curation.adapters.argilla_io.first_new`);
    records pushed before are always refreshed; None: the whole queue. ``round_number`` is stored
    as the records' ``round`` metadata (None: the last feedback round in loop.json, else 0).
    ``on_batch(n)`` is called after each batch. With ``model.generation.reasoning: review_only``
    the assisted records get their reasoning first (:mod:`labeltriage.reasoning`; ``llm`` injects
    the model, tests); push.json ``reasoning`` says what that asked. Writes push.json. Raises
    ReviewServerError, and ValueError for a negative ``limit``.
    """
    from curation.adapters import argilla_io
    from curation.adapters.loop import run_embeddings
    from labeltriage.jsonio import write_json
    from labeltriage.reasoning import reasoning_for_review
    from labeltriage.trust import enforce_certificate

    run = _run_dir(run_dir, config)
    task = run.task_config()
    revocation = enforce_certificate(run)  # a void certificate's records join the review queue
    routed = run.routed_for_review()
    queue = argilla_io.review_queue(routed, include_auto=include_auto)
    # the ::audit copies are extra rows of the queue, not records of the run
    in_queue = set(queue["id"].astype(str).str.removesuffix(argilla_io.REVIEW_AUDIT_SUFFIX))
    checkpoint = run / "push_checkpoint.json"
    pushed_before = run.checkpoint_ids()
    shown_before = run.shown()[0]
    client = client or connect_argilla()  # before the embedding model loads: a down server fails fast
    embedded = None
    dataset = argilla_io.ensure_dataset(client, task, vector_dimensions=384 if vectors else None)
    held_back = 0
    if limit is not None:
        queue, held_back = argilla_io.first_new(queue, argilla_io.pushed_ids(dataset, checkpoint), limit)
    queue, reasoning = reasoning_for_review(run, queue, llm=llm)
    # a dataset made by `push --no-vectors` has no vector settings: its records take none (loop pushes too)
    if vectors and argilla_io.has_vectors(dataset):
        embedded = run_embeddings(run.path, queue["text"].astype(str).tolist())
    if round_number is None:  # a push after `loop` keeps the round the loop reached
        round_number = last_round(run)
    records = argilla_io.build_records(queue, task, round_number=round_number, vectors=embedded)
    blind = argilla_io.is_blind(queue)
    run.record_shown(set(queue.loc[~blind, "id"].astype(str)), set(queue.loc[blind, "id"].astype(str)))
    report = argilla_io.push_records(dataset, records, checkpoint=checkpoint, batch_size=batch_size, on_batch=on_batch)
    # an upsert never deletes a suggestion: a blind record pushed before with one must lose it
    kept = set(queue.loc[blind, "id"].astype(str)) & (pushed_before | shown_before)
    report.suggestions_removed = argilla_io.remove_suggestions(client, dataset, kept) if kept else 0
    report.not_routed_to_review = int((~routed["id"].astype(str).isin(in_queue)).sum())
    report.held_back = held_back
    report.audit_copies = int(queue["id"].astype(str).str.endswith(argilla_io.REVIEW_AUDIT_SUFFIX).sum())
    report.queue_url = argilla_io.review_link(getattr(client, "api_url", ""), str(dataset.id))
    report.auto_accept_stopped = revocation.reason if revocation is not None and revocation.ids else None
    report.reasoning = reasoning.__dict__ if reasoning.asked else None
    write_json(run / "push.json", {"dataset": task.argilla.dataset, "limit": limit, **report.__dict__})
    return report


def last_round(run_dir: PathLike | RunDir) -> int:
    """The number of the run's last feedback round (loop.json), 0 before any."""
    return int((_run_dir(run_dir).json("loop.json", default={}) or {}).get("round") or 0)


def pull(
    run_dir: PathLike | RunDir, *, config: PathLike | None = None, client: Any = None, drop_missing: bool = False
) -> PullReport:
    """Pull every reviewer's responses into responses.parquet (a history) and the counts into pull.json.

    Drafts and discarded answers are counted, never used as labels; a submitted response the
    server no longer has (deleted reviewer) is kept with ``on_server = False`` unless
    ``drop_missing``. Raises ReviewServerError (no dataset: push first).
    """
    from curation.adapters.loop import pull_to_run

    run = _run_dir(run_dir, config)
    task = run.task_config()
    client = client or connect_argilla()
    return pull_to_run(client, _dataset(client, task, run), task, run.path, drop_missing=drop_missing)


def _feedback_round(
    client: Any, dataset: Any, task: TaskConfig, run: RunDir, number: int, min_agreement: float
) -> RoundResult:
    """One round (:func:`curation.adapters.loop.run_round`), then the certificate's checks: a void
    certificate or the blind audits' drift verdict stops auto-accept, and its records are pushed."""
    from curation.adapters.loop import run_round
    from labeltriage.jsonio import write_json
    from labeltriage.trust import audit_verdict, enforce_certificate

    # a run pushed part by part (`push --limit N`) stays so: a stop sends at most N more records
    limit = (run.json("push.json", default={}) or {}).get("limit")

    def send(n_stopped: int) -> int:
        before = run.checkpoint_ids()
        push(run, client=client, round_number=number, limit=limit)
        return n_stopped if limit is None else len(run.checkpoint_ids() - before)

    sent, reason = 0, None
    revocation = enforce_certificate(run)
    if revocation is not None and revocation.ids:  # in Argilla before the round updates their metadata
        sent, reason = send(len(revocation.ids)), revocation.reason
    result = run_round(client, dataset, task, run.path, number, min_agreement=min_agreement)
    verdict = audit_verdict(run, number)
    result.audit = verdict.to_dict() if verdict is not None else None
    stopped = run.json("routing.json", default={}).get("auto_accept_stopped") or {}
    if verdict is not None and verdict.state == "drift" and stopped.get("round") == number:
        sent, reason = sent + send(int(stopped.get("n_records") or 0)), str(stopped.get("reason"))
    result.auto_accept_stopped, result.sent_to_review = reason, sent
    write_json(run / "loop.json", result.to_dict(), default=str)
    return result


def loop(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    client: Any = None,
    rounds: int = 1,
    start_round: int | None = None,
    min_agreement: float = 0.6,
    on_round: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Run feedback rounds: pull, agreement, retrain the student, re-prioritise, push metadata.

    Priorities and rounds are updated as metadata only (responses are never touched); records
    whose reviewers disagree (vote share < ``min_agreement``) get route=adjudication and priority
    1. Rounds are numbered from ``start_round`` (None: the one after loop.json's, else 1). Returns
    one :class:`RoundResult` per round (the last is loop.json); ``on_round`` sees each as it ends.
    Raises ReviewServerError (no dataset: push first; server down).
    """
    run = _run_dir(run_dir, config)
    task = run.task_config()
    client = client or connect_argilla()
    dataset = _dataset(client, task, run)
    summaries = []
    first = last_round(run) + 1 if start_round is None else start_round
    for number in range(first, first + rounds):
        summary = _feedback_round(client, dataset, task, run, number, min_agreement)
        summaries.append(summary)
        if on_round is not None:
            on_round(summary)
    return summaries


def reviews_not_yet_examples(run_dir: PathLike | RunDir, *, config: PathLike | None = None) -> int:
    """With ``retrieval.k`` > 0: reviewed labels pulled since the last ``prelabel`` chose the
    examples (rerun it to show them to the model); 0 otherwise."""
    from labeltriage.example_pool import reviews_not_yet_examples

    run = _run_dir(run_dir, config)
    return reviews_not_yet_examples(run.task_config(), run.path)


def watch(
    run_dir: PathLike | RunDir,
    *,
    every: int = 50,
    rounds: int = 1,
    start_round: int | None = None,
    min_agreement: float = 0.6,
    listen_port: int = 0,
    config: PathLike | None = None,
    client: Any = None,
    on_event: Callable[[str], None] | None = None,
    on_round: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Event-driven :func:`loop`: a signed Argilla webhook triggers a round every ``every`` submits.

    Listens on 127.0.0.1:``listen_port`` (0 = any) until ``rounds`` rounds ran or KeyboardInterrupt;
    the webhook is removed on exit. ``on_event`` receives one-line status messages. Raises
    ReviewServerError (server down, no dataset: push first), ConfigError.
    """
    import threading

    import argilla as rg

    from curation.adapters.webhooks import ResponseWebhookListener

    run = _run_dir(run_dir, config)
    task = run.task_config()
    client = client or connect_argilla()
    dataset = _dataset(client, task, run)
    say = on_event or (lambda _message: None)
    first = last_round(run) + 1 if start_round is None else start_round
    remaining = list(range(first, first + rounds))
    summaries: list[RoundResult] = []
    done = threading.Event()

    def on_batch(n_new: int) -> None:
        if remaining:
            say(f"{n_new} new submitted response(s)")
            summary = _feedback_round(client, dataset, task, run, remaining.pop(0), min_agreement)
            summaries.append(summary)
            if on_round is not None:
                on_round(summary)
        if not remaining:
            done.set()

    listener = ResponseWebhookListener(str(dataset.id), every, on_batch, port=listen_port)
    webhook = rg.Webhook(url=listener.url, events=["response.created", "response.updated"], _client=client).create()
    listener.start(webhook.secret)
    say(f"listening on {listener.url} for responses to {dataset.name}; Ctrl-C to stop")
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        webhook.delete()
    return summaries


# ------------------------------------------------------------------------------------------------
# gold drawn inside the product
# ------------------------------------------------------------------------------------------------
@dataclass
class GoldDrawResult:
    """What :func:`draw_gold` drew and pushed. ``ids``: the whole sample (gold_draw.json).

    ``n_input_gold``: drawn records that already had a gold label in the run's input (column
    ``gold_label`` of prelabels.parquet); the collected gold.parquet replaces that gold in
    `calibrate` and `route`, so those records are labelled again (the sample stays random).
    """

    ids: list[str]
    new: list[str]
    population: int
    inclusion_probability: float
    pushed: int
    path: Path
    n_input_gold: int = 0


def draw_gold(
    run_dir: PathLike | RunDir,
    n: int,
    *,
    config: PathLike | None = None,
    client: Any = None,
    seed: int = 0,
    confidence_column: str = "llm_confidence",
) -> GoldDrawResult:
    """Draw ``n`` records at random as gold and push them to Argilla blind, for reviewers to label.

    The sample is simple random (:func:`curation.gold.draw_gold_sample`) from the records a
    threshold applies to (ok, with a confidence, not instruction-like, one per distinct text), so
    the certificate's premise, gold drawn at random from the run, holds by construction; each
    record's inclusion probability ``n / N`` is recorded in gold_draw.json. A larger ``n`` later
    extends the same sample; the same ``n`` again draws and pushes nothing new. The records go to
    Argilla with no suggestion, score, reasoning or model field (``review_mode = blind``); their
    answers become the run's gold with :func:`collect_gold`. Raises InputError (``n`` outside
    ``[1, N]``), ReviewServerError.
    """
    import pandas as pd

    from curation.adapters import argilla_io
    from curation.gold import draw_gold_sample
    from labeltriage.jsonio import write_json

    run = _run_dir(run_dir, config)
    task = run.task_config()
    prelabels = _prelabels(run)
    raw = _confidence(prelabels, confidence_column, run / "prelabels.parquet")
    pool_ids = prelabels.loc[_threshold_pool(prelabels, raw), "id"].astype(str).tolist()
    previous = run.json("gold_draw.json", default={})
    if previous and previous.get("population") not in (None, len(pool_ids)):
        raise InputError(
            f"{run / 'gold_draw.json'}: drawn from {previous['population']} records, the run now has "
            f"{len(pool_ids)}: the run changed; delete gold_draw.json to draw afresh"
        )
    drawn_before = len(previous.get("ids") or [])
    if drawn_before and int(n) < drawn_before:
        raise InputError(
            f"{run / 'gold_draw.json'}: {drawn_before} records are drawn already and --n is the gold sample size in "
            f"total: pass --n {drawn_before} or more to extend it (a sample never shrinks)"
        )
    if drawn_before and previous.get("seed") not in (None, seed):
        raise InputError(
            f"{run / 'gold_draw.json'}: the sample was drawn with --seed {previous['seed']}: extend it with that seed"
        )
    draw = draw_gold_sample(pool_ids, int(n), seed=seed, already=previous.get("ids", []))
    path = run / "gold_draw.json"
    # a drawn record reviewers already saw with the LLM's suggestion: answers given before this draw are
    # anchored and never gold (collect_gold); its suggestion is taken off now
    seen = run.shown()[0] or run.checkpoint_ids()
    anchored = dict(previous.get("anchored_since") or {})
    now = datetime.now(UTC).isoformat()
    fresh = {rid: now for rid in draw.new if rid in seen}
    anchored |= fresh
    client = client or connect_argilla()
    # who answered those records before the draw (any status: they saw the suggestion): never gold
    answered_before = dict(previous.get("anchored_answers") or {})
    if fresh:
        pull(run, client=client)
        earlier = run.table("responses.parquet", ("record_id", "user", "label"))
        for rid, user in zip(earlier["record_id"].astype(str), earlier["user"].astype(str), strict=True):
            if rid in fresh:
                answered_before.setdefault(rid, []).append(user)
    write_json(path, {"ids": draw.ids, "n": len(draw.ids), "population": draw.population,
                      "inclusion_probability": draw.inclusion_probability, "seed": seed,
                      "design": "simple random sample without replacement, extended sequentially",
                      "anchored_since": anchored, "anchored_answers": answered_before})  # fmt: skip
    frame = prelabels[prelabels["id"].astype(str).isin(set(draw.ids))].assign(route="gold_draw", blind=True)
    if (run / "routed.parquet").is_file():
        # beside the review queue: a priority and rank borrowed from the assisted records, as every
        # blind record shows (alone, every drawn record showed 0.5 and rank 1: the gold stood out)
        queue = argilla_io.review_queue(run.routed_for_review())
        extra = frame[~frame["id"].astype(str).isin(set(queue["id"].astype(str)))]
        together = pd.concat([queue, extra], ignore_index=True)
        wanted = set(draw.ids)
        records = [r for r in argilla_io.build_records(together, task) if str(r.id) in wanted]
    else:
        records = argilla_io.build_records(frame, task)
    dataset = argilla_io.ensure_dataset(client, task, vector_dimensions=None)
    # the checkpoint skips records already pushed and resumes a push that failed half-way
    report = argilla_io.push_records(dataset, records, checkpoint=run / "gold_push.json")
    if anchored:  # an upsert never deletes a suggestion
        argilla_io.remove_suggestions(client, dataset, set(anchored))
    n_input_gold = 0
    if "gold_label" in prelabels.columns:
        known = prelabels.loc[prelabels["gold_label"].notna(), "id"].astype(str)
        n_input_gold = int(known.isin(set(draw.ids)).sum())
    return GoldDrawResult(
        draw.ids, draw.new, draw.population, draw.inclusion_probability, report.pushed, path, n_input_gold
    )


@dataclass
class GoldCollectResult:
    """What :func:`collect_gold` found. ``gold`` is gold.parquet (one row per labelled draw)."""

    gold: pd.DataFrame
    n_drawn: int
    n_labelled: int
    n_pending: int
    n_tied: int
    path: Path


def collect_gold(
    run_dir: PathLike | RunDir, *, config: PathLike | None = None, client: Any = None
) -> GoldCollectResult:
    """Pull the reviewers' answers to the drawn gold records into gold.parquet, the run's gold.

    A record's gold label is its reviewers' majority (one answer is enough; a tie leaves it out,
    counted). gold.parquet has ``id, gold_label, n_answers, agreement, inclusion_probability``;
    `calibrate` and `route` use it when no gold file is given. Records nobody answered yet are
    pending: the answered ones are a random subset of the sample as long as whether a record gets
    answered does not depend on its label. A drawn record reviewers had already seen with the
    LLM's suggestion (``gold_draw.json`` ``anchored_since``) counts only answers of reviewers who
    had not answered it before the draw took the suggestion off (``anchored_answers``; their
    answers are counted in ``n_anchored_answers_ignored`` of gold_collect.json). Raises
    RunDirError (no gold_draw.json: draw first), ReviewServerError.
    """
    import pandas as pd

    from labeltriage.jsonio import write_json

    run = _run_dir(run_dir, config)
    drawn = run.json("gold_draw.json")
    ids = [str(i) for i in drawn["ids"]]
    pull(run, client=client)
    from curation.feedback import human_majority

    responses = run.table("responses.parquet", ("record_id", "user", "label"))
    responses = responses[responses["record_id"].astype(str).isin(set(ids))]
    # answers by reviewers who saw a drawn record with the LLM's suggestion (before the draw) are
    # anchored: never gold, whenever they were given or changed
    anchored = {(rid, user) for rid, users in (drawn.get("anchored_answers") or {}).items() for user in users}
    keys = zip(responses["record_id"].astype(str), responses["user"].astype(str), strict=True)
    before = np.array([key in anchored for key in keys], dtype=bool)
    n_anchored = int(before.sum())
    responses = responses[~before]
    majority = human_majority(responses)
    settled = majority[majority["majority"].notna()]
    tied = int(len(majority) - len(settled))
    rows = [
        {
            "id": str(rid),
            "gold_label": label,
            "n_answers": int(n),
            "agreement": float(share),
            "inclusion_probability": float(drawn["inclusion_probability"]),
        }  # fmt: skip
        for rid, label, n, share in zip(
            settled["record_id"], settled["majority"], settled["n_reviewers"], settled["agreement"], strict=True
        )  # fmt: skip
    ]
    order = {rid: k for k, rid in enumerate(ids)}
    gold = pd.DataFrame(rows, columns=["id", "gold_label", "n_answers", "agreement", "inclusion_probability"])
    gold = gold.sort_values("id", key=lambda c: c.map(order)).reset_index(drop=True)
    path = run / "gold.parquet"
    gold.to_parquet(path, index=False)
    write_json(run / "gold_collect.json", {"n_drawn": len(ids), "n_labelled": len(gold), "n_tied": tied,
                                           "n_pending": len(ids) - len(gold) - tied,
                                           "n_anchored_answers_ignored": n_anchored})  # fmt: skip
    return GoldCollectResult(gold, len(ids), len(gold), len(ids) - len(gold) - tied, tied, path)


# ------------------------------------------------------------------------------------------------
# agreement, publish
# ------------------------------------------------------------------------------------------------
@dataclass
class AgreementResult:
    """What :func:`agreement` measured; ``report`` is agreement.json, written to ``path``.

    The properties are the headline figures (None when undefined: fewer than two reviewers on
    every record, or no LLM labels); ``report`` has every figure, with bands and per reviewer.
    """

    report: dict[str, Any]
    path: Path

    @property
    def n_responses(self) -> int:
        """Submitted responses used."""
        return int(self.report.get("n_responses") or 0)

    @property
    def fleiss_kappa(self) -> float | None:
        """Fleiss' kappa on records with >= 2 reviewers (Fleiss 1971), subsampled to equal raters."""
        return self.report.get("fleiss_kappa")

    @property
    def krippendorff_alpha(self) -> float | None:
        """Krippendorff's alpha, nominal (Krippendorff 2011; the ``krippendorff`` package's values)."""
        return self.report.get("krippendorff_alpha_nominal")

    @property
    def llm_vs_majority_kappa(self) -> float | None:
        """Cohen's kappa of the LLM's label against the reviewers' majority (Cohen 1960)."""
        versus = self.report.get("llm_vs_majority")
        return versus.get("kappa") if isinstance(versus, dict) else None

    @property
    def published_accuracy(self) -> dict[str, Any] | None:
        """Accuracy of the auto-accepted labels from blind audits, with its interval (None: no audit)."""
        return self.report.get("published_accuracy")


@dataclass
class PublishResult:
    """What :func:`publish` wrote. ``final.final`` is the published frame (final.parquet)."""

    final: FinalDataset
    agreement: dict[str, Any]
    card: str
    paths: dict[str, Path]
    hub_url: str | None = None
    hub_private: bool = True

    @property
    def auto_accept_stopped(self) -> str | None:
        """Why auto-accept is stopped (a void certificate, drift), None when it is not."""
        return (self.agreement.get("auto_accept_stopped") or {}).get("reason")

    @property
    def summary(self) -> dict[str, Any]:
        """Counts of the publish: per label source, adjudication, pending review, failed pre-labels."""
        return self.final.summary


def _check_consensus(method: str, tie_policy: str, min_agreement: float, min_reviewers: int) -> None:
    if method not in CONSENSUS_METHODS:
        raise InputError(f"unknown consensus method {method!r}; choose one of {', '.join(CONSENSUS_METHODS)}")
    if tie_policy not in TIE_POLICIES:
        raise InputError(f"unknown tie policy {tie_policy!r}; choose one of {', '.join(TIE_POLICIES)}")
    if not 0 <= min_agreement <= 1 or min_reviewers < 1:
        raise InputError(
            f"min_agreement must be in [0, 1] and min_reviewers >= 1, got {min_agreement}, {min_reviewers}"
        )


def _final_dataset(
    run: RunDir, method: str, tie_policy: str, min_agreement: float, min_reviewers: int, seed: int
) -> tuple[Any, FinalDataset]:
    from curation.publish import build_final_dataset
    from labeltriage.trust import audit_verdict, enforce_certificate

    _check_consensus(method, tie_policy, min_agreement, min_reviewers)
    enforce_certificate(run)  # a void certificate publishes no LLM label unreviewed
    # the audits pulled since the last `loop` count too: drift publishes no LLM label unreviewed
    # (the sequential test allows a look at any time)
    audit_verdict(run, (run.json("routing.json", default={}).get("audit_monitor") or {}).get("round"))
    files = run.publish_files()
    try:
        final = build_final_dataset(
            files,
            method=cast(Literal["majority", "dawid_skene"], method.replace("-", "_")),
            tie_policy=cast(Literal["abstain", "llm", "random"], tie_policy),
            min_agreement=min_agreement,
            min_reviewers=min_reviewers,
            random_state=seed,
        )
    except ValueError as exc:  # e.g. a response label that is not one of the question's labels
        raise RunDirError(f"{run / 'responses.parquet'}: {exc}") from None
    return files, final


def agreement(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    method: str = "majority",
    tie_policy: str = "abstain",
    min_agreement: float = 0.6,
    min_reviewers: int = 1,
    seed: int = 0,
    output: PathLike | None = None,
) -> AgreementResult:
    """Inter-annotator agreement on the pulled responses; written to agreement.json (or ``output``).

    Percent agreement, Fleiss' kappa (subsampled to the same number of reviewers per record,
    seeded), Krippendorff's alpha, pairwise Cohen's kappa, each reviewer against the others'
    majority, LLM-vs-majority kappa and per-class F1, and whether the LLM mimics one reviewer
    (:func:`curation.agreement.agreement_report`). Raises RunDirError (nothing pulled yet).
    """
    from curation.publish import compute_agreement
    from labeltriage.jsonio import write_json

    _check_consensus(method, tie_policy, min_agreement, min_reviewers)
    run = _run_dir(run_dir, config)
    run.require("responses.parquet")
    files, final = _final_dataset(run, method, tie_policy, min_agreement, min_reviewers, seed)
    report = compute_agreement(files, final, random_state=seed)
    path = Path(output) if output else run / "agreement.json"
    write_json(path, report)
    return AgreementResult(report, path)


def student_label(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    target_precision: float | None = None,
    confidence_level: float | None = None,
    seed: int = 0,
    student: str = "frozen",
    max_pairs: int | None = None,
) -> dict[str, Any]:
    """Label the review queue's unreviewed records with the student, where a threshold is certified.

    The student is trained on the reviewed records' majority labels: ``frozen``, logistic
    regression on the shipped MiniLM embeddings; or ``finetuned``, SetFit (Tunstall et al. 2022:
    MiniLM fine-tuned contrastively on at most ``max_pairs`` (default 4,000) label pairs, then the
    same head; 4-10 minutes on 2 CPU cores, then every text embedded again). In
    ``benchmarks/student_vs_llm.py`` the fine-tuned student was ahead of the frozen one on Rotten
    Tomatoes (one seed) and on par on tweets at 1,000 labels (+0.014, 95% interval -0.009 to
    +0.038, 3 seeds), but its probabilities certified no threshold where the frozen one's did: it
    may label nothing. Each setting tried is recorded (student.json ``settings_tried``) and the
    statement's level is Bonferroni-corrected for them. The threshold is certified on the gold
    records of the review stratum
    (:mod:`curation.student_labels`: fixed-sequence exact binomial tests, Learn-then-Test) at
    ``target_precision`` with ``confidence_level`` (default: the run's routing settings). Writes
    student_labels.parquet and student.json; ``publish`` then publishes the accepted records with
    label_source ``student`` and the certificate (not audited, not a measured accuracy). Returns
    student.json's content.
    Raises InputError (multi-label task, no reviewed labels of two classes, no gold in the
    stratum) or RunDirError (a missing run file, naming the step to run).
    """
    from labeltriage.student_labels import student_label as label_with_student

    return label_with_student(_run_dir(run_dir, config), target_precision=target_precision,
                              confidence_level=confidence_level, seed=seed, student=student,
                              max_pairs=max_pairs)  # fmt: skip


def publish(
    run_dir: PathLike | RunDir,
    *,
    config: PathLike | None = None,
    method: str = "majority",
    tie_policy: str = "abstain",
    min_agreement: float = 0.6,
    min_reviewers: int = 1,
    seed: int = 0,
    output: PathLike | None = None,
    repo_id: str | None = None,
    public: bool = False,
) -> PublishResult:
    """Build the final dataset, write it with its dataset card, optionally push it to the Hub.

    Each row says how its label was made (label_source = human | consensus | llm_auto | student |
    gold); records with a tie or low agreement go to adjudication.parquet and are left out. ``method``:
    ``majority`` or ``dawid-skene`` (Dawid & Skene 1979). The Hub token is read from HF_TOKEN;
    HF_ENDPOINT selects another Hub-compatible server. Writes final.parquet, README.md (card),
    agreement.json, adjudication.parquet into ``output`` (default: the run directory).
    Raises RunDirError, or ReviewServerError when the Hub refuses.
    """
    from curation.adapters.hub import push_to_hub
    from curation.publish import build_dataset_card, compute_agreement, write_local

    run = _run_dir(run_dir, config)
    files, final = _final_dataset(run, method, tie_policy, min_agreement, min_reviewers, seed)
    report = compute_agreement(files, final, random_state=seed)
    card = build_dataset_card(files, final, report)
    paths = write_local(final, card, report, Path(output) if output else run.path)
    url = None
    if repo_id:
        try:
            url = push_to_hub(final.final, card, repo_id, private=not public)
        except (RuntimeError, ValueError) as exc:
            raise ReviewServerError(str(exc)) from None
        except OSError as exc:  # requests' and huggingface_hub's network errors (offline mode too)
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT  # HF_ENDPOINT or the Hub's own address, as the push used
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise ReviewServerError(
                f"the Hub at {endpoint} could not be reached to publish {repo_id} ({type(exc).__name__}: {first}); "
                f"the local files are written in {paths['final'].parent}. Fix: check the network (HF_HUB_OFFLINE=1 "
                "forbids it; HF_ENDPOINT selects another server), then rerun, or omit --repo-id"
            ) from None
    return PublishResult(final, report, card, paths, url, not public)
