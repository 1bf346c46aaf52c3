"""Validate a model answer and derive the label's token probability from log-probs.

Servers without schema enforcement answer near misses: ``"Positive"``, ``"positive "``,
``"positive."``, the object inside a Markdown code fence or after a line of prose, a number or a
percentage as a string. :func:`parse_answer` normalises what is
unambiguous and says so (`Answer.normalised`); it never accepts a label outside the set: a label
that matches none, or several, of the names case-insensitively stays an error. The raw answer is
kept by the caller (``raw_output``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from labeltriage.config import TaskConfig


class InvalidOutput(ValueError):
    """The model's answer breaks the contract; `reason` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str) -> None:
        """The message is ``"<reason>: <detail>"``."""
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    """A validated answer: ``label`` (a label name, or names in config order for multi-label),
    ``confidence`` the model's stated confidence in [0, 1], ``reasoning`` its text, ``normalised``
    what :func:`parse_answer` changed to read it (empty when nothing)."""

    label: str | list[str]
    confidence: float
    reasoning: str | None
    normalised: tuple[str, ...] = ()  # what was changed to read the answer, e.g. "label 'Positive'"


# A whole answer inside one Markdown code fence: ```json\n{...}\n``` (language tag optional).
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def _canonical(value: str, names: list[str]) -> str | None:
    """The one label `value` names up to case and surrounding whitespace; None if none or several."""
    if value in names:
        return value
    folded = value.strip().rstrip(".!").strip().casefold()  # "Positive", "positive ", "positive."
    matches = [n for n in names if n.strip().casefold() == folded]
    return matches[0] if len(matches) == 1 else None


def _load_object(raw: str, notes: list[str]) -> Any:
    text = raw.strip()
    fence = _FENCE.match(text)
    if fence:
        text = fence.group(1).strip()
        notes.append("code fence removed")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        found = _one_object_in_prose(text)
        if found is None:
            raise InvalidOutput("invalid_json", f"{error.msg} at char {error.pos}") from None
        notes.append("text around the JSON object removed")
        return found


def _one_object_in_prose(text: str) -> Any:
    """The answer when the text holds exactly one JSON object (in a code fence or bare) among
    prose ("Here is my answer: ```json {...} ```"); None when there is none or more than one."""
    decoder = json.JSONDecoder()
    objects = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        objects.append(value)
        position = text.find("{", end)
    return objects[0] if len(objects) == 1 and isinstance(objects[0], dict) else None


def parse_answer(raw: str | None, config: TaskConfig) -> Answer:
    """Validate `raw` (the model's answer) against `config`'s answer schema.

    Normalised, because only one reading exists: surrounding whitespace, one Markdown code fence
    around the whole answer, prose around exactly one JSON object, a label differing from exactly
    one label name only in case, surrounding whitespace or a final full stop, a confidence written
    as a numeric string or a percentage ("90%"). Everything else that
    breaks the schema raises :class:`InvalidOutput` (``reason``: empty_output, invalid_json,
    missing_label, label_not_in_set, missing_confidence, confidence_not_number,
    confidence_out_of_range)."""
    if raw is None or not raw.strip():
        raise InvalidOutput("empty_output", "the model returned nothing")
    notes: list[str] = []
    data = _load_object(raw, notes)
    if not isinstance(data, dict):
        raise InvalidOutput("invalid_json", f"expected an object, got {type(data).__name__}")
    names = config.label_names
    key = config.label_key
    if key not in data:
        raise InvalidOutput("missing_label", f"no '{key}' key")
    value = data[key]
    if config.task_type == "multi_label":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidOutput("label_not_in_set", f"'labels' must be a list of strings, got {value!r}")
        canonical = [_canonical(v, names) for v in value]
        outside = [v for v, c in zip(value, canonical, strict=True) if c is None]
        if outside:
            raise InvalidOutput("label_not_in_set", f"{outside} not in {names}")
        notes += [f"label {v!r}" for v, c in zip(value, canonical, strict=True) if v != c]
        label: str | list[str] = [n for n in names if n in canonical]  # dedupe, config order
    else:
        canonical_label = _canonical(value, names) if isinstance(value, str) else None
        if canonical_label is None:
            raise InvalidOutput("label_not_in_set", f"{value!r} not in {names}")
        if canonical_label != value:
            notes.append(f"label {value!r}")
        label = canonical_label
    if "confidence" not in data:
        raise InvalidOutput("missing_confidence", "no 'confidence' key")
    confidence = data["confidence"]
    if isinstance(confidence, str) and _NUMBER.match(confidence.strip()):
        notes.append(f"confidence {confidence!r}")
        confidence = float(confidence)
    elif isinstance(confidence, str) and _NUMBER.match(confidence.strip().removesuffix("%").strip()):
        notes.append(f"confidence {confidence!r}")  # "90%": a percentage has one reading
        confidence = float(confidence.strip().removesuffix("%")) / 100
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise InvalidOutput("confidence_not_number", f"confidence is {confidence!r}")
    if not math.isfinite(confidence) or not 0.0 <= confidence <= 1.0:
        raise InvalidOutput("confidence_out_of_range", f"confidence {confidence} not in [0, 1]")
    reasoning = data.get("reasoning")  # None: not asked for (model.generation.reasoning) or not given
    return Answer(
        label=label,
        confidence=float(confidence),
        reasoning=None if reasoning is None else str(reasoning),
        normalised=tuple(notes),
    )


