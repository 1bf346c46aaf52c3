"""`labeltriage agreement`, `student-label` and `publish`: wiring only (logic in curation/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from labeltriage.commands.params import config_option, run_dir_argument
from labeltriage.jsonio import dumps
from labeltriage.render import render_agreement, render_publish, render_student_label

_COMMON = [
    config_option,
    click.option(
        "--method",
        type=click.Choice(["majority", "dawid-skene"]),
        default="majority",
        show_default=True,
        help="Consensus method for records with several reviewers.",
    ),  # fmt: skip
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
@run_dir_argument
@_common
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: RUN_DIR/agreement.json."
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of tables.")
def agreement(run_dir: Path, output: Path | None, as_json: bool, **options: Any) -> None:
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
    from labeltriage import api

    result = api.agreement(run_dir, output=output, **options)
    if as_json:
        click.echo(dumps(result.report))
    else:
        render_agreement(result)
        click.echo(f"wrote {result.path}")


@click.command(name="publish")
@run_dir_argument
@_common
@click.option("--repo-id", default=None, help="Hub dataset repo ORG/NAME; omit to publish locally only.")
@click.option("--public", is_flag=True, help="Create the Hub repo public (default: private).")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for final.parquet, README.md, agreement.json, adjudication.parquet (default: RUN_DIR).",
)
def publish(run_dir: Path, **options: Any) -> None:
    """Build the final dataset of RUN_DIR, write it locally and optionally push it to the Hub.

    Each row says how its label was made (label_source = human | consensus | llm_auto | student | gold). Records
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
    from labeltriage import api

    render_publish(api.publish(run_dir, **options))


@click.command(name="student-label")
@run_dir_argument
@config_option
@click.option("--target-precision", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Precision certified for the stratum's records above the student's threshold "
                   "[default: the run's routing target].")  # fmt: skip
@click.option("--confidence-level", type=click.FloatRange(0.5, 1, max_open=True), default=None,
              help="Confidence of that guarantee [default: the run's routing level].")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the student's fit.")
@click.option("--student", type=click.Choice(["frozen", "finetuned"]), default="frozen", show_default=True,
              help="frozen: logistic regression on MiniLM embeddings (seconds); finetuned: SetFit, MiniLM "
                   "fine-tuned on the reviewed labels first (4-10 min on 2 cores; may certify nothing).")  # fmt: skip
@click.option("--max-pairs", type=click.IntRange(min=1), default=None,
              help="With --student finetuned: sentence pairs to fine-tune on [default: 4000].")  # fmt: skip
def student_label(run_dir: Path, **options: Any) -> None:
    """Let the student label the review queue's records nobody has answered, where it is certified.

    Trains the student on the reviewed labels (pull first), certifies its threshold on the gold
    records below the LLM's auto-accept threshold (the review stratum), labels the stratum's
    unanswered queue records above it, writes RUN_DIR/student_labels.parquet and student.json;
    `publish` then publishes them (label_source student). The certificate is for the stratum; the
    labelled part is expected at or above it when reviewers answered the queue by its priority.
    Records route sends to people whatever their score (instruction-like, drawn gold) and repeated
    texts (labelled as their first row at publish) are never the student's.

    \b
    Examples:
      labeltriage student-label runs/r1
      labeltriage student-label runs/r1 --target-precision 0.9
      labeltriage student-label runs/r1 --student finetuned
    """
    from labeltriage import api

    render_student_label(api.student_label(run_dir, **options), Path(run_dir) / "student.json")
