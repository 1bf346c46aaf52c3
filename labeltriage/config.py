"""Task configs (`datasets_config/<task>.yaml`): load, validate, and derive the output schema.

`load_task_config(path)` returns a :class:`TaskConfig`. Every validation error names the file and
the key (dotted path) and says how to fix it, e.g.::

    datasets_config/sentiment.yaml: model.backend: got 'olama'; expected one of
    'local', 'openai', 'openai-batch'. Fix: set model.backend to one of them.

`TaskConfig.output_schema()` builds the JSON schema the model must answer with, from the label set:
``{label, confidence, reasoning}`` for single-label tasks, ``{labels, confidence, reasoning}`` for
multi-label tasks. The property order is the generation order under a grammar (label first).

Shorthands: a label may be just its name (``labels: [great, other]`` means labels without
descriptions), and the ``argilla:`` section may be left out (it only matters from ``push`` on):
the dataset is then named after the task (``name``), in workspace ``labeltriage``, question
``label``. An unquoted YAML ``yes``/``no``/``on``/``off``/``true``/``false`` or a number where a label
or a text belongs is reported with the fix (quote it), not as a type error.
"""

from __future__ import annotations

import difflib
import os
import string
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labeltriage.errors import ConfigError as ConfigError  # the one error tree; re-exported for callers of config

PROMPT_PLACEHOLDERS = ("description", "labels", "guidelines", "few_shot", "text", "output_format")
TEXT_PLACEHOLDERS = ("text",)
_NO_TEXT = "has no {text} placeholder. Fix: add {text} where the record's text goes"


class _Strict(BaseModel):
    """Base of the config models: unknown keys are refused (``extra="forbid"``), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Label(_Strict):
    """One label of the task's label set (an item of ``labels:``).

    ``name``: the label as the model answers it and as it is stored and published (non-empty
    text; unique within the task). ``description``: what the label means, shown to the model in
    ``{labels}`` and to reviewers in Argilla; default empty. In YAML a label may be written as its
    name alone (``- great``).

    Errors (as :class:`ConfigError` from :func:`load_task_config`): an empty name, a duplicate
    name, or an unquoted ``yes``/``no``/number where the name belongs.
    """

    name: str = Field(min_length=1)
    description: str = ""


class FewShotExample(_Strict):
    """One worked example shown to the model (an item of ``few_shot:``).

    ``text``: the example's text (non-empty). ``label``: its answer, one label name (single-label
    tasks) or a list of label names (multi-label tasks), each defined under ``labels``.
    ``reasoning``: optional, shown in the example's answer when the examples are chat turns
    (``text_template`` set); default none.

    Errors (as :class:`ConfigError`): a label not in ``labels``, a list on a single-label task, an
    unquoted ``yes``/``no``/number where text belongs.
    """

    text: str = Field(min_length=1)
    label: str | list[str]
    reasoning: str | None = None  # shown in the example's answer when the examples are chat turns

    @field_validator("label", mode="before")
    @classmethod
    def _label_is_text(cls, value: Any) -> Any:
        # YAML turns an unquoted yes/no into a bool: say so here, before pydantic reports the
        # union `str | list[str]` as two unrelated type errors.
        found: list[tuple[tuple[str | int, ...], Any]] = (
            [((i,), v) for i, v in enumerate(value) if _not_text(v)] if isinstance(value, list) else []
        )
        if not isinstance(value, list) and _not_text(value):
            found = [((), value)]
        if found:
            raise _NotText(found)
        return value


class Price(_Strict):
    """US dollars per one million tokens (``model.price``), for the openai backends' cost and budget.

    ``input``: USD per 1M prompt tokens, ``output``: USD per 1M completion tokens; both >= 0,
    default 0 (free). The local backend is never billed, whatever this says.
    """

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """US dollars for ``input_tokens`` prompt and ``output_tokens`` completion tokens."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


