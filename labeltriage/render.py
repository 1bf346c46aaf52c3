"""How the CLI shows each step's result (`labeltriage.api` returns them; nothing here computes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from curation.adapters.loop import RoundResult
    from labeltriage.api import AgreementResult
    from pipelines.prelabeller import RunResult


def notes(lines: list[str]) -> None:
    for line in lines:
        click.echo(line, err=True)


def render_calibration(result: Any) -> None:
    notes(result.notes)
    for message in result.warnings:
        click.echo(f"warning: {message}", err=True)
    shown, where = result.shown
    before, after = shown["before"], shown["after"]
    n_wrong = int(round(result.n_gold * (1 - result.accuracy)))
    click.echo(f"gold: {result.n_gold} records, LLM accuracy {result.accuracy:.3f} ({n_wrong} wrong)")
    click.echo(f"{'metric':<16}{'raw':>10}{'calibrated':>12}   ({where})")
    for key in ("ece", "ece_equal_mass", "mce", "brier", "auroc"):
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        click.echo(f"{key:<16}{fmt(before[key]):>10}{fmt(after[key]):>12}")
    click.echo(f"wrote {result.paths['calibrator.json']}, calibration.json, reliability.png")


def render_routing(result: Any) -> None:
    notes(result.notes)
    t = result.report["threshold"]
    if result.method == "fixed-sequence":
        if not result.report.get("applied", True):
            click.echo(f"warning: {result.statement}", err=True)
        elif t["achievable"]:
            shown = t["threshold_calibrated"] if t.get("threshold_calibrated") is not None else t["threshold"]
            click.echo(
                f"certified: auto-accept at raw confidence >= {t['threshold']:.4f} (calibrated {shown:.3f}): "
                f"{t['n_correct_gold']}/{t['n_accepted_gold']} gold right above it, exact p = {t['p_value']:.3g}"
            )
        else:
            click.echo(
                "warning: no threshold is certified, every record without a gold label goes to human review: "
                f"{t['reason']}",
                err=True,
            )
        if result.report.get("applied", True):
            click.echo(result.statement)
    else:
        click.echo(f"warning: {result.statement}", err=True)
    click.echo("routes: " + ", ".join(f"{k} {v}" for k, v in result.counts.items()))
    flagged = result.report["n_instruction_like"]
    if flagged:
        click.echo(f"  {flagged} record(s) with instruction-like text go to human review whatever the LLM said")
    for row in result.report["errors_caught"] or []:
        click.echo(
            f"  review {row['budget']:.0%} lowest-confidence -> catch {row['errors_caught_share']:.0%} "
            f"of LLM errors (random: {row['random_share']:.0%})"
        )
    plan = result.report.get("gold_plan")
    if plan:
        render_gold_plan(plan, result.target_precision, result.confidence_level, sum(result.counts.values()))
    click.echo(f"wrote {result.paths['routed']} and routing.json")


def render_gold_plan(plan: dict[str, Any], target: float, level: float, n_records: int | None = None) -> None:
    """The planner's answer in a few lines (the whole of it is in routing.json's gold_plan); gold
    sizes over half of the run's ``n_records`` are not shown (labelling them saves nothing)."""
    need = {row["errors"]: row for row in plan["needed"]}
    click.echo(
        f"gold plan: precision >= {target:g} at {level:.0%} needs >= {need[0]['n_gold_above']} gold records above "
        f"a threshold, all right (or {need[1]['n_gold_above']} with one error); the present {plan['n_gold']} gold "
        f"certify a threshold that {plan['coverage_now']:.0%} of the run's records reach (gold included, which is "
        "published with its own label)"
    )
    for row in plan["projections"]:
        if n_records and row["n_gold"] > n_records / 2:
            continue
        if row.get("feasible", True) and row.get("sampling", "random") == "random":
            click.echo(
                f"  with {row['n_gold']} gold: certifies something in {row['p_certify']:.0%} of simulations, "
                f"{row['coverage_when_certified'] or 0:.0%} of the run above the threshold when it does, gold "
                f"included (expected {row['expected_coverage']:.0%} over all of them)"
            )
    if plan.get("suggest_ids"):
        click.echo(
            f"  label next: {len(plan['suggest_ids'])} records drawn at random from the run (ids in routing.json "
            "gold_plan.suggest_ids, in that order; or `labeltriage gold draw RUN_DIR --n TOTAL`, TOTAL = the gold "
            "sample size wanted in all)"
        )


