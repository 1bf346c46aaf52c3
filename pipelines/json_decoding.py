"""Constrained JSON decoding with jump-forward, for flat answer schemas.

A flat answer schema (an object whose properties are all required, in order, each an enum
string, an array of enum strings, a bounded number or a string) fixes every character of the
answer except the values: `{"label": "`, `", "confidence": ` and so on. Generating that scaffold
one forward pass per token wastes about half of a short answer's passes, so the decoder writes
the fixed text itself and feeds it to the model as one batch (a batch of a few tokens costs about
one pass on a memory-bound CPU). Where the model has a choice, candidate tokens are checked
against the schema from the most likely down, instead of masking the whole vocabulary each step.

Pure computation: :class:`AnswerTemplate` is a byte-level automaton over the answer, and
:func:`decode` drives any :class:`TokenModel` (the llama.cpp adapter lives in `pipelines.llms`).
Log-probs are the model's own (before the constraint), for sampled and fed-in tokens alike.

References: constrained decoding as an automaton walked alongside the model follows Willard & Louf
(2023), "Efficient Guided Generation for Large Language Models" (Outlines), here checked lazily per
candidate instead of precomputing a vocabulary index; writing the fixed text without sampling is
the "jump-forward" decoding of Zheng et al. (2024), "SGLang: Efficient Execution of Structured
Language Model Programs" (NeurIPS). The sampling chain is llama.cpp's default one: top-k (Fan,
Lewis & Dauphin 2018, "Hierarchical Neural Story Generation"), top-p (Holtzman et al. 2020, "The
Curious Case of Neural Text Degeneration"), min-p (Nguyen et al. 2025, "Turning Up the Heat: Min-p
Sampling for Creative and Coherent LLM Outputs", ICLR), then the temperature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

MAX_FRACTION_DIGITS = 6  # digits after the point; "0.99999..." would otherwise never have to stop
# Sampling as llama-cpp-python's defaults: top-k, then top-p and min-p; with greedy decoding
# TOP_K is only how many candidates are checked before scanning the whole vocabulary.
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05


class UnsupportedSchema(ValueError):
    """Raised by :meth:`AnswerTemplate.from_schema` for a schema that is not a flat answer object
    (the caller then decodes with a grammar instead)."""


class DecodingError(RuntimeError):
    """Raised by :func:`decode` when no token in the vocabulary continues a valid answer (a broken
    vocabulary or template; never for a model that merely prefers invalid tokens)."""


# ---------------------------------------------------------------------------------------------
# Parts of an answer: each is a small automaton over bytes. A state is an immutable value.


class AnswerPart(Protocol):
    """What every part of an answer (:class:`FixedText`, :class:`EnumString`, :class:`EnumArray`,
    :class:`Number`, :class:`String`) does; each part defines its own state type."""

    def start(self) -> Any:
        """The state before the part's first byte."""

    def step(self, state: Any, byte: int) -> Any | None:
        """The state after one more byte (an int in 0..255), or None if the part cannot take it."""

    def can_end(self, state: Any) -> bool:
        """Whether the part may stop at ``state`` (the next part then takes the next byte)."""

    def forced(self, state: Any) -> bytes:
        """The bytes every valid continuation of this part writes next (empty when there is a choice)."""


@dataclass(frozen=True)
class FixedText:
    """Fixed text (the JSON scaffold between values, e.g. ``", "confidence": ``).

    An :class:`AnswerPart`; state: the number of bytes of ``text`` written so far. (Named so as not
    to shadow ``typing.Literal``.)
    """

    text: bytes

    def start(self) -> int:
        """No byte of ``text`` written yet: 0."""
        return 0

    def step(self, state: int, byte: int) -> int | None:
        """One byte further if ``byte`` is ``text``'s next byte, else None."""
        return state + 1 if state < len(self.text) and self.text[state] == byte else None

    def can_end(self, state: int) -> bool:
        """Whether all of ``text`` is written."""
        return state == len(self.text)

    def forced(self, state: int) -> bytes:
        """The rest of ``text``: it has no choice."""
        return self.text[state:]


