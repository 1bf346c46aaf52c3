"""The pre-labelling DAG as distilabel Steps and Tasks, one job each.

    PrepareText >> PrelabelTask >> SelfConsistency >> Finalize

* `PrepareText`: flags empty texts, truncates over-long ones (and flags them).
* `PrelabelTask`: the custom Task: prompt from the config, structured answer
  ``{label|labels, confidence, reasoning}`` validated against the config's schema, bad answers
  retried up to `max_retries` times, then ``status=failed`` with the raw output kept.
* `SelfConsistency`: k sampled answers; the share that agrees with the main answer.
* `Finalize`: the routing confidence, dollars from the price table, run metadata.

Every step returns exactly one row per input row (rows in = rows out).
"""

import json
from typing import Any

from distilabel.steps import Step, StepInput
from distilabel.steps.tasks import Task
from pydantic import Field

from labeltriage.config import TaskConfig
from pipelines.llms import BUDGET_EXHAUSTED
from pipelines.parsing import InvalidOutput, label_of, label_token_probability, parse_answer
from pipelines.prompt import render_messages

# What PrelabelTask adds to each row (the runner caches exactly these per record).
PRELABEL_OUTPUTS = (
    "llm_label",
    "confidence_stated",
    "confidence_logprob",
    "reasoning",
    "raw_output",
    "status",
    "error",
    "attempts",
    "input_tokens",
    "output_tokens",
)

NOT_RUN = "not_run"


class PrepareText(Step):
    """Empty text -> flagged (no model call); text over `max_chars` -> truncated and flagged."""

    max_chars: int = 2000

    @property
    def inputs(self) -> list[str]:
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        return ["model_text", "empty", "truncated"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[name-defined]  # noqa: F821
        rows = []
        for row in inputs:
            text = row.get("text")
            text = "" if text is None else str(text)
            truncated = len(text) > self.max_chars
            rows.append(
                {
                    **row,
                    "model_text": text[: self.max_chars] if truncated else text,
                    "empty": not text.strip(),
                    "truncated": truncated,
                }
            )
        yield rows


def _usage(output: dict[str, Any], index: int) -> tuple[int, int]:
    stats = output.get("statistics") or {}
    tokens_in = (stats.get("input_tokens") or [0])[index] or 0
    tokens_out = (stats.get("output_tokens") or [0])[index] or 0
    return int(tokens_in), int(tokens_out)


class PrelabelTask(Task):
    """LLM -> validated ``{label|labels, confidence, reasoning}`` with retries on bad output."""

    config: TaskConfig
    max_retries: int = 2
    temperature: float = 0.0
    retry_temperature: float = 0.7
    max_tokens: int = 128
    seed: int = 0

    @property
    def inputs(self) -> list[str]:
        return ["model_text"]

    @property
    def outputs(self) -> list[str]:
        return list(PRELABEL_OUTPUTS)

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return render_messages(self.config, input["model_text"])

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = parse_answer(output, self.config)
        return {"llm_label": answer.label, "confidence_stated": answer.confidence, "reasoning": answer.reasoning}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override,name-defined]  # noqa: F821
        results: list[dict[str, Any]] = [self._blank() for _ in inputs]
        pending = []
        for i, row in enumerate(inputs):
            if row.get("empty"):
                results[i].update(status="failed", error="empty_text: nothing to label")
            else:
                pending.append(i)
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            kwargs = {
                "temperature": self.temperature if attempt == 0 else self.retry_temperature,
                "max_tokens": self.max_tokens,
                "seed": self.seed + 1000 * attempt,
            }
            outputs = self.llm.generate_outputs(
                inputs=[self.format_input(inputs[i]) for i in pending], num_generations=1, **kwargs
            )
            still_bad = []
            for i, output in zip(pending, outputs, strict=True):
                result = results[i]
                tokens_in, tokens_out = _usage(output, 0)
                result["input_tokens"] += tokens_in
                result["output_tokens"] += tokens_out
                error = (output.get("errors") or [None])[0]
                raw = (output.get("generations") or [None])[0]
                if error == BUDGET_EXHAUSTED:
                    result.update(status=NOT_RUN, error=f"{NOT_RUN}: --max-cost reached before this record")
                    continue
                result["attempts"] += 1
                if error is not None:
                    result.update(status="failed", error=error, raw_output=raw)
                    still_bad.append(i)
                    continue
                try:
                    parsed = self.format_output(raw, inputs[i])
                except InvalidOutput as invalid:
                    result.update(status="failed", error=str(invalid), raw_output=raw)
                    still_bad.append(i)
                    continue
                tokens = [(p[0]["token"], p[0]["logprob"]) for p in (output.get("logprobs") or [[]])[0] if p]
                result.update(
                    parsed,
                    confidence_logprob=label_token_probability(raw, tokens, self.config),
                    raw_output=raw,
                    status="ok",
                    error=None,
                )
            pending = still_bad
        for i, row in enumerate(inputs):
            if results[i]["status"] == "failed" and results[i]["attempts"] > 1:
                results[i]["error"] = f"{results[i]['error']} (after {results[i]['attempts']} attempts)"
            if row.get("truncated") and results[i]["status"] == "ok":
                results[i]["error"] = f"warning: text truncated to {len(row['model_text'])} characters"
        yield [{**row, **result} for row, result in zip(inputs, results, strict=True)]

    @staticmethod
    def _blank() -> dict[str, Any]:
        return {
            "llm_label": None,
            "confidence_stated": None,
            "confidence_logprob": None,
            "reasoning": None,
            "raw_output": None,
            "status": "failed",
            "error": None,
            "attempts": 0,
            "input_tokens": 0,
            "output_tokens": 0,
        }


