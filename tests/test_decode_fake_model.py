"""`pipelines.json_decoding.decode` on a fake token model (pure: no llama.cpp, < 1 s).

The fake has a small vocabulary of byte pieces (every printable ASCII byte, a few longer pieces and
one control token with an empty piece) and a logits source that is a plain function of the text in
its context, so every value the decoder returns can be recomputed here: the answer, the tokens it
scored and their log-probs, how many forward passes it asked for and which tokens it fed in them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from pipelines.json_decoding import AnswerTemplate, DecodingError, FixedText, decode

LABELS = ["positive", "negative", "neutral", "mixed"]
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": LABELS},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "reasoning": {"type": "string", "maxLength": 20},
    },
    "required": ["label", "confidence", "reasoning"],
}
CONTROL = b""  # token 0: a control token (writes no bytes), the fake's favourite
WORDS = [b'{"', b"label", b'": "', b'", "', b"confidence", b'": ', b"reasoning", b"great"]
WORDS += [label.encode() for label in LABELS]
PROMPT_TEXT = b"<prompt>"
TARGET = '{"label": "negative", "confidence": 0.9, "reasoning": "broke"}'

Logits = Callable[[bytes], dict[bytes, float]]


class FakeModel:
    """A `TokenModel`: pieces are bytes, logits come from ``scores(answer so far)``.

    ``scores`` maps a piece to its logit given the answer written so far (the context after the
    prompt); pieces it does not name get 0, the control token always gets 50 (the most likely token,
    which the decoder must never choose).
    """

    def __init__(self, scores: Logits, *, digits: bool = True) -> None:
        singles = [bytes([b]) for b in range(0x20, 0x7F) if digits or not chr(b).isdigit()]
        self.pieces = [CONTROL, PROMPT_TEXT, *singles, *WORDS]
        self.scores = scores
        self.context: list[int] = []
        self.feeds: list[tuple[list[int], int]] = []

    @property
    def n_vocab(self) -> int:
        return len(self.pieces)

    def piece(self, token: int) -> bytes:
        return self.pieces[token]

    def tokenize(self, data: bytes) -> list[int]:
        """Longest match first, as BPE vocabularies mostly end up doing."""
        out, i = [], 0
        by_length = sorted((p for p in self.pieces if p), key=len, reverse=True)
        while i < len(data):
            match = next(p for p in by_length if data.startswith(p, i))
            out.append(self.pieces.index(match))
            i += len(match)
        return out

    def answer(self, context: list[int]) -> bytes:
        return b"".join(self.piece(t) for t in context).split(PROMPT_TEXT, 1)[1]

    def logits(self, context: list[int]) -> np.ndarray:
        row = np.zeros(self.n_vocab)
        for piece, value in self.scores(self.answer(context)).items():
            if piece in self.pieces:  # the scores may name text the vocabulary has no piece for
                row[self.pieces.index(piece)] = value
        row[0] = 50.0
        return row

    def feed(self, tokens: list[int], logits_from: int) -> np.ndarray:
        self.feeds.append((list(tokens), logits_from))
        start = len(self.context)
        self.context += tokens
        return np.stack([self.logits(self.context[: start + j + 1]) for j in range(logits_from, len(tokens))])

    def prompt(self) -> list[int]:
        return [self.pieces.index(PROMPT_TEXT)]


def wants(target: str) -> Logits:
    """Scores that prefer continuing ``target``: longer matching pieces first."""
    goal = target.encode()

    def scores(answer: bytes) -> dict[bytes, float]:
        rest = goal[len(answer) :] if goal.startswith(answer) else b""
        return {p: 10.0 + len(p) for p in {rest[:n] for n in range(1, len(rest) + 1)}}

    return scores


def log_softmax(row: np.ndarray, token: int) -> float:
    return float(row[token] - np.logaddexp.reduce(row))


@pytest.fixture(scope="module")
def template() -> AnswerTemplate:
    return AnswerTemplate.from_schema(SCHEMA)


def test_greedy_writes_the_answer_the_model_prefers_feeding_the_scaffold_in_batches(template) -> None:
    model = FakeModel(wants(TARGET))
    out = decode(model, model.prompt(), template)
    assert out.text == TARGET and out.finish_reason == "stop"
    # forward passes: one per choice the model makes: 'negative', '0', '.', '9', ',', 'broke', '"'
    # ('broke' is five single bytes in this vocabulary); the scaffold rides along
    chosen = [b"negative", b"0", b".", b"9", b",", b"b", b"r", b"o", b"k", b"e", b'"']
    assert len(model.feeds) == len(chosen)
    first_fed = [model.piece(t) for t in model.feeds[0][0]]
    assert first_fed == [PROMPT_TEXT, b'{"', b"label", b'": "']  # prompt + forced scaffold, one pass
    assert [model.piece(t) for t in model.feeds[1][0]] == [b"negative", b'", "', b"confidence", b'": ']
    assert [model.piece(t) for t in model.feeds[5][0]] == [b",", b" ", b'"', b"reasoning", b'": "']
    # every scored token is in order and its log-prob is the model's own, before the constraint
    pieces = [piece for piece, _ in out.tokens]
    assert b"".join(pieces) + b"}" == TARGET.encode()  # the closing '}' is written, never fed
    context = model.prompt()
    for piece, logprob in out.tokens:
        token = model.pieces.index(piece)
        assert logprob == pytest.approx(log_softmax(model.logits(context), token), abs=1e-9)
        context = [*context, token]
    assert out.output_tokens == len(out.tokens) + 1
    assert out.output_tokens == len(model.tokenize(TARGET.encode()))  # here the tokenisation agrees


def test_an_invalid_favourite_is_passed_over_for_the_best_valid_token(template) -> None:
    target = wants(TARGET)

    def scores(answer: bytes) -> dict[bytes, float]:
        if answer == b'{"label": "':  # the model likes 'great' (not a label) best, 'mixed' second
            return {b"great": 40.0, b"mixed": 30.0, b"negative": 20.0}
        return target(answer)

    model = FakeModel(scores)
    out = decode(model, model.prompt(), template)
    assert json.loads(out.text)["label"] == "mixed"
    row = model.logits(model.prompt() + model.tokenize(b'{"label": "'))
    label_piece, label_logprob = out.tokens[3]
    assert label_piece == b"mixed"
    assert label_logprob == pytest.approx(log_softmax(row, model.pieces.index(b"mixed")))
    assert label_logprob < math.log(0.001)  # the control token and 'great' hold nearly all the mass


def test_max_tokens_stops_with_finish_reason_length(template) -> None:
    model = FakeModel(wants(TARGET))
    out = decode(model, model.prompt(), template, max_tokens=5)
    assert out.finish_reason == "length" and out.output_tokens == 5
    # 3 scaffold tokens, the label, then the scaffold after it cut to the one token left
    assert out.text == '{"label": "negative", "'
    assert len(model.feeds) == 1


def test_only_the_uncached_prompt_is_fed(template) -> None:
    model = FakeModel(wants(TARGET))
    prompt = model.tokenize(b"ab") + model.prompt()
    model.context = prompt[:2]  # the shared prefix is already in the model's context
    out = decode(model, prompt, template, prompt_cached=2)
    assert out.text == TARGET
    fed, logits_from = model.feeds[0]
    assert [model.piece(t) for t in fed] == [PROMPT_TEXT, b'{"', b"label", b'": "']  # not the cached 'a', 'b'
    assert logits_from == 0  # logits from the last prompt token on: it scores the scaffold's first token
    with pytest.raises(ValueError, match="at least one prompt token"):
        decode(FakeModel(wants(TARGET)), prompt, template, prompt_cached=len(prompt))


def test_sampling_is_seeded_and_stays_inside_the_schema(template) -> None:
    def flat(answer: bytes) -> dict[bytes, float]:
        """Every label equally likely; after the label, one clear continuation."""
        if answer == b'{"label": "':
            return {label.encode(): 10.0 for label in LABELS}
        for label in LABELS:
            if answer.startswith(f'{{"label": "{label}'.encode()):
                return wants(f'{{"label": "{label}", "confidence": 0.5, "reasoning": "ok"}}')(answer)
        return {}

    labels = []
    for seed in range(12):
        out = decode(FakeModel(flat), FakeModel(flat).prompt(), template, temperature=1.0, seed=seed)
        again = decode(FakeModel(flat), FakeModel(flat).prompt(), template, temperature=1.0, seed=seed)
        assert out.text == again.text  # same seed, same answer
        answer = json.loads(out.text)
        assert answer == {"label": answer["label"], "confidence": 0.5, "reasoning": "ok"}
        labels.append(answer["label"])
    assert set(labels) <= set(LABELS) and len(set(labels)) >= 3  # four equally likely labels, 12 draws


def test_no_valid_token_in_the_vocabulary_is_a_decoding_error(template) -> None:
    model = FakeModel(wants(TARGET), digits=False)  # no digit can start the confidence
    with pytest.raises(DecodingError, match="no token continues the answer"):
        decode(model, model.prompt(), template)


def test_fixed_text_is_not_typing_literal() -> None:
    import typing

    from pipelines import json_decoding

    assert json_decoding.Literal is typing.Literal  # the module's own name no longer shadows it
    assert FixedText(b"ab").forced(1) == b"b"


def test_stopping_before_the_reasoning_writes_the_same_label_and_confidence_in_fewer_passes(template) -> None:
    full_model = FakeModel(wants(TARGET))
    full = decode(full_model, full_model.prompt(), template)
    model = FakeModel(wants(TARGET))
    short = decode(model, model.prompt(), AnswerTemplate.from_schema(SCHEMA, stop_before="reasoning"))
    assert short.text == '{"label": "negative", "confidence": 0.9, "reasoning": null}'
    assert short.finish_reason == "stop"
    assert json.loads(short.text) == {"label": "negative", "confidence": 0.9, "reasoning": None}
    # the same choices up to the ',' that ends the number; the rest is written without a pass
    assert len(model.feeds) == 5 and len(full_model.feeds) == 11
    assert short.tokens == full.tokens[: len(short.tokens)]
    assert short.tokens[-1][0] == b","


def test_stopping_before_keeps_the_number_where_the_full_answer_ends_it() -> None:
    # the model would go on to the reasoning after "0.9": compiled WITHOUT the reasoning, the answer
    # must close after the number, and the model's next best digit lengthens it; stopping before
    # the reasoning keeps the full answer's number
    def scores(answer: bytes) -> dict[bytes, float]:
        if answer.endswith(b"0.9"):
            return {b",": 30.0, b"5": 20.0, b"}": 10.0}
        return wants(TARGET)(answer)

    without = {**SCHEMA, "properties": {k: v for k, v in SCHEMA["properties"].items() if k != "reasoning"},
               "required": ["label", "confidence"]}  # fmt: skip
    model = FakeModel(scores)
    assert json.loads(decode(model, model.prompt(), AnswerTemplate.from_schema(without)).text)["confidence"] != 0.9
    model = FakeModel(scores)
    stopped = decode(model, model.prompt(), AnswerTemplate.from_schema(SCHEMA, stop_before="reasoning"))
    assert json.loads(stopped.text)["confidence"] == 0.9


def test_stop_before_must_be_the_last_property() -> None:
    from pipelines.json_decoding import UnsupportedSchema

    with pytest.raises(UnsupportedSchema, match="'confidence' is not the schema's last property"):
        AnswerTemplate.from_schema(SCHEMA, stop_before="confidence")
