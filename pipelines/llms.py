"""LLM backends as distilabel `LLM`s: one job each, same output shape.

* :class:`LocalLlamaLLM` (`local`): llama-cpp-python in process. A flat answer schema is decoded
  with jump-forward (`pipelines.json_decoding`: the fixed JSON scaffold is fed in one batch, only
  the values are sampled); any other schema is compiled to a llama.cpp grammar. Both record the
  tokens' log-probs (the model's own, before the constraint).
* :class:`OpenAICompatibleLLM` (`openai`): any OpenAI-compatible endpoint through the official
  async client: a concurrency limit, retries with exponential backoff on 429/5xx/timeouts (the
  client's own, honouring Retry-After), a per-request timeout.

Both return distilabel's ``GenerateOutput`` per input plus an ``errors`` list (one entry per
generation; None when the call succeeded) so a failed call never takes its batch down. Every call
is counted in :class:`CallStats` and charged to a :class:`Budget`.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlparse

import numpy as np
from distilabel.models.llms.base import LLM, AsyncLLM
from pydantic import Field, PrivateAttr

from labeltriage.config import Price
from labeltriage.errors import BackendError
from pipelines.json_decoding import common_length

BUDGET_EXHAUSTED = "budget_exhausted"
# A deterministic failure: the same prompt fails the same way, so it is neither retried nor asked
# again on a rerun (the runner caches it like any finished answer).
CONTEXT_OVERFLOW = "context_overflow"
CONNECTIONS_PER_CLIENT = 16
_LLAMA_LOCK = threading.Lock()


@dataclass
class CallStats:
    """Model calls actually sent to a backend (a cache hit is not a call)."""

    calls: int = 0
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getstate__(self) -> dict[str, Any]:  # picklable: distilabel copies steps to workers
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def record(self, input_tokens: int, output_tokens: int, failed: bool = False) -> None:
        """Count one call and its tokens (thread-safe); ``failed`` for a call that returned an error."""
        with self._lock:
            self.calls += 1
            self.failed_calls += int(failed)
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens


class Budget:
    """Dollar budget. A call reserves its worst case first (prompt + max_tokens), so the total
    never exceeds `max_cost`; the reservation is replaced by the real cost when the call ends."""

    def __init__(self, price: Price, max_cost: float | None = None, spent: float = 0.0) -> None:
        """``price`` in USD per 1M tokens; ``max_cost`` in USD (None: no limit); ``spent`` in USD so far."""
        self.price = price
        self.max_cost = max_cost
        self.spent = spent
        self.reserved = 0.0
        self.exhausted = False
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def estimate(self, prompt_chars: int, max_tokens: int) -> float:
        """Worst-case USD of one call: a prompt of ``prompt_chars`` characters, ``max_tokens`` out."""
        # ~4 characters per token in English; 3 over-estimates on purpose (+ chat template overhead).
        return self.price.cost(prompt_chars // 3 + 32, max_tokens)

    def reserve(self, amount: float) -> bool:
        """Set ``amount`` USD aside; False (and ``exhausted`` set) if it would pass ``max_cost``."""
        with self._lock:
            if self.max_cost is not None and self.spent + self.reserved + amount > self.max_cost:
                self.exhausted = True
                return False
            self.reserved += amount
            return True

    def settle(self, reserved: float, actual: float) -> None:
        """Replace a reservation of ``reserved`` USD by the call's ``actual`` USD."""
        with self._lock:
            self.reserved -= reserved
            self.spent += actual


def _output(text: str | None, tokens_in: int, tokens_out: int, logprobs: Any, error: str | None) -> dict:
    return {
        "generations": [text],
        "statistics": {"input_tokens": [tokens_in], "output_tokens": [tokens_out]},
        "logprobs": [logprobs or []],
        "errors": [error],
    }


def merge_generations(outputs: list[dict]) -> dict:
    """One distilabel ``GenerateOutput`` (plus ``errors``) from several, their lists concatenated in order."""
    merged: dict[str, Any] = {
        "generations": [],
        "statistics": {"input_tokens": [], "output_tokens": []},
        "logprobs": [],
        "errors": [],
    }
    for out in outputs:
        merged["generations"] += out["generations"]
        merged["statistics"]["input_tokens"] += out["statistics"]["input_tokens"]
        merged["statistics"]["output_tokens"] += out["statistics"]["output_tokens"]
        merged["logprobs"] += out["logprobs"]
        merged["errors"] += out["errors"]
    return merged


TOP_ALTERNATIVES = 20  # tokens kept per choice by the local backends: the label distribution


