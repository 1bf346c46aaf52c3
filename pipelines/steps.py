"""The pre-labelling DAG as distilabel Steps and Tasks, one job each.

    PrepareText >> PrelabelTask >> SelfConsistency >> Finalize

* `PrepareText`: flags empty texts, cuts over-long ones to fit the prompt budget (and flags
  them), flags instruction-like texts (`pipelines.injection`).
* `PrelabelTask`: the custom Task: prompt from the config, structured answer
  ``{label|labels, confidence, reasoning}`` validated against the config's schema, bad answers
  retried up to `max_retries` times, then ``status=failed`` with the raw output kept.
* `SelfConsistency`: k sampled answers; the share that agrees with the main answer.
* `Finalize`: the routing confidence, dollars from the price table, run metadata.

Every step returns exactly one row per input row (rows in = rows out).
"""

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from distilabel.steps import Step, StepInput
from distilabel.steps.tasks import Task
from pydantic import Field, PrivateAttr

from labeltriage.config import ConfigError, TaskConfig
from pipelines.injection import find_instructions, redact_instructions
from pipelines.llms import BUDGET_EXHAUSTED, CONTEXT_OVERFLOW
from pipelines.parsing import (
    InvalidOutput,
    distribution_columns,
    label_of,
    label_token_probability,
    parse_answer,
    token_positions,
)
from pipelines.prompt import render_messages

# What PrelabelTask adds to each row (the runner caches exactly these per record).
PRELABEL_OUTPUTS = (
    "llm_label",
    "confidence_stated",
    "confidence_logprob",
    "confidence_distribution",
    "label_distribution",
    "reasoning",
    "raw_output",
    "status",
    "error",
    "attempts",
    "input_tokens",
    "output_tokens",
)

NOT_RUN = "not_run"


# Where a text was cut: the model sees that something is missing between head and tail.
TRUNCATION_MARK = "\n[...]\n"
# The text keeps at least this many units, or the prompt is too long without it (a config error).
MIN_TEXT_UNITS = 64
# Requests that fail the same way every time: not retried (HTTP 4xx other than 408/409/429).
_DETERMINISTIC = re.compile(
    rf"^(?:{CONTEXT_OVERFLOW}|backend_error: (?:BadRequestError|AuthenticationError|PermissionDeniedError|"
    r"NotFoundError|UnprocessableEntityError)\b)"
)


def deterministic_failure(error: str | None) -> bool:
    """True for an error that the same request would repeat (retrying it only costs calls)."""
    return bool(error) and bool(_DETERMINISTIC.match(error or ""))


def head_tail(pieces: list[bytes], keep: int) -> str:
    """The first ``ceil(keep/2)`` and last ``floor(keep/2)`` of `pieces` (token or character bytes),
    joined by :data:`TRUNCATION_MARK`. A multi-byte character split at a cut is dropped."""
    head = (keep + 1) // 2
    tail = keep - head
    start = b"".join(pieces[:head]).decode("utf-8", "ignore")
    end = b"".join(pieces[len(pieces) - tail :]).decode("utf-8", "ignore") if tail > 0 else ""
    return f"{start}{TRUNCATION_MARK}{end}"


