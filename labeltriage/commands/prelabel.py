"""`labeltriage prelabel` and `second-opinion`: wiring only (the work is in `pipelines/`, `labeltriage.cascade`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.commands.params import ExistingPath, config_option, run_dir_argument
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


@click.command("second-opinion")
@run_dir_argument
@config_option
@click.option("--second", "second_config", required=True,
              help="The second labeller's task config (path or shipped name), with the run's label set.")  # fmt: skip
@click.option("--below", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Ask records whose llm_confidence is below this (1.0: all); set it before seeing gold.")  # fmt: skip
@click.option("--base-url", default=None, help="Override the second config's model.base_url (openai backends).")
@click.option("--max-cost", type=click.FloatRange(min=0), default=None, help="Budget in USD for the second run.")
@click.option("--examples", type=INPUT_PATH, default=None, help="Retrieved examples for a --second with retrieval.k.")
@click.option("--parallel", type=int, default=None, help="Local backend: records decoded together.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def second_opinion(run_dir: Path, second_config: str, quiet: bool, **options: Any) -> None:
    """A cascade before humans: a second labeller answers the records the first was unsure of.

    Writes RUN_DIR/cascade_confidence.parquet (score confidence_cascade, curation/cascade.py), second_opinion.json;
    answers in RUN_DIR/second_opinion/ (a rerun makes no call). Calibrate and route on it: the certificate
    covers what the cascade accepts; the label stays the first answer's. Set --below before seeing gold.
    k samples of the same model: a copy with `confidence: {routing: consistency, consistency_samples: 5}`.

    \b
    Examples:
      labeltriage second-opinion runs/r1 --second second.yaml --below 0.99
      labeltriage calibrate runs/r1 --confidence-column confidence_cascade
      labeltriage route runs/r1
    """
    from labeltriage import api

    report = api.second_opinion(run_dir, second_config, show_progress=not quiet, **options)
    for note in report["notes"]:
        click.echo(note, err=True)
    failed = f", {report['n_failed']} unanswered (they keep the first confidence)" if report["n_failed"] else ""
    click.echo(f"second opinion ({report['second_model']}): asked {report['n_asked']} of {report['n_records']} "
               f"records, {report['n_agree']} agree, {report['n_disagree']} differ{failed}, {report['model_calls']} "
               f"model call(s); wrote {Path(run_dir) / report['file']}")  # fmt: skip
    if report["exit_code"]:  # the second run's own code: failed records, a budget stop, a pending batch
        raise SystemExit(report["exit_code"])
    click.echo(f"next: {report['next']}")
