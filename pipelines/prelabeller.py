"""The pre-labelling engine: run the DAG over a table of records with cache, budget and progress.

The steps (`pipelines.steps`) are distilabel Steps/Tasks; this runner executes them in process,
batch by batch, so that it can (1) skip every record already in the per-record cache (a rerun
makes zero model calls for finished records), (2) stop before the budget is exceeded, keeping
all finished work, and (3) show one progress bar with records/s and the running cost.
`pipelines.pipeline.build_distilabel_pipeline` wires the same steps into a distilabel `Pipeline`.

Cache keys: the main answer is keyed by (prompt hash, model, generation settings, text); the
self-consistency samples by that key plus (k, temperature). Changing the prompt or the model
invalidates every answer; changing only k re-samples without re-asking the main question; a
new or edited text only costs that text.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from distilabel.pipeline import Pipeline
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from labeltriage.config import BACKENDS, Price, TaskConfig
from labeltriage.errors import ConfigError
from pipelines.cache import RecordCache, cache_key
from pipelines.llms import Budget, CallStats, LocalLlamaLLM, OpenAICompatibleLLM
from pipelines.models import resolve_model_path
from pipelines.prompt import prompt_hash
from pipelines.steps import (
    NOT_RUN,
    PRELABEL_OUTPUTS,
    Finalize,
    PrelabelTask,
    PrepareText,
    SelfConsistency,
    text_budget,
)

CONTRACT_COLUMNS = [
    "id",
    "text",
    "llm_label",
    "llm_confidence",
    "confidence_stated",
    "confidence_logprob",
    "confidence_consistency",
    "confidence_distribution",
    "reasoning",
    "model",
    "prompt_hash",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "status",
    "error",
    "raw_output",
]
EXTRA_COLUMNS = [
    "confidence_kind", "truncated", "instruction_like", "attempts", "consistency_labels", "label_distribution",
    "source", "example_ids",
]  # fmt: skip
CACHE_FILE = "cache/prelabel-cache.jsonl"


def with_overrides(
    config: TaskConfig, backend: str | None = None, model: str | None = None, parallel: int | None = None
) -> TaskConfig:
    """The config with `--backend` / `--model` / `--parallel` applied (a `.gguf` model is a local
    file path).

    Raises ConfigError for a backend that is not one of :data:`BACKENDS`, for ``parallel`` that is
    not an integer 1 to 64, and for ``parallel`` (given or in the config) with another backend than
    ``local`` (the openai backends' concurrency is ``model.concurrency``)."""
    update: dict[str, Any] = {}
    if backend:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        update["backend"] = backend
    if parallel is not None:
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 64:
            raise ConfigError(f"parallel {parallel!r}: choose an integer 1 to 64 (1: one record at a time)")
        update["parallel"] = parallel
    final_backend = backend or config.model.backend
    if final_backend != "local" and (parallel if parallel is not None else config.model.parallel) is not None:
        raise ConfigError(
            f"parallel is set but the {final_backend} backend does not decode records together. Fix: drop "
            "--parallel (and model.parallel); an openai backend's requests in flight are model.concurrency"
        )
    if model:
        if model.endswith(".gguf"):
            update["path"] = model
            update["name"] = Path(model).stem
        else:
            update["name"] = model
            update["path"] = None
    if not update:
        return config
    return config.model_copy(update={"model": config.model.model_copy(update=update)})


LOCAL_DECODING = "jump_forward"


def model_identity(config: TaskConfig) -> str:
    """What makes an answer reproducible on the model side (part of every cache key)."""
    m = config.model
    if m.backend == "local":
        path = resolve_model_path(m.name, m.path)
        # the decoder is part of it: jump-forward and the grammar may word the reasoning differently
        return f"local:{m.name}:{path.name}:{path.stat().st_size}:{LOCAL_DECODING}"
    return f"{m.backend}:{m.base_url or 'https://api.openai.com/v1'}:{m.name}"


def build_llm(config: TaskConfig, stats: CallStats, budget: Budget) -> Any:
    """The distilabel LLM for ``config.model.backend``, counting into ``stats`` and charging ``budget``.

    ``local``: :class:`LocalLlamaLLM`; ``openai``: :class:`OpenAICompatibleLLM`; ``openai-batch``:
    distilabel's ``OpenAILLM`` in offline batch mode (not counted nor charged here). Not loaded yet.
    Raises ``ModelNotAvailable`` (a local model missing) or :class:`~labeltriage.errors.BackendError`
    (an openai backend whose key variable is unset).
    """
    m = config.model
    schema = config.answer_schema()  # without the reasoning unless model.generation.reasoning is all
    if m.backend == "local":
        llm: Any = LocalLlamaLLM(
            model_path=str(resolve_model_path(m.name, m.path)),
            model_id=m.name,
            # the full schema, stopped before the reasoning: the tokens before it are the full answer's
            response_schema=config.output_schema(),
            stop_before=None if m.generation.reasoning == "all" else "reasoning",
            n_ctx=m.generation.n_ctx,
            n_threads=m.n_threads,
            parallel=m.local_parallel(),
            want_logprobs=m.generation.top_logprobs > 0,
            decoding=LOCAL_DECODING,
            price=m.price,
        )
    elif m.backend == "openai":
        llm = OpenAICompatibleLLM(
            model=m.name,
            base_url=m.base_url,
            api_key_env=m.api_key_env or "OPENAI_API_KEY",
            concurrency=m.concurrency,
            max_retries=m.max_retries,
            timeout_s=m.timeout_s,
            response_schema=schema,
            want_logprobs=m.generation.top_logprobs > 0,
            top_logprobs=min(m.generation.top_logprobs, 20),
            price=m.price,
        )
    else:  # openai-batch: distilabel's OpenAILLM with offline batch generation (pipelines.batch)
        from distilabel.models.llms import OpenAILLM

        probe = OpenAICompatibleLLM(model=m.name, base_url=m.base_url, api_key_env=m.api_key_env or "OPENAI_API_KEY")
        kwargs: dict[str, Any] = {"base_url": m.base_url} if m.base_url else {}
        return OpenAILLM(
            model=m.name,
            api_key=probe.api_key(),
            max_retries=m.max_retries,
            timeout=int(m.timeout_s),
            use_offline_batch_generation=True,
            **kwargs,
        )
    llm.attach(stats, budget)
    return llm


@dataclass
class RunResult:
    """What :meth:`Prelabeller.run` returns: ``frame``, one row per input record (the columns of
    ``prelabels.parquet``, docs/CONTRACTS.md); ``summary``, the counts and settings written to
    ``run.json``; ``stats``, the model calls and tokens actually sent."""

    frame: pd.DataFrame
    summary: dict[str, Any]
    stats: CallStats = field(default_factory=CallStats)


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:6.1f} rec/s", style="progress.data.speed")