def render_push(report: Any, task: Any) -> None:
    if report.checkpoint_note:
        click.echo(f"note: {report.checkpoint_note}")
    if report.auto_accept_stopped:
        click.secho(f"auto-accept stopped: {report.auto_accept_stopped}", fg="yellow", err=True)
    click.echo(
        f"pushed {report.pushed} record(s) to {task.argilla.workspace}/{task.argilla.dataset} "
        f"({report.skipped_already_pushed} already there; {report.not_routed_to_review} not for review: "
        "auto-accepted or gold)"
        + (f"; {report.audit_copies} of the rows in the queue are second, blind copies of reviewed records "
           "(<id>::audit), not records of their own" if report.audit_copies else "")
    )  # fmt: skip
    if report.held_back:
        click.echo(f"{report.held_back} more record(s) of the review queue held back by --limit: push again for them")
    if report.reasoning:  # model.generation.reasoning: review_only
        r = report.reasoning
        click.echo(
            f"reasoning (review_only): asked for {r['asked']} record(s) shown with the suggestion, {r['added']} "
            f"added ({r['model_calls']} model call(s)); {r['label_changed']} answered another label, "
            f"{r['failed']} failed: those show no reasoning (the next push asks the failed ones again)"
        )
    if report.queue_url:
        click.echo(f"review queue, highest priority first: {report.queue_url}")


def render_pull(report: Any, run: Any, command: str = "pull") -> None:
    task = run.task_config()
    click.echo(
        f"pulled {report.submitted} submitted response(s)"
        + (
            f" ({report.kept_from_earlier_pulls} of them saved by earlier pulls, no longer on the server)"
            if report.kept_from_earlier_pulls
            else ""
        )
        + f" from {len(report.reviewers)} reviewer(s) on "
        f"{report.records_with_submitted}/{report.records} record(s); not used: {report.draft} draft, "
        f"{report.discarded} discarded, {report.invalid_label} with a label outside the task config's labels"
    )
    for example in report.invalid_examples:
        click.echo(f"  invalid label {example['label']!r} by {example['user']} on record {example['record_id']}")
    changes = [f"no longer has {label!r}" for label in report.labels_removed_from_config]
    changes += [f"adds {label!r}" for label in report.labels_added_to_config]
    warnings = []
    if changes:
        warnings.append(
            f"the task config ({task.source_path}) {', '.join(changes)} against the Argilla question "
            f"{task.argilla.question!r}; answers with a label the config lacks are not used. Fix: restore the "
            "config's labels, or push to a new dataset (argilla.dataset) for the new label set"
        )
    if report.kept_from_earlier_pulls:
        warnings.append(
            f"{report.kept_from_earlier_pulls} submitted response(s) saved by an earlier pull are no longer on the "
            f"server (a reviewer's account or a record deleted?); kept in responses.parquet (on_server = false). "
            f"To forget them: labeltriage {command} {run.path} --drop-missing"
        )
    for message in warnings:
        click.echo(f"warning: {message}", err=True)
    if report.dropped_from_earlier_pulls:
        click.echo(f"dropped {report.dropped_from_earlier_pulls} response(s) the server no longer has", err=True)


def render_round(result: RoundResult) -> None:
    click.echo(
        f"round {result.round}: {result.pulled.submitted} submitted, "
        f"{len(result.adjudication)} to adjudicate, {result.metadata_updated} priorities updated"
    )
    if result.held_back:
        click.echo(f"  {result.held_back} queued record(s) not pushed yet: `push --limit N` sends the next by priority")
    if result.audit is not None:
        click.echo(f"  audits: {result.audit['statement']}")
    if result.auto_accept_stopped:
        click.secho(
            f"  auto-accept stopped: {result.auto_accept_stopped}; {result.sent_to_review} record(s) pushed to review",
            fg="yellow",
        )


