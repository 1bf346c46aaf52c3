"""The built wheel works without the checkout (issue 13): installed with --no-deps into a fresh
venv that sees the project's dependencies, run from a directory outside the repository, the
Python API alone runs the whole loop on 20 records with the tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.llm, pytest.mark.stack, pytest.mark.timeout(1500)]

LOOP = r"""
import json, sys
from pathlib import Path

import labeltriage as lt
from argilla_stack.stack import Stack
from labeltriage.demo import demo_input, simulate_reviewers

home, run, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
stack = Stack(home)
stack.up(port=port, log=lambda *_: None)
try:
    input_path, gold_path = demo_input(20, 10, run)
    labelled = lt.prelabel("sentiment", input_path, run, model="smollm2")
    cal = lt.calibrate(run, gold=gold_path)
    routing = lt.route(run, target_precision=0.5)
    client = lt.connect_argilla(*stack.credentials())
    pushed = lt.push(run, client=client)
    task = lt.RunDir(run).task_config()
    dataset = client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    answers = simulate_reviewers(stack, dataset, task.argilla.question)["answers_sent"]
    pulled = lt.pull(run, client=client)
    report = lt.agreement(run)
    published = lt.publish(run, output=run / "published")
    print("RESULT " + json.dumps({
        "labeltriage": lt.__file__, "datasets_config": str(task.source_path), "records": len(labelled.frame),
        "n_gold": cal.n_gold, "routes": routing.counts, "pushed": pushed.pushed, "answers": answers,
        "submitted": pulled.submitted, "n_reviewers": report.report["n_reviewers"], "fleiss": report.fleiss_kappa,
        "published": published.summary["n_published"], "adjudication": published.summary["n_adjudication"],
        "pending": published.summary["n_pending_review"],
    }))
finally:
    stack.down(log=lambda *_: None)
"""


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the tracked files (building in the checkout would write into it)."""
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    return next(dist.glob("labeltriage-*.whl"))


def test_the_wheel_runs_the_loop_outside_the_checkout(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    # the project's dependencies, as a plain path: the editable install's finder (a .pth file in
    # that folder, which would map labeltriage to the checkout) is not run
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ARGILLA_API_URL", "ARGILLA_API_KEY")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOOP, str(tmp_path / "home"), str(outside / "run"), str(free_port())],
        cwd=outside, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["labeltriage"].startswith(str(site)), result["labeltriage"]
    assert result["datasets_config"].startswith(str(site))  # the shipped config, as package data
    assert result["records"] == 20 and result["n_gold"] == 10
    queued = result["routes"]["human_review"] + result["routes"]["spot_check"]
    assert result["pushed"] == queued and result["answers"] == 3 * queued and result["submitted"] == 3 * queued
    assert result["published"] + result["adjudication"] + result["pending"] == 20
