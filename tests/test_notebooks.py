"""The notebooks under notebooks/: stored without outputs, and each one executes (nbclient, the
venv's ipykernel) and computes what it claims.

Every notebook ends with a cell printing ``NOTEBOOK_SUMMARY {json}``; the checks below read that
line and assert on the values, so a notebook that runs but computes nonsense fails too.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SUMMARY_PREFIX = "NOTEBOOK_SUMMARY "
KERNEL = "python3"


# ----------------------------------------------------------------------------------------------
# per-notebook checks on the printed summary
# ----------------------------------------------------------------------------------------------
def check_quickstart(s: dict[str, Any]) -> None:
    assert s["n_records"] == 12
    assert s["n_rows"] == s["n_records"], "rows in = rows out"
    assert s["n_ok"] + s["n_failed"] == s["n_records"]
    assert s["n_ok"] >= 1
    assert set(s["labels_seen"]) <= {"positive", "negative", "neutral", "mixed"}
    assert all(0.0 <= c <= 1.0 for c in s["confidences_ok"])
    assert s["status_values"] and set(s["status_values"]) <= {"ok", "failed"}
    assert {"prelabels.parquet", "run.json"} <= set(s["files"])
    assert s["run_json_records"] == s["n_records"]
    assert s["model"] == "smollm2"
    assert s["rerun_model_calls"] == 0, "a rerun must come from the cache"
    assert s["n_gold"] == s["n_ok"], "every ok record has its input label as gold"
    assert s["routed_rows"] == s["n_records"] and sum(s["routes"].values()) == s["n_records"]
    # 12 gold records cannot certify any threshold (59 error-free ones are the least at 0.95/95%)
    assert s["routes"].get("auto_accept", 0) == 0


def check_calibration(s: dict[str, Any]) -> None:
    assert s["source"] in {"synthetic", "benchmarks/results"}
    assert s["n_fit"] >= 100 and s["n_test"] >= 100
    for method in ("isotonic", "temperature"):
        assert 0.0 <= s["ece_after"][method] <= 1.0
    assert s["ece_after"]["isotonic"] < s["ece_before"], "isotonic did not lower held-out ECE"
    if s["source"] == "synthetic":
        # the generator is strongly over-confident: calibration must remove most of the gap
        assert s["ece_after"]["isotonic"] <= 0.5 * s["ece_before"]
        # one temperature fits this smooth shape; on an LLM's few coarse stated values it need not
        assert s["ece_after"]["temperature"] < s["ece_before"], "temperature did not lower held-out ECE"
    check_certificate(s)
    scan = s["scan"]  # the old per-threshold scan, shown for comparison only
    if scan["achievable"]:
        assert scan["precision"] >= scan["lower_bound"] >= scan["target_precision"]
    assert sum(s["routes"].values()) == s["n_test"]
    rows = s["errors_caught"]
    assert [r["budget"] for r in rows] == sorted(r["budget"] for r in rows)
    shares = [r["errors_caught_share"] for r in rows]
    assert shares == sorted(shares), "a larger review budget cannot catch fewer errors"
    assert all(r["errors_caught_share"] >= r["random_share"] for r in rows), "confidence order beats random"
    assert s["reliability_png_bytes"] > 1000


def check_certificate(s: dict[str, Any]) -> None:
    """The threshold notebook 02 routes with is route's default: a fixed sequence of exact binomial
    tests on the raw confidence, re-checked here test by test against scipy."""
    from scipy.stats import binomtest

    assert s["threshold_on"] == "raw confidence"
    c = s["certificate"]
    assert c["method"] == "fixed_sequence_binomial" and c["grid_from"] == "pool"
    assert (c["target_precision"], c["confidence_level"]) == (0.95, 0.95)
    steps, delta = c["steps"], 1 - c["confidence_level"]
    assert 1 <= len(steps) <= c["n_candidates"]
    thresholds = [step["threshold"] for step in steps]
    assert thresholds == sorted(set(thresholds), reverse=True), "candidates run from strict to loose"
    passed = [step["passed"] for step in steps]
    assert all(passed[:-1]), "a fixed sequence stops at its first failed test"
    for step in steps:
        n, k = step["n_accepted"], step["n_correct"]
        reference = binomtest(k, n, c["target_precision"], alternative="greater").pvalue if n else 1.0
        assert math.isclose(step["p_value"], reference, rel_tol=1e-9, abs_tol=1e-15), step
        assert step["passed"] == (step["p_value"] <= delta)
    if c["achievable"]:
        last = steps[-1] if passed[-1] else steps[-2]
        assert c["threshold"] == last["threshold"] and c["n_accepted_gold"] == last["n_accepted"]
        # the one-sided Clopper-Pearson bound inverts the same exact test
        assert c["precision_gold"] >= c["lower_bound"] >= c["target_precision"] - 1e-9
        assert c["statement"].startswith("With probability >= 0.95") and f"{c['threshold']:.6g}" in c["statement"]
        assert s["routes"]["auto_accept"] + s["routes"].get("spot_check", 0) > 0
    else:
        assert c["threshold"] is None and passed == [False] and "Nothing is auto-accepted" in c["statement"]
        assert s["routes"].get("auto_accept", 0) == s["routes"].get("spot_check", 0) == 0
    # the fewest error-free gold records above a threshold that certify 0.95 at 95%: 0.95**59 <= 0.05 < 0.95**58
    assert s["gold_needed"][0] == {"errors": 0, "n_gold_above": 59, "n_correct": 59}
    assert [g["n_gold_above"] for g in s["gold_needed"]] == sorted({g["n_gold_above"] for g in s["gold_needed"]})
    if s["source"] == "synthetic":
        # P(correct) ~ Beta(5, 1): about 10% of records are right > 99% of the time, 1000 gold records show it
        assert c["achievable"] and c["coverage_pool"] > 0.05
        assert s["auto_accepted_precision"] >= 0.9, "the auto-accepted held-out records are mostly right"


def check_active_learning(s: dict[str, Any]) -> None:
    assert s["n_pool"] == 600
    assert s["labels"] == [10, 20, 30, 40, 50, 60]
    assert set(s["curves"]) == {"random", "margin", "batch_hybrid"}
    for name, curve in s["curves"].items():
        assert len(curve) == len(s["labels"]), name
        assert all(0.0 <= a <= 1.0 for a in curve), name
        assert curve[-1] > 0.5, f"{name}: 60 labels should beat a coin on fresh/rotten"
    for name, auc in s["auc"].items():
        assert min(s["curves"][name]) - 1e-9 <= auc <= max(s["curves"][name]) + 1e-9
    assert s["batch_hybrid_unique_picks"], "the batch-aware hybrid picked a record twice"
    sim = s["batch_similarity"]
    assert sim["batch_hybrid_w0.6"] < sim["margin"], "weight on distance should make the batch more diverse"
    assert sim["batch_hybrid"] <= sim["margin"] + 1e-9, "near-duplicate exclusion never makes a batch less diverse"


def check_agreement(s: dict[str, Any]) -> None:
    assert s["n_snippets"] == 400 and s["raters_per_snippet"] == [20]
    assert -1.0 <= s["fleiss_kappa"] <= 1.0
    assert math.isclose(s["fleiss_kappa"], s["fleiss_kappa_statsmodels"], abs_tol=1e-12)
    assert math.isclose(s["alpha_nominal"], s["alpha_nominal_krippendorff"], abs_tol=1e-9)
    assert s["alpha_ordinal"] > s["alpha_nominal"], "neighbouring-class disagreement dominates"
    # the published figure for the VADER Amazon subset (benchmarks/results/vader_agreement.md) is 0.691
    assert 0.6 < s["fleiss_kappa"] <= 0.8 and s["fleiss_band"] == "substantial"
    assert 0 < s["majority_resolved"] <= s["n_snippets"]
    assert s["majority_accuracy"] > 0.8 and s["dawid_skene_converged"]
    assert s["dawid_skene_accuracy_resolved"] >= s["majority_accuracy"] - 0.02
    assert s["flagged"] == {"llm_copycat": ["reviewer-3"], "llm_independent": []}
    assert math.isclose(s["team_fleiss_kappa"], s["report_fleiss_kappa"], abs_tol=1e-12)
    assert s["report_flagged"] == ["reviewer-3"]


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "01_quickstart.ipynb": check_quickstart,
    "02_calibration_and_routing.ipynb": check_calibration,
    "03_active_learning_curves.ipynb": check_active_learning,
    "04_agreement.ipynb": check_agreement,
}
MARKS = {"01_quickstart.ipynb": [pytest.mark.llm]}


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _kernel_python_ok() -> bool:
    """The `python3` spec launches this interpreter (a bare "python" argv[0] is replaced by
    sys.executable by jupyter_client)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        return False
    exe = spec.argv[0]
    if exe in {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}:
        return True
    return Path(exe).resolve() == Path(sys.executable).resolve() or Path(exe).absolute() == Path(sys.executable)


