"""labeltriage: LLM pre-labelling, calibrated triage, active learning and Argilla review."""

from importlib.metadata import PackageNotFoundError, version

try:
    # the one version source is pyproject.toml's `version`, read from the installed metadata
    __version__ = version("labeltriage")
except PackageNotFoundError:  # a checkout on sys.path that was never installed
    __version__ = "0+unknown"
