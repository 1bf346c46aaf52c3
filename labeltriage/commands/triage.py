"""`labeltriage calibrate` and `labeltriage route`: options -> `labeltriage.api` -> rendered results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.api import CALIBRATION_METHODS, THRESHOLD_METHODS
from labeltriage.commands.params import config_option, gold_option, run_dir_argument
from labeltriage.render import render_calibration, render_routing


@click.command(
    "calibrate",
    epilog="""\b
Examples:
  labeltriage calibrate runs/r1 --gold gold.csv
  labeltriage calibrate runs/r1 --gold gold.jsonl --gold-column label --method temperature
  labeltriage calibrate runs/r1                      # gold from prelabels' gold_label column
  labeltriage calibrate runs/r1 --confidence-column confidence_combined

\b
The gold file needs an `id` (as in prelabels.parquet) or a `text` column, and the gold label.
Metrics are reported on a held-out share of the gold (--holdout) for a calibrator fitted on the
rest; the saved calibrator is then refitted on all gold. ECE: top-label, 15 equal-width bins.
Writes RUN_DIR/calibrator.json, calibration.json and reliability.png.""",
)
@run_dir_argument
@gold_option
@click.option(
    "--gold-column", default=None, help="Column of --gold holding the label (default: gold_label, else label)."
)
@click.option("--method", type=click.Choice(CALIBRATION_METHODS), default="isotonic", show_default=True)
@click.option(
    "--confidence-column",
    default=None,
    help="Raw confidence to calibrate (e.g. confidence_stated, confidence_logprob); confidence_combined learns "
    "one from every signal, cross-fitted on the gold. Default: llm_confidence, or confidence_combined when the "
    "config sets confidence.combined.",
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
def calibrate(run_dir: Path, **options: Any) -> None:
    """Fit a confidence calibrator for RUN_DIR's pre-labels on gold labels and report ECE.

    Reports ECE (uniform and equal-mass), MCE, Brier and AUROC of the raw and the calibrated
    confidence, and draws a reliability diagram with the count of records per bin.
    """
    from labeltriage import api

    render_calibration(api.calibrate(run_dir, **options))


@click.command(
    "route",
    epilog="""\b
Examples:
  labeltriage route runs/r1
  labeltriage route runs/r1 --config sentiment
  labeltriage route runs/r1 --target-precision 0.98 --spot-check-rate 0.1 --review-audit-rate 0.1

\b
Needs RUN_DIR/calibrator.json (run `labeltriage calibrate` first) and the same gold it used.
The threshold is certified on gold by exact binomial tests from strict to loose (fixed-sequence,
family-wise valid: the precision above it is >= the target with the stated confidence, for gold
drawn at random from the run); failed pre-labels always go to human review. routing.json's
gold_plan says how much gold the target needs and which records to label next. Thresholds come from --config, else
the config recorded in run.json, else target 0.95 / spot-check 5%.
Writes RUN_DIR/routed.parquet and routing.json.""",
)
@run_dir_argument
@config_option
@gold_option
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
    "--blind-share",
    type=click.FloatRange(0, 1),
    default=None,
    help="Override thresholds.blind_share (share of the review queue shown without the suggestion).",
)
@click.option(
    "--review-audit-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Override thresholds.review_audit_rate (share of the review queue shown again, blind, as an audit).",
)
@click.option(
    "--guided-start/--plain-start",
    default=None,
    help="Override thresholds.guided_start: start the certificate's tests where the scores expect a precision "
    "well above the target (valid either way; which certifies more depends on the data).",
)
@click.option(
    "--confidence-level",
    type=click.FloatRange(0.5, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Level of the certificate: P(precision of the auto-accepted >= target) over the gold draw (family-wise).",
)
@click.option(
    "--method",
    type=click.Choice(THRESHOLD_METHODS),
    default="fixed-sequence",
    show_default=True,
    help="fixed-sequence: family-wise valid exact tests (default); scan: the per-threshold scan (not valid).",
)
@click.option("--bound", type=click.Choice(["wilson", "clopper-pearson"]), default="wilson", help="For --method scan.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the spot-check draw.")
def route(run_dir: Path, **options: Any) -> None:
    """Route RUN_DIR's pre-labels to auto_accept, human_review, spot_check or gold at a stated precision."""
    from labeltriage import api

    render_routing(api.route(run_dir, **options))