@dataclass(frozen=True)
class EnumString:
    """One of ``values`` (JSON-escaped UTF-8 bodies, the quotes belong to the fixed text around it).

    An :class:`AnswerPart`; state: the bytes of the value written so far.
    """

    values: tuple[bytes, ...]

    def start(self) -> bytes:
        """Nothing written yet: ``b""``."""
        return b""

    def step(self, state: bytes, byte: int) -> bytes | None:
        """The bytes written plus ``byte`` if some value still starts so, else None."""
        written = state + bytes([byte])
        return written if any(v.startswith(written) for v in self.values) else None

    def can_end(self, state: bytes) -> bool:
        """Whether the bytes written are a whole value."""
        return state in self.values

    def forced(self, state: bytes) -> bytes:
        """The rest of the value when only one value starts with what is written, else ``b""``."""
        rest = [v for v in self.values if v.startswith(state)]
        if len(rest) == 1:
            return rest[0][len(state) :]
        return b""


ArrayState = tuple[tuple[bytes, ...], bytes | None, str]  # see EnumArray


@dataclass(frozen=True)
class EnumArray:
    """``"a", "b"`` between the brackets (the brackets belong to the fixed text around it).

    At most ``max_items`` values, each one of ``values`` (JSON-escaped bodies), each at most once if
    ``unique``. An :class:`AnswerPart`; state: (chosen values, the value being written or None
    between values, phase), the phase being what comes next: ``item_or_end``, ``item``, ``value``,
    ``comma_or_end`` or ``space``.
    """

    values: tuple[bytes, ...]
    max_items: int
    unique: bool = True

    def start(self) -> ArrayState:
        """No value chosen, an item or the closing bracket next."""
        return ((), None, "item_or_end")

    def _open(self, chosen: tuple[bytes, ...]) -> list[bytes]:
        return [v for v in self.values if not (self.unique and v in chosen)]

    def step(self, state: ArrayState, byte: int) -> ArrayState | None:
        """The state after ``byte``: a quote opens or closes a value, ``, `` separates; None if invalid."""
        chosen, current, phase = state
        char = bytes([byte])
        if phase == "item_or_end" or phase == "item":
            if char == b'"' and len(chosen) < self.max_items and self._open(chosen):
                return (chosen, b"", "value")
            return None
        if phase == "value":
            assert current is not None
            if char == b'"' and current in self._open(chosen):
                return (chosen + (current,), None, "comma_or_end")
            written = current + char
            if any(v.startswith(written) for v in self._open(chosen)):
                return (chosen, written, "value")
            return None
        if phase == "comma_or_end":
            more = len(chosen) < self.max_items and self._open(chosen)
            return (chosen, None, "space") if char == b"," and more else None
        if phase == "space":
            return (chosen, None, "item") if char == b" " else None
        return None

    def can_end(self, state: ArrayState) -> bool:
        """Whether the array may close here (empty, or after a whole value)."""
        return state[2] in ("item_or_end", "comma_or_end")

    def forced(self, state: ArrayState) -> bytes:
        """The separator's space and quote, or the rest of the only value that fits, else ``b""``."""
        chosen, current, phase = state
        if phase == "space":
            return b' "'
        if phase == "item":
            return b'"'
        if phase == "value":
            assert current is not None
            rest = [v for v in self._open(chosen) if v.startswith(current)]
            if len(rest) == 1 and rest[0] != current:
                return rest[0][len(current) :] + b'"'
        return b""


