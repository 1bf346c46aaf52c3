"""A reviewer in a real browser: headless Chromium on the stack's Argilla UI.

Push a small review queue with the CLI, log in as a new reviewer through the sign-in form, open the
dataset, see the LLM suggestion (pre-selected, with its score and agent) and the reasoning, sort by
the ``priority`` metadata through the Sort control (ascending shows the lowest, descending the
highest), pick a different label and submit; `labeltriage pull` then has exactly that response.
Then open a blind audit record (route spot_check): its text, no label pre-selected, no suggestion,
no reasoning, no model name.
A screenshot of the annotation page goes to ``argilla_ui_review.png`` in the test's temporary
directory (a test writes nothing tracked); ``LABELTRIAGE_RESULTS_DIR=benchmarks/results`` refreshes
the published one.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from labeltriage.cli import main as cli
from tests.support.browser_chromium import chromium_page

pytestmark = [pytest.mark.stack, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_NAME = "argilla_ui_review.png"
LABELS = ["positive", "negative", "neutral", "mixed"]
TIMEOUT_MS = 90_000
REVIEWS = [
    ("The blender crushed ice on day one and still runs like new after a month.", "positive"),
    ("Stopped charging after two weeks and support never answered my emails.", "negative"),
    ("It is a phone case. It fits the phone and that is about it.", "neutral"),
    ("Great sound from the speaker, but the battery dies in under an hour.", "mixed"),
    ("My kids love this puzzle and the pieces are thick and sturdy.", "positive"),
    ("The zipper broke the first time I packed the bag for a trip.", "negative"),
    ("Arrived on Tuesday in a brown box with the manual inside.", "neutral"),
    ("Comfortable shoes for walking, though the laces fray quickly.", "mixed"),
    ("Best coffee grinder I have owned, consistent grind every morning.", "positive"),
    ("The paint peeled off the mug in the dishwasher within days.", "negative"),
    ("The lamp gives light. Nothing more to say about it.", "neutral"),
    ("The tent keeps the rain out well, yet the poles bent in light wind.", "mixed"),
    ("This keyboard feels wonderful to type on and the keys are quiet.", "positive"),
    ("Cheap plastic hinge snapped, what a waste of money.", "negative"),
    ("The cable is two meters long as described in the listing.", "neutral"),
    ("Lovely fabric on the jacket, but the sizing runs far too small.", "mixed"),
    ("Setup took five minutes and the router covers the whole house.", "positive"),
    ("The vacuum lost suction after a week and smells of burnt rubber.", "negative"),
    ("Standard batteries, they power the remote control.", "neutral"),
    ("The knife is razor sharp, although the handle gets slippery when wet.", "mixed"),
]


def _invoke(args: list[str], env: dict) -> str:
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def ui_run(argilla_stack, tmp_path):
    """A pushed run of 20 records with distinct priorities; its top and bottom rows."""
    run = tmp_path / "run"
    run.mkdir()
    config = yaml.safe_load((ROOT / "datasets_config" / "sentiment.yaml").read_text())
    config["argilla"]["dataset"] = f"ui-{uuid.uuid4().hex[:8]}"
    config["argilla"]["min_submitted"] = 1
    config_path = tmp_path / "sentiment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    n = len(REVIEWS)
    rng = np.random.default_rng(7)
    priority = np.round(rng.permutation(n) / n + 0.01, 2)  # distinct, 0.01 .. 0.96
    routed = pd.DataFrame(
        {
            "id": [f"ui-{uuid.uuid4().hex[:6]}-{i}" for i in range(n)],
            "text": [text for text, _ in REVIEWS],
            "gold_label": [label for _, label in REVIEWS],
            # The LLM is wrong on purpose on a few rows (rotated label), as in a real queue.
            "llm_label": [
                label if i % 3 else LABELS[(LABELS.index(label) + 1) % 4] for i, (_, label) in enumerate(REVIEWS)
            ],
            "llm_confidence": np.round(rng.uniform(0.4, 0.95, n), 2),
            # One decimal: the UI shows a suggestion's score rounded to one.
            "calibrated_confidence": np.round(rng.uniform(0.4, 0.95, n), 1),
            "model": "qwen2.5-1.5b",
            "prompt_hash": "p0",
            "input_tokens": 120,
            "output_tokens": 30,
            "cost_usd": 0.0,
            "status": "ok",
            "error": None,
            "route": "human_review",
            "priority": priority,
        }
    )
    routed["reasoning"] = [
        f"Review {i + 1}: the wording reads as {label} overall." for i, label in enumerate(routed["llm_label"])
    ]
    routed.to_parquet(run / "routed.parquet", index=False)
    (run / "run.json").write_text(json.dumps({"config": str(config_path), "model": "qwen2.5-1.5b"}))
    api_url, api_key = argilla_stack.credentials()
    env = {"ARGILLA_API_URL": api_url, "ARGILLA_API_KEY": api_key}
    output = _invoke(["push", str(run), "--no-vectors"], env)
    assert f"pushed {n} record(s)" in output
    ordered = routed.sort_values("priority", ascending=False)
    # a blind audit record (route spot_check) in a dataset of its own, for the reviewer to open next
    blind_run = tmp_path / "blind"
    blind_run.mkdir()
    blind_config = {**config, "argilla": {**config["argilla"], "dataset": f"ui-blind-{uuid.uuid4().hex[:8]}"}}
    (tmp_path / "blind.yaml").write_text(yaml.safe_dump(blind_config))
    blind_row = routed.iloc[[0]].assign(route="spot_check", id=f"ui-blind-{uuid.uuid4().hex[:6]}")
    blind_row.to_parquet(blind_run / "routed.parquet", index=False)
    (blind_run / "run.json").write_text(json.dumps({"config": str(tmp_path / "blind.yaml"), "model": "qwen2.5-1.5b"}))
    assert "pushed 1 record(s)" in _invoke(["push", str(blind_run), "--no-vectors"], env)
    return {
        "run": run,
        "env": env,
        "dataset": config["argilla"]["dataset"],
        "top": ordered.iloc[0].to_dict(),
        "bottom": ordered.iloc[-1].to_dict(),
        "blind_dataset": blind_config["argilla"]["dataset"],
        "blind": blind_row.iloc[0].to_dict(),
    }


def _option(page, label: str):
    """The label question's option for ``label`` (a role=button wrapping the checkbox)."""
    return page.get_by_role("group", name="Label-Options").get_by_role("button", name=label, exact=True)


