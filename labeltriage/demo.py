"""What `labeltriage demo` needs beyond the CLI steps: its input and its simulated reviewers.

* :func:`demo_input`: product-review snippets from VADER's Amazon set (Hutto & Gilbert 2014),
  with a gold label from the crowd's mean rating for a slice used to calibrate.
* :func:`simulate_reviewers`: reviewer accounts that answer the Argilla queue through the REST API
  exactly as the UI does (``POST /api/v1/records/{id}/responses`` with a bearer token); each answer
  is one real crowd rating of that snippet, drawn at random, so their agreement is the crowd's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labeltriage.corpora import vader_ratings

SUBSET = "amazonReviewSnippets"
REVIEWER_NAMES = ("reviewer-1", "reviewer-2", "reviewer-3")
# the review audits (<id>::audit, a blind second look at a share of the queue) go to two other people:
# an audit answered by a record's own reviewer is not independent and does not count
AUDITOR_NAMES = ("auditor-1", "auditor-2", "auditor-3")  # three: a tie counts against the label
DEMO_REVIEW_AUDIT_RATE = 0.15


def rating_label(rating: float) -> str:
    """One crowd rating (-4..4) as a sentiment label."""
    return "positive" if rating > 0 else ("negative" if rating < 0 else "neutral")


def mean_label(mean: float, neutral_band: float = 0.5) -> str:
    """The crowd's mean rating as a gold label: within +-``neutral_band`` of 0 is neutral."""
    if mean > neutral_band:
        return "positive"
    if mean < -neutral_band:
        return "negative"
    return "neutral"