class SelfConsistency(Task):
    """k answers sampled at `temperature`; confidence = share that agrees with the main label.
    An invalid sample counts as a disagreement (the denominator is always k)."""

    config: TaskConfig
    samples: int = Field(default=3, ge=1)
    temperature: float = 0.8
    max_tokens: int = 128
    seed: int = 7919

    @property
    def inputs(self) -> list[str]:
        return ["model_text", "llm_label", "status"]

    @property
    def outputs(self) -> list[str]:
        return ["confidence_consistency", "consistency_labels"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return render_messages(self.config, input["model_text"])

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"label": parse_answer(output, self.config).label}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override,name-defined]  # noqa: F821
        rows = [{**row, "confidence_consistency": None, "consistency_labels": None} for row in inputs]
        todo = [i for i, row in enumerate(inputs) if row.get("status") == "ok"]
        if todo:
            outputs = self.llm.generate_outputs(
                inputs=[self.format_input(inputs[i]) for i in todo],
                num_generations=self.samples,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
            )
            for i, output in zip(todo, outputs, strict=True):
                labels: list[Any] = []
                for g, raw in enumerate(output["generations"]):
                    tokens_in, tokens_out = _usage(output, g)
                    rows[i]["input_tokens"] = rows[i].get("input_tokens", 0) + tokens_in
                    rows[i]["output_tokens"] = rows[i].get("output_tokens", 0) + tokens_out
                    if output["errors"][g] == BUDGET_EXHAUSTED:
                        labels = []
                        break
                    try:
                        labels.append(self.format_output(raw)["label"])
                    except InvalidOutput:
                        labels.append(None)
                if len(labels) == self.samples:
                    main = label_of(inputs[i]["llm_label"])
                    agree = sum(1 for label in labels if label is not None and label_of(label) == main)
                    rows[i]["confidence_consistency"] = agree / self.samples
                    rows[i]["consistency_labels"] = json.dumps(labels)
        yield rows


class Finalize(Step):
    """Routing confidence, cost in dollars, model and prompt hash."""

    routing: str = "logprob"
    price_input: float = 0.0
    price_output: float = 0.0
    model: str = ""
    prompt_hash: str = ""

    @property
    def inputs(self) -> list[str]:
        return ["status"]

    @property
    def outputs(self) -> list[str]:
        return ["llm_confidence", "confidence_kind", "cost_usd", "model", "prompt_hash"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[name-defined]  # noqa: F821
        rows = []
        for row in inputs:
            row = dict(row)
            chosen = row.get(f"confidence_{self.routing}") if row.get("status") == "ok" else None
            kind = self.routing
            if chosen is None and row.get("status") == "ok":
                # the configured kind is unavailable for this record (e.g. no log-probs): say so
                chosen, kind = row.get("confidence_stated"), "stated"
            row["llm_confidence"] = chosen
            row["confidence_kind"] = kind if chosen is not None else None
            tokens_in, tokens_out = row.get("input_tokens", 0), row.get("output_tokens", 0)
            row["cost_usd"] = (tokens_in * self.price_input + tokens_out * self.price_output) / 1_000_000
            row["model"] = self.model
            row["prompt_hash"] = self.prompt_hash
            rows.append(row)
        yield rows
