"""`pipelines.json_decoding.decode_many` on a fake multi-sequence model (pure: no llama.cpp, < 1 s).

The fake holds one context per slot plus a shared prefix, checks every batch it is given (positions
follow on, a slot is fed only after `start`, the cells in use never exceed its capacity) and scores
each record's answer towards that record's own target, so each answer can be compared with what
`decode` writes for the same prompt alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.json_decoding import AnswerTemplate, Decoded, DecodingError, decode, decode_many
from tests.test_decode_fake_model import PROMPT_TEXT, SCHEMA, FakeModel, wants

INSTRUCTIONS = b"Label the text. "
TARGETS = {
    b"rA": '{"label": "negative", "confidence": 0.9, "reasoning": "broke"}',
    b"rB": '{"label": "positive", "confidence": 1, "reasoning": "great"}',
    b"rC": '{"label": "neutral", "confidence": 0.55, "reasoning": "ok I guess"}',
    b"rD": '{"label": "mixed", "confidence": 0.125, "reasoning": ""}',
    b"rE": '{"label": "negative", "confidence": 0, "reasoning": "no"}',
    b"rF": '{"label": "positive", "confidence": 0.75, "reasoning": "loved it a lot"}',
    b"rG": '{"label": "mixed", "confidence": 0.5, "reasoning": "both"}',
}


class PerRecordModel(FakeModel):
    """A `TokenModel` whose scores depend on the record named in the prompt (``rA`` .. ``rG``)."""

    def __init__(self, *, digits: bool = True) -> None:
        super().__init__(lambda answer: {}, digits=digits)

    def logits(self, context: list[int]) -> np.ndarray:
        text = b"".join(self.piece(t) for t in context)
        prompt, _, answer = text.partition(PROMPT_TEXT)
        self.scores = wants(TARGETS[prompt[len(INSTRUCTIONS) :]])
        return super().logits(context)


class FakeSequences:
    """A `SequenceModel` over a :class:`PerRecordModel`; records what it was asked to do."""

    def __init__(
        self,
        model: PerRecordModel,
        width: int,
        cells: int = 10_000,
        fail_on_call: int | None = None,
        fail_on_start: int | None = None,
    ) -> None:
        self.model, self.width, self.cells = model, width, cells
        self.prefix: list[int] = []
        self.slots: dict[int, list[int] | None] = dict.fromkeys(range(width))
        self.shared: dict[int, int] = {}
        self.prefix_tokens_evaluated = 0
        self.batch_sizes: list[int] = []
        self.most_cells_used = 0
        self.fail_on_call, self.fail_on_start, self.starts, self.resets = fail_on_call, fail_on_start, 0, 0

    def tokenize(self, data: bytes) -> list[int]:
        return self.model.tokenize(data)

    def piece(self, token: int) -> bytes:
        return self.model.piece(token)

    def share_prefix(self, tokens: list[int]) -> None:
        common = 0
        while common < min(len(tokens), len(self.prefix)) and tokens[common] == self.prefix[common]:
            common += 1
        self.prefix_tokens_evaluated += len(tokens) - common
        self.prefix = list(tokens)

    def start(self, slot: int, prompt: list[int]) -> int:
        self.starts += 1
        if self.fail_on_start == self.starts:
            raise RuntimeError("seq_cp failed")
        shared = 0
        while shared < min(len(prompt) - 1, len(self.prefix)) and prompt[shared] == self.prefix[shared]:
            shared += 1
        self.slots[slot], self.shared[slot] = prompt[:shared], shared
        return shared

    def feed_many(self, items: list[tuple[int, list[int], int]]) -> list[np.ndarray]:
        self.batch_sizes.append(len(items))
        if self.fail_on_call == len(self.batch_sizes):
            raise RuntimeError("llama_decode returned 1")
        assert len({slot for slot, _, _ in items}) == len(items), "a slot twice in one batch"
        rows = []
        for slot, tokens, logits_from in items:
            context = self.slots[slot]
            assert context is not None, f"slot {slot} fed before start"
            start = len(context)
            context += tokens
            rows.append(
                np.stack([self.model.logits(context[: start + j + 1]) for j in range(logits_from, len(tokens))])
            )
        used = len(self.prefix) + sum(len(c) - self.shared[s] for s, c in self.slots.items() if c is not None)
        self.most_cells_used = max(self.most_cells_used, used)
        assert used <= self.cells, f"{used} cells in use, {self.cells} held"
        return rows

    def end(self, slot: int) -> None:
        self.slots[slot] = None

    def reset(self) -> None:
        self.prefix, self.resets = [], self.resets + 1
        self.slots = dict.fromkeys(range(self.width))


@pytest.fixture(scope="module")
def template() -> AnswerTemplate:
    return AnswerTemplate.from_schema(SCHEMA)


def prompts(model: PerRecordModel, records: list[bytes]) -> list[list[int]]:
    return [model.tokenize(INSTRUCTIONS + record) + model.tokenize(PROMPT_TEXT) for record in records]


def alone(template: AnswerTemplate, prompt: list[int], **kwargs: object) -> Decoded:
    model = PerRecordModel()
    return decode(model, prompt, template, **kwargs)  # type: ignore[arg-type]


def same(a: Decoded, b: Decoded) -> bool:
    return (a.text, a.tokens, a.output_tokens, a.finish_reason) == (b.text, b.tokens, b.output_tokens, b.finish_reason)


@pytest.mark.parametrize("width", [1, 2, 3, 7, 9])
def test_each_answer_is_the_one_decode_writes_alone(template: AnswerTemplate, width: int) -> None:
    model = PerRecordModel()
    records = list(TARGETS)
    sequences = FakeSequences(model, width)
    answers = decode_many(sequences, prompts(model, records), template, seeds=[0] * 7, top_alternatives=3)
    for record, prompt, answer in zip(records, prompts(model, records), answers, strict=True):
        assert isinstance(answer, Decoded)
        assert answer.text == TARGETS[record]
        expected = alone(template, prompt, top_alternatives=3)
        assert same(answer, expected)
        assert answer.alternatives == expected.alternatives
    assert max(sequences.batch_sizes) == min(width, 7)
    # the shared instructions are evaluated once, not once per record
    assert sequences.prefix_tokens_evaluated == len(model.tokenize(INSTRUCTIONS)) + 1  # + the common "r"


def test_batches_hold_several_records_so_there_are_fewer_forward_passes(template: AnswerTemplate) -> None:
    model = PerRecordModel()
    together = FakeSequences(model, 4)
    decode_many(together, prompts(model, list(TARGETS)), template, seeds=[0] * 7)
    one_by_one = FakeSequences(model, 1)
    decode_many(one_by_one, prompts(model, list(TARGETS)), template, seeds=[0] * 7)
    assert len(together.batch_sizes) < len(one_by_one.batch_sizes) / 2
    # a finished record's slot takes the next one at once: the batches stay full until the queue empties
    assert together.batch_sizes[:4] == [4, 4, 4, 4]


def test_sampled_answers_follow_each_prompts_own_seed(template: AnswerTemplate) -> None:
    model = PerRecordModel()
    seeds = [11, 12, 13, 14, 15, 16, 17]
    answers = decode_many(
        FakeSequences(model, 3), prompts(model, list(TARGETS)), template, seeds=seeds, temperature=1.5
    )
    for prompt, seed, answer in zip(prompts(model, list(TARGETS)), seeds, answers, strict=True):
        assert isinstance(answer, Decoded)
        assert same(answer, alone(template, prompt, temperature=1.5, seed=seed))


def test_a_sequence_starts_only_when_the_context_has_room_for_it(template: AnswerTemplate) -> None:
    model = PerRecordModel()
    batch = prompts(model, list(TARGETS))
    prefix = len(model.tokenize(INSTRUCTIONS)) + 1
    own = len(batch[0]) - prefix + 40  # each prompt's own tokens + max_tokens
    sequences = FakeSequences(model, 7, cells=prefix + 2 * own)
    answers = decode_many(sequences, batch, template, seeds=[0] * 7, max_tokens=40)
    assert max(sequences.batch_sizes) == 2
    assert [a.text for a in answers if isinstance(a, Decoded)] == list(TARGETS.values())


def test_a_failed_batch_fails_its_records_only_and_the_rest_go_on(template: AnswerTemplate) -> None:
    model = PerRecordModel()
    batch = prompts(model, list(TARGETS))
    sequences = FakeSequences(model, 3, fail_on_call=2)
    answers = decode_many(sequences, batch, template, seeds=[0] * 7)
    failed = [i for i, a in enumerate(answers) if isinstance(a, Exception)]
    assert failed == [0, 1, 2]  # the three in flight at the second batch
    assert all(str(answers[i]) == "llama_decode returned 1" for i in failed)
    assert sequences.resets == 1
    for prompt, answer in zip(batch[3:], answers[3:], strict=True):
        assert isinstance(answer, Decoded)
        assert same(answer, alone(template, prompt))


def test_cells_left_by_an_earlier_call_are_freed_first(template: AnswerTemplate) -> None:
    """One model, two calls (as the local backend makes one per batch): long records in every slot,
    then short ones in a context that has room for them only if the first call's finished
    sequences gave their cells back (the fake counts every slot's cells until `end`)."""
    model = PerRecordModel()
    long_records = [b"rA", b"rB", b"rC"]
    padded = {record + b"y" * 40: TARGETS[record] for record in long_records}
    TARGETS.update(padded)
    try:
        sequences = FakeSequences(model, 3)
        first = decode_many(sequences, prompts(model, list(padded)), template, seeds=[0] * 3, max_tokens=40)
    finally:
        for key in padded:
            del TARGETS[key]
    assert [a.text for a in first if isinstance(a, Decoded)] == [TARGETS[r] for r in long_records]
    short = prompts(model, [b"rD", b"rE"])
    prefix = len(model.tokenize(INSTRUCTIONS)) + 1
    sequences.cells = prefix + 2 * (len(short[0]) - prefix + 40)  # room for the two short ones only
    second = decode_many(sequences, short, template, seeds=[0] * 2, max_tokens=40)
    assert [a.text if isinstance(a, Decoded) else str(a) for a in second] == [TARGETS[b"rD"], TARGETS[b"rE"]]


def test_a_failed_start_fails_every_record_in_flight_not_just_its_own(template: AnswerTemplate) -> None:
    """Starting a sequence failed, so the model was reset: the records in flight lost their context
    and must fail too (decoding on would write answers from an empty context)."""
    model = PerRecordModel()
    batch = prompts(model, list(TARGETS))
    sequences = FakeSequences(model, 3, fail_on_start=3)  # the third start, two records in flight
    answers = decode_many(sequences, batch, template, seeds=[0] * 7)
    assert [i for i, a in enumerate(answers) if isinstance(a, Exception)] == [0, 1, 2]
    assert all(str(answers[i]) == "seq_cp failed" for i in range(3))
    for prompt, answer in zip(batch[3:], answers[3:], strict=True):
        assert isinstance(answer, Decoded)
        assert same(answer, alone(template, prompt))


def test_no_valid_token_is_that_records_error_not_a_raise(template: AnswerTemplate) -> None:
    model = PerRecordModel(digits=False)  # no digit in the vocabulary: no confidence can be written
    answers = decode_many(FakeSequences(model, 2), prompts(model, [b"rA", b"rB", b"rC"]), template, seeds=[0, 0, 0])
    assert [type(a) for a in answers] == [DecodingError] * 3


def test_one_seed_per_prompt() -> None:
    model = PerRecordModel()
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        decode_many(
            FakeSequences(model, 2),
            prompts(model, [b"rA", b"rB", b"rC"]),
            AnswerTemplate.from_schema(SCHEMA),
            seeds=[0, 1],
        )
