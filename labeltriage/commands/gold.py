"""`labeltriage gold draw | collect`: gold drawn at random from the run, labelled blind in Argilla."""

from __future__ import annotations

from pathlib import Path

import click

from labeltriage.commands.params import config_option, run_dir_argument


@click.group(name="gold")
def gold() -> None:
    """Draw gold records at random from RUN_DIR, have reviewers label them blind, collect the labels.

    \b
    Examples:
      labeltriage gold draw runs/r1 --n 60     # 60 random records to Argilla, no suggestion shown
      labeltriage gold collect runs/r1         # their answers -> runs/r1/gold.parquet
      labeltriage calibrate runs/r1 && labeltriage route runs/r1   # use it (no --gold needed)

    The certificate `route` prints assumes the gold is a random sample of the run; drawn here, it
    is. `route`'s gold_plan (routing.json) says how much gold the target needs.
    """


@gold.command(name="draw")
@run_dir_argument
@config_option
@click.option("--n", "n", type=click.IntRange(1), required=True, help="Gold sample size in total (a rerun extends).")
@click.option("--seed", type=int, default=0, show_default=True)
def draw(run_dir: Path, config: str | None, n: int, seed: int) -> None:
    """Draw N records of RUN_DIR at random and push them to Argilla blind, to be labelled as gold."""
    from labeltriage import api

    result = api.draw_gold(run_dir, n, config=config, seed=seed)
    click.echo(
        f"gold sample: {len(result.ids)} of {result.population} records (inclusion probability "
        f"{result.inclusion_probability:.3g}), {len(result.new)} new; {result.pushed} pushed to Argilla blind; "
        f"wrote {result.path}"
    )
    if result.n_input_gold:
        click.secho(
            f"note: {result.n_input_gold} drawn record(s) already have a gold label in the input (gold_label); "
            "once collected, gold.parquet is the run's gold and the input's gold is not used (pass --gold to "
            "calibrate/route to use a file instead)",
            fg="yellow",
            err=True,
        )


@gold.command(name="collect")
@run_dir_argument
@config_option
def collect(run_dir: Path, config: str | None) -> None:
    """Pull the answers to RUN_DIR's drawn gold records into RUN_DIR/gold.parquet."""
    from labeltriage import api

    result = api.collect_gold(run_dir, config=config)
    click.echo(
        f"gold: {result.n_labelled} of {result.n_drawn} drawn records labelled ({result.n_pending} pending, "
        f"{result.n_tied} tied); wrote {result.path}"
    )
    if result.n_tied or result.n_pending:
        # the hard records are the ones reviewers split on: left out, the gold is no longer a random sample
        click.secho(
            f"note: {result.n_tied + result.n_pending} drawn record(s) have no gold label yet: get them answered "
            "(a tie needs another reviewer) before certifying, or the gold leans towards the easy records",
            fg="yellow",
            err=True,
        )