def _token_logprobs(
    tokens: list[tuple[bytes, float]], alternatives: list[list[tuple[bytes, float]]] | None = None
) -> list[list[dict[str, Any]]]:
    """(token bytes, log-prob) pairs in the OpenAI-like shape the pre-label step reads: one list
    per token, the chosen token first, then the alternatives at that step (``top_logprobs``)."""
    # latin-1 keeps one character per byte, so spans line up over multi-byte characters
    alternatives = alternatives or [[] for _ in tokens]
    return [
        [{"token": piece.decode("latin-1"), "logprob": logprob}]
        + [{"token": alt.decode("latin-1"), "logprob": alt_logprob} for alt, alt_logprob in others]
        for (piece, logprob), others in zip(tokens, alternatives, strict=True)
    ]


def _prompt_chars(messages: list[dict[str, str]]) -> int:
    return sum(len(m.get("content") or "") for m in messages)


class ChatTemplateError(BackendError, ValueError):
    """The chat template cannot be rendered with message contents kept as plain text."""


def chat_formatter(llama: Any, model_path: str = "") -> Any:
    """The Jinja2 formatter llama-cpp-python builds from the GGUF's own chat template.

    Raises ModelNotAvailable when the GGUF has no ``tokenizer.chat_template``."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from pipelines.models import ModelNotAvailable

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ModelNotAvailable(
            f"{model_path or 'the model'} has no chat template (tokenizer.chat_template). "
            "Fix: use a GGUF converted with its chat template (any recent instruct model)"
        )
    model = llama._model
    eos, bos = llama.token_eos(), llama.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )


def chat_prompt_tokens(llama: Any, formatter: Any, messages: list[dict[str, str]]) -> list[int]:
    """Render `messages` with the chat template and tokenise: the template's own text with special
    tokens parsed (turn markers), every message's content as plain text (never a control token).

    Tokenising the whole rendered prompt with special tokens on, as llama-cpp-python's chat
    handler does, turns a record ending in ``<|im_end|>\n<|im_start|>assistant ...`` into real
    turn markers: a forged answer. Here each content is rendered as a unique placeholder, the
    rendered prompt is split at the placeholders, and the pieces are tokenised apart.

    Raises ChatTemplateError when the template drops, repeats or rewrites a content (then the
    split would not be faithful)."""
    nonce = secrets.token_hex(8)
    marks = [f"\ue000{nonce}:{i}\ue001" for i in range(len(messages))]
    formatted = formatter(messages=[{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)])
    parts = re.split(f"\ue000{nonce}:(\\d+)\ue001", formatted.prompt)
    order = [int(i) for i in parts[1::2]]
    if order != list(range(len(messages))):
        raise ChatTemplateError(
            f"the chat template placed message contents {order}, expected each once in order. "
            "Fix: use a model whose chat template renders every message's content as is"
        )
    tokens: list[int] = []
    for index, part in enumerate(parts):
        if index % 2:  # a message's content: data, no special tokens
            content = messages[int(part)].get("content") or ""
            tokens += llama.tokenize(content.encode("utf-8"), add_bos=False, special=False)
        elif part or index == 0:  # the template's text (the first piece carries the BOS, if any)
            bos = index == 0 and not formatted.added_special
            tokens += llama.tokenize(part.encode("utf-8"), add_bos=bos, special=True)
    return tokens


class _Accounting:
    """Mixin: call statistics and budget shared with the runner."""

    price: Price

    def attach(self, stats: CallStats, budget: Budget) -> None:
        self._stats = stats
        self._budget = budget

    @property
    def stats(self) -> CallStats:
        return self._stats

    @property
    def budget(self) -> Budget:
        return self._budget


class _LogprobRecorder:
    """A llama.cpp logits processor that keeps the log-prob of every sampled token.

    It runs first in the sampler chain, i.e. on the raw logits before the grammar masks them.
    At step t it sees the token chosen at step t-1 (last input id) and the logits of step t.
    """

    def __init__(self, top_alternatives: int = 0) -> None:
        self.previous: np.ndarray | None = None
        self.tokens: list[tuple[int, float]] = []
        self.top_alternatives = top_alternatives
        self.alternatives: list[list[tuple[int, float]]] = []  # per token: the top ids at that step

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self.previous is not None:
            chosen = int(input_ids[-1])
            prev = self.previous
            top = float(prev.max())
            log_norm = top + float(np.log(np.exp(prev - top).sum()))
            self.tokens.append((chosen, float(prev[chosen]) - log_norm))
            best: list[tuple[int, float]] = []
            if self.top_alternatives > 0:
                ids = np.argpartition(prev, -self.top_alternatives)[-self.top_alternatives :]
                best = [(int(t), float(prev[t]) - log_norm) for t in ids[np.argsort(-prev[ids])]]
            self.alternatives.append(best)
        self.previous = np.array(logits, dtype=np.float32, copy=True)
        return logits


class _LlamaContextTokens:
    """A llama.cpp context as a `json_decoding.TokenModel`.

    It remembers which tokens are in the KV cache, so the next prompt only feeds what differs
    from the last one (the instructions and few-shot turns are a shared prefix).
    """

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self._in_context: list[int] = []
        self._pieces: dict[int, bytes] = {}
        self.n_vocab = int(llama.n_vocab())

    def tokenize(self, data: bytes) -> list[int]:
        return self._llama.tokenize(data, add_bos=False, special=False)

    def piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._llama.detokenize([token])
        return piece

    def reuse_prefix(self, prompt: list[int]) -> int:
        """Drop the cached tokens after the longest common prefix with `prompt` (keeping at least
        one prompt token to feed, whose logits start the answer); return that prefix's length."""
        common = min(common_length(self._in_context, prompt), len(prompt) - 1)
        self._llama._ctx.kv_cache_seq_rm(-1, common, -1)
        del self._in_context[common:]
        self._llama.n_tokens = 0  # llama-cpp-python's own bookkeeping no longer matches the cache
        return common

    def feed(self, tokens: list[int], logits_from: int) -> np.ndarray:
        import llama_cpp

        llama, rows = self._llama, []
        batch = llama._batch.batch
        for start in range(0, len(tokens), llama.n_batch):
            chunk = tokens[start : start + llama.n_batch]
            n_past = len(self._in_context)
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = n_past + i
                batch.seq_id[i][0] = 0
                batch.n_seq_id[i] = 1
                batch.logits[i] = start + i >= logits_from
            try:
                llama._ctx.decode(llama._batch)
            except Exception:  # the cache's content is unknown now: start the next prompt from scratch
                llama._ctx.kv_cache_clear()
                self._in_context = []
                raise
            self._in_context += chunk
            for i in range(len(chunk)):
                if start + i >= logits_from:
                    pointer = llama_cpp.llama_get_logits_ith(llama._ctx.ctx, i)
                    rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy())
        return np.stack(rows)


