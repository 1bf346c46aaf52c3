"""`labeltriage agreement` and `labeltriage publish`: wiring only (logic in curation/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.jsonio import dumps, write_json


def _load(run_dir: Path, config: Path | None):
    from curation.publish import RunDirError, load_run

    try:
        return load_run(run_dir, config)
    except RunDirError as exc:
        raise click.ClickException(str(exc)) from None


def _build(run: Any, method: str, tie_policy: str, min_agreement: float, min_reviewers: int, seed: int):
    from curation.publish import build_final_dataset

    try:
        return build_final_dataset(
            run,
            method=method.replace("-", "_"),
            tie_policy=tie_policy,
            min_agreement=min_agreement,
            min_reviewers=min_reviewers,
            random_state=seed,
        )
    except ValueError as exc:
        # e.g. a response label that is not one of the question's labels
        raise click.ClickException(f"{run.run_dir / 'responses.parquet'}: {exc}") from None


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not report.get("n_responses"):
        console.print("[yellow]No submitted responses: agreement is undefined.[/yellow]")
        return
    head = Table(title="Inter-annotator agreement", show_header=True)
    head.add_column("metric")
    head.add_column("value", justify="right")
    head.add_column("band")
    head.add_row("reviewers / responses", f"{report['n_reviewers']} / {report['n_responses']}", "")
    head.add_row("records with >= 2 reviewers", str(report["n_records_multi_reviewed"]), "")

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    head.add_row("percent agreement", f(report.get("percent_agreement")), "")
    head.add_row(
        f"Fleiss' kappa (k={report.get('fleiss_k')}, seed {report.get('fleiss_seed')})",
        f(report.get("fleiss_kappa")),
        report.get("fleiss_band", ""),
    )
    head.add_row(
        "Krippendorff's alpha (nominal)",
        f(report.get("krippendorff_alpha_nominal")),
        report.get("krippendorff_alpha_band", ""),
    )
    lvm = report.get("llm_vs_majority")
    if lvm:
        head.add_row(f"LLM vs majority kappa (n={lvm['n_items']})", f(lvm["kappa"]), lvm["band"])
        head.add_row("LLM vs majority accuracy", f(lvm["accuracy"]), "")
    console.print(head)

    rev = Table(title="Reviewers (vs the majority of the others)")
    for col in ("user", "items", "agreement", "kappa", "LLM-vs-user kappa", "LLM-vs-others kappa", "flag"):
        rev.add_column(col)
    favours = {d["user"]: d for d in report.get("llm_favours_reviewer", [])}
    for d in report["per_reviewer"]:
        fav = favours.get(d["user"], {})
        rev.add_row(
            d["user"],
            str(d["n_items"]),
            f(d["agreement"]),
            f(d["kappa"]),
            f(fav.get("kappa_llm_reviewer")),
            f(fav.get("kappa_llm_others")),
            "[red]LLM favours[/red]" if fav.get("flagged") else "",
        )
    console.print(rev)
    if report.get("llm_per_class"):
        pc = Table(title="LLM per class (human majority as truth)")
        for col in ("label", "precision", "recall", "F1", "support"):
            pc.add_column(col)
        for d in report["llm_per_class"]:
            pc.add_row(d["category"], f(d["precision"]), f(d["recall"]), f(d["f1"]), str(d["support"]))
        console.print(pc)
    for name in report.get("llm_favours_reviewer_flagged", []):
        console.print(
            f"[red]Warning:[/red] the LLM agrees with {name} far more than with the other reviewers' "
            "majority; it may mimic that reviewer's biases. Inspect the records where the LLM and the "
            "majority differ."
        )
    console.print("Bands: > 0.80 almost perfect, > 0.60 substantial, > 0.40 moderate, > 0.20 fair, else slight/poor")


_COMMON = [
    click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Task config (labels, guidelines); default: the one recorded in run.json.",
    ),
    click.option(
        "--method",
        type=click.Choice(["majority", "dawid-skene"]),
        default="majority",
        show_default=True,
        help="Consensus method for records with several reviewers.",
    ),
    click.option(
        "--tie-policy",
        type=click.Choice(["abstain", "llm", "random"]),
        default="abstain",
        show_default=True,
        help="Majority-vote ties: abstain (send to adjudication), llm (LLM label breaks the tie if tied), random.",
    ),
    click.option(
        "--min-agreement",
        type=click.FloatRange(0, 1),
        default=0.6,
        show_default=True,
        help="Records whose winning label has a smaller vote share go to adjudication.",
    ),
    click.option("--min-reviewers", type=click.IntRange(1), default=1, show_default=True),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed for ties and Fleiss subsampling."),
]


def _common(fn):
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


@click.command(name="agreement")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@_common
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: RUN_DIR/agreement.json."
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of tables.")
def agreement(
    run_dir: Path,
    config: Path | None,
    method: str,
    tie_policy: str,
    min_agreement: float,
    min_reviewers: int,
    seed: int,
    output: Path | None,
    as_json: bool,
) -> None:
    """Inter-annotator agreement on the responses pulled into RUN_DIR.

    Reads RUN_DIR/responses.parquet (from `labeltriage pull`) and the LLM labels in
    RUN_DIR/routed.parquet; writes RUN_DIR/agreement.json: percent agreement, Fleiss' kappa
    (subsampled to the same number of reviewers per record, seeded), Krippendorff's alpha, pairwise
    Cohen's kappa, each reviewer against the others' majority, LLM-vs-majority kappa and per-class
    F1, and the check that the LLM does not simply mimic one reviewer.

    \b
    Examples:
      labeltriage agreement runs/r1
      labeltriage agreement runs/r1 --json --output /tmp/agreement.json
    """
    from curation.publish import compute_agreement

    run = _load(run_dir, config)
    if not (run_dir / "responses.parquet").exists():
        raise click.ClickException(f"{run_dir / 'responses.parquet'}: missing; run `labeltriage pull {run_dir}` first")
    final = _build(run, method, tie_policy, min_agreement, min_reviewers, seed)
    report = compute_agreement(run, final, random_state=seed)
    out = output or run_dir / "agreement.json"
    write_json(out, report)
    if as_json:
        click.echo(dumps(report))
    else:
        _print_report(report)
        click.echo(f"wrote {out}")


@click.command(name="publish")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@_common
@click.option("--repo-id", default=None, help="Hub dataset repo ORG/NAME; omit to publish locally only.")
@click.option("--public", is_flag=True, help="Create the Hub repo public (default: private).")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for final.parquet, README.md, agreement.json, adjudication.parquet (default: RUN_DIR).",
)
def publish(
    run_dir: Path,
    config: Path | None,
    method: str,
    tie_policy: str,
    min_agreement: float,
    min_reviewers: int,
    seed: int,
    repo_id: str | None,
    public: bool,
    output: Path | None,
) -> None:
    """Build the final dataset of RUN_DIR, write it locally and optionally push it to the Hub.

    Each row says how its label was made (label_source = human | consensus | llm_auto). Records
    with a tie or low agreement are written to adjudication.parquet (push them back to Argilla)
    and left out. The dataset card (README.md) records the task, guidelines, model, prompt hash,
    calibration, thresholds, agreement figures, cost and counts per label source.

    The Hub token is read from HF_TOKEN; HF_ENDPOINT selects another Hub-compatible server.

    \b
    Examples:
      labeltriage publish runs/r1
      labeltriage publish runs/r1 --output dist/reviews
      HF_TOKEN=hf_... labeltriage publish runs/r1 --repo-id me/reviews
      labeltriage publish runs/r1 --method dawid-skene --tie-policy llm --repo-id me/reviews --public
    """
    from curation.publish import build_dataset_card, compute_agreement, push_to_hub, write_local

    run = _load(run_dir, config)
    final = _build(run, method, tie_policy, min_agreement, min_reviewers, seed)
    report = compute_agreement(run, final, random_state=seed)
    card = build_dataset_card(run, final, report)
    paths = write_local(final, card, report, output or run_dir)
    s = final.summary
    click.echo(
        f"published {s['n_published']} records ({', '.join(f'{k} {v}' for k, v in s['per_label_source'].items())}); "
        f"adjudication {s['n_adjudication']}, pending review {s['n_pending_review']}, failed {s['n_failed_prelabels']}"
    )
    if s["n_responses_unknown_record"]:
        click.echo(
            f"warning: {s['n_responses_unknown_record']} responded record id(s) are not in "
            "routed.parquet and were ignored",
            err=True,
        )
    click.echo(f"wrote {paths['final']}, {paths['card']}, {paths['agreement']}, {paths['adjudication']}")
    if repo_id:
        try:
            url = push_to_hub(final.final, card, repo_id, private=not public)
        except (RuntimeError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"pushed to {url} ({'public' if public else 'private'})")
