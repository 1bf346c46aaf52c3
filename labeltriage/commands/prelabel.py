"""`labeltriage prelabel`: wiring only (the work is in `pipelines/`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.commands.params import ExistingPath
from labeltriage.config import BACKENDS

INPUT_PATH = ExistingPath(
    "any", "an input file or saved dataset", "pass a CSV, TSV, JSONL, JSON or parquet file, or a `datasets` folder"
)


@click.command(
    "prelabel",
    epilog="""\b
Examples:
  labeltriage prelabel sentiment reviews.csv --output runs/r1
  labeltriage prelabel sentiment reviews.jsonl --output runs/r1 \\
      --model smollm2 --limit 20                 # fast local smoke run
  OPENAI_API_KEY=... labeltriage prelabel aspects reviews.parquet \\
      --output runs/a1 --backend openai --model gpt-4o-mini --max-cost 0.50
  labeltriage prelabel sentiment data/saved_dataset --output runs/r2 \\
      --text-column review

\b
Rerunning the same command resumes: finished records come from DIR/cache and cost no calls.
Writes DIR/prelabels.parquet (one row per input row) and DIR/run.json (totals).

\b
Reading INPUT: a column `gold_label` (else `label`) is taken as gold labels for calibrate and
route; every other column is kept to the published dataset; empty cells and NA, N/A, NaN,
null, None are missing; a repeated text costs one model call and one review, every row is kept
(column duplicate_of). See pipelines/io.py.

\b
Retrieved examples (config `retrieval: {k: 4}`): each record's prompt carries its k most similar
labelled records (the input's gold, --examples, the run's gold and reviewed labels), never its
own. Rerun after a feedback round to add the new reviewed labels.""",
)
@click.argument("config")
@click.argument("input_path", metavar="INPUT", type=INPUT_PATH)
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
    type=click.FloatRange(min=0),
    default=None,
    help="Budget in USD for this run; stops before exceeding it, keeping finished work.",
)
@click.option(
    "--examples",
    type=ExistingPath("file", "an examples file", "pass a CSV, JSONL or parquet file with `text` and `label`"),
    default=None,
    help="Labelled records (`text` and `label` or `gold_label`) for retrieved examples; needs retrieval.k > 0.",
)
@click.option(
    "--parallel",
    type=int,
    default=None,
    help="Local backend: records decoded together, 1 to 64 (1: one at a time; default 8 per core, at most 16).",
)
@click.option("--limit", type=int, default=None, help="Only the first N input rows.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prelabel(config: str, input_path: Path, output_dir: Path, quiet: bool, **options: Any) -> None:
    """Pre-label INPUT (JSONL, CSV, parquet or a saved `datasets` dataset) with an LLM.

    Every row gets a label from the CONFIG's label set, a confidence (stated, token log-prob
    and optional self-consistency), a reasoning, its tokens and cost, and status ok/failed.
    """
    from rich.console import Console

    from labeltriage import api
    from labeltriage.render import render_prelabel

    console = Console(stderr=True)
    result = api.prelabel(config, input_path, output_dir, show_progress=not quiet, **options)
    for note in result.notes:
        console.print(note, soft_wrap=True, markup=False, highlight=False)
    render_prelabel(result.run, console, result.paths)
    if result.exit_code:
        raise SystemExit(result.exit_code)
