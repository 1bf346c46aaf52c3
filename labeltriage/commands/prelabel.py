"""`labeltriage prelabel`: wiring only (the work is in `pipelines/`)."""

from __future__ import annotations

from pathlib import Path

import click

BACKENDS = ("local", "openai", "openai-batch")


@click.command(
    "prelabel",
    epilog="""\b
Examples:
  labeltriage prelabel datasets_config/sentiment.yaml reviews.csv --output runs/r1
  labeltriage prelabel datasets_config/sentiment.yaml reviews.jsonl --output runs/r1 \\
      --model smollm2 --limit 20                 # fast local smoke run
  OPENAI_API_KEY=... labeltriage prelabel datasets_config/aspects.yaml reviews.parquet \\
      --output runs/a1 --backend openai --model gpt-4o-mini --max-cost 0.50
  labeltriage prelabel datasets_config/sentiment.yaml data/saved_dataset --output runs/r2 \\
      --text-column review

\b
Rerunning the same command resumes: finished records come from DIR/cache and cost no calls.
Writes DIR/prelabels.parquet (one row per input row) and DIR/run.json (totals).

\b
Reading INPUT: a column `gold_label` (else `label`) is taken as gold labels for calibrate and
route; every other column is kept to the published dataset; empty cells and NA, N/A, NaN,
null, None are missing; a repeated text costs one model call and one review, every row is kept
(column duplicate_of). See pipelines/io.py.""",
)
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output",
    "-o",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory (created); holds prelabels.parquet, run.json and the resume cache.",
)
@click.option("--text-column", default=None, help="Column holding the text (default: the config's text_column).")
@click.option(
    "--id-column",
    default=None,
    help="Column holding your own record ids (unique, never empty); default: a hash of source and text.",
)
@click.option(
    "--encoding",
    default=None,
    help="Text encoding of a CSV/TSV/JSONL input (default: UTF-8, else detected and reported).",
)
@click.option("--backend", type=click.Choice(BACKENDS), default=None, help="Override model.backend.")
@click.option(
    "--model",
    default=None,
    help="Override model.name (local: qwen2.5-coder-1.5b-instruct-q4_k_m, smollm2, or a .gguf path).",
)
@click.option("--base-url", default=None, help="Override model.base_url (openai backends).")
@click.option(
    "--max-cost",
    type=float,
    default=None,
    help="Budget in USD for this run; stops before exceeding it, keeping finished work.",
)
@click.option("--limit", type=int, default=None, help="Only the first N input rows.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prelabel(
    config: Path,
    input_path: Path,
    output_dir: Path,
    text_column: str | None,
    id_column: str | None,
    encoding: str | None,
    backend: str | None,
    model: str | None,
    base_url: str | None,
    max_cost: float | None,
    limit: int | None,
    quiet: bool,
) -> None:
    """Pre-label INPUT (JSONL, CSV, parquet or a saved `datasets` dataset) with an LLM.

    Every row gets a label from the CONFIG's label set, a confidence (stated, token log-prob
    and optional self-consistency), a reasoning, its tokens and cost, and status ok/failed.
    """
    from rich.console import Console

    from labeltriage.config import ConfigError, load_task_config
    from pipelines.io import InputError, load_records
    from pipelines.models import ModelNotAvailable
    from pipelines.runner import input_summary, print_input_notes, print_summary, run_prelabel, with_overrides

    console = Console(stderr=True)
    try:
        task = load_task_config(config)
        task = with_overrides(task, backend=backend, model=model)
        if base_url:
            task = task.model_copy(update={"model": task.model.model_copy(update={"base_url": base_url})})
        records = load_records(
            input_path, text_column or task.text_column, limit=limit, id_column=id_column, encoding=encoding
        )
        print_input_notes(input_summary(records), console)
        if max_cost is not None and max_cost < 0:
            raise click.BadParameter("must be >= 0", param_hint="--max-cost")
        result = run_prelabel(task, records, output_dir, max_cost=max_cost, show_progress=not quiet)
    except (ConfigError, InputError, ModelNotAvailable) as error:
        raise click.ClickException(str(error)) from None
    except RuntimeError as error:
        if "environment variable" in str(error):
            raise click.ClickException(str(error)) from None
        raise
    print_summary(result, console, (output_dir / "prelabels.parquet", output_dir / "run.json"))
    if result.summary.get("pending_batch"):
        raise SystemExit(3)
    if result.summary["stopped"]:
        raise SystemExit(2)
    if result.summary["totals"].get("failed_errors"):  # the red line above says how many and where
        raise SystemExit(4)