def test_reviewer_sees_suggestion_sorts_by_priority_submits_and_pull_sees_it(argilla_stack, ui_run, tmp_path):
    from playwright.sync_api import expect

    api_url = ui_run["env"]["ARGILLA_API_URL"]
    reviewer = f"ui_reviewer_{uuid.uuid4().hex[:6]}"
    password = argilla_stack.add_user(reviewer, role="annotator")
    top, bottom = ui_run["top"], ui_run["bottom"]
    suggested = top["llm_label"]
    # The reviewer corrects the LLM: the true label, or any other when the suggestion was right.
    chosen = top["gold_label"] if top["gold_label"] != suggested else next(x for x in LABELS if x != suggested)

    with chromium_page(TIMEOUT_MS) as page:
        try:
            # Sign in through the form.
            page.goto(f"{api_url}/", wait_until="domcontentloaded")
            page.wait_for_url(re.compile(r"/sign-in"))
            page.locator("input[name=Username]").fill(reviewer)
            page.locator("input[name=Password]").fill(password)
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.wait_for_url(lambda url: "sign-in" not in url)
            expect(page.get_by_text(ui_run["dataset"], exact=True).first).to_be_visible(timeout=TIMEOUT_MS)

            # Open the dataset: annotation mode, pending records.
            page.get_by_text(ui_run["dataset"], exact=True).first.click()
            page.wait_for_url(re.compile(r"/dataset/[0-9a-f-]+/annotation-mode"))
            expect(page.get_by_text("LLM reasoning", exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_label("Total Records")).to_have_text("of 20", timeout=TIMEOUT_MS)

            # Sort by priority through the Sort control: adding it sorts ascending, the arrow flips it.
            page.get_by_role("button", name="Sort", exact=True).last.click()
            page.locator(".sort-categories__list").get_by_role("button", name="priority", exact=True).click()
            page.wait_for_url(re.compile(r"sort=metadata\.priority\.asc"))
            expect(page.get_by_text(bottom["text"], exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            page.get_by_title("sort direction", exact=True).click()
            page.wait_for_url(re.compile(r"sort=metadata\.priority\.desc"))
            expect(page.get_by_text(top["text"], exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            expect(page.get_by_text(bottom["text"], exact=True)).to_have_count(0)
            expect(page.get_by_label("Current Record")).to_have_text("1")
            page.get_by_role("button", name="Sort (1)").first.click()  # close the sort panel
            expect(page.get_by_title("sort direction", exact=True)).to_be_hidden(timeout=TIMEOUT_MS)

            # The LLM suggestion is pre-selected and marked (score, agent); the others are not.
            for label in LABELS:
                checkbox = _option(page, label).locator("input[type=checkbox]")
                mark = _option(page, label).locator(".label-text__suggestion")
                if label == suggested:
                    expect(checkbox).to_be_checked()
                    expect(mark).to_have_count(1)
                    expect(mark).to_have_text(f"{top['calibrated_confidence']:g}")
                    expect(_option(page, label)).to_contain_text("qwen2.5-1.5b/p0")  # the suggestion's tooltip
                else:
                    expect(checkbox).not_to_be_checked()
                    expect(mark).to_have_count(0)
            # The reasoning field shows the LLM's reasoning for this record.
            expect(page.get_by_text(top["reasoning"], exact=True)).to_be_visible()

            screenshot = Path(os.environ.get("LABELTRIAGE_RESULTS_DIR") or tmp_path) / SCREENSHOT_NAME
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))

            # Pick another label (single choice: the suggestion is unselected) and submit.
            _option(page, chosen).click()
            expect(_option(page, chosen).locator("input[type=checkbox]")).to_be_checked()
            expect(_option(page, suggested).locator("input[type=checkbox]")).not_to_be_checked()
            page.get_by_role("button", name="Submit").click()
            # The submitted record leaves the pending queue and the reviewer's progress counts it.
            expect(page.get_by_text(top["text"], exact=True)).to_have_count(0, timeout=TIMEOUT_MS)
            progress = page.locator("li").filter(has=page.get_by_text("submitted", exact=True))
            expect(progress).to_contain_text("1", timeout=TIMEOUT_MS)

            # A blind audit record: the text, and nothing of the model: no label pre-selected, no
            # suggestion mark, no reasoning.
            page.goto(f"{api_url}/", wait_until="domcontentloaded")
            page.get_by_text(ui_run["blind_dataset"], exact=True).first.click()
            page.wait_for_url(re.compile(r"/dataset/[0-9a-f-]+/annotation-mode"))
            blind = ui_run["blind"]
            expect(page.get_by_text(blind["text"], exact=True)).to_be_visible(timeout=TIMEOUT_MS)
            for label in LABELS:
                expect(_option(page, label).locator("input[type=checkbox]")).not_to_be_checked()
                expect(_option(page, label).locator(".label-text__suggestion")).to_have_count(0)
            expect(page.get_by_text(blind["reasoning"], exact=True)).to_have_count(0)
            expect(page.get_by_text("qwen2.5-1.5b", exact=False)).to_have_count(0)
            page.screenshot(path=str(screenshot.with_name("argilla_ui_blind_audit.png")))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            (tmp_path / "failure.html").write_text(page.content())
            raise

    output = _invoke(["pull", str(ui_run["run"])], ui_run["env"])
    assert "pulled 1 submitted response(s) from 1 reviewer(s)" in output, output
    responses = pd.read_parquet(ui_run["run"] / "responses.parquet")
    assert len(responses) == 1, responses
    row = responses.iloc[0]
    assert (row["record_id"], row["user"], row["label"], row["status"]) == (top["id"], reviewer, chosen, "submitted")
