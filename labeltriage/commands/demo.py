"""`labeltriage demo`: the whole loop on real product reviews, one CLI step after another."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]


def _step(number: int, title: str) -> float:
    click.secho(f"\n[{number}/9] {title}", bold=True)
    return time.perf_counter()


@click.command()
@click.option(
    "--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"), show_default=True
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=ROOT / "datasets_config" / "sentiment.yaml",
    show_default=True,
)
@click.option("--records", "n_records", default=300, show_default=True, help="Reviews to pre-label.")
@click.option("--gold", "n_gold", default=120, show_default=True, help="Of which with a gold label (calibration).")
@click.option("--model", default=None, help="Local model (default: the config's, Qwen2.5-1.5B; `smollm2` is fast).")
@click.option(
    "--target-precision",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.85,
    show_default=True,
    # What a 120-record gold slice can certify with margin. The one-sided 95% Wilson bound needs
    # 25 gold records above the threshold, all correct, for 0.90 (24 of 24 gives 0.899) and 52
    # for the config's 0.95: either sits on a knife's edge or out of reach at this size.
    help="Precision the auto-accepted records must reach (lower bound on the gold slice).",
)
@click.option("--port", default=6900, show_default=True, help="Port of the local Argilla stack.")
@click.option("--repo-id", default=None, help="Also push the final dataset to the Hub (needs HF_TOKEN).")
@click.pass_context
def demo(
    ctx: click.Context,
    run_dir: Path,
    config: Path,
    n_records: int,
    n_gold: int,
    model: str | None,
    target_precision: float,
    port: int,
    repo_id: str | None,
) -> None:
    """Run the whole loop on real product reviews with the local model.

    Starts the local Argilla stack, pre-labels Amazon review snippets (VADER set) with the local
    LLM, calibrates on a gold slice, routes, pushes the review queue to Argilla, lets three
    simulated reviewers answer it through the API (their answers are real crowd ratings),
    pulls, reports agreement and the human effort saved, and publishes the final dataset.
    A rerun reuses every finished step (cached LLM answers, idempotent push, existing answers).

    \b
    Examples:
      labeltriage demo
      labeltriage demo --model smollm2 --records 60 --gold 30     # a quick look
      HF_TOKEN=... labeltriage demo --repo-id me/product-reviews
    """
    from argilla_stack.stack import Stack, StackError
    from labeltriage.commands.prelabel import prelabel
    from labeltriage.commands.publish import agreement, publish
    from labeltriage.commands.review import argilla_client, load_run_config, pull, push
    from labeltriage.commands.triage import calibrate, route
    from labeltriage.demo import demo_input, simulate_reviewers

    started = time.perf_counter()
    _step(1, "Local Argilla stack")
    stack = Stack()
    try:
        stack.up(port=port)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc

    _step(2, f"Demo data: {n_records} Amazon review snippets, {n_gold} with a crowd gold label")
    input_path, gold_path = demo_input(n_records, n_gold, run_dir)
    click.echo(f"  {input_path}, {gold_path}")

    _step(3, "Pre-label with the local LLM (cached: a rerun makes no model calls)")
    try:
        ctx.invoke(prelabel, config=config, input_path=input_path, output_dir=run_dir, model=model)
    except SystemExit as exc:
        # 4: some records failed (counted in red above); they go to human review like any other
        if exc.code not in (0, None, 4):
            raise click.ClickException("pre-labelling stopped early; rerun `labeltriage demo` to resume") from None

    _step(4, "Calibrate the confidence on the gold slice")
    ctx.invoke(calibrate, run_dir=run_dir, gold=gold_path)

    _step(5, "Route: auto-accept, human review, spot-check")
    ctx.invoke(route, run_dir=run_dir, config=config, target_precision=target_precision)

    _step(6, "Push the review queue to Argilla (suggestions, reasoning, priorities)")
    ctx.invoke(push, run_dir=run_dir, config=config)

    _step(7, "Three reviewers answer the queue in Argilla (answers drawn from the VADER crowd)")
    task = load_run_config(run_dir, config)
    client = argilla_client()
    dataset = client.datasets(name=task.argilla.dataset, workspace=task.argilla.workspace)
    simulated = simulate_reviewers(stack, dataset, task.argilla.question)
    click.echo(f"  {simulated['answers_sent']} answers sent")

    _step(8, "Pull the responses and measure agreement")
    ctx.invoke(pull, run_dir=run_dir, config=config)
    ctx.invoke(agreement, run_dir=run_dir)

    _step(9, "Publish the final dataset" + (f" to {repo_id}" if repo_id else " locally"))
    ctx.invoke(publish, run_dir=run_dir, repo_id=repo_id, output=run_dir / "published")

    _effort_report(run_dir)
    _closing_login(stack, dataset, simulated["passwords"], run_dir)
    click.echo(f"demo finished in {time.perf_counter() - started:.0f} s; outputs in {run_dir}")


def _closing_login(stack: Any, dataset: Any, passwords: dict[str, str], run_dir: Path) -> None:
    """A login that opens on work: a reviewer with pending records and the queue sorted by priority,
    or, when every record has its answers, how to get more."""
    from labeltriage.demo import pending_for, review_link

    api_url, api_key = stack.credentials()
    link = review_link(api_url, str(dataset.id))
    click.secho("\nKeep going in the Argilla UI", bold=True)
    for reviewer, password in passwords.items():
        pending = pending_for(api_url, api_key, reviewer, password, str(dataset.id))
        if pending:
            click.echo(f"  {link}")
            click.echo(f"  log in as {reviewer} / {password}: {pending} record(s) waiting, highest priority first")
            break
    else:
        from labeltriage.demo import records_with_responses

        waiting = sum(r["status"] == "pending" for r in records_with_responses(api_url, api_key, str(dataset.id)))
        if waiting:
            click.echo(
                f"  {waiting} record(s) still need answers, none of them from these reviewers: add one with "
                f"`labeltriage stack add-user NAME --role annotator` and open {link}"
            )
            click.echo(f"  the owner's login is in {stack.secrets_file}")
            return
        min_submitted = dataset.settings.distribution.min_submitted
        click.echo(
            f"  every record in the queue has the answers it needs (min_submitted {min_submitted}): no reviewer has "
            f"work left. For more: "
            f"`labeltriage push {run_dir} --include-auto --round 2` (an audit of the auto-accepted records), then "
            f"`labeltriage stack add-user NAME --role annotator` and open {link}"
        )
    click.echo(f"  the owner's login is in {stack.secrets_file}")


def _effort_report(run_dir: Path) -> None:
    import pandas as pd

    from labeltriage.commands.triage import _gold_labels

    routed = pd.read_parquet(run_dir / "routed.parquet")
    counts = routed["route"].value_counts().to_dict()
    total = len(routed)
    humans = counts.get("human_review", 0) + counts.get("spot_check", 0)
    click.secho("\nHuman effort", bold=True)
    for route_name in ("auto_accept", "spot_check", "human_review"):
        click.echo(f"  {route_name:<13} {counts.get(route_name, 0):>5}  ({counts.get(route_name, 0) / total:.0%})")
    click.echo(f"  records a human reads: {humans} of {total}: {1 - humans / total:.0%} of the labelling effort saved")
    gold_file = run_dir / "gold.csv"  # written by demo_input: text, gold_label
    if "gold_label" not in routed.columns and gold_file.exists():
        routed = routed.assign(gold_label=_gold_labels(routed, gold_file, "gold_label", run_dir))
    gold = routed.dropna(subset=["gold_label"]) if "gold_label" in routed.columns else routed.iloc[:0]
    auto = gold[gold["route"] == "auto_accept"]
    if len(gold):
        click.echo(f"  LLM accuracy on gold: {(gold['llm_label'] == gold['gold_label']).mean():.1%} (n={len(gold)})")
    if len(auto):
        click.echo(
            f"  auto-accepted accuracy on gold: {(auto['llm_label'] == auto['gold_label']).mean():.1%} (n={len(auto)})"
        )
    routing = run_dir / "routing.json"
    if routing.exists():
        chosen = json.loads(routing.read_text()).get("threshold") or {}
        if chosen.get("threshold") is not None:
            click.echo(
                f"  auto-accept at calibrated confidence >= {chosen['threshold']:.3f}: precision "
                f"{chosen['precision']:.3f} on the {chosen['n_accepted']} of {chosen['n_gold']} gold records above it, "
                f"lower bound {chosen['lower_bound']:.3f} (target {chosen['target_precision']})"
            )
        else:
            click.echo(
                f"  no threshold reaches precision {chosen.get('target_precision')} with confidence on "
                f"{chosen.get('n_gold')} gold labels: every record goes to human review"
            )