class _CostColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        return Text(f"${task.fields.get('cost', 0.0):.4f}", style="green")


class Prelabeller:
    """Runs a config over records, writing the per-record cache as it goes."""

    def __init__(
        self,
        config: TaskConfig,
        output_dir: Path,
        *,
        max_cost: float | None = None,
        batch_size: int | None = None,
        llm: Any = None,
        console: Console | None = None,
        show_progress: bool = True,
        cache_file: Path | None = None,
    ) -> None:
        """Build the steps for ``config``, caching under ``output_dir`` (``cache/prelabel-cache.jsonl``,
        or ``cache_file``).

        ``max_cost``: USD budget for this run (None: no limit). ``batch_size``: records per model
        batch (default :meth:`~labeltriage.config.ModelSettings.records_per_batch`). ``llm``: an
        already built LLM (tests, benchmarks), else :func:`build_llm` (whose errors it raises). ``console`` /
        ``show_progress``: where and whether to draw the progress bar.
        """
        self.config = config
        self.output_dir = Path(output_dir)
        self.max_cost = max_cost
        self.stats = CallStats()
        if config.model.backend == "local":  # local compute is not billed per token
            config = config.model_copy(update={"model": config.model.model_copy(update={"price": Price()})})
            self.config = config
        self.budget = Budget(config.model.price, max_cost)
        self.llm = llm or build_llm(config, self.stats, self.budget)
        if llm is not None and hasattr(llm, "attach"):
            llm.attach(self.stats, self.budget)
        # local: 4 x the decoding width, so the sequences decoded together rarely run short
        model = config.model
        self.batch_size = batch_size or model.records_per_batch()
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.prompt_hash = prompt_hash(config)
        self.model_id = model_identity(config)
        gen = config.model.generation
        self.main_settings: dict[str, Any] = {
            "temperature": gen.temperature,
            "max_tokens": gen.max_tokens,
            "seed": gen.seed,
            "max_retries": config.model.max_retries,
        }
        if gen.reasoning != "all":  # an answer without its reasoning is another answer (keys of `all` unchanged)
            self.main_settings["reasoning"] = gen.reasoning
        self.samples = config.confidence.consistency_samples if config.model.backend != "openai-batch" else 0
        self.cache = RecordCache(cache_file or self.output_dir / CACHE_FILE)
        self._transient: dict[str, dict[str, Any]] = {}
        self._passthrough: list[str] = []
        # The DAG is a real distilabel Pipeline; this runner executes its steps in process.
        self.dag = Pipeline(name=f"labeltriage-prelabel-{config.name}")
        with self.dag:
            self._build_steps(config)

    def _finalize_step(self) -> Finalize:
        """The last step: confidence used for routing, cost from the config's price, identity columns."""
        config = self.config
        return Finalize(
            name="finalize",
            routing=config.confidence.routing,
            price_input=config.model.price.input,
            price_output=config.model.price.output,
            model=config.model.name,
            prompt_hash=self.prompt_hash,
        )

    def _build_steps(self, config: TaskConfig) -> None:
        gen, conf = config.model.generation, config.confidence
        self.prepare = PrepareText(name="prepare_text", max_chars=gen.max_text_chars, labels=config.label_names)
        self.prepare.use_budget(text_budget(config, self.llm))
        self.task = PrelabelTask(
            name="prelabel",
            llm=self.llm,
            config=config,
            max_retries=config.model.max_retries,
            temperature=gen.temperature,
            max_tokens=gen.max_tokens,
            seed=gen.seed,
        )
        self.consistency = (
            SelfConsistency(
                name="self_consistency",
                llm=self.llm,
                config=config,
                samples=self.samples,
                temperature=conf.consistency_temperature,
                max_tokens=gen.max_tokens,
            )
            if self.samples > 0
            else None
        )
        self.finalize = self._finalize_step()
        chain = self.prepare >> self.task
        if self.consistency is not None:
            chain = chain >> self.consistency
        chain >> self.finalize

    # -- keys -------------------------------------------------------------------------------------

    def main_key(self, model_text: str, examples: Any = None) -> str:
        """Cache key of the main answer for ``model_text`` (prompt hash, model, generation settings,
        text, and the retrieved ``examples`` when there are any: new examples, a new answer)."""
        if examples:
            examples = [[text, label] for text, label in examples]
            return cache_key("main", self.prompt_hash, self.model_id, self.main_settings, model_text, examples)
        return cache_key("main", self.prompt_hash, self.model_id, self.main_settings, model_text)

    def row_key(self, row: dict[str, Any]) -> str:
        """:meth:`main_key` of a prepared row (its ``model_text`` and ``examples``)."""
        return self.main_key(row["model_text"], row.get("examples"))

    def consistency_key(self, row: dict[str, Any]) -> str:
        """Cache key of a row's self-consistency samples: the main key plus k and their temperature."""
        temperature = self.config.confidence.consistency_temperature
        return cache_key("consistency", self.row_key(row), self.samples, temperature)

    # -- run --------------------------------------------------------------------------------------

    def run(self, records: pd.DataFrame) -> RunResult:
        """Pre-label ``records`` (columns ``id``, ``text``, optional ``source``, ``gold_label``,
        ``duplicate_of`` and the user's own, kept as they are): cached answers are reused, the rest
        asked batch by batch until done or the budget stops it (``summary["stopped"] ==
        "max_cost"``; the records not asked are ``failed`` with a ``not_run`` error). A failed
        model call fails its record, never the run."""
        started = time.perf_counter()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.llm.load()
        rows = self._prepare(records)
        total = len(rows)
        # unique texts that still need a model call (duplicates share one call)
        todo: dict[str, dict[str, Any]] = {}
        pending_rows: dict[str, int] = {}
        for row in rows:
            if row["empty"]:
                continue
            key = self.row_key(row)
            cached = self.cache.get(key)
            need = cached is None or (
                self.samples > 0 and cached["status"] == "ok" and self.consistency_key(row) not in self.cache
            )
            if need:
                todo.setdefault(key, row)
                pending_rows[key] = pending_rows.get(key, 0) + 1
        n_empty = sum(1 for row in rows if row["empty"])  # never asked: neither a hit nor a call
        cache_hits = total - n_empty - sum(pending_rows.values())
        stopped = None
        progress = Progress(
            TextColumn("[bold]prelabel[/bold] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            _CostColumn(),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
            transient=False,
        )
        with progress:
            bar = progress.add_task(self.config.name, total=total, cost=0.0)
            progress.update(bar, advance=cache_hits)
            items = list(todo.items())
            for start in range(0, len(items), self.batch_size):
                if self.budget.exhausted:
                    stopped = "max_cost"
                    break
                batch = items[start : start + self.batch_size]
                self._run_batch([row for _, row in batch])
                done = sum(pending_rows[k] for k, _ in batch)
                progress.update(bar, advance=done, cost=self.budget.spent)
            if self.budget.exhausted:
                stopped = "max_cost"
        self.llm.unload()
        frame = self._assemble(rows)
        elapsed = time.perf_counter() - started
        summary = self._summary(frame, elapsed, cache_hits, stopped, started_at)
        return RunResult(frame=frame, summary=summary, stats=self.stats)

    def _prepare(self, records: pd.DataFrame) -> list[dict[str, Any]]:
        # the user's own columns and duplicate_of ride along to the output unchanged
        own = ("id", "text", "source", "gold_label", "examples", "example_ids")
        self._passthrough = [c for c in records.columns if c not in own]
        return list(next(self.prepare.process(records.to_dict("records"))))

    def _run_batch(self, batch: list[dict[str, Any]]) -> None:
        need_main = [row for row in batch if self.row_key(row) not in self.cache]
        fresh: dict[str, dict[str, Any]] = {}
        if need_main:
            for out in next(self.task.process(need_main)):
                key = self.row_key(out)
                if _cacheable(out):
                    fresh[key] = {k: out[k] for k in PRELABEL_OUTPUTS}
                else:  # shown in this run's output, asked again next run
                    self._transient[key] = {k: out[k] for k in PRELABEL_OUTPUTS}
        self.cache.put_many(fresh)
        if self.consistency is None:
            return
        ready = []
        for row in batch:
            main = self.cache.get(self.row_key(row))
            if main and main["status"] == "ok" and self.consistency_key(row) not in self.cache:
                ready.append({**row, **main, "input_tokens": 0, "output_tokens": 0})
        samples: dict[str, dict[str, Any]] = {}
        if ready:
            for out in next(self.consistency.process(ready)):
                if out["confidence_consistency"] is not None:
                    samples[self.consistency_key(out)] = {
                        "confidence_consistency": out["confidence_consistency"],
                        "consistency_labels": out["consistency_labels"],
                        "input_tokens": out["input_tokens"],
                        "output_tokens": out["output_tokens"],
                    }
        self.cache.put_many(samples)

    def _assemble(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        merged = []
        charged: set[str] = set()  # a repeated text shares its first row's answer and costs nothing
        for row in rows:
            # cache entries written before a column existed lack it: None, not a missing column
            out = {**row, "confidence_consistency": None, "consistency_labels": None,
                   "confidence_distribution": None, "label_distribution": None}  # fmt: skip
            if row["empty"]:
                out.update(
                    {k: None for k in PRELABEL_OUTPUTS},
                    status="failed",
                    error="empty_text: nothing to label",
                    attempts=0,
                    input_tokens=0,
                    output_tokens=0,
                )
            else:
                key = self.row_key(row)
                main = self.cache.get(key) or self._transient.get(key)
                if main is None:
                    out.update({k: None for k in PRELABEL_OUTPUTS}, attempts=0, input_tokens=0, output_tokens=0)
                    out.update(status=NOT_RUN, error=f"{NOT_RUN}: stopped before this record (--max-cost)")
                else:
                    out.update(main)
                    note = f"warning: text truncated to {len(row['model_text'])} characters"
                    earlier = out.get("error") or ""
                    # PrelabelTask's answers say it already; openai-batch answers (pipelines.batch) do not
                    if row["truncated"] and out["status"] == "ok" and note.removeprefix("warning: ") not in earlier:
                        out["error"] = f"{note}; {earlier.removeprefix('warning: ')}" if earlier else note
                    if key in charged:
                        out.update(input_tokens=0, output_tokens=0)
                cons = self.cache.get(self.consistency_key(row)) if self.samples else None
                if cons is not None and out["status"] == "ok":
                    out["confidence_consistency"] = cons["confidence_consistency"]
                    out["consistency_labels"] = cons["consistency_labels"]
                    if key not in charged:
                        out["input_tokens"] += cons["input_tokens"]
                        out["output_tokens"] += cons["output_tokens"]
                charged.add(key)
            merged.append(out)
        final = next(self.finalize.process(merged))
        for row in final:
            if row["status"] == NOT_RUN:
                row["status"] = "failed"  # the contract has ok | failed; `error` says it was not run
        frame = pd.DataFrame(final)
        assert len(frame) == len(rows), f"rows in ({len(rows)}) != rows out ({len(frame)})"
        columns = CONTRACT_COLUMNS + (["gold_label"] if "gold_label" in frame.columns else []) + EXTRA_COLUMNS
        columns += [c for c in self._passthrough if c not in columns]
        for column in columns:
            if column not in frame.columns:
                frame[column] = None
        return frame[columns]

    def _summary(
        self, frame: pd.DataFrame, elapsed: float, cache_hits: int, stopped: str | None, started_at: str
    ) -> dict[str, Any]:
        not_run = int(frame["error"].fillna("").str.startswith(NOT_RUN).sum())
        failed = int((frame["status"] == "failed").sum())
        reasons = failure_reasons(frame)
        config = self.config
        return {
            "config": config.source_path,
            "task": config.name,
            "task_type": config.task_type,
            "backend": config.model.backend,
            "model": config.model.name,
            "model_identity": self.model_id,
            "model_settings": config.model.model_dump(mode="json"),  # as run (overrides applied)
            # records decoded together in this run (local jump-forward; null when no record was asked):
            # not part of the cache key, so a rerun keeps answers decoded at another width
            "parallel": getattr(self.llm, "decoding_width", None) if self.stats.calls else None,
            "prompt_hash": self.prompt_hash,
            "generation_settings": dict(self.main_settings),
            "confidence_routing": config.confidence.routing,
            "consistency_samples": self.samples,
            "started_at": started_at,
            "elapsed_s": round(elapsed, 3),
            "complete": stopped is None,
            "stopped": stopped,
            "max_cost": self.max_cost,
            "totals": {
                "records": len(frame),
                "ok": int((frame["status"] == "ok").sum()),
                "failed": failed,
                "not_run": not_run,
                # failed for another reason than --max-cost or a pending batch: the command exits 4
                "failed_errors": sum(n for reason, n in reasons.items() if reason not in NOT_ERRORS),
                "failed_by_reason": reasons,
                "truncated": int(frame["truncated"].fillna(False).astype(bool).sum()),
                "instruction_like": int(frame["instruction_like"].fillna(False).astype(bool).sum())
                if "instruction_like" in frame.columns
                else 0,
                # the confidence each ok record carries: the config's kind, or "stated" where the
                # backend gave none of that kind (e.g. a server that returns no log-probs)
                "confidence_kinds": {
                    str(kind): int(n) for kind, n in frame["confidence_kind"].dropna().value_counts().items()
                },
                "cache_hits": cache_hits,
                "model_calls": self.stats.calls,
                "failed_calls": self.stats.failed_calls,
                "input_tokens": int(frame["input_tokens"].fillna(0).sum()),
                "output_tokens": int(frame["output_tokens"].fillna(0).sum()),
                "cost_usd": round(float(frame["cost_usd"].fillna(0).sum()), 6),
                "cost_usd_this_run": round(self.budget.spent, 6),
                "records_per_s": round((len(frame) - cache_hits) / elapsed, 3) if elapsed > 0 else None,
            },
        }


# Failures that are not errors: the run stopped at --max-cost, or an openai-batch job is pending.
NOT_ERRORS = (NOT_RUN, "pending_batch")


def failure_reasons(frame: pd.DataFrame) -> dict[str, int]:
    """Failed records per reason, the `error` column's code before the first colon
    (``{"label_not_in_set": 2, "context_overflow": 1, "not_run": 3}``), most frequent first."""
    failed = frame.loc[frame["status"] == "failed", "error"].fillna("unknown").astype(str)
    counts = failed.str.split(":", n=1).str[0].str.strip().value_counts()
    return {str(reason): int(n) for reason, n in counts.items()}


def _cacheable(row: dict[str, Any]) -> bool:
    """Finished answers are cached: ok, failed after the retries on bad output, or failed in a way
    the same request repeats (``context_overflow``: the text is cut to fit, so only a config
    change, which changes the key, can help). Records that were not run or whose calls failed at
    the transport level (``backend_error``) are asked again next time."""
    if row["status"] == "ok":
        return True
    error = row.get("error") or ""
    return row["status"] == "failed" and not error.startswith(("backend_error", NOT_RUN))


def _strict_response_format(config: TaskConfig) -> dict[str, Any]:
    """OpenAI's structured-output form (json_schema), used by the Batch API route."""
    from pipelines.llms import _strict_schema

    schema = _strict_schema(config.answer_schema())
    return {"type": "json_schema", "json_schema": {"name": "prelabel", "schema": schema}}