Token = tuple[str, float]  # (token text, log-prob of the sampled token)


def label_token_probability(raw: str, tokens: list[Token] | None, config: TaskConfig) -> float | None:
    """Probability the model gave the label's own tokens (product over the tokens that cover it).

    Single-label: exp(sum of log-probs of the tokens overlapping the label value).
    Multi-label: the smallest such probability over the chosen labels (1.0 for an empty list
    is not meaningful, so None). The log-probs are the model's, before the grammar constrains it.
    """
    if not tokens:
        return None
    text = "".join(t for t, _ in tokens)
    if not raw.startswith(text[: min(len(text), len(raw))][:8]):
        # token texts do not line up with the answer (e.g. a server that rewrote it)
        return None
    spans: list[tuple[int, int]] = []
    if config.task_type == "multi_label":
        block = re.search(r'"labels"\s*:\s*\[([^\]]*)\]', text)
        if block:
            for item in re.finditer(r'"([^"]+)"', block.group(1)):
                start = block.start(1) + item.start(1)
                spans.append((start, start + len(item.group(1))))
    else:
        match = re.search(r'"label"\s*:\s*"([^"]+)"', text)
        if match:
            spans.append(match.span(1))
    if not spans:
        return None
    probabilities = []
    for start, end in spans:
        total, covered, position = 0.0, False, 0
        for token, logprob in tokens:
            token_end = position + len(token)
            if token_end > start and position < end:
                total += logprob
                covered = True
            position = token_end
            if position >= end:
                break
        if covered:
            probabilities.append(math.exp(total))
    return min(probabilities) if probabilities else None


def label_distribution(
    raw: str, positions: list[list[tuple[str, float]]] | None, config: TaskConfig
) -> dict[str, float] | None:
    """The model's probabilities over the label set at the label's first token (single-label).

    ``positions``: one entry per answer token, ``[(chosen token, log-prob), (alternative,
    log-prob), ...]`` (OpenAI's ``top_logprobs``; the local decoder records its top 20). At the
    token where the label value starts, each candidate that begins a label (after the same
    prefix the chosen token has, e.g. a quote) gives its probability to that label; a candidate
    that begins several labels (a shared first piece, e.g. ``ne`` for negative and neutral)
    splits it equally among them. Renormalised over the label set, so it sums to 1; it costs
    no forward pass beyond the answer's own. Probabilities are the model's, before the schema
    constrains it. None for multi-label tasks, without alternatives, or when no candidate
    begins a label.
    """
    if config.task_type == "multi_label" or not positions or not any(len(p) > 1 for p in positions):
        return None
    text = "".join(p[0][0] for p in positions)
    match = re.search(r'"label"\s*:\s*"([^"]+)"', text)
    if not match:
        return None
    start, position = match.start(1), 0
    for candidates in positions:
        token_end = position + len(candidates[0][0])
        if token_end > start:
            break
        position = token_end
    else:
        return None
    prefix = text[position:start]  # what the token writes before the label (e.g. a quote)
    names = [label.name for label in config.labels]
    values = {name: json.dumps(name, ensure_ascii=False)[1:-1] for name in names}
    mass = dict.fromkeys(names, 0.0)
    seen: set[str] = set()
    for token, logprob in candidates:
        if token in seen or not token.startswith(prefix):
            continue
        seen.add(token)
        rest = token[len(prefix) :]
        if not rest:
            continue  # writes nothing of the label: no evidence either way
        fits = [n for n, v in values.items() if v.startswith(rest) or rest.startswith(v + '"') or rest == v]
        for name in fits:
            mass[name] += math.exp(logprob) / len(fits)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {name: value / total for name, value in mass.items()}


def token_positions(content: list[Any] | None) -> list[list[tuple[str, float]]]:
    """OpenAI-shaped log-probs (one list of ``{"token", "logprob"}`` per answer token, the chosen
    token first, then its alternatives) as ``(token, log-prob)`` lists; empty entries dropped."""
    return [[(str(t["token"]), float(t["logprob"])) for t in position] for position in content or [] if position]


def distribution_columns(
    raw: str, positions: list[list[tuple[str, float]]], label: Any, config: TaskConfig
) -> dict[str, Any]:
    """``confidence_distribution`` (the chosen label's share of :func:`label_distribution`) and
    ``label_distribution`` (that distribution as JSON, label -> probability), None without it."""
    distribution = label_distribution(raw, positions, config)
    if distribution is None or not isinstance(label, str):
        return {"confidence_distribution": None, "label_distribution": None}
    return {
        "confidence_distribution": distribution.get(label),
        "label_distribution": json.dumps({k: round(v, 6) for k, v in distribution.items()}),
    }


def label_of(answer: Any) -> str:
    """A hashable, comparable form of a label or label set (for self-consistency)."""
    return json.dumps(answer, sort_keys=True) if isinstance(answer, list) else str(answer)