class Generation(_Strict):
    """Decoding settings of each model call (``model.generation``).

    * ``temperature``: sampling temperature of the main answer, 0 to 2, default 0 (greedy).
    * ``max_tokens``: the most tokens the model may generate per answer, 16 to 4096, default 128.
    * ``seed``: the sampling seed of the main answer, default 0.
    * ``reasoning_max_chars``: the answer's ``reasoning`` is capped at this many characters in the
      output schema (``maxLength``), 0 to 2000, default 160; 0 leaves it uncapped.
    * ``max_text_chars``: a record's text longer than this many characters keeps its head and tail
      and is flagged truncated, >= 16, default 2000; it is also cut to fit the context window.
    * ``n_ctx``: the context window in tokens, >= 256, default 2048: the local model's, and for the
      openai backends the server's as far as the text budget is concerned.
    * ``top_logprobs``: 0 asks for no token log-probabilities (no ``logprob`` confidence); above 0
      asks for them, 0 to 20, default 5 (only whether it is 0 matters: the value is not sent).
    * ``reasoning``: which records get the answer's one-sentence ``reasoning``: ``all`` (default),
      ``review_only`` (pre-labelling asks for label and confidence only; the records that reviewers
      see with the LLM's suggestion get their reasoning when they are pushed, by a second call with
      the full answer, kept where its label is the first call's) or ``none``. The reasoning comes
      last in the answer, so it never changes the label before it; skipping it saves about half of
      a short answer's tokens.
    """

    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=128, ge=16, le=4096)
    seed: int = 0
    reasoning_max_chars: int = Field(default=160, ge=0, le=2000)
    # Texts longer than this are truncated (and flagged) so the prompt fits the context window.
    max_text_chars: int = Field(default=2000, ge=16)
    n_ctx: int = Field(default=2048, ge=256)
    top_logprobs: int = Field(default=5, ge=0, le=20)
    reasoning: Literal["all", "review_only", "none"] = "all"


BACKENDS = ("local", "openai", "openai-batch")  # model.backend values (the Literal below says the same)


class ModelSettings(_Strict):
    """Which model pre-labels and how it is called (``model:``).

    * ``backend``: ``local`` (llama.cpp in process), ``openai`` (any OpenAI-compatible chat
      completions server) or ``openai-batch`` (the OpenAI Batch API); default ``local``.
    * ``name``: a packaged local model's name or alias (``local``), else the model name sent to the
      API; default ``qwen2.5-coder-1.5b-instruct-q4_k_m``.
    * ``path``: ``local`` only: a GGUF file to load instead of the packaged model; default none.
    * ``base_url``: the OpenAI-compatible endpoint (e.g. ``http://127.0.0.1:8000/v1``); default none,
      the OpenAI API.
    * ``api_key_env``: the name of the environment variable holding the API key (not the key);
      default ``OPENAI_API_KEY``; required by the openai backends.
    * ``generation``: :class:`Generation`.
    * ``concurrency``: the most requests in flight at once (``openai``), 1 to 1024, default 16.
    * ``max_retries``: retries of a failed request and of an answer that fails validation before
      the record is ``failed``, 0 to 10, default 2.
    * ``timeout_s``: seconds before a request times out (then it is retried), > 0, default 60.
    * ``price``: :class:`Price`, USD per 1M tokens; default free.
    * ``n_threads``: ``local`` only: CPU threads for llama.cpp, >= 1; default none, every core.
    * ``parallel``: ``local`` only (an error with another backend): how many records are decoded
      together in one llama.cpp context, an integer 1 to 64 (1: one at a time); default none:
      :func:`default_parallel` of this machine's cores.
    * ``batch_size``: records per pipeline batch on the openai backends, >= 1; default none:
      4 x ``concurrency``, at least 64 (a batch waits for its slowest answer, so a batch smaller
      than the requests allowed in flight caps them; the local backend uses 4 x ``parallel``).

    Errors (as :class:`ConfigError`): an unknown backend, a value out of range, an openai backend
    without ``api_key_env``. A missing model file or package is found later, when the model
    loads (:class:`~labeltriage.errors.BackendError`).
    """

    backend: Literal["local", "openai", "openai-batch"] = "local"
    name: str = "qwen2.5-coder-1.5b-instruct-q4_k_m"
    # local: a GGUF file path; empty = the packaged model named by `name`.
    path: str | None = None
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    generation: Generation = Generation()
    concurrency: int = Field(default=16, ge=1, le=1024)
    max_retries: int = Field(default=2, ge=0, le=10)
    timeout_s: float = Field(default=60.0, gt=0)
    price: Price = Price()
    n_threads: int | None = Field(default=None, ge=1)
    parallel: int | None = Field(default=None, ge=1, le=64, strict=True)  # strict: `true` is not 1
    batch_size: int | None = Field(default=None, ge=1, strict=True)

    def local_parallel(self) -> int:
        """``parallel``, or :func:`default_parallel` when it is not set."""
        return self.parallel or default_parallel()

    def records_per_batch(self) -> int:
        """Records per pipeline batch: local 4 x :meth:`local_parallel`; openai ``batch_size``, else
        4 x ``concurrency`` and at least 64 (measured: with 64 records per batch and 128 requests
        allowed in flight, a 200 ms API gave 172 records/s, see benchmarks/source_scale.py)."""
        if self.backend == "local":
            return 4 * self.local_parallel()
        return self.batch_size or max(64, 4 * self.concurrency)


