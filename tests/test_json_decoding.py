"""The answer automaton behind jump-forward decoding (pure: no model).

Every answer json.dumps writes for a valid value is accepted byte by byte and completes; every
violation of the schema (label outside the set, confidence out of [0, 1], raw control
characters, a reasoning over maxLength, a duplicate label) is refused at the byte that breaks it;
the forced text is exactly the scaffold between values.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from labeltriage.config import load_task_config
from pipelines.json_decoding import AnswerTemplate, UnsupportedSchema

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = load_task_config(ROOT / "datasets_config" / "sentiment.yaml")
ASPECTS = load_task_config(ROOT / "datasets_config" / "aspects.yaml")


def accepts(template: AnswerTemplate, text: str) -> bool:
    state = template.advance(template.start(), text.encode())
    return state is not None and template.is_complete(state)


def refused_at(template: AnswerTemplate, text: str) -> int | None:
    """Index of the first byte the template refuses (None if every byte is accepted)."""
    state = template.start()
    for i, byte in enumerate(text.encode()):
        state = template.advance(state, bytes([byte]))
        if state is None:
            return i
    return None


@pytest.fixture(scope="module")
def sentiment() -> AnswerTemplate:
    return AnswerTemplate.from_schema(SENTIMENT.output_schema())


@pytest.fixture(scope="module")
def aspects() -> AnswerTemplate:
    return AnswerTemplate.from_schema(ASPECTS.output_schema())


def test_valid_single_label_answers_are_accepted(sentiment: AnswerTemplate) -> None:
    rng = random.Random(0)
    for _ in range(300):
        answer = {
            "label": rng.choice(SENTIMENT.label_names),
            "confidence": rng.choice([0, 1, 0.5, 1.0, 0.0, 0.95, 0.123456, round(rng.random(), rng.randint(1, 6))]),
            "reasoning": "".join(rng.choice('ab "\\/é€\n\t') for _ in range(rng.randint(0, 40))),
        }
        text = json.dumps(answer, ensure_ascii=rng.random() < 0.5)
        assert accepts(sentiment, text), text


HEAD = '{"label": "positive", "confidence": '


# "|" marks the first byte the template must refuse
@pytest.mark.parametrize(
    "case",
    [
        '{"label": "|great", "confidence": 0.9, "reasoning": ""}',  # not a label
        '{"label": "positive|e", "confidence": 0.9, "reasoning": ""}',
        HEAD + '1.|5, "reasoning": ""}',
        HEAD + '|-0.1, "reasoning": ""}',
        HEAD + '|2, "reasoning": ""}',
        HEAD + '0|1, "reasoning": ""}',
        HEAD + '0.123456|7, "reasoning": ""}',
        HEAD + '0.9, "reasoning": "a|\nb"}',  # a raw newline (the JSON escape is fine)
        HEAD + '0.9, "reasoning": "\\|x"}',  # an unknown escape
        HEAD + '0.9, "reasoning": "ok"}| ',
        '{"label":|"positive"}',  # the scaffold is fixed: json.dumps spacing
    ],
)
def test_schema_violations_are_refused_where_they_happen(sentiment: AnswerTemplate, case: str) -> None:
    text = case.replace("|", "", 1)
    assert refused_at(sentiment, text) == len(case[: case.index("|")].encode())


def test_reasoning_max_length_counts_characters_not_bytes(sentiment: AnswerTemplate) -> None:
    limit = SENTIMENT.model.generation.reasoning_max_chars
    assert limit == 100
    head = '{"label": "mixed", "confidence": 0.5, "reasoning": "'
    assert accepts(sentiment, head + "é" * limit + '"}')  # 2 bytes each, 100 characters
    assert accepts(sentiment, head + "\\n" * limit + '"}')  # an escape is one character
    assert refused_at(sentiment, head + "a" * (limit + 1) + '"}') == len(head) + limit


def test_forced_text_is_the_scaffold_between_values(sentiment: AnswerTemplate) -> None:
    state = sentiment.start()
    assert sentiment.forced(state) == b'{"label": "'
    state = sentiment.advance(state, b'{"label": "')
    assert sentiment.forced(state) == b""  # four labels: the model chooses
    state = sentiment.advance(state, b"neg")
    # one label starts with "neg": the rest of it and the scaffold up to the number are forced
    assert sentiment.forced(state) == b'ative", "confidence": '
    state = sentiment.advance(state, b'ative", "confidence": 0.8')
    assert sentiment.forced(state) == b""  # 0.8 may go on (0.85)
    state = sentiment.advance(state, b"12345")
    assert sentiment.forced(state) == b', "reasoning": "'  # six decimals: the number must end
    state = sentiment.advance(state, b', "reasoning": "Fine')
    assert sentiment.forced(state) == b""
    state = sentiment.advance(state, b'"')
    assert sentiment.forced(state) == b"}"
    assert sentiment.is_complete(sentiment.advance(state, b"}"))


def test_one_is_the_only_number_above_zero_point_nine(sentiment: AnswerTemplate) -> None:
    state = sentiment.advance(sentiment.start(), b'{"label": "positive", "confidence": 1.')
    assert state is not None
    assert sentiment.advance(state, b"0") is not None
    assert sentiment.advance(state, b"1") is None


def test_multi_label_arrays(aspects: AnswerTemplate) -> None:
    names = ASPECTS.label_names
    rng = random.Random(1)
    for size in range(len(names) + 1):
        chosen = rng.sample(names, size)
        text = json.dumps({"labels": chosen, "confidence": 0.7, "reasoning": "x"})
        assert accepts(aspects, text), text
    twice = json.dumps({"labels": [names[0], names[0]], "confidence": 0.7, "reasoning": "x"})
    second = len('{"labels": ["' + names[0] + '", "')
    assert second <= refused_at(aspects, twice) < second + len(names[0]) + 1  # within the repeated label
    assert refused_at(aspects, '{"labels": ["nope"], "confidence": 0.7, "reasoning": "x"}') == len('{"labels": ["')
    start = aspects.advance(aspects.start(), b'{"labels": [')
    assert aspects.forced(start) == b""  # empty list or a first label: the model chooses
    full = aspects.advance(start, ", ".join(json.dumps(n) for n in names).encode())
    assert aspects.forced(full) == b'], "confidence": '  # every label used: the list must close


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "properties": {"a": {"type": "string"}}},  # not required
        {"type": "object", "properties": {"a": {"type": "object"}}, "required": ["a"]},
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    ],
)
def test_other_schemas_are_unsupported(schema: dict) -> None:
    with pytest.raises(UnsupportedSchema):
        AnswerTemplate.from_schema(schema)