class _LlamaSequences:
    """A second llama.cpp context on the same model holding ``width`` sequences at once: a
    `json_decoding.SequenceModel`.

    The KV cache is unified (one pool of ``cells`` for every sequence: ``2 * n_ctx``, so any one
    prompt within ``n_ctx`` fits beside the shared prefix, and `decode_many` starts a sequence
    only when its tokens fit); the shared prefix lives in an extra sequence (id ``width``) and is
    copied into a slot by reference (llama.cpp's ``seq_cp`` on a unified cache adds a sequence id
    to the same cells: no copy, no recompute).
    """

    def __init__(self, tokens: _LlamaContextTokens, width: int, n_ctx: int, n_threads: int) -> None:
        import llama_cpp
        from llama_cpp import _internals

        llama = tokens._llama
        self.width, self.cells = width, 2 * n_ctx
        self._llama, self._vocabulary = llama, tokens  # the first context's tokenizer and piece cache
        self._prefix_id = width
        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llama.context_params  # the first context's settings (attention kind, KV types)
        params.n_ctx = self.cells
        params.n_seq_max = width + 1
        params.kv_unified = True
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        self._ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._batch = _internals.LlamaBatch(n_tokens=llama.n_batch, embd=0, n_seq_max=width + 1, verbose=False)
        self._prefix: list[int] = []
        self._lengths = [0] * (width + 1)

    def tokenize(self, data: bytes) -> list[int]:
        return self._vocabulary.tokenize(data)

    def piece(self, token: int) -> bytes:
        return self._vocabulary.piece(token)

    def share_prefix(self, tokens: list[int]) -> None:
        common = common_length(self._prefix, tokens)
        self._ctx.kv_cache_seq_rm(self._prefix_id, common, -1)
        self._prefix, self._lengths[self._prefix_id] = self._prefix[:common], common
        if len(tokens) > common:
            self.feed_many([(self._prefix_id, tokens[common:], len(tokens) - common)])
            self._prefix = list(tokens)

    def start(self, slot: int, prompt: list[int]) -> int:
        shared = min(common_length(self._prefix, prompt), len(prompt) - 1)
        self._ctx.kv_cache_seq_rm(slot, -1, -1)
        if shared:
            self._ctx.kv_cache_seq_cp(self._prefix_id, slot, 0, shared)
        self._lengths[slot] = shared
        return shared

    def feed_many(self, items: list[tuple[int, list[int], int]]) -> list[np.ndarray]:
        import llama_cpp

        entries = [  # (row of items, slot, token, position, wants logits)
            (row, slot, token, self._lengths[slot] + j, j >= logits_from)
            for row, (slot, tokens, logits_from) in enumerate(items)
            for j, token in enumerate(tokens)
        ]
        rows: list[list[np.ndarray]] = [[] for _ in items]
        batch, n_vocab = self._batch.batch, int(self._llama.n_vocab())
        for start in range(0, len(entries), self._llama.n_batch):
            chunk = entries[start : start + self._llama.n_batch]
            batch.n_tokens = len(chunk)
            for i, (_, slot, token, position, wants) in enumerate(chunk):
                batch.token[i], batch.pos[i], batch.logits[i] = token, position, wants
                batch.seq_id[i][0], batch.n_seq_id[i] = slot, 1
            self._ctx.decode(self._batch)
            for i, (row, _, _, _, wants) in enumerate(chunk):
                if wants:
                    pointer = llama_cpp.llama_get_logits_ith(self._ctx.ctx, i)
                    rows[row].append(np.ctypeslib.as_array(pointer, shape=(n_vocab,)).copy())
        for slot, tokens, _ in items:
            self._lengths[slot] += len(tokens)
        return [np.stack(r) if r else np.empty((0, n_vocab), np.float32) for r in rows]

    def end(self, slot: int) -> None:
        self._ctx.kv_cache_seq_rm(slot, -1, -1)
        self._lengths[slot] = 0

    def reset(self) -> None:
        self._ctx.kv_cache_clear()
        self._prefix, self._lengths = [], [0] * (self.width + 1)

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()


