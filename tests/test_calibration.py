"""Calibration metrics and calibrators, cross-checked against sklearn where a reference exists."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from curation.calibration import (
    METHODS,
    auroc,
    bin_assignments,
    brier_score,
    calibration_bins,
    calibration_metrics,
    expected_calibration_error,
    fit_calibrator,
    load_calibrator,
    maximum_calibration_error,
    reliability_diagram,
    save_reliability_diagram,
)


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores that claim ~0.9 when the true accuracy is ~0.65 (an over-confident LLM)."""
    rng = np.random.default_rng(seed)
    true_p = rng.beta(4, 2, n)  # P(correct), mean ~0.67
    correct = rng.random(n) < true_p
    conf = np.clip(true_p**0.3, 0, 1)  # monotone but inflated
    return conf, correct


def test_ece_hand_computed_uniform():
    conf = np.array([0.1, 0.2, 0.9, 0.95, 1.0])
    correct = np.array([0, 1, 1, 1, 0], bool)
    # 5 uniform bins (right-closed): [0,.2]: {0.1, 0.2} acc .5 conf .15; (.8,1]: {.9,.95,1} acc 2/3 conf .95
    ece = expected_calibration_error(conf, correct, n_bins=5)
    expected = 2 / 5 * abs(0.5 - 0.15) + 3 / 5 * abs(2 / 3 - 0.95)
    assert ece == pytest.approx(expected)
    assert maximum_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.35)


def test_uniform_bins_are_right_closed():
    idx = bin_assignments(np.array([0.0, 0.1, 0.1000001, 0.5, 1.0]), n_bins=10, strategy="uniform")
    assert idx.tolist() == [0, 0, 1, 4, 9]


def test_quantile_bins_equal_mass_and_ties_together():
    conf = np.linspace(0.01, 1.0, 100)
    counts = np.bincount(bin_assignments(conf, 10, "quantile"), minlength=10)
    assert counts.tolist() == [10] * 10
    tied = np.array([0.5] * 6 + [0.9] * 4)
    idx = bin_assignments(tied, 5, "quantile")
    assert len(set(idx[:6])) == 1 and len(set(idx[6:])) == 1
    assert expected_calibration_error(tied, np.ones(10, bool), 5, "quantile") == pytest.approx(0.6 * 0.5 + 0.4 * 0.1)


def test_perfectly_calibrated_has_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.random(200_000)
    correct = rng.random(200_000) < conf
    assert expected_calibration_error(conf, correct) < 0.01
    assert expected_calibration_error(conf, correct, strategy="quantile") < 0.01


def test_brier_and_auroc_match_sklearn():
    conf, correct = overconfident(5000, 1)
    assert brier_score(conf, correct) == pytest.approx(brier_score_loss(correct, conf), abs=1e-12)
    assert auroc(conf, correct) == pytest.approx(roc_auc_score(correct, conf), abs=1e-12)
    coarse = np.round(conf, 1)  # heavy ties, like an LLM's stated confidence
    assert auroc(coarse, correct) == pytest.approx(roc_auc_score(correct, coarse), abs=1e-12)


def test_bins_report_counts():
    conf, correct = overconfident(1000, 2)
    b = calibration_bins(conf, correct, 15)
    assert b["count"].sum() == 1000 and b["count"].shape == (15,)


@pytest.mark.parametrize("method", METHODS)
def test_calibrators_halve_ece_on_held_out_overconfident_scores(method, tmp_path):
    conf, correct = overconfident(6000, 3)
    fit, test = slice(0, 3000), slice(3000, None)
    cal = fit_calibrator(conf[fit], correct[fit], method=method)
    raw = expected_calibration_error(conf[test], correct[test])
    after = expected_calibration_error(cal.transform(conf[test]), correct[test])
    assert raw > 0.15
    assert after <= 0.5 * raw
    out = cal.transform(conf[test])
    assert out.shape == (3000,) and out.min() >= 0 and out.max() <= 1
    cal.save(tmp_path / "calibrator.json")
    again = load_calibrator(tmp_path / "calibrator.json")
    np.testing.assert_array_equal(again.transform(conf[test]), out)