@dataclass(frozen=True)
class Number:
    """A JSON number within ``[minimum, maximum]`` (either bound may be None), at most
    ``MAX_FRACTION_DIGITS`` digits after the point, no exponent. An :class:`AnswerPart`; state: the
    text written so far."""

    minimum: float | None = None
    maximum: float | None = None

    def start(self) -> str:
        """Nothing written yet: ``""``."""
        return ""

    def _shape_ok(self, text: str) -> bool:
        body = text[1:] if text.startswith("-") else text
        whole, _, fraction = body.partition(".")
        if not whole:
            return body == "" and len(text) <= 1
        if not whole.isdigit() or (len(whole) > 1 and whole[0] == "0"):
            return False
        if "." in body and fraction and not fraction.isdigit():
            return False
        return len(fraction) <= MAX_FRACTION_DIGITS

    def _reachable(self, text: str) -> tuple[float, float]:
        """The range of values a continuation of `text` can still reach."""
        if text in ("", "-"):
            return (-math.inf, 0.0) if text else (-math.inf, math.inf)
        negative = text.startswith("-")
        body = text[1:] if negative else text
        whole, dot, fraction = body.partition(".")
        base = float(f"{whole}.{fraction or '0'}")
        if dot:
            span = 10.0 ** -len(fraction)
        elif whole == "0":
            span = 1.0
        else:
            span = math.inf  # more digits may follow
        low, high = base, base + span
        return (-high, -low) if negative else (low, high)

    def step(self, state: str, byte: int) -> str | None:
        """The text plus ``byte`` if it is still a number's prefix that can end within the bounds."""
        char = chr(byte)
        if char not in "-.0123456789":
            return None
        text = state + char
        if not self._shape_ok(text):
            return None
        low, high = self._reachable(text)
        if self.maximum is not None and low > self.maximum:
            return None
        if self.minimum is not None and high < self.minimum:
            return None
        if self.minimum is not None and self.minimum >= 0 and text.startswith("-"):
            return None
        return text

    def can_end(self, state: str) -> bool:
        """Whether the text is a whole number within the bounds."""
        if not state or state.endswith((".", "-")):
            return False
        value = float(state)
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    def forced(self, state: str) -> bytes:
        """Always ``b""``: the model chooses every digit."""
        return b""


@dataclass(frozen=True)
class String:
    """The body of a JSON string (the closing quote belongs to the next fixed text).

    At most ``max_chars`` characters (Unicode code points; an escape such as ``\\n`` is one), no raw
    control character (RFC 8259). An :class:`AnswerPart`; state: (characters written, escape
    progress: 0 none, -1 after a backslash, n>0 hex digits of a \\u escape still due).
    """

    max_chars: int | None = None

    def start(self) -> tuple[int, int]:
        """No character written, no escape open: ``(0, 0)``."""
        return (0, 0)

    def step(self, state: tuple[int, int], byte: int) -> tuple[int, int] | None:
        """The state after ``byte``; None for a quote, a control byte, a bad escape or one character too many."""
        chars, escape = state
        if escape == -1:
            if byte == ord("u"):
                return (chars, 4)
            return (chars + 1, 0) if chr(byte) in '"\\/bfnrt' else None
        if escape > 0:
            if chr(byte) not in "0123456789abcdefABCDEF":
                return None
            return (chars + 1, 0) if escape == 1 else (chars, escape - 1)
        if byte == ord('"') or byte < 0x20:
            return None
        is_new_char = not 0x80 <= byte < 0xC0  # UTF-8 continuation bytes extend a character
        if is_new_char and self.max_chars is not None and chars >= self.max_chars:
            return None
        if byte == ord("\\"):
            return (chars, -1)
        return (chars + int(is_new_char), 0)

    def can_end(self, state: tuple[int, int]) -> bool:
        """Whether no escape is left open."""
        return state[1] == 0

    def forced(self, state: tuple[int, int]) -> bytes:
        """Always ``b""``: the model chooses the text."""
        return b""


Part = FixedText | EnumString | EnumArray | Number | String
State = tuple[int, Any]  # (index of the current part, that part's state)