def default_parallel(cores: int | None = None) -> int:
    """Records decoded together by the local backend when ``model.parallel`` is not set: 8 per CPU
    core, at most 16 (``cores``: default the cores this process may run on).

    Measured on 2 cores (benchmarks/results/parallel_decoding.json): records/s grows up to 16
    sequences and not beyond, since from a batch of about 16 tokens llama.cpp's CPU matrix
    products run at their compute-bound rate.
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, 8 * cores))


class ConfidenceSettings(_Strict):
    """Which confidence the records are routed on (``confidence:``).

    * ``routing``: ``stated`` (the confidence the model writes in its answer), ``logprob`` (the
      probability of the chosen label's tokens, from the token log-probabilities) or
      ``consistency`` (the share of ``consistency_samples`` sampled answers that agree with the
      main answer) or ``distribution`` (the chosen label's share of the model's probabilities
      over the label set at the label's first token: :func:`pipelines.parsing.label_distribution`;
      single-label, from the same log-probs, no extra call); default ``logprob``. A record without
      the chosen kind (e.g. a server that returns no log-probabilities) is routed on ``stated``
      and says so in ``confidence_kind``.
    * ``consistency_samples``: k sampled answers per record for self-consistency, 0 to 20,
      default 0 (off); ``consistency`` routing needs at least 2.
    * ``consistency_temperature``: the samples' temperature, > 0 and <= 2, default 0.8.
    * ``combined``: ``calibrate`` learns one confidence from every signal on the gold
      (cross-fitted: :mod:`curation.signals`) and ``route`` certifies on it; default false.
    """

    routing: Literal["stated", "logprob", "consistency", "distribution"] = "logprob"
    # k sampled answers for self-consistency; 0 turns it off.
    consistency_samples: int = Field(default=0, ge=0, le=20)
    consistency_temperature: float = Field(default=0.8, gt=0, le=2)
    combined: bool = False


class Retrieval(_Strict):
    """Retrieved examples (``retrieval:``): each record's prompt carries the ``k`` most similar
    already-labelled records as few-shot chat turns, after the config's own ``few_shot``.

    The example pool is the labelled records ``labeltriage prelabel`` can see: the input's gold
    column, ``--examples FILE`` (``text`` and ``label``/``gold_label``), the run's collected
    gold (``gold.parquet``) and the reviewers' majority labels already pulled
    (``responses.parquet``); similarity is the cosine of the bundled MiniLM sentence embeddings
    (kNN demonstration selection: Liu et al. 2022, "What Makes Good In-Context Examples for
    GPT-3?"). A record never sees its own label: pool entries with its id or its text are left
    out, so gold records are answered like any other record and still calibrate honestly.
    Re-running ``prelabel`` after a feedback round adds the new reviewed labels; only records
    whose examples changed are asked again (the examples are part of the cache key).

    * ``k``: examples per record, 0 to 16, default 0 (off). Costs time: the per-record examples
      break the prompt prefix the local model keeps cached (2.4-2.7x per record measured in
      benchmarks/results/retrieved_examples.json).
    * ``max_example_chars``: each example's text is cut to this many characters, default 300.

    A record whose own text needs the room drops its farthest examples first (``example_ids``
    names the ones shown): the record's text is never cut to make room for examples.

    Errors (as :class:`ConfigError`): ``k`` > 0 without ``text_template`` (examples are chat
    turns), on a multi-label task, or with the ``openai-batch`` backend.
    """

    k: int = Field(default=0, ge=0, le=16)
    max_example_chars: int = Field(default=300, ge=16, le=4000)


def chance_precision(n_labels: int) -> float:
    """Precision of a labeller picking one of ``n_labels`` labels uniformly at random: ``1 / n_labels``."""
    return 1.0 / max(1, n_labels)


TARGET_OPTION = "target_precision (--target-precision)"


def check_target_precision(target: float, n_labels: int, option: str = TARGET_OPTION) -> None:
    """Refuse a precision target that a labeller guessing at random meets.

    A uniform guess among ``n_labels`` labels has precision ``1 / n_labels``
    (:func:`chance_precision`), so a certificate at or below it says nothing (found: 0.1 on 3
    labels certified a student right 29.6% of the time). It is a floor, not a bar: on imbalanced
    data always answering the most frequent label does better. Raises
    :class:`~labeltriage.errors.UsageError` naming ``option``."""
    from labeltriage.errors import UsageError

    if message := _below_chance(option, target, n_labels):
        raise UsageError(message)


def _below_chance(what: str, target: float, n_labels: int) -> str | None:
    """Why ``target`` is refused (naming ``what``), or None when it is above chance."""
    if target > (chance := chance_precision(n_labels)):
        return None
    return (f"{what} {target:g} is at or below chance for {n_labels} labels (1/{n_labels} = {chance:.3g}: a labeller "
            f"guessing at random meets it). Fix: use a precision target above {chance:.3g}, e.g. 0.9")  # fmt: skip


class Thresholds(_Strict):
    """What ``route`` aims for (``thresholds:``); ``route``'s own options override both.

    * ``target_precision``: the share of auto-accepted LLM labels that must be correct (their
      precision), which ``route`` certifies on the gold records, in (0, 1], default 0.95.
    * ``spot_check_rate``: the share of auto-accepted records also sent for a blind audit, in
      [0, 1], default 0.05.
    * ``blind_share``: the share of the review queue shown to reviewers blind (no suggestion,
      score or reasoning), drawn at random, in [0, 1], default 0: the agreement report then
      compares LLM-vs-reviewer agreement assisted vs blind (the anchoring effect).
    * ``review_audit_rate``: the share of the (assisted) review queue shown a second time, blind,
      as ``<id>::audit``, in [0, 1], default 0: the published dataset card then states the
      accuracy of the reviewed labels (and overall) against these blind audits.
    * ``guided_start``: where the certificate's fixed sequence of tests starts (default false:
      a few records above the strictest threshold; true: where the confidences themselves
      expect a precision well above the target, :func:`curation.certify.default_start` on the
      run's scores). Both are family-wise valid (the start never looks at gold labels); which
      certifies more depends on the data (benchmarks/results/guarantee.json): a strict first
      test on a handful of top records that fails stops the plain sequence at once.

    A retired ``review_below`` key is dropped on load with a :class:`FutureWarning`.
    """

    target_precision: float = Field(default=0.95, gt=0, le=1)
    spot_check_rate: float = Field(default=0.05, ge=0, le=1)
    blind_share: float = Field(default=0.0, ge=0, le=1)
    review_audit_rate: float = Field(default=0.0, ge=0, le=1)
    guided_start: bool = False


# `thresholds.review_below` was in the shipped configs but nothing read it (route chooses the
# auto-accept threshold on gold from target_precision). A config that still has it loads, with a note.
RETIRED_REVIEW_BELOW = (
    "{path}: thresholds.review_below is ignored: nothing reads it (route chooses the auto-accept threshold "
    "on gold from thresholds.target_precision). Fix: remove the line; a later release will refuse it"
)


class ArgillaSettings(_Strict):
    """Where the review happens (``argilla:``); only ``push``, ``pull`` and ``loop`` read it.

    * ``dataset``: the Argilla dataset's name; default the task's ``name``.
    * ``workspace``: the Argilla workspace, default ``labeltriage``.
    * ``question``: the name of the label question in the dataset, default ``label``.
    * ``min_submitted``: how many reviewers must submit an answer before a record is complete
      (Argilla's task distribution), >= 1, default 1.
    """

    # Defaults to the task's `name` when the config has no `argilla.dataset` (see TaskConfig).
    dataset: str = Field(min_length=1)
    workspace: str = "labeltriage"
    question: str = "label"
    min_submitted: int = Field(default=1, ge=1)


class _NotText(ValueError):
    """YAML scalars that are not strings (bool, number, empty) where labels or texts belong.

    ``found`` holds ``(subpath, value)`` pairs; a subpath continues the key path pydantic reports
    (e.g. the index inside a list). :func:`_not_text_message` writes one line per pair, with the
    spelling used in the file.
    """

    def __init__(self, found: list[tuple[tuple[str | int, ...], Any]]) -> None:
        super().__init__(f"expected text, got {[value for _, value in found]!r}")
        self.found = found


def _not_text(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float)


def _placeholders(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def _check_placeholders(template: str, allowed: tuple[str, ...]) -> set[str]:
    try:
        fields = _placeholders(template)
    except ValueError as error:
        raise ValueError(f"not a valid template ({error}). Fix: write literal braces as '{{{{' and '}}}}'") from None
    unknown = sorted(fields - set(allowed))
    if unknown:
        raise ValueError(
            "unknown placeholder(s) "
            + ", ".join("{" + u + "}" for u in unknown)
            + ". Fix: use only "
            + ", ".join("{" + p + "}" for p in allowed)
            + " (write literal braces as '{{' and '}}')"
        )
    return fields


class TaskConfig(_Strict):
    """A labelling task: its label set, its prompt, the model and the review settings.

    Load it with :func:`load_task_config` (which turns every validation error into a one-line
    :class:`ConfigError`); the fields, top-level keys of the YAML file:

    * ``name``: the task's name (non-empty); the Argilla dataset's default name.
    * ``description``: one sentence of what to label; ``{description}`` in the prompt and the
      Argilla question's title.
    * ``task_type``: ``single_label`` (one label per record, answer key ``label``) or
      ``multi_label`` (a set of labels, answer key ``labels``); default ``single_label``.
    * ``text_column``: the input table's column holding the text, default ``text``.
    * ``labels``: at least two :class:`Label`, distinct names.
    * ``guidelines``: free text for ``{guidelines}``, default empty.
    * ``few_shot``: :class:`FewShotExample` list, default none.
    * ``prompt_template``: a ``str.format`` template over ``{description}``, ``{labels}``,
      ``{guidelines}``, ``{few_shot}``, ``{text}`` and ``{output_format}``; with ``text_template``
      set it is the system message (no ``{text}`` nor ``{few_shot}``), without it it must hold
      ``{text}``.
    * ``text_template``: optional template over ``{text}`` for the record's own user turn.
    * ``model``, ``confidence``, ``thresholds``, ``retrieval``, ``argilla``: :class:`ModelSettings`,
      :class:`ConfidenceSettings`, :class:`Thresholds`, :class:`Retrieval`, :class:`ArgillaSettings`.
    * ``source_path``: the file it was loaded from (set by :func:`load_task_config`, not in YAML,
      not serialised).

    Constructing it directly raises pydantic's ``ValidationError`` for an unknown key, a missing
    required key (``name``, ``description``, ``labels``, ``prompt_template``), a value out of
    range, an unknown placeholder, a few-shot label outside ``labels``, ``consistency`` routing
    with fewer than 2 samples, or an openai backend without ``api_key_env``.
    """

    name: str = Field(min_length=1)
    description: str
    task_type: Literal["single_label", "multi_label"] = "single_label"
    text_column: str = "text"
    labels: list[Label] = Field(min_length=2)
    guidelines: str = ""
    few_shot: list[FewShotExample] = []
    prompt_template: str
    # With a text template, the prompt template is the system message (instructions only), each
    # few-shot example is a user turn and an assistant answer, and the record's text is the last
    # user turn: small models then stop confusing the examples with the text, and the constant
    # prefix stays in the local model's KV cache between records.
    text_template: str | None = None
    model: ModelSettings = ModelSettings()
    confidence: ConfidenceSettings = ConfidenceSettings()
    thresholds: Thresholds = Thresholds()
    retrieval: Retrieval = Retrieval()
    # Optional: only push/pull/loop use it; without it the dataset is named after the task.
    argilla: ArgillaSettings
    source_path: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _argilla_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        argilla = data.get("argilla")
        if argilla is None:
            argilla = {}
        if isinstance(argilla, dict) and "dataset" not in argilla:
            # an invalid `name` fails validation on its own, so the fallback is never used
            name = data.get("name")
            argilla = {**argilla, "dataset": name if isinstance(name, str) and name else "labeltriage"}
        return {**data, "argilla": argilla}

    @field_validator("labels", mode="before")
    @classmethod
    def _label_names_alone(cls, labels: Any) -> Any:
        """``- great`` is short for ``- name: great``; a bool or number is reported with the fix."""
        if not isinstance(labels, list):
            return labels
        found: list[tuple[tuple[str | int, ...], Any]] = []
        for i, item in enumerate(labels):
            if _not_text(item):
                found.append(((i,), item))
            elif isinstance(item, dict) and "name" in item and _not_text(item["name"]):
                found.append(((i, "name"), item["name"]))
        if found:
            raise _NotText(found)
        return [{"name": item} if isinstance(item, str) else item for item in labels]

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[Label]) -> list[Label]:
        names = [label.name for label in labels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate label names {duplicates}. Fix: give every label a distinct name")
        return labels

    @field_validator("prompt_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        _check_placeholders(template, PROMPT_PLACEHOLDERS)
        return template

    @field_validator("text_template")
    @classmethod
    def _text_placeholder(cls, template: str | None) -> str | None:
        if template is not None and "text" not in _check_placeholders(template, TEXT_PLACEHOLDERS):
            raise ValueError(_NO_TEXT)
        return template

    @model_validator(mode="after")
    def _cross_checks(self) -> TaskConfig:
        names = set(self.label_names)
        fields = _placeholders(self.prompt_template)
        if self.text_template is None and "text" not in fields:
            raise _KeyError("prompt_template", _NO_TEXT)
        if self.text_template is not None and fields & {"text", "few_shot"}:
            raise _KeyError(
                "prompt_template",
                "with text_template set, the prompt template holds the instructions only and the few-shot "
                "examples become chat turns. Fix: remove {text} and {few_shot} from prompt_template",
            )
        for i, example in enumerate(self.few_shot):
            given = [example.label] if isinstance(example.label, str) else list(example.label)
            if self.task_type == "single_label" and not isinstance(example.label, str):
                raise _KeyError(f"few_shot.{i}.label", "a single-label task needs one label (a string)")
            outside = [g for g in given if g not in names]
            if outside:
                raise _KeyError(
                    f"few_shot.{i}.label",
                    f"{outside} not in labels {sorted(names)}. Fix: use a label defined under labels",
                )
        below = _below_chance("the target", self.thresholds.target_precision, len(self.labels))
        if self.task_type == "single_label" and below:
            raise _KeyError("thresholds.target_precision", below)
        conf = self.confidence
        if conf.routing == "consistency" and conf.consistency_samples < 2:
            raise _KeyError(
                "confidence.consistency_samples",
                "routing on 'consistency' needs at least 2 samples. Fix: set consistency_samples: 3",
            )
        if self.retrieval.k and self.text_template is None:
            raise _KeyError(
                "retrieval.k",
                "retrieved examples are chat turns and need text_template. Fix: set text_template: '{text}' and "
                "remove {text} and {few_shot} from prompt_template (as datasets_config/sentiment.yaml does)",
            )
        if self.retrieval.k and self.task_type == "multi_label":
            raise _KeyError("retrieval.k", "retrieved examples are for single-label tasks for now. Fix: set k: 0")
        if self.retrieval.k and self.model.backend == "openai-batch":
            raise _KeyError(
                "retrieval.k", "retrieved examples are not sent through the Batch API. Fix: use backend openai"
            )
        if self.model.backend != "local" and self.model.parallel is not None:
            raise _KeyError(
                "model.parallel",
                f"only the local backend decodes records together, not {self.model.backend!r}. "
                "Fix: remove model.parallel (an openai backend's requests in flight are model.concurrency)",
            )
        if self.model.backend != "local" and not self.model.api_key_env:
            raise _KeyError(
                "model.api_key_env",
                "the openai backends need the name of the environment variable holding the key. "
                "Fix: set api_key_env: OPENAI_API_KEY (or any variable name)",
            )
        return self

    def check_target_precision(self, target: float, option: str = TARGET_OPTION) -> None:
        """:func:`check_target_precision` with this task's labels (single-label tasks only)."""
        if self.task_type == "single_label":
            check_target_precision(target, len(self.labels), option)

    # -- derived ------------------------------------------------------------------------------

    @property
    def label_names(self) -> list[str]:
        """The label names, in the config's order."""
        return [label.name for label in self.labels]

    @property
    def label_key(self) -> str:
        """The output key holding the answer: `label` or `labels`."""
        return "labels" if self.task_type == "multi_label" else "label"

    def output_schema(self, reasoning: bool = True) -> dict[str, Any]:
        """JSON schema of one answer. Labels are an enum, so a grammar can constrain them.

        ``reasoning=False``: the answer without its last property, ``reasoning`` (what the
        pre-labelling call asks for unless ``model.generation.reasoning`` is ``all``; the prompt
        stays the same)."""
        if self.task_type == "multi_label":
            answer: dict[str, Any] = {
                "type": "array",
                "items": {"type": "string", "enum": self.label_names},
                "uniqueItems": True,
                "maxItems": len(self.labels),
            }
        else:
            answer = {"type": "string", "enum": self.label_names}
        reasoning_schema: dict[str, Any] = {"type": "string"}
        if self.model.generation.reasoning_max_chars:
            reasoning_schema["maxLength"] = self.model.generation.reasoning_max_chars
        properties: dict[str, Any] = {
            self.label_key: answer,
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        }
        if reasoning:
            properties["reasoning"] = reasoning_schema
        return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}

    def answer_schema(self) -> dict[str, Any]:
        """The schema the pre-labelling call answers with: :meth:`output_schema`, with the
        reasoning only when ``model.generation.reasoning`` is ``all``."""
        return self.output_schema(reasoning=self.model.generation.reasoning == "all")


class _KeyError(ValueError):
    """Raised inside validators to point at a precise key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _yaml_spelling(root: yaml.Node | None, keys: tuple[Any, ...]) -> str | None:
    """The text of the scalar at ``keys`` as written in the file (``yes``, not ``True``)."""
    node = root
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return None
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _not_text_message(path: str, keys: tuple[Any, ...], value: Any, root: yaml.Node | None) -> str:
    loc = ".".join(str(k) for k in keys)
    if value is None:
        return f"{path}: {loc}: empty. Fix: write a value there or remove the line"
    spelling = _yaml_spelling(root, keys) or str(value)
    kind = f"the boolean {value}" if isinstance(value, bool) else "a number"
    return f'{path}: {loc}: YAML reads the unquoted {spelling} as {kind}. Fix: quote it: "{spelling}"'


# what each list item should look like, for "expected a mapping" errors
_ITEM_EXAMPLES = {
    "labels": "`- name: great` (with `description: ...` under it) or just `- great`",
    "few_shot": "`- text: Loved it` with `label: positive` under it",
}


def _format_validation_error(
    path: str, error: ValidationError, data: dict[str, Any], root: yaml.Node | None = None
) -> str:
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        kind = item["type"]
        ctx_error = (item.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _KeyError):
            lines.append(f"{path}: {ctx_error.key}: {ctx_error.message}")
            continue
        if isinstance(ctx_error, _NotText):
            lines += [_not_text_message(path, (*item["loc"], *sub), value, root) for sub, value in ctx_error.found]
            continue
        got = item.get("input")
        if kind == "string_type" and (got is None or isinstance(got, bool | int | float)):
            lines.append(_not_text_message(path, tuple(item["loc"]), got, root))
            continue
        if kind in ("model_type", "dict_type") and item["loc"] and str(item["loc"][0]) in _ITEM_EXAMPLES:
            example = _ITEM_EXAMPLES[str(item["loc"][0])]
            lines.append(f"{path}: {loc}: expected a mapping, got {got!r}. Fix: write it as {example}")
            continue
        if kind in ("model_type", "dict_type"):
            lines.append(f"{path}: {loc}: expected a mapping (`key: value` lines), got {got!r}. Fix: correct '{loc}'")
            continue
        if kind == "list_type":
            lines.append(f"{path}: {loc}: expected a list, got {got!r}. Fix: write one `- item` per line under {loc}")
            continue
        if kind == "extra_forbidden":
            key = str(item["loc"][-1])
            parent_fields = _fields_at(item["loc"][:-1])
            close = difflib.get_close_matches(key, parent_fields, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(parent_fields)}"
            lines.append(f"{path}: {loc}: unknown key. Fix: remove it or rename it ({hint})")
        elif kind == "missing":
            lines.append(f"{path}: {loc}: required key is missing. Fix: add '{loc}' to the file")
        else:
            msg = item["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            got_text = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            if "Fix:" not in msg:
                msg = f"{msg}{got_text}. Fix: correct '{loc}'"
            lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: Any = TaskConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


# The fix for PyYAML's commonest syntax errors, keyed on the start of its `problem` text.
_YAML_FIXES = (
    (
        "mapping values are not allowed here",
        "quote a value that contains ': ' (description: \"Note: ...\"), or indent this key like its siblings",
    ),
    ("could not find expected ':'", "write the line as `key: value`, or quote it if it continues the text above"),
    ("expected <block end>", "indent this line like the other items of its list or mapping (spaces only)"),
    ("expected ',' or ']'", "close the [ list with ], and quote items that contain ':' or ','"),
    ("expected ',' or '}'", "close the { mapping with }, and quote values that contain ':' or ','"),
    ("found unexpected end of stream", "close the quote"),
    ("found character '\\t'", "indent with spaces, not tabs"),
    ("found character", "quote the value: it starts with a character YAML reserves"),
    ("found undefined alias", "quote the value: YAML reads a leading * as an alias"),
)


def _yaml_error_message(path: Path, text: str, error: yaml.YAMLError) -> str:
    """One line: the file, the line and column (1-based) where PyYAML stopped, what it found, the fix."""
    if isinstance(error, yaml.reader.ReaderError):
        # a control character: PyYAML gives an offset in the text, not a line
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        return (
            f"{path}: line {line}, column {column}: not valid YAML: character #x{code:04x} is not "
            "allowed. Fix: remove it (a task config is plain text)"
        )
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    if not isinstance(error, yaml.MarkedYAMLError) or mark is None:
        return f"{path}: not valid YAML: {' '.join(str(error).split())}. Fix: correct the YAML syntax"
    problem = error.problem or error.context or "syntax error"
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    started = error.context_mark
    if error.context and started is not None and started is not mark:
        problem += f" ({error.context} that starts at line {started.line + 1}, column {started.column + 1})"
    fix = next((fix for start, fix in _YAML_FIXES if problem.startswith(start)), None)
    if fix is None:
        fix = "correct the YAML at that point (quote text that contains ': ' or ' #')"
    return f"{path}: {where}: not valid YAML: {' '.join(problem.split())}. Fix: {fix}"


def shipped_task_configs() -> dict[str, Path]:
    """The task configs that ship with labeltriage (``datasets_config/*.yaml``): name -> path.

    Read as package data (``importlib.resources``), so they are found from an installed wheel
    as from a checkout."""
    from importlib import resources

    try:
        folder = resources.files("datasets_config")
    except ModuleNotFoundError:
        return {}
    return {Path(item.name).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".yaml")}


def load_task_config(path: str | Path) -> TaskConfig:
    """Read and validate a task config: a YAML path, or the name of a shipped one (``"sentiment"``).

    Raises :class:`ConfigError` (one line per problem, each naming the file, the key and the fix)
    when the file does not exist, is not valid YAML (one line: the line and column, what PyYAML
    found, the fix), is not a mapping at the top level, or fails validation (see
    :class:`TaskConfig`). A retired key (``thresholds.review_below``) loads with a
    :class:`FutureWarning`."""
    path = Path(path)
    if not path.is_file():
        shipped = shipped_task_configs()
        name = path.stem if path.suffix in (".yaml", ".yml") else path.name
        if name in shipped and len(path.parts) == 1:  # `sentiment` or `sentiment.yaml`: a shipped config
            path = shipped[name]
        else:
            names = ", ".join(sorted(shipped)) or "none found"
            raise ConfigError(
                f"{path}: no such file. Fix: pass a task config path, or the name of a shipped one ({names})"
            )
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(_yaml_error_message(path, text, error)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (name, labels, ...)")
    thresholds = data.get("thresholds")
    if isinstance(thresholds, dict) and "review_below" in thresholds:
        warnings.warn(RETIRED_REVIEW_BELOW.format(path=path), FutureWarning, stacklevel=2)
        data = {**data, "thresholds": {k: v for k, v in thresholds.items() if k != "review_below"}}
    try:
        # absolute: run.json records it, and later steps run from other directories
        return TaskConfig.model_validate({**data, "source_path": str(path.resolve())})
    except ValidationError as error:
        # the node tree keeps each scalar as written (`yes`), for messages about YAML's booleans
        root = yaml.compose(text, yaml.SafeLoader)
        raise ConfigError(_format_validation_error(str(path), error, data, root)) from None