def _characters(text: str) -> list[bytes]:
    return [c.encode("utf-8") for c in text]


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A deliberately high token count for `messages` when the model's tokenizer is not at hand
    (openai backends): 1 token per 3 ASCII characters (English averages ~4) and 2 per other
    character (byte-level BPE vocabularies spend 1-2 tokens on a CJK character), plus 8 per
    message for the chat template's markers."""
    total = 0
    for message in messages:
        content = message.get("content") or ""
        ascii_chars = len(content.encode("ascii", "ignore"))  # the characters below 128, counted in C
        total += -(-ascii_chars // 3) + 2 * (len(content) - ascii_chars) + 8
    return total


@dataclass
class TextBudget:
    """Fits a record's text so that the whole prompt plus the answer fits the context window.

    `prompt_length(text)` is the length of the prompt rendered with `text` (tokens of the model's
    own tokenizer for the local backend, :func:`estimate_tokens` otherwise); `pieces(text)` splits
    a text into the same units; `limit` is ``n_ctx - max_tokens``.

    Strategy (head and tail): a text that does not fit keeps its beginning and its end, half of the
    room each, with :data:`TRUNCATION_MARK` between them: a review's verdict and an e-mail's body
    are often at the end, its subject and greeting at the start."""

    prompt_length: Callable[[str], int]
    pieces: Callable[[str], list[bytes]]
    limit: int
    unit: str = "tokens"
    # the prompt's length with a record's own retrieved examples (None: examples not supported)
    length_with_examples: Callable[[str, Sequence[tuple[str, Any]]], int] | None = None

    def for_examples(self, examples: Sequence[tuple[str, Any]]) -> "TextBudget":
        """The budget of a record whose prompt also carries ``examples``."""
        measure = self.length_with_examples
        if not examples or measure is None:
            return self
        return replace(self, prompt_length=lambda text: measure(text, examples))

    def keep_examples(self, text: str, examples: Sequence[tuple[str, Any]]) -> int:
        """How many of ``examples`` (nearest last) fit beside the whole ``text``: the farthest are
        dropped first, so a record's own text is never cut to make room for examples."""
        kept = len(examples)
        while kept and self.for_examples(examples[len(examples) - kept :]).prompt_length(text) > self.limit:
            kept -= 1
        return kept

    def room(self) -> int:
        """Units left for the text (the prompt rendered with an empty text subtracted)."""
        return self.limit - self.prompt_length("") - len(self.pieces(TRUNCATION_MARK))

    def fit(self, text: str) -> str:
        """`text` unchanged when the prompt fits, else its head and tail (see the class doc)."""
        length = self.prompt_length(text)
        if length <= self.limit:
            return text
        units = self.pieces(text)
        base = self.prompt_length("")
        keep = min(len(units), self.room())
        while keep > 0:
            candidate = head_tail(units, keep)
            length = self.prompt_length(candidate)
            if length <= self.limit:
                return candidate
            # shrink in proportion to the overshoot (a unit is not always one token of the prompt)
            keep = min(keep - 1, keep * (self.limit - base) // max(length - base, 1))
        return head_tail(units, 0)


def text_budget(config: TaskConfig, llm: Any) -> TextBudget:
    """The budget for `config`'s prompts: the model's tokenizer when `llm` has one (the local
    backend: `prompt_tokens`, `text_pieces`), else characters with :func:`estimate_tokens`.

    For openai backends ``model.generation.n_ctx`` is taken as the server's context window.
    Raises ConfigError (file, key, fix) when the prompt without any text leaves no room."""
    gen = config.model.generation
    n_ctx = int(getattr(llm, "n_ctx", None) or gen.n_ctx)
    if hasattr(llm, "prompt_tokens") and hasattr(llm, "text_pieces"):
        budget = TextBudget(
            prompt_length=lambda text: len(llm.prompt_tokens(render_messages(config, text))),
            pieces=llm.text_pieces,
            limit=n_ctx - gen.max_tokens,
            length_with_examples=lambda text, ex: len(llm.prompt_tokens(render_messages(config, text, ex))),
        )
    else:
        budget = TextBudget(
            prompt_length=lambda text: estimate_tokens(render_messages(config, text)),
            pieces=_characters,
            limit=n_ctx - gen.max_tokens,
            unit="estimated tokens",
            length_with_examples=lambda text, ex: estimate_tokens(render_messages(config, text, ex)),
        )
    room = budget.room()
    if room < MIN_TEXT_UNITS:
        raise ConfigError(
            f"{config.source_path}: model.generation.n_ctx: the prompt without the record's text takes "
            f"{budget.limit - room} {budget.unit} and the answer up to {gen.max_tokens}, leaving {room} of "
            f"n_ctx {n_ctx} for the text. Fix: raise model.generation.n_ctx or shorten guidelines/few_shot"
        )
    return budget


class PrepareText(Step):
    """Per record: ``model_text`` (what the model reads), ``empty``, ``truncated``, ``instruction_like``.

    * empty text -> ``empty`` (no model call);
    * a text over `max_chars` characters keeps its head and tail (:func:`head_tail`), and then,
      with a :class:`TextBudget` set (:meth:`use_budget`), as much as fits the context window
      by the model's tokens; either cut sets ``truncated``;
    * ``instruction_like``: the text addresses the model (`pipelines.injection`; `labels`, the
      task's label names, sharpen the detector). The model reads such a text with each sentence
      or line holding an instruction replaced by ``[instruction to the model removed]``
      (`pipelines.injection.redact_instructions`); the row keeps the original ``text``."""

    max_chars: int = 2000
    labels: list[str] = Field(default_factory=list)
    _budget: TextBudget | None = PrivateAttr(None)

    def use_budget(self, budget: TextBudget | None) -> None:
        """Fit every text to `budget` from now on (None: characters only)."""
        self._budget = budget

    @property
    def inputs(self) -> list[str]:
        """The column it reads: ``text``."""
        return ["text"]

    @property
    def outputs(self) -> list[str]:
        """The columns it adds (see the class doc)."""
        return ["model_text", "empty", "truncated", "instruction_like"]

    def _within_chars(self, text: str) -> str:
        if len(text) > self.max_chars:
            return head_tail(_characters(text), max(self.max_chars - len(TRUNCATION_MARK), 1))
        return text

    def fit(self, text: str, examples: Sequence[tuple[str, Any]] = ()) -> str:
        """What the model reads of `text` (unchanged when it fits), beside its ``examples``."""
        text = self._within_chars(text)
        return self._budget.for_examples(examples).fit(text) if self._budget is not None else text

    def _fit_examples(self, row: dict[str, Any], shown: str) -> dict[str, Any]:
        """The row's ``examples`` and ``example_ids`` cut to what fits beside its whole text."""
        examples = list(row["examples"])
        if self._budget is None:
            return {"examples": examples}
        kept = self._budget.keep_examples(self._within_chars(shown), examples)
        ids = list(row.get("example_ids") or [])
        return {"examples": examples[len(examples) - kept :], "example_ids": ids[len(ids) - kept :]}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[name-defined]  # noqa: F821
        """One batch: every row with the output columns added (a missing text is empty)."""
        rows = []
        for row in inputs:
            text = row.get("text")
            text = "" if text is None else str(text)
            empty = not text.strip()
            findings = find_instructions(text, self.labels)
            shown = redact_instructions(text, findings)  # the model never reads the instructions
            extra = self._fit_examples(row, shown) if row.get("examples") and not empty else {}
            model_text = shown if empty else self.fit(shown, extra.get("examples", ()))
            rows.append(
                {
                    **row,
                    **extra,
                    "model_text": model_text,
                    "empty": empty,
                    "truncated": model_text != shown,
                    "instruction_like": bool(findings),
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
        """The column it reads: ``model_text`` (from :class:`PrepareText`)."""
        return ["model_text"]

    @property
    def outputs(self) -> list[str]:
        """:data:`PRELABEL_OUTPUTS`."""
        return list(PRELABEL_OUTPUTS)

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        """The chat messages for the row's ``model_text`` and its retrieved ``examples`` when it has
        some (:func:`pipelines.prompt.render_messages`)."""
        return render_messages(self.config, input["model_text"], input.get("examples") or ())

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """``llm_label``, ``confidence_stated``, ``reasoning`` and a warning in ``error`` when the
        answer was normalised; raises :class:`~pipelines.parsing.InvalidOutput` for a bad answer."""
        answer = parse_answer(output, self.config)
        warning = f"warning: answer normalised ({'; '.join(answer.normalised)})" if answer.normalised else None
        return {
            "llm_label": answer.label,
            "confidence_stated": answer.confidence,
            "reasoning": answer.reasoning,
            "error": warning,
        }

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override,name-defined]  # noqa: F821
        """One batch: ask the model, retry the rows whose answer failed (up to ``max_retries`` more
        times at ``retry_temperature``, seed + 1000 per attempt); every row comes back, ``ok`` or
        ``failed`` with its error and raw output, or ``not_run`` when the budget stopped it."""
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
                    if not deterministic_failure(error):
                        still_bad.append(i)
                    continue
                try:
                    parsed = self.format_output(raw, inputs[i])
                except InvalidOutput as invalid:
                    result.update(status="failed", error=str(invalid), raw_output=raw)
                    still_bad.append(i)
                    continue
                positions = token_positions((output.get("logprobs") or [[]])[0])
                result.update(
                    parsed,  # its `error` is None or a warning (a normalised answer)
                    confidence_logprob=label_token_probability(raw, [p[0] for p in positions], self.config),
                    **distribution_columns(raw, positions, parsed["llm_label"], self.config),
                    raw_output=raw,
                    status="ok",
                )
            pending = still_bad
        for i, row in enumerate(inputs):
            if results[i]["status"] == "failed" and results[i]["attempts"] > 1:
                results[i]["error"] = f"{results[i]['error']} (after {results[i]['attempts']} attempts)"
            if results[i]["status"] == "ok":
                notes = [results[i]["error"]] if results[i]["error"] else []
                if row.get("instruction_like"):
                    notes.insert(0, "warning: instruction-like text, hidden from the model; for human review")
                if row.get("truncated"):
                    notes.insert(0, f"warning: text truncated to {len(row['model_text'])} characters")
                results[i]["error"] = "; ".join(notes) or None
        yield [{**row, **result} for row, result in zip(inputs, results, strict=True)]

    @staticmethod
    def _blank() -> dict[str, Any]:
        return {
            "llm_label": None,
            "confidence_stated": None,
            "confidence_logprob": None,
            "confidence_distribution": None,
            "label_distribution": None,
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
        """The columns it reads: ``model_text``, the main answer's ``llm_label`` and ``status``."""
        return ["model_text", "llm_label", "status"]

    @property
    def outputs(self) -> list[str]:
        """``confidence_consistency`` (share in [0, 1]) and ``consistency_labels`` (the k labels, JSON)."""
        return ["confidence_consistency", "consistency_labels"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        """The same chat messages as the main answer's."""
        return render_messages(self.config, input["model_text"], input.get("examples") or ())

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"label": ...}`` of a sample; raises :class:`~pipelines.parsing.InvalidOutput` for a bad one."""
        return {"label": parse_answer(output, self.config).label}

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override,name-defined]  # noqa: F821
        """One batch: k samples per ``ok`` row; other rows, and rows the budget cut short, get None."""
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
        """The column it needs: ``status`` (it also reads the ``confidence_*`` and token columns)."""
        return ["status"]

    @property
    def outputs(self) -> list[str]:
        """``llm_confidence`` (the ``routing`` kind, else stated), ``confidence_kind``, ``cost_usd``
        (USD: tokens x ``price_input`` / ``price_output`` per 1M), ``model``, ``prompt_hash``."""
        return ["llm_confidence", "confidence_kind", "cost_usd", "model", "prompt_hash"]

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[name-defined]  # noqa: F821
        """One batch: every row with the output columns added."""
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