@dataclass(frozen=True)
class AnswerTemplate:
    """The answer as a sequence of parts, read left to right: a deterministic automaton over bytes.

    Build it with :meth:`from_schema`. A state is an immutable ``(part index, part state)`` pair,
    so a caller may keep several (one per candidate token) without copying.
    """

    parts: tuple[Part, ...]

    @classmethod
    def from_schema(cls, schema: dict[str, Any], stop_before: str | None = None) -> AnswerTemplate:
        """Compile a flat answer schema (a JSON schema dict).

        Accepted: ``{"type": "object", "properties": {...}, "required": [every property, in
        order]}`` whose properties are each an enum string, a string (optional ``maxLength``), a
        number (optional ``minimum``/``maximum``) or an array of enum strings (optional
        ``maxItems``, ``uniqueItems``). The answer is the one ``json.dumps`` writes (``", "`` and
        ``": "`` separators, properties in order).

        ``stop_before``: the name of the schema's last property, whose value is then not generated:
        the answer ends ``"<name>": null}``, all of it fixed text after the previous value, so it is
        written without a forward pass. Everything before it is what the full schema's answer
        writes (the previous value still ends where the model would go on to this property; an
        answer compiled without the property would instead make the model close the object there).

        Raises:
            UnsupportedSchema: for anything else (nested objects, integers, optional properties), or
                a ``stop_before`` that is not the last property.
        """
        properties = schema.get("properties") if schema.get("type") == "object" else None
        if not properties:
            raise UnsupportedSchema("not an object schema with properties")
        if list(schema.get("required", [])) != list(properties):
            raise UnsupportedSchema("every property must be required, in order")
        if stop_before is not None and list(properties)[-1:] != [stop_before]:
            raise UnsupportedSchema(f"stop_before {stop_before!r} is not the schema's last property")
        parts: list[Part] = []
        prefix = "{"
        for i, (name, spec) in enumerate(properties.items()):
            prefix += ("" if i == 0 else ", ") + json.dumps(name) + ": "
            if name == stop_before:
                return cls((*parts, FixedText((prefix + "null}").encode())))
            kind = spec.get("type")
            if kind == "string" and "enum" in spec:
                parts += [FixedText((prefix + '"').encode()), EnumString(_escaped(spec["enum"]))]
                prefix = '"'
            elif kind == "string":
                parts += [FixedText((prefix + '"').encode()), String(spec.get("maxLength"))]
                prefix = '"'
            elif kind == "number":
                parts += [FixedText(prefix.encode()), Number(spec.get("minimum"), spec.get("maximum"))]
                prefix = ""
            elif kind == "array" and spec.get("items", {}).get("type") == "string" and "enum" in spec["items"]:
                values = _escaped(spec["items"]["enum"])
                max_items = int(spec.get("maxItems", len(values)))
                parts += [
                    FixedText((prefix + "[").encode()),
                    EnumArray(values, max_items, bool(spec.get("uniqueItems"))),
                ]
                prefix = "]"
            else:
                raise UnsupportedSchema(f"property {name!r}: {spec} is not an enum, number, string or enum array")
        parts.append(FixedText((prefix + "}").encode()))
        return cls(tuple(parts))

    def start(self) -> State:
        """The state before the answer's first byte."""
        return (0, self.parts[0].start())

    def advance(self, state: State, data: bytes) -> State | None:
        """The state after ``data`` (any number of bytes), or None if the answer cannot continue
        with it."""
        for byte in data:
            index, inner = state
            while True:
                part = self.parts[index]
                nxt = part.step(inner, byte)
                if nxt is not None:
                    state = (index, nxt)
                    break
                if not part.can_end(inner) or index + 1 == len(self.parts):
                    return None
                index, inner = index + 1, self.parts[index + 1].start()
        return state

    def is_complete(self, state: State) -> bool:
        """Whether the answer may end at ``state`` (the closing ``}`` is written)."""
        index, inner = state
        return index == len(self.parts) - 1 and self.parts[index].can_end(inner)

    def forced(self, state: State) -> bytes:
        """Bytes every valid answer writes next from `state` (may be empty)."""
        out = b""
        while not self.is_complete(state):
            index, inner = state
            part = self.parts[index]
            chunk = part.forced(inner)
            if not chunk:
                # a finished value whose part accepts nothing more: the next literal follows
                following = self.parts[index + 1]
                if part.can_end(inner) and isinstance(following, FixedText) and not _accepts_more(part, inner):
                    chunk = following.text
                else:
                    break
            nxt = self.advance(state, chunk)
            if nxt is None:
                break
            out, state = out + chunk, nxt
        return out


def _accepts_more(part: Part, state: Any) -> bool:
    return any(part.step(state, byte) is not None for byte in range(256))