class LocalLlamaLLM(_Accounting, LLM):
    """llama-cpp-python in process: jump-forward JSON decoding (or a grammar), token log-probs."""

    model_path: str
    model_id: str
    response_schema: dict[str, Any] | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    want_logprobs: bool = True
    # jump_forward: flat answer schemas only (others fall back to the grammar); grammar: always
    # llama.cpp's own sampler with the schema as a grammar (the reference the benchmark compares to).
    decoding: Literal["jump_forward", "grammar"] = "jump_forward"
    # jump-forward only: records decoded together in a second llama.cpp context (1: one at a time)
    parallel: int = 1
    price: Price = Price()
    # the schema's last property left out of the answer (model.generation.reasoning): jump-forward
    # stops there (written as null, same tokens before it); the grammar path drops it from the grammar
    stop_before: str | None = None

    _llama: Any = PrivateAttr(None)
    _template: Any = PrivateAttr(None)
    _tokens: Any = PrivateAttr(None)
    _sequences: Any = PrivateAttr(None)
    _width: int = PrivateAttr(1)  # records decoded together since the last load (kept after unload)
    _chat_formatter: Any = PrivateAttr(None)
    _formatter_of: Any = PrivateAttr(None)
    _vocab: Any = PrivateAttr(None)
    _stats: CallStats = PrivateAttr(default_factory=CallStats)
    _budget: Budget = PrivateAttr(default_factory=lambda: Budget(Price()))

    def load(self) -> None:
        """Load the GGUF with llama.cpp (once) and compile the answer schema for jump-forward decoding.

        Raises ``ImportError`` when llama-cpp-python is missing, llama.cpp's own ``ValueError`` when
        the file is not a loadable model.
        """
        super().load()
        if self._llama is not None:
            return
        Llama = import_llama()

        n_threads = self.n_threads or max(1, os.cpu_count() or 1)
        self._width = 1
        self._llama = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=n_threads, seed=0, verbose=False)
        self._template = self._tokens = self._sequences = None
        self._chat_formatter, self._formatter_of = chat_formatter(self._llama, self.model_path), self._llama
        if self.decoding == "jump_forward" and self.response_schema is not None:
            from pipelines.json_decoding import AnswerTemplate, UnsupportedSchema

            try:
                self._template = AnswerTemplate.from_schema(self.response_schema, stop_before=self.stop_before)
            except UnsupportedSchema:
                return
            self._tokens = _LlamaContextTokens(self._llama)
            if self.parallel > 1:
                self._sequences = _LlamaSequences(self._tokens, self.parallel, self.n_ctx, n_threads)
                self._width = self.parallel

    def _grammar_schema(self) -> dict[str, Any]:
        """``response_schema`` without the ``stop_before`` property."""
        schema = dict(self.response_schema or {})
        if self.stop_before is not None and self.stop_before in schema.get("properties", {}):
            schema["properties"] = {k: v for k, v in schema["properties"].items() if k != self.stop_before}
            schema["required"] = [k for k in schema.get("required", []) if k != self.stop_before]
        return schema

    def _tokenizer(self) -> Any:
        """The loaded model, or (before `load`) the GGUF's vocabulary only: enough to tokenise."""
        if self._llama is not None:
            return self._llama
        if self._vocab is None:
            Llama = import_llama()
            from llama_cpp._utils import suppress_stdout_stderr

            with suppress_stdout_stderr(disable=False):  # a vocab-only context warns about n_ctx_train 0
                self._vocab = Llama(model_path=self.model_path, vocab_only=True, verbose=False)
        return self._vocab

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat prompt for `messages` as token ids, exactly as it is decoded (see
        :func:`chat_prompt_tokens`: message contents never become control tokens).

        Raises ModelNotAvailable when the GGUF has no chat template."""
        llama = self._tokenizer()
        if self._chat_formatter is None or self._formatter_of is not llama:
            self._chat_formatter, self._formatter_of = chat_formatter(llama, self.model_path), llama
        return chat_prompt_tokens(llama, self._chat_formatter, messages)

    def text_pieces(self, text: str) -> list[bytes]:
        """`text` as the model's tokens (their bytes, in order): the unit of the token budget."""
        llama = self._tokenizer()
        ids = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        return [llama.detokenize([i]) for i in ids]

    def unload(self) -> None:
        """Free the model and its vocabulary-only copy; ``load`` may be called again."""
        if self._sequences is not None:
            self._sequences.close()
            self._sequences = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None
            self._template = self._tokens = self._chat_formatter = self._formatter_of = None
        if self._vocab is not None:
            self._vocab.close()
            self._vocab = None

    @property
    def model_name(self) -> str:
        """The model's name as the config gives it (``model.name``)."""
        return self.model_id

    @property
    def decoding_width(self) -> int:
        """How many records the last load decoded together: ``parallel`` on the jump-forward path,
        else 1 (the grammar path decodes one at a time); still known after ``unload``."""
        return self._width

    def generate(  # type: ignore[override]
        self,
        inputs: list[list[dict[str, str]]],
        num_generations: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 128,
        seed: int = 0,
    ) -> list[dict]:
        """One ``GenerateOutput`` (plus ``errors``) per chat in ``inputs``, ``num_generations`` answers
        each (seeds ``seed``, ``seed + 1``, ...); a failed answer is None with its error, never raised.
        With ``parallel > 1`` (jump-forward) the answers are decoded together (:meth:`_generate_together`)."""
        if self._sequences is not None and self._template is not None:
            return self._generate_together(inputs, num_generations, temperature, max_tokens, seed)
        results = []
        for messages in inputs:
            outs = [self._one(messages, temperature, max_tokens, seed + g) for g in range(num_generations)]
            results.append(merge_generations(outs))
        return results

    def _generate_together(
        self, inputs: list[list[dict[str, str]]], num_generations: int, temperature: float, max_tokens: int, seed: int
    ) -> list[dict]:
        """`generate` with every answer of the call decoded ``parallel`` at a time
        (`json_decoding.decode_many`); budget, overflow and failures per answer as `_one`."""
        from pipelines.json_decoding import decode_many

        outputs: list[list[dict]] = [[] for _ in inputs]
        jobs: list[tuple[int, int, list[int], float]] = []  # (input, generation, prompt, estimate)
        for i, messages in enumerate(inputs):
            for g in range(num_generations):
                estimate = self.budget.estimate(_prompt_chars(messages), max_tokens)
                if not self.budget.reserve(estimate):
                    outputs[i].append(_output(None, 0, 0, None, BUDGET_EXHAUSTED))
                    continue
                prompt = chat_prompt_tokens(self._llama, self._chat_formatter, messages)
                if len(prompt) + max_tokens > self.n_ctx:
                    outputs[i].append(self._overflow(estimate, len(prompt), max_tokens))
                    continue
                outputs[i].append({})  # filled below
                jobs.append((i, g, prompt, estimate))
        with _LLAMA_LOCK:  # one model: calls are serialised
            answers = decode_many(
                self._sequences,
                [prompt for _, _, prompt, _ in jobs],
                self._template,
                seeds=[seed + g for _, g, _, _ in jobs],
                max_tokens=max_tokens,
                temperature=temperature,
                top_alternatives=TOP_ALTERNATIVES if self.want_logprobs else 0,
            )
        for (i, g, prompt, estimate), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, Exception):
                outputs[i][g] = self._failed(estimate, answer)
            else:
                outputs[i][g] = self._answered(estimate, len(prompt), answer)
        return [merge_generations(outs) for outs in outputs]

    def _answered(self, estimate: float, prompt_tokens: int, answer: Any) -> dict:
        self.budget.settle(estimate, self.price.cost(prompt_tokens, answer.output_tokens))
        self.stats.record(prompt_tokens, answer.output_tokens)
        logprobs = _token_logprobs(answer.tokens, answer.alternatives) if self.want_logprobs else None
        return _output(answer.text, prompt_tokens, answer.output_tokens, logprobs, None)

    def _one(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int) -> dict:
        estimate = self.budget.estimate(_prompt_chars(messages), max_tokens)
        if not self.budget.reserve(estimate):
            return _output(None, 0, 0, None, BUDGET_EXHAUSTED)
        if self._template is not None:
            return self._one_jump_forward(messages, temperature, max_tokens, seed, estimate)
        return self._one_grammar(messages, temperature, max_tokens, seed, estimate)

    def _overflow(self, estimate: float, prompt_tokens: int, max_tokens: int) -> dict:
        # Deterministic: the runner fits the text to the budget, so this means a prompt that is
        # too long without any text (or a budget computed for other settings).
        self.budget.settle(estimate, 0.0)
        self.stats.record(0, 0, failed=True)
        message = (
            f"{CONTEXT_OVERFLOW}: prompt ({prompt_tokens} tokens) + max_tokens ({max_tokens}) exceed n_ctx "
            f"({self.n_ctx}). Fix: raise model.generation.n_ctx or lower max_text_chars"
        )
        return _output(None, 0, 0, None, message)

    def _failed(self, estimate: float, error: Exception) -> dict:
        self.budget.settle(estimate, 0.0)
        self.stats.record(0, 0, failed=True)
        return _output(None, 0, 0, None, f"backend_error: {type(error).__name__}: {error}")

    def _one_jump_forward(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int, estimate: float
    ) -> dict:
        from pipelines.json_decoding import decode

        prompt = chat_prompt_tokens(self._llama, self._chat_formatter, messages)
        if len(prompt) + max_tokens > self.n_ctx:
            return self._overflow(estimate, len(prompt), max_tokens)
        try:
            with _LLAMA_LOCK:  # one llama context: calls are serialised
                cached = self._tokens.reuse_prefix(prompt)
                answer = decode(
                    self._tokens,
                    prompt,
                    self._template,
                    prompt_cached=cached,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    top_alternatives=TOP_ALTERNATIVES if self.want_logprobs else 0,
                )
        except Exception as error:  # a backend failure is recorded, never raised mid-batch
            return self._failed(estimate, error)
        return self._answered(estimate, len(prompt), answer)

    def _one_grammar(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int, estimate: float
    ) -> dict:
        from llama_cpp import LlamaGrammar, LogitsProcessorList

        recorder = _LogprobRecorder(TOP_ALTERNATIVES) if self.want_logprobs else None
        formatted = self._chat_formatter(messages=messages)
        prompt = chat_prompt_tokens(self._llama, self._chat_formatter, messages)
        if len(prompt) + max_tokens > self.n_ctx:
            return self._overflow(estimate, len(prompt), max_tokens)
        # llama-cpp-python's chat handler, minus its tokenisation (it parses special tokens in the
        # whole rendered prompt, record text included): same sampler settings, stops and grammar.
        kwargs: dict[str, Any] = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
        if self.response_schema is not None:
            kwargs["grammar"] = LlamaGrammar.from_json_schema(json.dumps(self._grammar_schema()), verbose=False)
        if recorder is not None:
            kwargs["logits_processor"] = LogitsProcessorList([recorder])
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        try:
            with _LLAMA_LOCK:  # one llama context: calls are serialised
                response = self._llama.create_completion(
                    prompt=prompt,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=seed,
                    stop=stop,
                    stopping_criteria=formatted.stopping_criteria,
                    **kwargs,
                )
        except Exception as error:  # a backend failure is recorded, never raised mid-batch
            return self._failed(estimate, error)
        usage = response.get("usage") or {}
        tokens_in, tokens_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
        self.budget.settle(estimate, self.price.cost(tokens_in, tokens_out))
        self.stats.record(tokens_in, tokens_out)
        text = response["choices"][0]["text"]
        logprobs = None
        if recorder is not None:
            piece = self._llama.detokenize
            logprobs = _token_logprobs(
                [(piece([tid]), lp) for tid, lp in recorder.tokens],
                [[(piece([tid]), lp) for tid, lp in best] for best in recorder.alternatives],
            )
        return _output(text, tokens_in, tokens_out, logprobs, None)