def demo_input(n_records: int, n_gold: int, directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``input.csv`` (text, source) and ``gold.csv`` (id via text, gold_label) for the demo."""
    from labeltriage.errors import InputError

    snippets = vader_ratings(SUBSET)
    snippets = snippets[snippets["mean_matches_text"] & (snippets["text"].str.len() > 20)]
    if not 0 < n_gold <= n_records <= len(snippets):
        raise InputError(
            f"--records {n_records} --gold {n_gold}: the demo needs 0 < gold <= records <= {len(snippets)} (the "
            f"usable snippets of VADER's {SUBSET}). Fix: e.g. --records 500 --gold 120"
        )
    sample = snippets.sample(n=n_records, random_state=seed).reset_index(drop=True)
    directory.mkdir(parents=True, exist_ok=True)
    input_path = directory / "input.csv"
    pd.DataFrame({"text": sample["text"], "source": f"vader-{SUBSET}"}).to_csv(input_path, index=False)
    gold_path = directory / "gold.csv"
    gold = sample.head(n_gold)
    pd.DataFrame({"text": gold["text"], "gold_label": gold["mean"].map(mean_label)}).to_csv(gold_path, index=False)
    return input_path, gold_path


def demo_config(task: Any, run_dir: Path, settings: dict[str, Any]) -> Any:
    """The demo's task config for ``run_dir``: ``task`` (a :class:`~labeltriage.config.TaskConfig`)
    with ``model.generation.reasoning: review_only`` and an Argilla dataset of its own,
    ``<dataset>-<run dir name>-<6 random hex digits>``, chosen when the directory is first used (a
    deleted and re-made directory, or one of the same name elsewhere, gets a new one), written to
    ``<run>/demo_config.yaml`` and loaded from there, so that every step reads it from run.json.
    ``settings`` (config, records, gold, seed, model) go to ``<run>/demo.json``. Raises InputError
    when ``run_dir`` already pushed a demo made with other settings, or a run without demo.json (an
    earlier version): its records and answers would mix with this one's. A start that failed
    before pushing may be retried with other settings."""
    import secrets

    import yaml

    from labeltriage.config import load_task_config
    from labeltriage.errors import InputError

    recorded, path = run_dir / "demo.json", run_dir / "demo_config.yaml"
    before = json.loads(recorded.read_text()) if recorded.is_file() else None
    pushed = (run_dir / "push.json").is_file() or (run_dir / "responses.parquet").is_file()
    if pushed and before != settings:
        made = ", ".join(f"{k} {before.get(k)}" for k in settings) if before else "no demo.json (an earlier version)"
        raise InputError(
            f"{run_dir} holds a demo made with {made}; its answers would mix with this one's. Fix: pass another "
            f"--run-dir (e.g. {run_dir.with_name(run_dir.name + '-2')}), or delete {run_dir}"
        )
    dataset = load_task_config(path).argilla.dataset if path.is_file() else None
    run_dir.mkdir(parents=True, exist_ok=True)
    data = task.model_dump(mode="json")
    name = dataset or f"{task.argilla.dataset}-{run_dir.resolve().name}-{secrets.token_hex(3)}"
    data["argilla"] = {**data["argilla"], "dataset": name}
    # the demo's report shows no reasoning and reviewers see one only with the suggestion: asked at
    # push time for those records (1.68x vs 1.48x records/s at its 21% share, parallel_decoding.md)
    data["model"]["generation"] = {**data["model"]["generation"], "reasoning": "review_only"}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    recorded.write_text(json.dumps(settings, indent=2) + "\n")
    return load_task_config(path)


def _crowd_by_text() -> dict[str, list[int]]:
    snippets = vader_ratings(SUBSET)
    return dict(zip(snippets["text"], snippets["ratings"], strict=True))


def simulate_reviewers(stack: Any, dataset: Any, question: str, seed: int = 0) -> dict[str, Any]:
    """Three reviewers answer every record of ``dataset`` they have not answered yet; three auditors
    answer the review audits' blind copies (``<id>::audit``), which the reviewers leave alone.

    Returns the reviewers' and auditors' passwords and the number of answers sent (0 on a rerun).
    """
    import httpx

    from curation.adapters.argilla_io import REVIEW_AUDIT_SUFFIX

    api_url, api_key = stack.credentials()
    crowd = _crowd_by_text()
    rng = np.random.default_rng(seed)
    records = records_with_responses(api_url, api_key, str(dataset.id))
    passwords, sent = {}, 0
    for name in (*REVIEWER_NAMES, *AUDITOR_NAMES):
        auditor = name in AUDITOR_NAMES
        passwords[name] = stack.add_user(name, role="annotator")
        token = httpx.post(f"{api_url}/api/v1/token", data={"username": name, "password": passwords[name]}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        me = httpx.get(f"{api_url}/api/v1/me", headers=headers).json()["id"]
        for record in records:
            ratings = crowd.get(record["fields"]["text"])
            if not ratings or any(r["user_id"] == me for r in record.get("responses") or []):
                continue
            if str(record.get("external_id", "")).endswith(REVIEW_AUDIT_SUFFIX) != auditor:
                continue
            label = rating_label(int(rng.choice(ratings)))
            response = httpx.post(
                f"{api_url}/api/v1/records/{record['id']}/responses",
                json={"values": {question: {"value": label}}, "status": "submitted"},
                headers=headers,
                timeout=60,
            )
            response.raise_for_status()
            sent += 1
    return {"passwords": passwords, "answers_sent": sent}


def records_with_responses(api_url: str, api_key: str, dataset_id: str) -> list[dict[str, Any]]:
    """Every record of the dataset with its responses (the REST API's own JSON), page by page."""
    import httpx

    records: list[dict[str, Any]] = []
    while True:
        page = httpx.get(
            f"{api_url}/api/v1/datasets/{dataset_id}/records",
            params={"limit": 1000, "offset": len(records), "include": "responses"},
            headers={"X-Argilla-Api-Key": api_key},
            timeout=60,
        )
        page.raise_for_status()
        items = page.json()["items"]
        records += items
        if len(items) < 1000:
            return records


def pending_for(api_url: str, api_key: str, username: str, password: str, dataset_id: str) -> int:
    """Records this reviewer's UI queue still shows: not yet completed (fewer submitted answers
    than the dataset's ``min_submitted``) and not answered by them. (The server's per-user
    ``metrics`` endpoint counts every record the user has not answered, completed ones too.)"""
    import httpx

    token = httpx.post(f"{api_url}/api/v1/token", data={"username": username, "password": password}).json()
    me = httpx.get(f"{api_url}/api/v1/me", headers={"Authorization": f"Bearer {token['access_token']}"}).json()["id"]
    return sum(
        record["status"] == "pending" and not any(r["user_id"] == me for r in record.get("responses") or [])
        for record in records_with_responses(api_url, api_key, dataset_id)
    )


def effort_report(run_dir: Path) -> dict[str, Any]:
    """Routes, the share of records a human reads, and accuracy on the demo's gold slice.

    Returns ``counts`` (route -> records), ``total``, ``humans`` (records a human labels: review,
    blind audit and gold), ``gold_accuracy``/``n_gold`` (None without gold), ``threshold``
    (routing.json's chosen threshold) and ``auto_accepted_accuracy``/``n_auto_accepted``: the LLM
    labels of the auto-accepted records (spot checks included) against the label of the crowd's
    mean rating of each text, a truth the product never sees (None when nothing is accepted)."""
    import pandas as pd

    from labeltriage.api import gold_labels

    routed = pd.read_parquet(run_dir / "routed.parquet")
    counts = {
        name: int((routed["route"] == name).sum()) for name in ("auto_accept", "spot_check", "human_review", "gold")
    }
    gold_file = run_dir / "gold.csv"  # written by demo_input: text, gold_label
    if "gold_label" not in routed.columns and gold_file.exists():
        routed = routed.assign(gold_label=gold_labels(run_dir, gold_file, "gold_label").to_numpy())
    gold = routed.dropna(subset=["gold_label"]) if "gold_label" in routed.columns else routed.iloc[:0]
    routing = run_dir / "routing.json"
    crowd = vader_ratings(SUBSET)
    truth = dict(zip(crowd["text"], crowd["mean"].map(mean_label), strict=True))
    auto = routed[routed["route"].isin(["auto_accept", "spot_check"])]
    auto_truth = auto["text"].map(truth)
    return {
        "auto_accepted_accuracy": float((auto["llm_label"] == auto_truth).mean()) if len(auto) else None,
        "n_auto_accepted": len(auto),
        "counts": counts,
        "total": len(routed),
        # gold records were labelled by people too: the effort counts them
        "humans": counts["human_review"] + counts["spot_check"] + counts["gold"],
        "n_gold": len(gold),
        "gold_accuracy": float((gold["llm_label"] == gold["gold_label"]).mean()) if len(gold) else None,
        "threshold": (json.loads(routing.read_text()).get("threshold") or {}) if routing.exists() else {},
        "method": json.loads(routing.read_text()).get("method") if routing.exists() else None,
    }


def closing_login(stack: Any, dataset: Any, passwords: dict[str, str]) -> dict[str, Any]:
    """Where a person can carry on: a simulated reviewer with records waiting in their UI queue,
    else how many records still wait for anyone. Returns ``link`` (queue sorted by priority),
    ``reviewer``/``password``/``pending`` (None when no reviewer has work), ``waiting``,
    ``min_submitted``."""
    from curation.adapters.argilla_io import review_link

    api_url, api_key = stack.credentials()
    found: dict[str, Any] = {"link": review_link(api_url, str(dataset.id)), "reviewer": None, "password": None}
    for reviewer, password in passwords.items():
        pending = pending_for(api_url, api_key, reviewer, password, str(dataset.id))
        if pending:
            return {**found, "reviewer": reviewer, "password": password, "pending": pending}
    records = records_with_responses(api_url, api_key, str(dataset.id))
    found["waiting"] = sum(r["status"] == "pending" for r in records)
    found["min_submitted"] = dataset.settings.distribution.min_submitted
    return found