def _escaped(values: list[str]) -> tuple[bytes, ...]:
    return tuple(json.dumps(v, ensure_ascii=False)[1:-1].encode() for v in values)


# ---------------------------------------------------------------------------------------------
# The decoding loop


class Vocabulary(Protocol):
    """A model's vocabulary as bytes: what choosing a token needs."""

    def tokenize(self, data: bytes) -> list[int]:
        """Tokens for `data` (no BOS, no special tokens)."""

    def piece(self, token: int) -> bytes:
        """The bytes a token writes (empty for control tokens)."""


class TokenModel(Vocabulary, Protocol):
    """What :func:`decode` needs from a language model: its vocabulary as bytes, and logits.

    The model keeps a context (the tokens fed so far); :meth:`feed` appends to it. Logits are the
    raw scores before any softmax, one row of ``n_vocab`` floats per position.
    """

    def feed(self, tokens: list[int], logits_from: int) -> np.ndarray:
        """Append `tokens` to the context; return the logits after each of `tokens[logits_from:]`,
        shape (len(tokens) - logits_from, n_vocab)."""

    @property
    def n_vocab(self) -> int:
        """The vocabulary size: the length of a logits row."""


@dataclass
class Decoded:
    """One answer written by :func:`decode`.

    Attributes:
        text: the answer (UTF-8, invalid bytes replaced; complete JSON when ``finish_reason`` is
            ``"stop"``).
        tokens: ``(piece, log-prob)`` for every token the model scored, in order: chosen tokens and
            fed-in fixed text alike; the log-prob (natural log) is the model's own, before the
            constraint. The closing tail, never fed, is not in it.
        alternatives: per entry of ``tokens``, the model's ``top_alternatives`` most likely tokens
            at that step as ``(piece, log-prob)`` before the constraint (OpenAI's
            ``top_logprobs``); empty for fed-in fixed text and when not asked for.
        output_tokens: all tokens of the answer, including that closing tail.
        finish_reason: ``"stop"`` (the answer is complete) or ``"length"`` (``max_tokens`` reached).
    """

    text: str
    tokens: list[tuple[bytes, float]]
    output_tokens: int
    finish_reason: Literal["stop", "length"]
    alternatives: list[list[tuple[bytes, float]]] = field(default_factory=list)


def _top_alternatives(model: Vocabulary, row: np.ndarray, k: int) -> list[tuple[bytes, float]]:
    top = np.argpartition(row, -k)[-k:]
    top = top[np.argsort(-row[top])]
    peak = float(row.max())
    log_norm = peak + math.log(float(np.exp(row - peak).sum()))
    return [(model.piece(int(t)), float(row[t]) - log_norm) for t in top]


def _log_softmax_at(row: np.ndarray, token: int) -> float:
    top = float(row.max())
    return float(row[token]) - top - math.log(float(np.exp(row - top).sum()))


