"""Confidence calibration on gold labels: metrics, calibrators and the reliability diagram.

Everything here works on the *top-label* view of a classifier or an LLM: one confidence per record
(the probability it gives to the label it chose) and one boolean saying whether that label was
correct on gold. Shapes: ``confidences`` is ``(n,)`` float in [0, 1], ``correct`` is ``(n,)`` bool
(or 0/1).

ECE convention used throughout (state it in every report, libraries differ):

* top-label confidence (not classwise),
* ``n_bins=15`` by default,
* ``strategy="uniform"``: bins ``[0, 1/15], (1/15, 2/15], ..., (14/15, 1]`` (right-closed, the first
  bin also holds exactly 0); ``strategy="quantile"`` ("equal-mass"): records sorted by confidence
  and split into ``n_bins`` groups of (near-)equal size, ties kept in the same bin,
* ``ECE = sum_b (n_b / n) * |accuracy_b - mean_confidence_b|`` over non-empty bins (L1, weighted),
* ``MCE = max_b |accuracy_b - mean_confidence_b|`` over non-empty bins.

All confidences, accuracies and calibration errors are probabilities (unitless, in [0, 1]).

References: ECE and MCE as defined by Naeini, Cooper & Hauskrecht (2015), "Obtaining Well
Calibrated Probabilities Using Bayesian Binning" (AAAI), in the top-label form with 15 equal-width
bins of Guo, Pleiss, Sun & Weinberger (2017), "On Calibration of Modern Neural Networks" (ICML);
equal-mass bins as in Nixon et al. (2019), "Measuring Calibration in Deep Learning" (CVPR
Workshops); reliability diagrams after DeGroot & Fienberg (1983), "The Comparison and Evaluation
of Forecasters" (The Statistician). Each calibrator cites its own method.

Pure module: numpy, scipy and sklearn only; the only I/O is a calibrator's own ``save``/``load`` and
the PNG written by :func:`reliability_diagram`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.stats import rankdata

Strategy = Literal["uniform", "quantile"]
Method = Literal["isotonic", "temperature", "platt", "histogram"]
METHODS: tuple[str, ...] = ("isotonic", "temperature", "platt", "histogram")

# Confidences are clipped to [EPS, 1 - EPS] before taking a logit so that a stated confidence of
# exactly 1.0 (common for small LLMs) does not become an infinite logit.
EPS = 1e-6


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------
def check_confidences(confidences: Any, name: str = "confidences") -> np.ndarray:
    """Return ``confidences`` as a 1-D float64 array in [0, 1], or raise a ValueError naming it."""
    arr = np.asarray(confidences, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one top-label confidence per record), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one record")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} NaN or inf value(s); drop or fill those records first")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{name} must lie in [0, 1], got min={arr.min():.4g}, max={arr.max():.4g} "
            "(pass probabilities, not logits or percentages)"
        )
    return arr


def check_correct(correct: Any, n: int, name: str = "correct") -> np.ndarray:
    """Return ``correct`` as a 1-D bool array of length ``n``, or raise a ValueError naming it."""
    arr = np.asarray(correct)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with {n} entries (one per confidence), got shape {arr.shape}")
    if arr.dtype != bool:
        as_float = arr.astype(np.float64)
        if not np.isfinite(as_float).all() or not np.isin(as_float, (0.0, 1.0)).all():
            raise ValueError(f"{name} must be boolean or 0/1 (was the LLM label equal to gold?)")
        arr = as_float.astype(bool)
    return arr


def _check_pair(confidences: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = check_confidences(confidences)
    return conf, check_correct(correct, conf.shape[0])


def _check_two_classes(correct: np.ndarray, what: str) -> None:
    # A calibrator or an AUROC needs both right and wrong records on gold.
    n_right = int(correct.sum())
    if n_right == 0 or n_right == correct.shape[0]:
        kind = "correct" if n_right else "wrong"
        raise ValueError(
            f"correct is one-class: all {correct.shape[0]} gold records are {kind}; {what} needs both "
            "right and wrong pre-labels on gold (label more gold records)"
        )


# ----------------------------------------------------------------------------------------------
# binning and metrics
# ----------------------------------------------------------------------------------------------
def bin_assignments(confidences: np.ndarray, n_bins: int = 15, strategy: Strategy = "uniform") -> np.ndarray:
    """Bin index in ``[0, n_bins)`` for each confidence: ``(n,)`` floats in [0, 1] -> ``(n,)`` int64.

    ``"uniform"``: right-closed equal-width bins; ``"quantile"``: equal-mass bins, ties kept in
    one bin (see the module docstring). The input is not checked (callers check it).

    Raises:
        ValueError: ``n_bins`` not a positive integer, or an unknown ``strategy``.
    """
    if not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = np.asarray(confidences, dtype=np.float64)
    if strategy == "uniform":
        # right-closed bins: ceil(c * B) - 1, with c = 0 going to bin 0
        idx = np.ceil(conf * n_bins).astype(np.int64) - 1
        return np.clip(idx, 0, n_bins - 1)
    if strategy == "quantile":
        order = np.argsort(conf, kind="stable")
        ranks = np.empty(conf.shape[0], dtype=np.int64)
        ranks[order] = np.arange(conf.shape[0])
        idx = (ranks * n_bins) // conf.shape[0]
        # ties must share a bin: give every tied group the bin of its first member
        sorted_conf = conf[order]
        first_of_group = np.searchsorted(sorted_conf, sorted_conf, side="left")
        idx_sorted = idx[order][first_of_group]
        out: np.ndarray = np.empty_like(idx)
        out[order] = idx_sorted
        return out
    raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")


def calibration_bins(
    confidences: Any, correct: Any, n_bins: int = 15, strategy: Strategy = "uniform"
) -> dict[str, np.ndarray]:
    """Per-bin statistics, each array of shape ``(n_bins,)``.

    Returns ``count``, ``mean_confidence``, ``accuracy`` (NaN for empty bins), ``lower`` and ``upper``
    (the bin's confidence range: fixed edges for ``uniform``, observed min/max for ``quantile``).

    Raises:
        ValueError: see :func:`check_confidences`, :func:`check_correct` and :func:`bin_assignments`.
    """
    conf, corr = _check_pair(confidences, correct)
    idx = bin_assignments(conf, n_bins, strategy)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_corr = np.bincount(idx, weights=corr.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / count, np.nan)
        acc = np.where(count > 0, sum_corr / count, np.nan)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        lower, upper = edges[:-1], edges[1:]
    else:
        lower = np.full(n_bins, np.nan)
        upper = np.full(n_bins, np.nan)
        np.fmin.at(lower, idx, conf)
        np.fmax.at(upper, idx, conf)
    return {"count": count, "mean_confidence": mean_conf, "accuracy": acc, "lower": lower, "upper": upper}


def expected_calibration_error(
    confidences: Any, correct: Any, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """Top-label ECE: ``sum_b (n_b/n) |acc_b - conf_b|`` (15 right-closed uniform bins by default).

    Naeini et al. (2015); Guo et al. (2017) for the top-label, 15-bin convention.

    Args:
        confidences: ``(n,)`` top-label confidences in [0, 1].
        correct: ``(n,)`` bool, whether the top label matched gold.
        n_bins: number of bins.
        strategy: ``"uniform"`` (equal width) or ``"quantile"`` (equal mass).

    Returns:
        ECE in [0, 1].

    Raises:
        ValueError: empty input, NaN/inf, confidences outside [0, 1], mismatched shapes, bad
            ``n_bins`` or ``strategy``.
    """
    b = calibration_bins(confidences, correct, n_bins, strategy)
    n = b["count"].sum()
    nz = b["count"] > 0
    gaps = np.abs(b["accuracy"][nz] - b["mean_confidence"][nz])
    return float(np.sum(b["count"][nz] / n * gaps))


def maximum_calibration_error(
    confidences: Any, correct: Any, n_bins: int = 15, strategy: Strategy = "uniform"
) -> float:
    """Top-label MCE (Naeini et al. 2015): the largest ``|acc_b - conf_b|`` over non-empty bins (same
    binning and errors as :func:`expected_calibration_error`), in [0, 1]."""
    b = calibration_bins(confidences, correct, n_bins, strategy)
    nz = b["count"] > 0
    return float(np.max(np.abs(b["accuracy"][nz] - b["mean_confidence"][nz])))


def brier_score(confidences: Any, correct: Any) -> float:
    """Brier score (Brier 1950, "Verification of Forecasts Expressed in Terms of Probability",
    Monthly Weather Review) of the confidence as a forecast of correctness:
    ``mean((conf - correct)^2)``, in [0, 1], lower is better.

    Equal to ``sklearn.metrics.brier_score_loss(correct, confidences)``. Raises ValueError for the
    inputs :func:`check_confidences` and :func:`check_correct` refuse.
    """
    conf, corr = _check_pair(confidences, correct)
    return float(np.mean((conf - corr.astype(np.float64)) ** 2))


def auroc(confidences: Any, correct: Any) -> float:
    """Area under the ROC curve of confidence as a score for "the label is correct" (ties count 1/2).

    Computed as the Mann-Whitney U statistic on average ranks (Hanley & McNeil 1982, "The Meaning
    and Use of the Area under a Receiver Operating Characteristic (ROC) Curve", Radiology); equal
    to ``sklearn.metrics.roc_auc_score(correct, confidences)``. Returns a value in [0, 1].

    Raises:
        ValueError: ``correct`` is one-class (AUROC is undefined), or the inputs are invalid.
    """
    conf, corr = _check_pair(confidences, correct)
    _check_two_classes(corr, "AUROC")
    ranks = rankdata(conf)  # average ranks for ties
    n_pos = int(corr.sum())
    n_neg = corr.shape[0] - n_pos
    u = ranks[corr].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def calibration_metrics(confidences: Any, correct: Any, n_bins: int = 15) -> dict[str, float | int | None]:
    """All metrics in one dict: ECE (uniform and equal-mass), MCE, Brier, AUROC, accuracy, n.

    AUROC is ``None`` when ``correct`` is one-class (it is undefined there). Raises ValueError for
    invalid inputs, as :func:`expected_calibration_error`.
    """
    conf, corr = _check_pair(confidences, correct)
    try:
        au: float | None = auroc(conf, corr)
    except ValueError:
        au = None
    return {
        "n": int(conf.shape[0]),
        "accuracy": float(corr.mean()),
        "mean_confidence": float(conf.mean()),
        "ece": expected_calibration_error(conf, corr, n_bins, "uniform"),
        "ece_equal_mass": expected_calibration_error(conf, corr, n_bins, "quantile"),
        "mce": maximum_calibration_error(conf, corr, n_bins, "uniform"),
        "brier": brier_score(conf, corr),
        "auroc": au,
        "n_bins": n_bins,
    }


# ----------------------------------------------------------------------------------------------
# calibrators
# ----------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1.0 - EPS)
    logits: np.ndarray = np.log(p) - np.log1p(-p)
    return logits


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


@dataclass
class Calibrator:
    """A fitted map from raw top-label confidence to calibrated probability of being correct.

    ``params`` holds everything needed to apply it (no hidden state): for ``isotonic`` the
    breakpoints ``x``/``y`` (linear interpolation, clipped at the ends), for ``temperature`` the
    temperature ``t`` (``sigmoid(logit(c) / t)``), for ``platt`` ``a``/``b``
    (``sigmoid(a * logit(c) + b)``), for ``histogram`` the bin ``edges`` and per-bin ``values``.
    ``n_fit`` is the number of gold records it was fitted on; ``meta`` is free-form provenance
    (the CLI records the confidence column and the gold file). Make one with
    :func:`fit_calibrator` or :func:`load_calibrator`.
    """

    method: str
    params: dict[str, Any]
    n_fit: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def transform(self, confidences: Any) -> np.ndarray:
        """Calibrated confidences: ``(n,)`` raw confidences in [0, 1] -> ``(n,)`` in [0, 1].

        Raises:
            ValueError: the input is empty, not 1-D, NaN/inf or outside [0, 1].
        """
        conf = check_confidences(confidences)
        p = self.params
        if self.method == "isotonic":
            out = np.interp(conf, np.asarray(p["x"]), np.asarray(p["y"]))
        elif self.method == "temperature":
            out = _sigmoid(_logit(conf) / float(p["t"]))
        elif self.method == "platt":
            out = _sigmoid(float(p["a"]) * _logit(conf) + float(p["b"]))
        elif self.method == "histogram":
            edges = np.asarray(p["edges"])
            idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, len(p["values"]) - 1)
            out = np.asarray(p["values"])[idx]
        else:  # pragma: no cover - guarded by fit_calibrator / load_calibrator
            raise ValueError(f"unknown calibrator method {self.method!r}")
        calibrated: np.ndarray = np.clip(out, 0.0, 1.0)
        return calibrated

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable form :meth:`save` writes: ``method``, ``params``, ``n_fit``, ``meta``."""
        return {"method": self.method, "params": self.params, "n_fit": self.n_fit, "meta": self.meta}

    def save(self, path: str | Path) -> None:
        """Write the calibrator as JSON (``calibrator.json`` in a run directory)."""
        from labeltriage.jsonio import write_json

        write_json(path, self.to_dict())


def load_calibrator(path: str | Path) -> Calibrator:
    """Read a calibrator written by :meth:`Calibrator.save`.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says to run ``labeltriage calibrate``).
        ValueError: the file is not JSON, or not a calibrator (``method`` and ``params``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no calibrator here; run `labeltriage calibrate` first") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a calibrator JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("method") not in METHODS or "params" not in data:
        raise ValueError(f"{path}: not a calibrator file (needs 'method' in {METHODS} and 'params')")
    return Calibrator(data["method"], data["params"], int(data.get("n_fit", 0)), data.get("meta", {}))


def _nll(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def fit_calibrator(confidences: Any, correct: Any, method: Method = "isotonic", n_bins: int = 15) -> Calibrator:
    """Fit a calibrator on gold: raw top-label confidence -> P(label is correct).

    Args:
        confidences: ``(n,)`` raw confidences in [0, 1] on the gold records.
        correct: ``(n,)`` bool, whether the pre-label matched gold.
        method: ``"isotonic"`` (isotonic regression, Zadrozny & Elkan 2002, "Transforming
            Classifier Scores into Accurate Multiclass Probability Estimates", KDD; fitted with
            sklearn's IsotonicRegression and stored as breakpoints), ``"temperature"`` (one scalar
            dividing the logit, NLL-fitted: temperature scaling, Guo et al. 2017), ``"platt"``
            (Platt scaling, Platt 1999, "Probabilistic Outputs for Support Vector Machines and
            Comparisons to Regularized Likelihood Methods": a logistic regression, here on the
            logit of the confidence, NLL-fitted, without Platt's target smoothing),
            ``"histogram"`` (histogram binning, Zadrozny & Elkan 2001, "Obtaining Calibrated
            Probability Estimates from Decision Trees and Naive Bayesian Classifiers", ICML, with
            ``n_bins`` equal-mass bins).
        n_bins: bins for ``histogram`` only.

    Returns:
        The fitted :class:`Calibrator` (``n_fit = n``, ``meta["accuracy_fit"]`` the gold accuracy).

    Raises:
        ValueError: empty input, NaN/inf, confidences outside [0, 1], one-class ``correct``,
            unknown ``method``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    conf, corr = _check_pair(confidences, correct)
    _check_two_classes(corr, f"fitting a {method} calibrator")
    y = corr.astype(np.float64)
    n = int(conf.shape[0])

    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(conf, y)
        # sklearn predicts by linear interpolation between these thresholds, clipped at the ends;
        # storing them lets transform() use np.interp with no sklearn object to pickle.
        params: dict[str, Any] = {
            "x": iso.X_thresholds_.tolist(),
            "y": iso.y_thresholds_.tolist(),
        }
    elif method == "temperature":
        z = _logit(conf)
        res = minimize_scalar(
            lambda log_t: _nll(_sigmoid(z / math.exp(log_t)), y), bounds=(-5.0, 5.0), method="bounded"
        )
        params = {"t": float(math.exp(res.x))}
    elif method == "platt":
        z = _logit(conf)

        def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
            p = _sigmoid(ab[0] * z + ab[1])
            r = p - y
            return _nll(p, y), np.array([np.mean(r * z), np.mean(r)])

        res = minimize(loss, x0=np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        params = {"a": float(res.x[0]), "b": float(res.x[1])}
    else:  # histogram
        idx = bin_assignments(conf, n_bins, "quantile")
        used = np.unique(idx)
        values, uppers = [], []
        for b in used:
            m = idx == b
            values.append(float(y[m].mean()))
            uppers.append(float(conf[m].max()))
        # bin b covers (upper_{b-1}, upper_b]; the outer edges are opened to [0, 1]
        edges = [0.0, *uppers[:-1], 1.0]
        params = {"edges": edges, "values": values}
    return Calibrator(method=method, params=params, n_fit=n, meta={"accuracy_fit": float(y.mean())})


# ----------------------------------------------------------------------------------------------
# reliability diagram
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReliabilityPanel:
    """One extra panel of :func:`reliability_diagram`.

    ``confidences`` ``(m,)`` in [0, 1] and ``correct`` ``(m,)`` bool may be any subset of records
    (e.g. a held-out share). ``in_sample=True`` says the calibrator behind these confidences was
    fitted on these same records: the panel is then drawn hatched and titled "in-sample", since
    its ECE is optimistic (zero by construction for isotonic and histogram binning).
    """

    name: str
    confidences: Any
    correct: Any
    in_sample: bool = False


IN_SAMPLE_NOTE = "in-sample: fitted on these records, ECE optimistic"


def reliability_diagram(
    confidences: Any,
    correct: Any,
    *,
    calibrated: Any | None = None,
    n_bins: int = 15,
    strategy: Strategy = "uniform",
    title: str = "Reliability diagram",
    calibrated_in_sample: bool = False,
    extra_panels: tuple[ReliabilityPanel, ...] | list[ReliabilityPanel] = (),
    ax: Any | None = None,
) -> Any:
    """Draw a reliability diagram: accuracy vs confidence per bin, with the count per bin.

    Returns the matplotlib ``Figure``. ``ax``: one ``Axes`` per panel (a sequence, or a single
    ``Axes`` when there is one panel) to draw into, as in scikit-learn's ``plot(ax=...)``; by
    default a new figure (``matplotlib.figure.Figure``: no pyplot, no global backend change).
    :func:`save_reliability_diagram` writes it as PNG.

    One panel for the raw confidences, then one per ``extra_panels`` item, then, if ``calibrated``
    (shape ``(n,)``, same records as ``confidences``) is given, one for the calibrated ones. Each
    panel shows the bars (accuracy per bin), the diagonal, the ECE in the legend and the number of
    records written above each bar. A panel whose calibrator was fitted on its own records
    (``calibrated_in_sample=True``, or ``ReliabilityPanel.in_sample``) has hatched bars, "in-sample"
    in its title and a note saying its ECE is optimistic.

    Raises:
        ValueError: confidences outside [0, 1], NaN, shapes that do not match, or an ``ax`` with
            another number of axes than panels.
    """
    conf, corr = _check_pair(confidences, correct)
    panels = [ReliabilityPanel("raw", conf, corr)]
    for extra in extra_panels:
        c, y = _check_pair(extra.confidences, extra.correct)
        panels.append(ReliabilityPanel(extra.name, c, y, extra.in_sample))
    if calibrated is not None:
        panels.append(
            ReliabilityPanel("calibrated", check_confidences(calibrated, "calibrated"), corr, calibrated_in_sample)
        )
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5 * len(panels), 5.2))
        axes = list(np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)[0]))
    else:
        axes = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
        if len(axes) != len(panels):
            raise ValueError(f"ax holds {len(axes)} axes; this diagram has {len(panels)} panels (one per axes)")
        fig = axes[0].figure
    for ax, panel in zip(axes, panels, strict=True):  # noqa: B020 (ax: the caller's, then each panel's)
        c, y = np.asarray(panel.confidences, dtype=np.float64), np.asarray(panel.correct, dtype=bool)
        b = calibration_bins(c, y, n_bins, strategy)
        ece = expected_calibration_error(c, y, n_bins, strategy)
        nz = b["count"] > 0
        if strategy == "uniform":
            width = np.full(n_bins, 1.0 / n_bins)
            centers = np.linspace(0, 1, n_bins + 1)[:-1] + width / 2
        else:  # equal-mass bins: draw each bar over the confidences it actually holds
            width = np.where(nz, np.maximum(b["upper"] - b["lower"], 0.01), 0.01)
            centers = np.where(nz, (b["upper"] + b["lower"]) / 2, 0.0)
        ax.bar(
            centers[nz], b["accuracy"][nz], width=width[nz] * 0.95, edgecolor="k",
            color="#C9D5E8" if panel.in_sample else "#4C72B0", hatch="//" if panel.in_sample else None,
            label=f"accuracy (ECE={ece:.3f}{', in-sample' if panel.in_sample else ''})",
        )  # fmt: skip
        ax.scatter(centers[nz], b["mean_confidence"][nz], color="#DD8452", zorder=3, s=18, label="mean conf.")
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        for x, a, k in zip(centers[nz], b["accuracy"][nz], b["count"][nz], strict=True):
            ax.text(x, min(a + 0.02, 1.02), str(int(k)), ha="center", va="bottom", fontsize=7)
        if panel.in_sample:
            ax.text(0.98, 0.03, IN_SAMPLE_NOTE, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                    color="#B22222", bbox={"facecolor": "white", "edgecolor": "#B22222", "alpha": 0.9})  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel(f"confidence ({strategy} bins, n={c.shape[0]})")
        ax.set_ylabel("accuracy on gold")
        panel_title = f"{title}: {panel.name}" + (" (in-sample)" if panel.in_sample else "")
        ax.set_title(panel_title, color="#B22222" if panel.in_sample else "black")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def save_reliability_diagram(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write :func:`reliability_diagram`'s figure as PNG; the panel titles go into the PNG's
    ``Description`` text chunk (one per line), so a reader can tell in-sample panels apart."""
    path = Path(path)
    titles = [axes.get_title() for axes in fig.axes if axes.get_title()]
    title = titles[0].rsplit(": ", 1)[0] if titles else ""  # "<title>: <panel>"
    fig.savefig(path, dpi=dpi, metadata={"Title": title, "Description": "\n".join(titles)})
    return path
