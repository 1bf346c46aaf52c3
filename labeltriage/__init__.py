"""labeltriage: LLM pre-labelling, calibrated triage, active learning and Argilla review."""

__version__ = "0.1.0"