def render_agreement(result: AgreementResult) -> None:
    from rich.console import Console
    from rich.table import Table

    report = result.report
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
    modes = report.get("llm_agreement_by_review_mode")
    if modes:
        from curation.publish import describe_review_modes

        console.print(describe_review_modes(modes), soft_wrap=True, markup=False, highlight=False)
    console.print("Bands: > 0.80 almost perfect, > 0.60 substantial, > 0.40 moderate, > 0.20 fair, else slight/poor")


def render_publish(result: Any) -> None:
    s, paths = result.summary, result.paths
    if result.auto_accept_stopped:
        click.secho(f"auto-accept stopped: {result.auto_accept_stopped}", fg="yellow", err=True)
    # `student` only once `student-label` ran: a count of 0 there would only puzzle a new user
    sources = {k: v for k, v in s["per_label_source"].items() if k != "student" or v}
    click.echo(
        f"published {s['n_published']} records ({', '.join(f'{k} {v}' for k, v in sources.items())}); "
        f"adjudication {s['n_adjudication']}, pending review {s['n_pending_review']}, failed {s['n_failed_prelabels']}"
    )
    if s["n_responses_unknown_record"]:
        click.echo(
            f"warning: {s['n_responses_unknown_record']} responded record id(s) are not in "
            "routed.parquet and were ignored",
            err=True,
        )
    measured = result.agreement.get("published_accuracy")
    if measured:
        from curation.publish import published_accuracy_parts

        for part in published_accuracy_parts(measured):
            click.echo(part)
    click.echo(f"wrote {paths['final']}, {paths['card']}, {paths['agreement']}, {paths['adjudication']}")
    if result.hub_url:
        click.echo(f"pushed to {result.hub_url} ({'private' if result.hub_private else 'public'})")


def render_effort(effort: dict[str, Any]) -> None:
    """The demo's "Human effort" block (labeltriage.demo.effort_report)."""
    counts, total = effort["counts"], effort["total"]
    click.secho("\nHuman effort", bold=True)
    for route_name in ("auto_accept", "spot_check", "human_review", "gold"):
        click.echo(f"  {route_name:<13} {counts[route_name]:>5}  ({counts[route_name] / total:.0%})")
    humans = effort["humans"]
    click.echo(
        f"  records a human labels (review, blind audit, gold): {humans} of {total}: "
        f"{1 - humans / total:.0%} of the labelling effort saved"
    )
    if effort["gold_accuracy"] is not None:
        click.echo(f"  LLM accuracy on gold: {effort['gold_accuracy']:.1%} (n={effort['n_gold']}: every gold record, "
                   "whatever its confidence; the threshold was certified on them)")  # fmt: skip
    if effort.get("auto_accepted_accuracy") is not None:
        click.echo(
            f"  auto-accepted accuracy on gold: {effort['auto_accepted_accuracy']:.1%} (n={effort['n_auto_accepted']}; "
            "each auto-accepted record against its gold-standard label, the crowd's mean rating, which the product "
            "never saw for these records)"
        )
    chosen = effort["threshold"]
    if chosen.get("threshold") is not None and effort.get("method") == "scan":
        click.echo(
            f"  auto-accept at calibrated confidence >= {chosen['threshold']:.3f} (per-threshold scan, not "
            f"family-wise valid: lower bound {chosen['lower_bound']:.3f})"
        )
    elif chosen.get("threshold") is not None:
        precision = chosen.get("precision_gold", chosen.get("precision"))
        n_accepted = chosen.get("n_accepted_gold", chosen.get("n_accepted"))
        click.echo(
            f"  auto-accept at raw confidence >= {chosen['threshold']:.3f}: precision {precision:.3f} on the "
            f"{n_accepted} of {chosen['n_gold']} gold records above it (the gold it was certified on); certified >= "
            f"{chosen['target_precision']} at {chosen.get('confidence_level', 0.95):.0%} family-wise "
            f"(exact p = {chosen['p_value']:.3g})"
        )
    elif chosen:
        click.echo(
            f"  no threshold is certified at precision {chosen.get('target_precision')} on "
            f"{chosen.get('n_gold')} gold labels: every record goes to human review"
        )