def test_isotonic_matches_sklearn_predictions():
    from sklearn.isotonic import IsotonicRegression

    conf, correct = overconfident(2000, 4)
    cal = fit_calibrator(conf, correct, "isotonic")
    ref = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(conf, correct.astype(float))
    grid = np.linspace(0, 1, 501)
    np.testing.assert_allclose(cal.transform(grid), ref.predict(grid), atol=1e-12)


def test_temperature_above_one_for_overconfident():
    conf, correct = overconfident(4000, 5)
    cal = fit_calibrator(conf, correct, "temperature")
    assert cal.params["t"] > 1.0  # softens an over-confident model


def test_coarse_stated_confidences_work():
    rng = np.random.default_rng(6)
    conf = rng.choice([0.5, 0.7, 0.9, 1.0], 2000)
    correct = rng.random(2000) < (conf - 0.3)
    for method in METHODS:
        out = fit_calibrator(conf, correct, method).transform(conf)
        assert np.isfinite(out).all()
    iso = fit_calibrator(conf, correct, "isotonic").transform(np.array([0.5, 0.7, 0.9, 1.0]))
    assert np.all(np.diff(iso) >= 0)


@pytest.mark.parametrize(
    "conf, correct, match",
    [
        ([], [], "confidences is empty"),
        ([0.5, np.nan], [1, 0], "NaN or inf"),
        ([0.5, np.inf], [1, 0], "NaN or inf"),
        ([0.5, 1.5], [1, 0], r"\[0, 1\]"),
        ([[0.5, 0.5]], [1], "1-D"),
        ([0.5, 0.6], [1], "correct must be 1-D with 2"),
        ([0.5, 0.6], [1, 2], "boolean or 0/1"),
    ],
)
def test_bad_input_names_argument(conf, correct, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(conf, correct)


def test_one_class_gold_is_rejected():
    with pytest.raises(ValueError, match="correct is one-class: all 3 gold records are correct"):
        fit_calibrator([0.2, 0.5, 0.9], [1, 1, 1])
    with pytest.raises(ValueError, match="one-class"):
        auroc([0.2, 0.5], [0, 0])
    assert calibration_metrics([0.2, 0.5], [0, 0])["auroc"] is None


def test_unknown_method_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="method must be one of"):
        fit_calibrator([0.2, 0.9], [0, 1], method="beta")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a calibrator file"):
        load_calibrator(tmp_path / "x.json")
    with pytest.raises(FileNotFoundError, match="labeltriage calibrate"):
        load_calibrator(tmp_path / "missing.json")


def test_reliability_diagram_writes_png(tmp_path):
    conf, correct = overconfident(500, 7)
    cal = fit_calibrator(conf, correct)
    fig = reliability_diagram(conf, correct, calibrated=cal.transform(conf))
    assert [axes.get_title() for axes in fig.axes] == ["Reliability diagram: raw", "Reliability diagram: calibrated"]
    out = save_reliability_diagram(fig, tmp_path / "rel.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out2 = save_reliability_diagram(reliability_diagram(conf, correct, strategy="quantile"), tmp_path / "rel2.png")
    assert out2.stat().st_size > 1000


def test_reliability_diagram_draws_into_the_callers_axes() -> None:
    """As scikit-learn's plots: ``ax=`` draws into the caller's figure (one Axes per panel)."""
    from matplotlib.figure import Figure

    conf, correct = overconfident(200, 3)
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert reliability_diagram(conf, correct, calibrated=conf, ax=[left, right]) is figure
    assert left.get_title().endswith(": raw") and right.get_title().endswith(": calibrated")
    with pytest.raises(ValueError, match="ax holds 1 axes; this diagram has 2 panels"):
        reliability_diagram(conf, correct, calibrated=conf, ax=left)
