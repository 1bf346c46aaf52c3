"""`labeltriage calibrate` and `labeltriage route`: wiring only (the work is in `curation/`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

METHODS = ("isotonic", "temperature", "platt", "histogram")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _read_table(path: Path) -> Any:
    """Any table the user gives (gold files, run files) through the one reader (pipelines.io)."""
    from pipelines.io import InputError, read_table

    try:
        return read_table(path)
    except InputError as exc:
        raise click.ClickException(str(exc)) from None


def _load_prelabels(run_dir: Path) -> Any:
    path = run_dir / "prelabels.parquet"
    if not path.is_file():
        raise click.ClickException(
            f"{path} not found: run `labeltriage prelabel CONFIG INPUT --output {run_dir}` first"
        )
    df = _read_table(path)
    missing = [c for c in ("id", "llm_label", "status") if c not in df.columns]
    if missing:
        raise click.ClickException(f"{path} lacks column(s) {missing}: was it written by `labeltriage prelabel`?")
    return df


def _confidence_column(df: Any, column: str, path: Path) -> np.ndarray:
    if column not in df.columns:
        choices = [c for c in df.columns if "confidence" in c]
        raise click.ClickException(f"{path}: no column {column!r}; pass --confidence-column, one of {choices}")
    return df[column].to_numpy(dtype=np.float64)


def _recorded_config(run_dir: Path) -> Path | None:
    """The task config `prelabel` recorded in run.json, if it is still there."""
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        return None
    cfg = json.loads(run_json.read_text()).get("config")
    return Path(cfg) if cfg and Path(cfg).is_file() else None


def _label_names(run_dir: Path) -> list[str] | None:
    """The task's label set, from the config recorded in run.json (None for multi-label tasks or
    when the config is gone, then gold labels are compared as they are)."""
    cfg = _recorded_config(run_dir)
    if cfg is None:
        return None
    from labeltriage.config import ConfigError, load_task_config

    try:
        task = load_task_config(cfg)
    except ConfigError:
        return None
    return None if task.task_type == "multi_label" else task.label_names


def _gold_labels(prelabels: Any, gold: Path | None, gold_column: str | None, run_dir: Path) -> Any:
    """Gold label per prelabel row (pandas Series aligned with ``prelabels``, None where unknown).

    Gold comes from ``gold`` (matched by ``id``, else by ``text``), else from the input's gold
    column kept in prelabels.parquet. Column: ``gold_column``, else ``gold_label``, else ``label``
    (the input's convention). Labels are checked against the task's label set (curation.gold)."""
    import pandas as pd

    from curation.gold import GoldLabelError, check_gold_labels
    from pipelines.io import InputError, gold_column_of

    if gold is None:
        if "gold_label" not in prelabels.columns:
            raise click.ClickException(
                f"{run_dir / 'prelabels.parquet'} has no gold labels (the input had no gold_label or label "
                "column): pass --gold FILE (a CSV/JSONL/parquet with an `id` or `text` column and the gold label)"
            )
        source = f"{run_dir / 'prelabels.parquet'} (column gold_label)"
        raw = prelabels["gold_label"].where(prelabels["gold_label"].notna(), None).tolist()
    else:
        df = _read_table(gold)
        try:
            column = gold_column_of(df, gold_column, gold)
        except InputError as exc:
            raise click.ClickException(str(exc)) from None
        if "id" in df.columns and df["id"].astype(str).isin(prelabels["id"].astype(str)).any():
            key = "id"
        elif "text" in df.columns and "text" in prelabels.columns:
            key = "text"
        else:
            raise click.ClickException(
                f"{gold}: needs an `id` (as in prelabels.parquet) or a `text` column to match the pre-labels"
            )
        df = df[df[column].notna() & df[key].notna()]
        keys = df[key].astype(str)
        conflicting = int((df.assign(_k=keys).groupby("_k")[column].nunique() > 1).sum())
        if conflicting:
            click.echo(f"note: {gold}: {conflicting} {key}(s) have conflicting gold labels; the last is used", err=True)
        mapping = dict(zip(keys, df[column].astype(str), strict=True))
        matched = set(prelabels[key].astype(str))
        unmatched = sum(1 for k in mapping if k not in matched)
        if unmatched == len(mapping):
            raise click.ClickException(
                f"{gold}: none of its {len(mapping)} labelled rows match a pre-label by {key!r}; "
                "is it the gold for this run?"
            )
        if unmatched:
            click.echo(f"note: {gold}: {unmatched} of {len(mapping)} gold rows match no pre-label by {key!r}", err=True)
        source = str(gold)
        raw = [mapping.get(k) for k in prelabels[key].astype(str)]
    names = _label_names(run_dir)
    if names is None:
        return pd.Series(raw, index=prelabels.index, dtype=object)
    try:
        checked = check_gold_labels(raw, names, source=source)
    except GoldLabelError as exc:
        raise click.ClickException(str(exc)) from None
    if checked.mapped:
        shown = ", ".join(f"{k!r} -> {v!r}" for k, v in sorted(checked.mapped.items()))
        click.echo(f"note: gold labels read as task labels: {shown}", err=True)
    return pd.Series(checked.labels, index=prelabels.index, dtype=object)


def _gold_mask(prelabels: Any, gold_labels: Any, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(has_gold, correct) per row. A repeated text (duplicate_of set) counts once: its first row."""
    ok = (prelabels["status"].astype(str) == "ok").to_numpy() & np.isfinite(conf)
    if "duplicate_of" in prelabels.columns:
        ok &= prelabels["duplicate_of"].isna().to_numpy()
    has_gold = gold_labels.notna().to_numpy() & ok
    correct = (prelabels["llm_label"].astype(str).to_numpy() == gold_labels.astype(str).to_numpy()) & has_gold
    return has_gold, correct


def _same_route_as_first(prelabels: Any, routes: np.ndarray) -> np.ndarray:
    """A repeated text (duplicate_of set) takes the route of its first row: one decision per text."""
    if "duplicate_of" not in prelabels.columns or not prelabels["duplicate_of"].notna().any():
        return routes
    index = {rid: i for i, rid in enumerate(prelabels["id"].astype(str))}
    routes = routes.copy()
    for i, first in enumerate(prelabels["duplicate_of"]):
        if first is not None and first == first and str(first) in index:
            routes[i] = routes[index[str(first)]]
    return routes


# ----------------------------------------------------------------------------------------------
# calibrate
# ----------------------------------------------------------------------------------------------
@click.command(
    "calibrate",
    epilog="""\b
Examples:
  labeltriage calibrate runs/r1 --gold gold.csv
  labeltriage calibrate runs/r1 --gold gold.jsonl --gold-column label --method temperature
  labeltriage calibrate runs/r1                      # gold from prelabels' gold_label column

\b
The gold file needs an `id` (as in prelabels.parquet) or a `text` column, and the gold label.
Metrics are reported on a held-out share of the gold (--holdout) for a calibrator fitted on the
rest; the saved calibrator is then refitted on all gold. ECE: top-label, 15 equal-width bins.
Writes RUN_DIR/calibrator.json, calibration.json and reliability.png.""",
)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--gold",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Gold labels (CSV, JSONL, JSON or parquet). Default: prelabels' gold_label column.",
)
@click.option(
    "--gold-column", default=None, help="Column of --gold holding the label (default: gold_label, else label)."
)
@click.option("--method", type=click.Choice(METHODS), default="isotonic", show_default=True)
@click.option(
    "--confidence-column",
    default="llm_confidence",
    show_default=True,
    help="Raw confidence to calibrate (e.g. confidence_stated, confidence_logprob).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 0.9),
    default=0.3,
    show_default=True,
    help="Share of gold held out to measure ECE before/after (0 = in-sample only).",
)
@click.option("--n-bins", type=click.IntRange(2, 100), default=15, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out split.")
def calibrate(
    run_dir: Path,
    gold: Path | None,
    gold_column: str | None,
    method: str,
    confidence_column: str,
    holdout: float,
    n_bins: int,
    seed: int,
) -> None:
    """Fit a confidence calibrator for RUN_DIR's pre-labels on gold labels and report ECE.

    Reports ECE (uniform and equal-mass), MCE, Brier and AUROC of the raw and the calibrated
    confidence, and draws a reliability diagram with the count of records per bin.
    """
    from curation.calibration import (
        ReliabilityPanel,
        calibration_metrics,
        expected_calibration_error,
        fit_calibrator,
        reliability_diagram,
    )
    from labeltriage.jsonio import write_json

    prelabels = _load_prelabels(run_dir)
    conf = _confidence_column(prelabels, confidence_column, run_dir / "prelabels.parquet")
    labels = _gold_labels(prelabels, gold, gold_column, run_dir)
    has_gold, correct = _gold_mask(prelabels, labels, conf)
    n_gold = int(has_gold.sum())
    if n_gold < 10:
        raise click.ClickException(
            f"only {n_gold} ok pre-labels have a gold label (need >= 10, ideally hundreds); add gold rows"
        )
    c, y = conf[has_gold], correct[has_gold]
    if y.all() or not y.any():
        kind = "right" if y.all() else "wrong"
        raise click.ClickException(
            f"all {n_gold} gold pre-labels are {kind}: a calibrator needs both right and wrong ones; add gold rows"
        )
    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {
        "method": method,
        "confidence_column": confidence_column,
        "gold": str(gold.resolve()) if gold else "prelabels.parquet:gold_label",
        "gold_column": gold_column,
        "n_gold": n_gold,
        "ece_convention": f"top-label, {n_bins} equal-width right-closed bins (also equal-mass), L1 weighted",
        "warnings": [],
    }

    def warn(message: str) -> None:
        report["warnings"].append(message)
        click.echo(f"warning: {message}", err=True)

    # Held-out split, stratified by right/wrong: both shares keep the gold's accuracy and both
    # hold a wrong answer whenever the gold has two (a plain random split of small gold often
    # leaves the held-out share without one, and then nothing can be measured on it).
    n_wrong, n_right = int((~y).sum()), int(y.sum())
    held = np.zeros(n_gold, dtype=bool)
    minority, k_minority = ("wrong", n_wrong) if n_wrong <= n_right else ("right", n_right)
    if holdout == 0:
        in_sample_because = "--holdout 0 holds no gold out"
    elif n_gold < MIN_GOLD_FOR_SPLIT:
        in_sample_because = f"{n_gold} gold records are too few to hold some out (need >= {MIN_GOLD_FOR_SPLIT})"
    elif k_minority < 2:
        in_sample_because = (
            f"only {k_minority} of the {n_gold} gold pre-labels is {minority}; the fitting share and the "
            f"held-out share each need a {minority} one"
        )
    else:
        in_sample_because = None
        n_held = int(round(holdout * n_gold))
        held_wrong = min(max(int(round(holdout * n_wrong)), 1), n_wrong - 1)
        held_right = min(max(n_held - held_wrong, 1), n_right - 1)
        for value, k in ((False, held_wrong), (True, held_right)):
            held[rng.permutation(np.flatnonzero(y == value))[:k]] = True

    panels: list[Any] = []
    if in_sample_because is None:
        fit_part = ~held
        split_cal = fit_calibrator(c[fit_part], y[fit_part], method=method, n_bins=n_bins)
        held_cal = split_cal.transform(c[held])
        before = calibration_metrics(c[held], y[held], n_bins)
        after = calibration_metrics(held_cal, y[held], n_bins)
        # ECE a perfectly calibrated score would show on records like these: correctness drawn
        # as Bernoulli(confidence), so what remains is the estimator's noise at this size.
        draws = np.random.default_rng(seed).random((200, int(held.sum()))) < held_cal
        floor = float(np.mean([expected_calibration_error(held_cal, d, n_bins) for d in draws]))
        report["held_out"] = {
            "n_fit": int(fit_part.sum()), "n_held_out": int(held.sum()), "n_held_out_wrong": int((~y[held]).sum()),
            "stratified": True, "seed": seed, "before": before, "after": after,
            "ece_ratio": after["ece"] / before["ece"] if before["ece"] > 0 else None,
            "ece_if_perfectly_calibrated": floor,
        }  # fmt: skip
        if held.sum() < HELD_OUT_WARN_BELOW:
            warn(
                f"the held-out ECE comes from {int(held.sum())} records ({int((~y[held]).sum())} wrong), "
                f"under {HELD_OUT_WARN_BELOW}: it is noisy (a perfectly calibrated score shows ECE "
                f"~{floor:.3f} on that many); add gold for a firm figure"
            )
        panels.append(
            ReliabilityPanel(f"calibrated, held-out {int(held.sum())} (fitted on the other {int(fit_part.sum())})",
                             held_cal, y[held])
        )  # fmt: skip
    else:
        report["held_out"] = None
        exact = " (0 by construction for " + method + ")" if method in ("isotonic", "histogram") else ""
        warn(
            f"no held-out measure: {in_sample_because}. The metrics below are in-sample: the calibrator was "
            f"fitted on these same records, so its ECE is optimistic{exact}; add gold for an honest figure"
        )
    report["in_sample_because"] = in_sample_because
    cal = fit_calibrator(c, y, method=method, n_bins=n_bins)
    cal.meta.update({"confidence_column": confidence_column, "gold": report["gold"], "gold_column": gold_column})
    calibrated = cal.transform(c)
    report["in_sample"] = {
        "before": calibration_metrics(c, y, n_bins),
        "after": calibration_metrics(calibrated, y, n_bins),
    }
    cal.save(run_dir / "calibrator.json")
    write_json(run_dir / "calibration.json", report)
    reliability_diagram(c, y, run_dir / "reliability.png", calibrated=calibrated, n_bins=n_bins,
                        title=f"{run_dir.name} ({method})", calibrated_in_sample=True,
                        extra_panels=panels)  # fmt: skip

    if report["held_out"]:
        shown = report["held_out"]
        where = f"held-out {shown['n_held_out']}, fitted on the other {shown['n_fit']}"
    else:
        shown, where = report["in_sample"], "IN-SAMPLE: fitted on these records"
    b, a = shown["before"], shown["after"]
    click.echo(f"gold: {n_gold} records, LLM accuracy {float(y.mean()):.3f} ({n_wrong} wrong)")
    click.echo(f"{'metric':<16}{'raw':>10}{'calibrated':>12}   ({where})")
    for key in ("ece", "ece_equal_mass", "mce", "brier", "auroc"):
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        click.echo(f"{key:<16}{fmt(b[key]):>10}{fmt(a[key]):>12}")
    click.echo(f"wrote {run_dir / 'calibrator.json'}, calibration.json, reliability.png")


# a held-out split needs this much gold; under HELD_OUT_WARN_BELOW held-out records ECE is noise
MIN_GOLD_FOR_SPLIT = 20
HELD_OUT_WARN_BELOW = 50


# ----------------------------------------------------------------------------------------------
# route
# ----------------------------------------------------------------------------------------------
def _thresholds_from_config(config: Path | None, run_dir: Path) -> tuple[dict[str, float], str]:
    defaults = {"target_precision": 0.95, "spot_check_rate": 0.05}
    if config is None:
        config = _recorded_config(run_dir)
    if config is None:
        return defaults, "defaults"
    from labeltriage.config import ConfigError, load_task_config

    try:
        t = load_task_config(config).thresholds
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return {"target_precision": t.target_precision, "spot_check_rate": t.spot_check_rate}, str(config)


@click.command(
    "route",
    epilog="""\b
Examples:
  labeltriage route runs/r1
  labeltriage route runs/r1 --config datasets_config/sentiment.yaml
  labeltriage route runs/r1 --target-precision 0.98 --bound clopper-pearson --spot-check-rate 0.1

\b
Needs RUN_DIR/calibrator.json (run `labeltriage calibrate` first) and the same gold it used.
The threshold is the lowest calibrated confidence whose precision LOWER bound on gold reaches
the target; failed pre-labels always go to human review. Thresholds come from --config, else
the config recorded in run.json, else target 0.95 / spot-check 5%.
Writes RUN_DIR/routed.parquet and routing.json.""",
)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Task config whose `thresholds` to use.",
)
@click.option(
    "--gold",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Gold labels (default: the file `calibrate` used).",
)
@click.option("--gold-column", default=None, help="Label column of --gold (default: as in calibrate).")
@click.option(
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Override thresholds.target_precision.",
)
@click.option(
    "--spot-check-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Override thresholds.spot_check_rate (share of auto-accepted kept for audit).",
)
@click.option(
    "--confidence-level",
    type=click.FloatRange(0.5, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="One-sided level of the precision lower bound.",
)
@click.option("--bound", type=click.Choice(["wilson", "clopper-pearson"]), default="wilson", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the spot-check draw.")
def route(
    run_dir: Path,
    config: Path | None,
    gold: Path | None,
    gold_column: str | None,
    target_precision: float | None,
    spot_check_rate: float | None,
    confidence_level: float,
    bound: str,
    seed: int,
) -> None:
    """Route RUN_DIR's pre-labels to auto_accept, human_review or spot_check at a stated precision."""
    from curation.calibration import load_calibrator
    from curation.routing import (
        choose_threshold,
        coverage_precision_curve,
        errors_caught_table,
        priority_scores,
        route_records,
    )
    from labeltriage.jsonio import write_json

    prelabels = _load_prelabels(run_dir)
    try:
        cal = load_calibrator(run_dir / "calibrator.json")
    except FileNotFoundError:
        raise click.ClickException(
            f"{run_dir / 'calibrator.json'} not found: run `labeltriage calibrate {run_dir} --gold FILE` first"
        ) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    thresholds, source = _thresholds_from_config(config, run_dir)
    if target_precision is not None:
        thresholds["target_precision"] = target_precision
    if spot_check_rate is not None:
        thresholds["spot_check_rate"] = spot_check_rate

    conf_col = cal.meta.get("confidence_column", "llm_confidence")
    raw = _confidence_column(prelabels, conf_col, run_dir / "prelabels.parquet")
    if gold is None and cal.meta.get("gold") not in (None, "prelabels.parquet:gold_label"):
        gold = Path(cal.meta["gold"])
        if not gold.is_file():
            raise click.ClickException(f"{gold} (the gold `calibrate` used) is gone: pass --gold FILE")
    labels = _gold_labels(prelabels, gold, gold_column or cal.meta.get("gold_column"), run_dir)
    ok = (prelabels["status"].astype(str) == "ok").to_numpy() & np.isfinite(raw)
    calibrated = np.full(raw.shape[0], np.nan)
    if ok.any():
        calibrated[ok] = cal.transform(raw[ok])
    has_gold, correct = _gold_mask(prelabels, labels, calibrated)
    if has_gold.sum() == 0:
        raise click.ClickException("no ok pre-label has a gold label: cannot choose a threshold")
    g_conf, g_y = calibrated[has_gold], correct[has_gold]
    choice = choose_threshold(g_conf, g_y, thresholds["target_precision"], confidence_level, bound)
    flagged = (
        prelabels["instruction_like"].fillna(False).astype(bool).to_numpy()
        if "instruction_like" in prelabels.columns
        else np.zeros(len(prelabels), dtype=bool)
    )
    routes = route_records(
        calibrated, ok, choice.threshold, thresholds["spot_check_rate"], seed=seed, needs_review=flagged
    )
    routes = _same_route_as_first(prelabels, routes)
    out = prelabels.copy()
    out["calibrated_confidence"] = calibrated
    out["route"] = routes.astype(str)
    out["priority"] = priority_scores(calibrated, ok)
    out.to_parquet(run_dir / "routed.parquet", index=False)

    curve = coverage_precision_curve(g_conf, g_y, confidence_level, bound)
    counts = {r: int((routes == r).sum()) for r in ("auto_accept", "human_review", "spot_check")}
    report = {
        "thresholds_from": source,
        "threshold": choice.to_dict(),
        "calibrator": cal.method,
        "confidence_column": conf_col,
        "n_records": int(len(out)),
        "n_failed": int((~ok).sum()),
        "n_instruction_like": int(flagged.sum()),
        "n_duplicate_rows": int(prelabels["duplicate_of"].notna().sum()) if "duplicate_of" in prelabels else 0,
        "routes": counts,
        "seed": seed,
        "coverage_precision_curve": {k: v.tolist() for k, v in curve.items()},
        "errors_caught": errors_caught_table(g_conf, g_y) if not g_y.all() else None,
    }
    write_json(run_dir / "routing.json", report)

    if choice.achievable:
        click.echo(
            f"threshold {choice.threshold:.4f}: precision {choice.precision:.3f} on {choice.n_accepted} gold "
            f"records, {bound} {confidence_level:.0%} lower bound {choice.lower_bound:.3f} "
            f">= target {thresholds['target_precision']}"
        )
    else:
        click.echo(
            f"warning: no threshold reaches a precision lower bound of {thresholds['target_precision']} on "
            f"{choice.n_gold} gold records; everything goes to human review (add gold or lower the target)",
            err=True,
        )
    click.echo("routes: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if flagged.any():
        n_flagged = int(flagged.sum())
        click.echo(f"  {n_flagged} record(s) with instruction-like text go to human review whatever the LLM said")
    if report["errors_caught"]:
        for row in report["errors_caught"]:
            click.echo(
                f"  review {row['budget']:.0%} lowest-confidence -> catch {row['errors_caught_share']:.0%} "
                f"of LLM errors (random: {row['random_share']:.0%})"
            )
    click.echo(f"wrote {run_dir / 'routed.parquet'} and routing.json")
