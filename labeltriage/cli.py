"""The `labeltriage` command. It only wires subcommands; each lives in `labeltriage.commands.*`.

Subcommands are imported on first use so that `labeltriage --help` stays fast (the heavy
libraries, torch, argilla and distilabel, load only for the command that needs them).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

import click

from labeltriage.errors import LabeltriageError

# The Argilla SDK logs "The provided batch size ... was normalized" (and the errors we report in
# one line of our own), and draws tqdm bars between our lines: only our own output reaches the user.
logging.getLogger("argilla.sdk").setLevel(logging.CRITICAL)  # its errors reach the user as ours
os.environ.setdefault("TQDM_DISABLE", "1")

# name -> "module:attribute" of a click command; one module per capability.
COMMANDS: dict[str, str] = {
    "stack": "labeltriage.commands.stack:stack",
    "label-studio": "labeltriage.commands.label_studio:label_studio",
    "prelabel": "labeltriage.commands.prelabel:prelabel",
    "gold": "labeltriage.commands.gold:gold",
    "second-opinion": "labeltriage.commands.prelabel:second_opinion",
    "calibrate": "labeltriage.commands.triage:calibrate",
    "route": "labeltriage.commands.triage:route",
    "push": "labeltriage.commands.review:push",
    "pull": "labeltriage.commands.review:pull",
    "loop": "labeltriage.commands.review:loop",
    "agreement": "labeltriage.commands.publish:agreement",
    "student-label": "labeltriage.commands.publish:student_label",
    "publish": "labeltriage.commands.publish:publish",
    "demo": "labeltriage.commands.demo:demo",
}

SHORT_HELP: dict[str, str] = {
    "stack": "Start, stop and inspect the local Argilla stack.",
    "label-studio": "Review in Label Studio: local server, push, pull, rounds, ML backend.",
    "prelabel": "Pre-label a dataset with an LLM (label, confidence, reasoning).",
    "gold": "Draw gold at random, have it labelled blind in Argilla, collect it.",
    "second-opinion": "Cascade: a second labeller on the records the first was unsure of.",
    "calibrate": "Fit a confidence calibrator on gold labels and report ECE.",
    "route": "Route records to auto-accept, human review or spot-check.",
    "push": "Push the review queue to Argilla with suggestions and priorities.",
    "pull": "Pull reviewers' submitted responses from Argilla.",
    "loop": "Run feedback rounds: pull, agree, retrain, re-prioritise, push.",
    "agreement": "Inter-annotator agreement report on pulled responses.",
    "student-label": "Let the student label unreviewed records where it is certified.",
    "publish": "Publish the final dataset with a dataset card (local and Hub).",
    "demo": "Run the whole loop on real reviews with the local model.",
}


class LabeltriageCliError(click.ClickException):
    """A library error shown as one line (``Error: ...``), exiting with its documented code."""

    def __init__(self, error: LabeltriageError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class LazyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # the one place where library errors become CLI output (codes: labeltriage.errors)
        try:
            return super().invoke(ctx)
        except LabeltriageError as error:
            raise LabeltriageCliError(error) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in COMMANDS])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="labeltriage")
def main() -> None:
    """LLM-assisted labelling with calibrated triage, active learning and Argilla review.

    \b
    Typical flow:
      labeltriage stack up
      labeltriage prelabel sentiment reviews.csv --output runs/r1
      labeltriage calibrate runs/r1 --gold gold.csv
      labeltriage route runs/r1
      labeltriage push runs/r1
      labeltriage pull runs/r1
      labeltriage publish runs/r1 --repo-id me/reviews
    """


if __name__ == "__main__":  # python -m labeltriage.cli ...
    main()
