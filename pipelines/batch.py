"""`openai-batch`: OpenAI's Batch API through distilabel's offline batch generation.

First run: every record not in the cache is rendered and handed to distilabel's
`OpenAILLM.offline_batch_generate` (uploads a JSONL file, creates the batch job); the job ids and
the record keys (custom_id = position) are saved in `DIR/batch_jobs.json`, pending rows are written
with status failed / error ``pending_batch: ...`` and the command exits with code 3.
Next run (same command): the jobs are polled; when complete, every answer is validated like the
streaming path (no retries: a bad answer fails with its raw output kept), cached, and the file
removed. Results are matched by `custom_id`, never by position.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from distilabel.exceptions import DistilabelOfflineBatchGenerationNotFinishedException

from labeltriage.config import TaskConfig
from labeltriage.jsonio import write_json
from pipelines.parsing import (
    InvalidOutput,
    distribution_columns,
    label_token_probability,
    parse_answer,
    token_positions,
)
from pipelines.prelabeller import Prelabeller, RunResult, _strict_response_format
from pipelines.prompt import render_messages
from pipelines.steps import PrepareText, text_budget

JOBS_FILE = "batch_jobs.json"
PENDING = "pending_batch"


class BatchPrelabeller(Prelabeller):
    """The DAG is PrepareText >> Finalize; the batch LLM sits between them, driven here (distilabel
    accepts offline-batch LLMs only in global tasks, which see the whole dataset at once)."""

    def _build_steps(self, config: TaskConfig) -> None:
        gen = config.model.generation
        self.prepare = PrepareText(name="prepare_text", max_chars=gen.max_text_chars, labels=config.label_names)
        self.prepare.use_budget(text_budget(config, self.llm))  # characters: no tokenizer for a remote model
        self.task = None  # type: ignore[assignment]  # the batch API answers the task: no local step
        self.consistency = None
        self.finalize = self._finalize_step()
        self.prepare >> self.finalize

    def run(self, records: pd.DataFrame) -> RunResult:
        """First call: submit the uncached records as OpenAI batch job(s), saved in
        ``batch_jobs.json``, and return with them ``pending_batch`` (``summary["complete"]`` False).
        Later calls: collect the finished jobs into the cache (a job still running leaves them
        pending; a failed or expired one is asked again next run) and return the answers.
        Raises ``RuntimeError`` if distilabel returns without submitting a job."""
        started = time.perf_counter()
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = self._prepare(records)
        jobs_path = self.output_dir / JOBS_FILE
        self.llm.load()
        pending_note = None
        if jobs_path.is_file():
            pending_note = self._collect(json.loads(jobs_path.read_text()), jobs_path)
        else:
            todo: dict[str, str] = {}
            for row in rows:
                key = self.main_key(row["model_text"])
                if not row["empty"] and key not in self.cache:
                    todo.setdefault(key, row["model_text"])
            if todo:
                pending_note = self._submit(todo, jobs_path)
        frame = self._assemble(rows)
        if pending_note:
            waiting = frame["error"].fillna("").str.startswith("not_run")
            frame.loc[waiting, "error"] = f"{PENDING}: {pending_note}"
        summary = self._summary(frame, time.perf_counter() - started, 0, None, started_at)
        summary["pending_batch"] = pending_note
        summary["complete"] = pending_note is None
        return RunResult(frame=frame, summary=summary, stats=self.stats)

    def _submit(self, todo: dict[str, str], jobs_path: Path) -> str:
        gen = self.config.model.generation
        inputs = [render_messages(self.config, text) for text in todo.values()]
        try:
            self.llm.offline_batch_generate(
                inputs=inputs,
                num_generations=1,
                max_new_tokens=gen.max_tokens,
                temperature=gen.temperature,
                logprobs=gen.top_logprobs > 0,
                response_format=_strict_response_format(self.config),
            )
        except DistilabelOfflineBatchGenerationNotFinishedException as submitted:
            state = {"jobs_ids": list(submitted.jobs_ids), "keys": list(todo), "texts": list(todo.values())}
            jobs_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(jobs_path, state, indent=None)
            self.stats.calls += len(inputs)
            return f"submitted {len(inputs)} requests in batch job(s) {', '.join(state['jobs_ids'])}; rerun to collect"
        raise RuntimeError("offline batch generation returned without submitting a job")

    def _collect(self, state: dict[str, Any], jobs_path: Path) -> str | None:
        results: dict[int, dict[str, Any]] = {}
        for batch_id in state["jobs_ids"]:
            batch = self.llm._get_openai_batch(batch_id)  # distilabel's own polling helpers
            if batch.status in ("validating", "in_progress", "finalizing"):
                return f"batch job {batch_id} is {batch.status}; rerun later to collect"
            if batch.status != "completed":
                continue  # failed / expired / cancelled: those records are asked again next run
            for line in self.llm._retrieve_batch_results(batch):
                results[int(line["custom_id"])] = line
        fresh: dict[str, dict[str, Any]] = {}
        for index, key in enumerate(state["keys"]):
            line = results.get(index)
            if line is not None:
                fresh[key] = self._answer(line)
        self.cache.put_many(fresh)
        jobs_path.unlink()
        return None

    def _answer(self, line: dict[str, Any]) -> dict[str, Any]:
        response = line.get("response") or {}
        body = response.get("body") or {}
        usage = body.get("usage") or {}
        out: dict[str, Any] = {
            "llm_label": None,
            "confidence_stated": None,
            "confidence_logprob": None,
            "confidence_distribution": None,
            "label_distribution": None,
            "reasoning": None,
            "raw_output": None,
            "status": "failed",
            "error": None,
            "attempts": 1,
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "output_tokens": int(usage.get("completion_tokens", 0)),
        }
        if response.get("status_code") != 200 or not body.get("choices"):
            out["error"] = f"batch_error: {json.dumps(line.get('error') or response)[:300]}"
            return out
        choice = body["choices"][0]
        raw = (choice.get("message") or {}).get("content")
        out["raw_output"] = raw
        try:
            answer = parse_answer(raw, self.config)
        except InvalidOutput as invalid:
            out["error"] = f"{invalid} (batch: no retry)"
            return out
        content = (choice.get("logprobs") or {}).get("content") or []
        positions = token_positions([[t, *(t.get("top_logprobs") or [])] for t in content])
        out.update(
            llm_label=answer.label,
            confidence_stated=answer.confidence,
            confidence_logprob=label_token_probability(str(raw), [p[0] for p in positions], self.config),
            **distribution_columns(str(raw), positions, answer.label, self.config),
            reasoning=answer.reasoning,
            status="ok",
        )
        return out