def render_prelabel(result: RunResult, console: Console, paths: tuple[Path, Path] | None = None) -> None:
    """The prelabel summary table (run.json's totals) and a line on failed records."""
    from rich.table import Table

    from pipelines.prelabeller import NOT_ERRORS

    s, t = result.summary, result.summary["totals"]
    table = Table(title=f"prelabel: {s['task']} ({s['backend']}:{s['model']})", show_header=False)
    table.add_row("records", str(t["records"]))
    table.add_row("ok / failed", f"{t['ok']} / {t['failed']} (not run: {t['not_run']})")
    table.add_row("truncated to fit", str(t.get("truncated", 0)))
    table.add_row("instruction-like (to human review)", str(t.get("instruction_like", 0)))
    table.add_row("cache hits / model calls", f"{t['cache_hits']} / {t['model_calls']}")
    table.add_row("tokens in / out", f"{t['input_tokens']} / {t['output_tokens']}")
    if t.get("cost_usd") is None:
        table.add_row("cost", f"unknown: {s.get('cost_basis', 'no price for this endpoint')}")
    else:
        table.add_row("cost (total / this run)", f"${t['cost_usd']:.4f} / ${t['cost_usd_this_run']:.4f}")
    kinds = t.get("confidence_kinds") or {}
    fallback = sum(n for kind, n in kinds.items() if kind != s.get("confidence_routing"))
    if fallback:
        table.add_row(
            "confidence",
            f"[red]{fallback} record(s) carry the stated confidence, not {s.get('confidence_routing')}[/red] "
            "(the backend returned none); calibrate one kind: --confidence-column confidence_stated",
        )
    table.add_row("elapsed", f"{s['elapsed_s']:.1f} s ({t['records_per_s']} new records/s)")
    if s["stopped"]:
        table.add_row("stopped", f"[red]{s['stopped']}[/red]: rerun with a higher --max-cost to continue")
    if paths:
        table.add_row("wrote", f"{paths[0]}\n{paths[1]}")
    console.print(table)
    errors = t.get("failed_errors", 0)
    if errors:
        where = paths[0] if paths else "prelabels.parquet"
        reasons = ", ".join(f"{r} {n}" for r, n in t.get("failed_by_reason", {}).items() if r not in NOT_ERRORS)
        console.print(
            f"[bold red]{errors} of {t['records']} records failed ({reasons}): "
            f"see the error column of {where}[/bold red]",
            soft_wrap=True,
        )


def render_label_studio_push(report: Any) -> None:
    """What `label-studio push` did, the queue link, and what blind means in Label Studio Community."""
    click.echo(
        f"Label Studio project {report.project_id}: {report.imported} task(s) imported, {report.updated} updated, "
        f"{report.predictions_updated} prediction(s) replaced (new score, label or model), "
        f"{report.predictions_removed} removed from blind tasks"
    )
    click.echo(f"review queue (sorted by priority; open it and use 'Label Tasks As Displayed'): {report.queue_url}")
    if report.blind:
        click.secho(
            f"note: {report.blind} task(s) are blind (no prediction, no reasoning); Label Studio Community shows "
            "every member every annotation, so they are blind to the model, not to the other reviewers' answers",
            fg="yellow",
            err=True,
        )


def render_student_label(report: dict[str, Any], written: Path) -> None:
    """`student-label`'s statement, then its figures (none when there was nothing to label)."""
    click.echo(report["statement"])
    if report["n_pool"]:
        click.echo(
            f"{report['student']} student accuracy on the stratum's {report['n_gold_stratum']} gold records: "
            f"{report['student_accuracy_gold_stratum']:.3f} (the LLM's: {report['llm_accuracy_gold_stratum']:.3f}); "
            f"trained on {report['n_train']} reviewed labels; {report['n_accepted']} of {report['n_pool']} "
            f"unreviewed records accepted; wrote {written}"
        )