@pytest.fixture(scope="session")
def venv_kernel() -> str:
    if not _kernel_python_ok():
        # writes into sys.prefix (.venv/share/jupyter/kernels), not into the repository
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL], check=True)
    if not _kernel_python_ok():
        pytest.fail(f"the {KERNEL!r} kernel spec does not launch {sys.executable}; check `jupyter kernelspec list`")
    return KERNEL


def _summary(nb: nbformat.NotebookNode) -> dict[str, Any]:
    for cell in reversed(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                for line in output["text"].splitlines():
                    if line.startswith(SUMMARY_PREFIX):
                        return json.loads(line[len(SUMMARY_PREFIX) :])
    raise AssertionError(f"no line starting with {SUMMARY_PREFIX!r} in the notebook's outputs")


def _params() -> list[Any]:
    return [pytest.param(p, id=p.stem, marks=MARKS.get(p.name, [])) for p in NOTEBOOKS]


# ----------------------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------------------
def test_every_notebook_is_checked() -> None:
    assert NOTEBOOKS, "no notebooks under notebooks/"
    assert {p.name for p in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in NOTEBOOKS])
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert nb.nbformat == 4
    nbformat.validate(nb)
    json.loads(path.read_text())  # plain JSON on disk
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and any(c.cell_type == "markdown" for c in nb.cells)
    for cell in code:
        assert cell.outputs == [], f"{path.name}: a code cell has stored outputs"
        assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", _params())
def test_notebook_executes(path: Path, venv_kernel: str, tmp_path: Path) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=venv_kernel, resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    elapsed = time.perf_counter() - start
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    CHECKS[path.name](_summary(nb))
    print(f"{path.name}: executed in {elapsed:.1f} s")
