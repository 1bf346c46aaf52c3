"""Reasoning on demand (``model.generation.reasoning: review_only``).

Pre-labelling then asks the model for label and confidence only; the reasoning, the answer's last
part, is what a reviewer reads beside the LLM's suggestion, so only the records pushed to people
with that suggestion need one. :func:`add_reasoning` asks for them before a push: the same prompt
and model as the record's pre-label (run.json's ``model_settings``), with the full answer schema,
through the same :class:`~pipelines.prelabeller.Prelabeller` (text fitting, retries, budget, a
per-record cache of its own, ``cache/reasoning-cache.jsonl``). A reasoning is kept only where the
second answer's label is the first one's: a reasoning written for another label would argue
against the suggestion it sits under. Kept ones go to ``reasoning.parquet`` (``id, reasoning``),
which push, the review tools and publish read through
:meth:`labeltriage.rundir.RunDir.routed_for_review`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labeltriage.rundir import REASONING_FILE

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from labeltriage.config import TaskConfig
    from labeltriage.rundir import RunDir

REASONING_CACHE = "cache/reasoning-cache.jsonl"


@dataclass
class ReasoningReport:
    """What :func:`add_reasoning` did.

    Attributes:
        asked: records sent to the model (ok pre-labels with no reasoning yet).
        added: reasonings kept (written to reasoning.parquet).
        label_changed: answers whose label was not the pre-label's (their reasoning is dropped).
        failed: records whose second call failed (no reasoning; the next push asks again).
        model_calls: calls to the model (0 when every answer came from the cache).
    """

    asked: int = 0
    added: int = 0
    label_changed: int = 0
    failed: int = 0
    model_calls: int = 0


def reasoning_config(run: RunDir, task: TaskConfig | None = None) -> TaskConfig:
    """The run's task config (``task``, or read from the run) with the model its pre-labels used
    (run.json ``model_settings``, when recorded) and ``model.generation.reasoning`` set to ``all``."""
    from labeltriage.config import ModelSettings

    task = task if task is not None else run.task_config()
    recorded = run.json("run.json", default={}).get("model_settings")
    model = ModelSettings.model_validate(recorded) if recorded else task.model
    generation = model.generation.model_copy(update={"reasoning": "all"})
    return task.model_copy(update={"model": model.model_copy(update={"generation": generation})})


def add_reasoning(run: RunDir, ids: set[str], *, llm: Any = None, console: Console | None = None) -> ReasoningReport:
    """Give the records ``ids`` a reasoning where the run's pre-labels have none (see the module).

    A no-op unless the run's ``model.generation.reasoning`` is ``review_only``. Only ok pre-labels
    are asked (a failed one has no label to reason about); ids already in reasoning.parquet are not
    asked again, nor are cached answers (reruns cost nothing). ``llm``: a distilabel LLM to use
    instead of the config's (tests). Raises what :class:`~pipelines.prelabeller.Prelabeller` raises
    for a model it cannot build (``BackendError``, ``ModelNotAvailable``)."""
    import pandas as pd

    from curation.publish import normalise_label
    from pipelines.prelabeller import Prelabeller

    task = run.task_config()
    if task.model.generation.reasoning != "review_only" or not ids:
        return ReasoningReport()
    path = run / REASONING_FILE
    kept = run.table(REASONING_FILE) if path.is_file() else pd.DataFrame({"id": [], "reasoning": []})
    # which records to ask from three small columns; the texts only when some are to be asked
    # (every push calls this, and prelabels.parquet can hold 500,000 records)
    status = run.table(
        "prelabels.parquet", ("id", "status", "llm_label"), columns=("id", "status", "llm_label", "reasoning")
    )
    has_reasoning = status["reasoning"].notna() if "reasoning" in status.columns else False
    wanted = (
        status["id"].astype(str).isin(ids - set(kept["id"].astype(str))) & status["status"].eq("ok") & ~has_reasoning
    )
    if not wanted.any():
        return ReasoningReport()
    texts = run.table("prelabels.parquet", ("id", "text"), columns=("id", "text", "source", "example_ids"))
    rows = texts[wanted.to_numpy()].assign(llm_label=status.loc[wanted, "llm_label"].to_numpy()).drop_duplicates("id")
    columns = [c for c in ("id", "text", "source", "example_ids") if c in rows.columns]
    labeller = Prelabeller(reasoning_config(run, task), run.path, llm=llm, console=console, show_progress=False,
                           cache_file=run.path / REASONING_CACHE)  # fmt: skip
    answers = labeller.run(_with_examples(run, rows[columns])).frame
    report = ReasoningReport(asked=len(rows), model_calls=labeller.stats.calls)
    first = dict(zip(rows["id"].astype(str), rows["llm_label"], strict=True))
    new = []
    for answer in answers.to_dict("records"):
        if answer["status"] != "ok" or not isinstance(answer.get("reasoning"), str):
            report.failed += 1
        elif normalise_label(answer["llm_label"]) == normalise_label(first[str(answer["id"])]):
            new.append({"id": str(answer["id"]), "reasoning": answer["reasoning"]})
        else:
            report.label_changed += 1
    report.added = len(new)
    if new:
        merged = pd.concat([kept[["id", "reasoning"]], pd.DataFrame(new)], ignore_index=True)
        merged.drop_duplicates("id", keep="last").to_parquet(path, index=False)
    return report


def _with_examples(run: RunDir, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the retrieved examples their pre-label was asked with (from the run's example
    pool by ``example_ids``), so the second call's prompt is the first one's."""
    from labeltriage.example_pool import POOL_FILE

    if "example_ids" not in rows.columns or not (run / POOL_FILE).is_file():
        return rows.drop(columns=["example_ids"], errors="ignore")
    pool = run.table(POOL_FILE)
    by_id = dict(zip(pool["id"].astype(str), zip(pool["text"], pool["label"], strict=True), strict=True))
    ids = [list(value) if value is not None else [] for value in rows["example_ids"]]
    examples = [[by_id[i] for i in chosen if i in by_id] for chosen in ids]
    return rows.assign(examples=examples, example_ids=[[i for i in chosen if i in by_id] for chosen in ids])


def reasoning_for_review(run: RunDir, queue: pd.DataFrame, *, llm: Any = None) -> tuple[pd.DataFrame, ReasoningReport]:
    """A review queue about to be pushed, with its assisted records' reasoning asked for first
    (:func:`add_reasoning`; blind records never show one), and what that asked."""
    from curation.adapters.argilla_io import is_blind

    report = add_reasoning(run, set(queue.loc[~is_blind(queue), "id"].astype(str)), llm=llm)
    return (run.with_reasoning(queue) if report.added else queue), report