# How OpenAI, vLLM, llama.cpp's server and Ollama word a prompt longer than the context window.
_CONTEXT_MESSAGE = re.compile(
    r"context[_ ]length|context window|maximum context|exceeds? the (?:available )?context|n_ctx|"
    r"too many tokens|prompt is too long|input is too long",
    re.IGNORECASE,
)

StructuredOutput = Literal["auto", "json_object_schema", "json_schema", "json_object", "none"]


class OpenAICompatibleLLM(_Accounting, AsyncLLM):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, Ollama)."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    max_retries: int = 3
    timeout_s: float = 60.0
    response_schema: dict[str, Any] | None = None
    structured_output_mode: StructuredOutput = "auto"
    want_logprobs: bool = True
    top_logprobs: int = Field(default=0, ge=0, le=20)  # alternatives per token (OpenAI allows 0-20)
    price: Price = Price()

    _client: Any = PrivateAttr(None)
    _clients: list[Any] = PrivateAttr(default_factory=list)
    _turn: int = PrivateAttr(0)
    _semaphore: asyncio.Semaphore | None = PrivateAttr(None)
    _logprobs_supported: bool = PrivateAttr(True)
    _stats: CallStats = PrivateAttr(default_factory=CallStats)
    _budget: Budget = PrivateAttr(default_factory=lambda: Budget(Price()))

    @property
    def model_name(self) -> str:
        """The model name sent to the endpoint."""
        return self.model

    def _is_local(self) -> bool:
        host = urlparse(self.base_url or "").hostname or ""
        return host in {"127.0.0.1", "localhost", "::1"}

    def api_key(self) -> str:
        """The key from ``$api_key_env``; a placeholder for a server on this machine.

        Raises :class:`BackendError` when the variable is unset and the endpoint is not local.
        """
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        if self._is_local():
            return "sk-local-no-key"  # local servers ignore it
        raise BackendError(
            f"environment variable {self.api_key_env} is not set. Fix: export {self.api_key_env}=<your key> "
            "(the variable is named by model.api_key_env in the task config)"
        )

    def load(self) -> None:
        """Create the async clients (one per 16 concurrent requests); raises :class:`BackendError` without a key."""
        super().load()
        # Several small clients instead of one big pool: httpcore's pool does O(connections x
        # waiting requests) work per event, which dominates the CPU at high concurrency.
        import ssl

        from openai import AsyncOpenAI, DefaultAsyncHttpxClient

        shards = max(1, -(-self.concurrency // CONNECTIONS_PER_CLIENT))
        https = (self.base_url or "https://").startswith("https")
        # one TLS context for all shards (loading the CA store costs ~50 ms per client)
        verify: Any = ssl.create_default_context() if https else False
        self._clients = [
            AsyncOpenAI(
                api_key=self.api_key(),
                base_url=self.base_url,
                max_retries=self.max_retries,
                timeout=self.timeout_s,
                http_client=DefaultAsyncHttpxClient(verify=verify),
            )
            for _ in range(shards)
        ]
        self._client = self._clients[0]

    def unload(self) -> None:
        """Close the clients (when the event loop allows) and forget the concurrency limit."""
        clients, self._clients, self._client = self._clients, [], None
        loop = self.event_loop
        if clients and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(asyncio.gather(*(c.close() for c in clients)))
        self._semaphore = None

    def _response_format(self) -> dict[str, Any] | None:
        if self.response_schema is None or self.structured_output_mode == "none":
            return None
        mode = self.structured_output_mode
        if mode == "auto":
            host = urlparse(self.base_url or "https://api.openai.com").hostname or ""
            mode = "json_schema" if host.endswith("openai.com") else "json_object_schema"
        if mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": "prelabel", "schema": _strict_schema(self.response_schema)},
            }
        if mode == "json_object":
            return {"type": "json_object"}
        return {"type": "json_object", "schema": self.response_schema}  # llama.cpp server, vLLM

    async def agenerate(  # type: ignore[override]
        self,
        input: list[dict[str, str]],
        num_generations: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 128,
        seed: int = 0,
    ) -> dict:
        """One ``GenerateOutput`` (plus ``errors``) for the chat ``input``, ``num_generations`` answers
        (seeds ``seed``, ``seed + 1``, ...) at most ``concurrency`` in flight; errors are returned, not raised."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        outs = await asyncio.gather(
            *[self._one(input, temperature, max_tokens, seed + g) for g in range(num_generations)]
        )
        return merge_generations(list(outs))

    async def _one(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int) -> dict:
        import openai

        estimate = self.budget.estimate(_prompt_chars(messages), max_tokens)
        if not self.budget.reserve(estimate):
            return _output(None, 0, 0, None, BUDGET_EXHAUSTED)
        # The body is plain JSON already; it goes in `extra_body` (merged over the typed fields)
        # so the client does not walk it through its typed transform: that walk was ~15% of the
        # client's CPU at high concurrency.
        extra: dict[str, Any] = {"messages": messages}
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [],
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": seed,
            "extra_body": extra,
        }
        response_format = self._response_format()
        if response_format is not None:
            # via extra_body: sent as is (the client's typed transform walks the whole schema)
            extra["response_format"] = response_format
        if self.want_logprobs and self._logprobs_supported:
            extra["logprobs"] = True
            if self.top_logprobs > 0:
                extra["top_logprobs"] = self.top_logprobs  # the label distribution at the label's first token
        assert self._semaphore is not None
        async with self._semaphore:
            self._turn = (self._turn + 1) % len(self._clients)
            client = self._clients[self._turn]
            try:
                try:
                    response = await client.chat.completions.create(**request)
                except (openai.BadRequestError, openai.UnprocessableEntityError) as refused:
                    if "logprobs" not in extra or _CONTEXT_MESSAGE.search(str(refused)):
                        raise  # a prompt over the window is refused with or without log-probs
                    # a server that refuses the logprobs option (e.g. llama.cpp without --logits_all):
                    # ask once more without it; only a success proves the option was the cause
                    extra.pop("logprobs")
                    extra.pop("top_logprobs", None)
                    response = await client.chat.completions.create(**request)
                    self._logprobs_supported = False
            except Exception as error:
                self.budget.settle(estimate, 0.0)
                self.stats.record(0, 0, failed=True)
                if isinstance(error, openai.BadRequestError) and _CONTEXT_MESSAGE.search(str(error)):
                    message = (
                        f"{CONTEXT_OVERFLOW}: the server refused the prompt as too long ({error}). Fix: set "
                        "model.generation.n_ctx to the server's context size (texts are then cut to fit)"
                    )
                    return _output(None, 0, 0, None, message[:500])
                return _output(None, 0, 0, None, f"backend_error: {type(error).__name__}: {error}"[:500])
        usage = response.usage
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        self.budget.settle(estimate, self.price.cost(tokens_in, tokens_out))
        self.stats.record(tokens_in, tokens_out)
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice is not None and choice.message is not None else None
        logprobs = None
        content = getattr(getattr(choice, "logprobs", None), "content", None) if choice else None
        if content:
            logprobs = [
                [{"token": t.token, "logprob": t.logprob}]
                + [{"token": a.token, "logprob": a.logprob} for a in (getattr(t, "top_logprobs", None) or [])]
                for t in content
            ]
        return _output(text, tokens_in, tokens_out, logprobs, None)


def _strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict json_schema mode rejects some keywords (maxLength, uniqueItems...)."""
    unsupported = {"maxLength", "minLength", "uniqueItems", "maxItems", "minItems", "minimum", "maximum"}

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k not in unsupported}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return clean(schema)


