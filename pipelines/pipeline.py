"""The same steps wired into a distilabel `Pipeline` (distilabel's own executor and Distiset).

`labeltriage prelabel` uses `pipelines.runner` instead (per-record cache, budget, progress);
this builder is for users who want to compose the steps with other distilabel steps. Texts are
cut here by ``max_text_chars`` only: the runner also fits them to the context window by the
model's tokens, which needs the loaded model in the same process.
"""

from __future__ import annotations

from typing import Any

from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts

from labeltriage.config import TaskConfig
from pipelines.llms import Budget, CallStats
from pipelines.prelabeller import build_llm
from pipelines.prompt import prompt_hash
from pipelines.steps import Finalize, PrelabelTask, PrepareText, SelfConsistency


def build_distilabel_pipeline(
    config: TaskConfig, records: list[dict[str, Any]], *, batch_size: int = 8, cache_dir: str | None = None
) -> Pipeline:
    """A distilabel ``Pipeline`` over ``records`` (dicts with ``id`` and ``text``):
    load >> PrepareText >> PrelabelTask [>> SelfConsistency] >> Finalize, ``batch_size`` rows per
    batch, distilabel's cache under ``cache_dir``. Run it with ``pipeline.run()``; it returns a
    ``Distiset``. Raises what building the backend raises (:class:`~labeltriage.errors.BackendError`)."""
    gen = config.model.generation
    llm = build_llm(config, CallStats(), Budget(config.model.price))
    with Pipeline(name=f"labeltriage-prelabel-{config.name}", cache_dir=cache_dir) as pipeline:
        load = LoadDataFromDicts(name="load_records", data=records, batch_size=batch_size)
        prepare = PrepareText(
            name="prepare_text", max_chars=gen.max_text_chars, labels=config.label_names, input_batch_size=batch_size
        )
        task = PrelabelTask(
            name="prelabel",
            llm=llm,
            config=config,
            max_retries=config.model.max_retries,
            temperature=gen.temperature,
            max_tokens=gen.max_tokens,
            seed=gen.seed,
            input_batch_size=batch_size,
        )
        finalize = Finalize(
            name="finalize",
            routing=config.confidence.routing,
            price_input=config.model.price.input,
            price_output=config.model.price.output,
            model=config.model.name,
            prompt_hash=prompt_hash(config),
            input_batch_size=batch_size,
        )
        chain = load >> prepare >> task
        if config.confidence.consistency_samples > 0:
            consistency = SelfConsistency(
                name="self_consistency",
                llm=build_llm(config, CallStats(), Budget(config.model.price)),
                config=config,
                samples=config.confidence.consistency_samples,
                temperature=config.confidence.consistency_temperature,
                max_tokens=gen.max_tokens,
                input_batch_size=batch_size,
            )
            chain = chain >> consistency
        chain >> finalize
    return pipeline
