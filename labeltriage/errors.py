"""labeltriage's one exception tree, and the exit codes the CLI maps it to.

Every error the library raises for a user to act on is a :class:`LabeltriageError`; its message
is one line naming the file, key or record and the fix. Library callers (notebooks, pipelines)
catch the subclass they care about; the CLI prints the message and exits with the class's
``exit_code`` (one mapping, in `labeltriage.cli`). This module imports nothing: every layer may
raise these.

Exit codes of the ``labeltriage`` command:

====  ===========================================================================
0     done
1     :class:`LabeltriageError` not covered below
2     usage error (click: an unknown option, a missing argument; :class:`UsageError`)
3     ``prelabel``: an OpenAI batch job is still running; rerun later to collect it
4     ``prelabel``: finished, but some records failed (they are in the output, status failed)
5     ``prelabel``: stopped at ``--max-cost``; finished work is kept, a rerun resumes
65    :class:`InputError`: an input file or a run directory's file is unreadable or incomplete
69    :class:`BackendError` / :class:`ReviewServerError`: the LLM backend or the review server failed
78    :class:`ConfigError`: the task config is invalid
====  ===========================================================================

65, 69 and 78 are ``EX_DATAERR``, ``EX_UNAVAILABLE`` and ``EX_CONFIG`` of BSD's ``sysexits.h``.
"""

from __future__ import annotations

EXIT_BATCH_PENDING = 3
EXIT_RECORDS_FAILED = 4
EXIT_BUDGET_STOP = 5


class LabeltriageError(Exception):
    """Base of every error labeltriage raises for the user to fix; the message says how."""

    exit_code = 1


class InputError(LabeltriageError, ValueError):
    """An input table or a run directory's file cannot be read, or lacks what is needed."""

    exit_code = 65


class UsageError(InputError):
    """An argument the call cannot take: out of its range, meaningless, or not with the others given.

    A subclass of :class:`InputError` (callers catching that keep working); the CLI exits 2, as
    for click's own usage errors, since no file is at fault."""

    exit_code = 2


class ConfigError(LabeltriageError, ValueError):
    """A task config is invalid. The message names the file, the key and the fix."""

    exit_code = 78


class BackendError(LabeltriageError, RuntimeError):
    """The LLM backend cannot be used: a model missing, an API key unset, a template unusable."""

    exit_code = 69


class ReviewServerError(LabeltriageError, RuntimeError):
    """The review server (Argilla, the local stack, Label Studio) failed or refused a request."""

    exit_code = 69