def _choose(
    row: np.ndarray,
    template: AnswerTemplate,
    state: State,
    model: Vocabulary,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[int, State]:
    """The next token: greedy, or sampled among the top-k valid candidates at `temperature`."""

    def valid(token: int) -> State | None:
        data = model.piece(token)
        return template.advance(state, data) if data else None

    top = np.argpartition(row, -TOP_K)[-TOP_K:]
    top = top[np.argsort(-row[top])]
    if temperature <= 0:
        for token in top:
            nxt = valid(int(token))
            if nxt is not None:
                return int(token), nxt
    else:
        states = {int(t): valid(int(t)) for t in top}
        allowed = np.array([t for t, s in states.items() if s is not None])
        if len(allowed):
            # llama.cpp's default chain on the valid candidates: top-p, min-p (at temperature 1),
            # then the temperature
            logits = row[allowed].astype(np.float64)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()  # sorted descending, as `top` is
            keep = int(np.searchsorted(np.cumsum(probs), TOP_P)) + 1
            keep = min(keep, int((probs >= MIN_P * probs[0]).sum()))
            scaled = logits[:keep] / temperature
            weights = np.exp(scaled - scaled.max())
            token = int(rng.choice(allowed[:keep], p=weights / weights.sum()))
            return token, states[token]  # type: ignore[return-value]
    # Rare: none of the top-k is valid; walk the whole vocabulary from the most likely down.
    for token in np.argsort(-row):
        nxt = valid(int(token))
        if nxt is not None:
            return int(token), nxt
    raise DecodingError(f"no token continues the answer after state {state}")


class _AnswerWriter:
    """One answer being written: :func:`decode`'s loop for one sequence, one step at a time.

    :meth:`to_feed` says what the model must read next (None once the answer is done) and
    :meth:`take` consumes the logits of that read, so :func:`decode` drives one writer and
    :func:`decode_many` drives several whose reads go to the model together.
    """

    def __init__(
        self,
        model: Vocabulary,
        prompt: list[int],
        template: AnswerTemplate,
        *,
        prompt_cached: int,
        max_tokens: int,
        temperature: float,
        seed: int,
        top_alternatives: int,
    ) -> None:
        self._model, self._template = model, template
        self._max_tokens, self._temperature, self._top = max_tokens, temperature, top_alternatives
        self._rng = np.random.default_rng(seed)
        self._state = template.start()
        self._text = b""
        self._scored: list[tuple[bytes, float]] = []
        self._alternatives: list[list[tuple[bytes, float]]] = []
        self._count = 0
        self._pending = list(prompt[prompt_cached:])  # fed before the next choice
        self._forced: list[int] = []
        self._done = False
        if not self._pending:
            raise ValueError("decode needs at least one prompt token to feed (prompt_cached < len(prompt))")

    def to_feed(self) -> tuple[list[int], int] | None:
        """The tokens to append to this sequence's context and the index from which their logits
        are needed; None when the answer is complete (or ``max_tokens`` is reached)."""
        if self._done:
            return None
        model, template = self._model, self._template
        forced = (_tokens_for(model, template.forced(self._state)) or [])[: self._max_tokens - self._count]
        if forced:
            data = b"".join(model.piece(t) for t in forced)
            nxt = template.advance(self._state, data)
            assert nxt is not None, "forced text must continue the answer"
            self._state, self._text, self._count = nxt, self._text + data, self._count + len(forced)
        if template.is_complete(self._state) or self._count >= self._max_tokens:
            self._done = True
            return None
        self._forced = forced
        tokens = self._pending + forced
        return tokens, len(tokens) - len(forced) - 1

    def take(self, rows: np.ndarray) -> None:
        """Consume the logits asked for by the last :meth:`to_feed`: score the fed-in fixed text
        (``rows[j]`` scores ``forced[j]``) and choose the next token from the last row."""
        model = self._model
        for row, token in zip(rows, self._forced, strict=False):
            self._scored.append((model.piece(token), _log_softmax_at(row, token)))
            self._alternatives.append([])
        token, self._state = _choose(rows[-1], self._template, self._state, model, self._temperature, self._rng)
        self._scored.append((model.piece(token), _log_softmax_at(rows[-1], token)))
        top = _top_alternatives(model, rows[-1], self._top) if self._top > 0 else []
        self._alternatives.append(top)
        self._text, self._count = self._text + model.piece(token), self._count + 1
        self._pending = [token]
        if self._template.is_complete(self._state) or self._count >= self._max_tokens:
            self._done = True

    def result(self) -> Decoded:
        """The answer as written so far (complete once :meth:`to_feed` returned None)."""
        reason: Literal["stop", "length"] = "stop" if self._template.is_complete(self._state) else "length"
        return Decoded(self._text.decode("utf-8", "replace"), self._scored, self._count, reason, self._alternatives)


def decode(
    model: TokenModel,
    prompt: list[int],
    template: AnswerTemplate,
    *,
    prompt_cached: int = 0,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    top_alternatives: int = 0,
) -> Decoded:
    """Write one answer that matches ``template`` after ``prompt``.

    ``prompt_cached`` leading prompt tokens are already in the model's context (a shared prefix),
    so only the rest is fed. Fixed text is fed in one batch with the token chosen before it; the
    closing tail (``"}``) is written without a forward pass, since nothing follows it. Where the
    model has a choice, the top ``TOP_K`` candidates are checked against the template from the most
    likely down (greedy: the first valid one; ``temperature > 0``: llama.cpp's top-p, min-p and
    temperature chain over the valid ones, drawn with ``numpy.random.default_rng(seed)``); only if
    none is valid is the whole vocabulary walked. Control tokens (empty pieces) are never chosen.

    Args:
        model: the :class:`TokenModel`; its context must hold ``prompt[:prompt_cached]``.
        prompt: the prompt's token ids.
        template: the answer automaton (:meth:`AnswerTemplate.from_schema`).
        prompt_cached: how many leading prompt tokens the model already holds, ``< len(prompt)``.
        max_tokens: cap on the answer's tokens (forced ones included).
        temperature: 0 for greedy decoding.
        seed: seed of the sampling draws (unused when greedy).
        top_alternatives: how many of the most likely tokens to keep at each choice (0: none),
            in :attr:`Decoded.alternatives`; they give the label distribution at no extra pass.

    Returns:
        :class:`Decoded`.

    Raises:
        ValueError: ``prompt_cached >= len(prompt)`` (nothing to feed, so no logits to start from).
        DecodingError: no token in the vocabulary continues a valid answer.
    """
    writer = _AnswerWriter(
        model,
        prompt,
        template,
        prompt_cached=prompt_cached,
        max_tokens=max_tokens,
        temperature=temperature,
        seed=seed,
        top_alternatives=top_alternatives,
    )
    while (step := writer.to_feed()) is not None:
        writer.take(model.feed(*step))
    return writer.result()


class SequenceModel(Vocabulary, Protocol):
    """What :func:`decode_many` needs: a model context holding ``width`` sequences at once.

    Slots ``0 .. width - 1`` each hold one answer's sequence; a shared prefix is evaluated once
    and copied into a slot when its sequence starts (:meth:`start`).
    """

    @property
    def width(self) -> int:
        """How many sequences the context holds at once."""

    @property
    def cells(self) -> int:
        """How many tokens the context holds in all (the shared prefix once, plus every sequence's own)."""

    def share_prefix(self, tokens: list[int]) -> None:
        """Hold ``tokens`` as the prefix later sequences may start from (evaluated once)."""

    def start(self, slot: int, prompt: list[int]) -> int:
        """Empty ``slot`` and copy in the shared prefix's part of ``prompt``; return its length
        (``< len(prompt)``)."""

    def feed_many(self, items: list[tuple[int, list[int], int]]) -> list[np.ndarray]:
        """For each ``(slot, tokens, logits_from)``, append ``tokens`` to that slot's sequence, all
        in one batch; return per item the logits after each of ``tokens[logits_from:]``."""

    def end(self, slot: int) -> None:
        """Forget ``slot``'s sequence: its own cells are free again (the shared prefix stays)."""

    def reset(self) -> None:
        """Forget every sequence and the prefix (after a failed batch: the cache's content is unknown)."""


def decode_many(
    model: SequenceModel,
    prompts: list[list[int]],
    template: AnswerTemplate,
    *,
    seeds: list[int],
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_alternatives: int = 0,
) -> list[Decoded | Exception]:
    """Write one answer per prompt, ``model.width`` sequences decoded together.

    The same decoding as :func:`decode`, per prompt (``seeds[i]`` seeds prompt ``i``'s draws), but
    each step's reads of every sequence in flight go to the model as one batch: on a CPU a batch
    of a few tokens costs less than the same tokens one pass each. A finished sequence's slot
    takes the next prompt at once (continuous batching, as in Yu et al. 2022, "Orca: A Distributed
    Serving System for Transformer-Based Generative Models", OSDI) if the context has room for it:
    a sequence starts only when its own prompt tokens plus ``max_tokens`` fit beside the shared
    prefix and the room every sequence in flight may still take (a prompt waits otherwise, in
    order); a finished sequence's cells are freed at once (:meth:`SequenceModel.end`), and so are
    those an earlier call left. The prompts' longest common prefix is evaluated once and shared by
    every sequence. If the model fails (a batch, or starting a sequence), every sequence in flight
    fails with that error and the model is reset; the prompts still waiting go on. Answers may differ from
    :func:`decode`'s in the last digits of the logits (another batch shape, another summation
    order), hence rarely in a greedy choice between near-equal tokens.

    Args:
        model: the :class:`SequenceModel`.
        prompts: the prompts' token ids, each non-empty.
        template: the answer automaton.
        seeds: one sampling seed per prompt.
        max_tokens, temperature, top_alternatives: as in :func:`decode`.

    Returns:
        Per prompt, in order: its :class:`Decoded`, or the exception that stopped it
        (:class:`DecodingError`, or the model's error for every sequence of a failed batch).
    """
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    results: list[Decoded | Exception | None] = [None] * len(prompts)
    waiting = list(range(len(prompts)))[::-1]  # popped from the end: prompt order
    active: dict[int, tuple[int, _AnswerWriter]] = {}  # slot -> (prompt index, writer)
    reserved: dict[int, int] = {}  # slot -> the most cells its sequence may take
    prefix = _common_prefix(prompts)
    shared = False
    for slot in range(model.width):  # an earlier call's sequences still hold cells
        model.end(slot)

    def finish(slot: int, result: Decoded | Exception) -> None:
        results[active.pop(slot)[0]] = result
        model.end(slot)  # its cells are free for the next sequence

    def fail_all(error: Exception) -> None:
        # the model's cache is in an unknown state: every sequence in flight fails, then start afresh
        nonlocal shared
        for slot in list(active):
            finish(slot, error)
        model.reset()
        shared = False

    while waiting or active:
        for slot in range(model.width):
            if slot in active or not waiting:
                continue
            index = waiting[-1]
            own = len(prompts[index]) - min(len(prefix), len(prompts[index]) - 1) + max_tokens
            if active and len(prefix) + sum(reserved[s] for s in active) + own > model.cells:
                break  # no room until a sequence ends (alone, any prompt within n_ctx fits)
            waiting.pop()
            reserved[slot] = own
            try:
                if not shared:
                    model.share_prefix(prefix)
                    shared = True
                cached = model.start(slot, prompts[index])
                active[slot] = (index, _AnswerWriter(
                    model, prompts[index], template, prompt_cached=cached, max_tokens=max_tokens,
                    temperature=temperature, seed=seeds[index], top_alternatives=top_alternatives,
                ))  # fmt: skip
            except Exception as error:  # noqa: BLE001  (recorded per prompt, never raised mid-batch)
                results[index] = error
                fail_all(error)
                break
        steps: dict[int, tuple[list[int], int]] = {}
        for slot, (_, writer) in list(active.items()):
            step = writer.to_feed()
            if step is None:
                finish(slot, writer.result())
            else:
                steps[slot] = step
        if not steps:
            continue
        try:
            rows = model.feed_many([(slot, *step) for slot, step in steps.items()])
        except Exception as error:  # noqa: BLE001  (every sequence of the batch fails; the rest go on)
            fail_all(error)
            continue
        for slot, logits in zip(steps, rows, strict=True):
            try:
                active[slot][1].take(logits)
            except DecodingError as error:
                finish(slot, error)
    return [r if r is not None else RuntimeError("not decoded") for r in results]


def common_length(held: list[int], tokens: list[int]) -> int:
    """How many leading tokens ``held`` and ``tokens`` share."""
    common = 0
    for a, b in zip(held, tokens, strict=False):
        if a != b:
            break
        common += 1
    return common


def _common_prefix(prompts: list[list[int]]) -> list[int]:
    """The longest token prefix every prompt starts with."""
    if not prompts:
        return []
    length = len(prompts[0])
    for prompt in prompts[1:]:
        length = common_length(prompts[0][:length], prompt)
    return prompts[0][:length]


def _tokens_for(model: Vocabulary, data: bytes) -> list[int] | None:
    """Tokens that write exactly `data`, or None if its tokenisation does not round-trip
    (e.g. a UTF-8 character split by the previous token: then it is written token by token)."""
    if not data:
        return []
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    tokens = model.tokenize(data)
    return tokens if b"".join(model.piece(t) for t in tokens) == data else None