_LLAMA_DEVNULL_CLOSED_AT_EXIT = False


def import_llama() -> Any:
    """``llama_cpp.Llama``, with OpenMP's passive wait policy and the two files llama-cpp-python
    leaves open closed at exit.

    llama_cpp/_utils.py opens ``os.devnull`` twice at import (``outnull_file``, ``errnull_file``:
    they silence the C library while a model loads) and never closes them, so every process that
    loaded a model ended with two ``ResourceWarning: unclosed file <... name='/dev/null'>``. They
    are used only inside ``suppress_stdout_stderr`` (model loading, chat handlers), never by a
    destructor, so closing them when the interpreter exits is safe.
    """
    global _LLAMA_DEVNULL_CLOSED_AT_EXIT
    # OpenMP reads its wait policy once, when llama.cpp's libraries load (the first import): by
    # default its idle threads spin, which on a CPU shared with another busy process stalls every
    # token (measured 4.57 vs 2.89 s per record beside one busy process; benchmarks/parallel_decoding.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import llama_cpp
    from llama_cpp import _utils

    if not _LLAMA_DEVNULL_CLOSED_AT_EXIT:
        import atexit

        for name in ("outnull_file", "errnull_file"):
            handle = getattr(_utils, name, None)
            if handle is not None and hasattr(handle, "close"):
                atexit.register(handle.close)
        _LLAMA_DEVNULL_CLOSED_AT_EXIT = True
    return llama_cpp.Llama
