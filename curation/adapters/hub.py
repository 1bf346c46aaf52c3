"""Publish a final dataset to the Hugging Face Hub (or any Hub-compatible server at HF_ENDPOINT)."""

from __future__ import annotations

import os

import pandas as pd

from labeltriage.errors import ReviewServerError


def push_to_hub(
    final: pd.DataFrame,
    card: str,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str = "labeltriage publish",
) -> str:
    """Push the final rows with ``datasets.Dataset.push_to_hub`` and then the card.

    ``private`` applies when the repo is created (an existing repo keeps its visibility). The
    token comes from ``token`` or the ``HF_TOKEN`` environment variable and is never printed.
    The card keeps the ``configs``/``dataset_info`` metadata that `datasets` wrote, so
    ``load_dataset(repo_id)`` reads the parquet shards with their features.

    Returns:
        the dataset URL on the Hub (or the ``HF_ENDPOINT`` server).
    """
    import datasets
    from huggingface_hub import DatasetCard, HfApi

    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise ReviewServerError(
            "no Hugging Face token: set HF_TOKEN in the environment (a write token), or publish "
            "locally only (omit --repo-id)"
        )
    if "/" not in repo_id:
        raise ValueError(f"repo_id must be 'namespace/name', got {repo_id!r}")
    ds = datasets.Dataset.from_pandas(final, preserve_index=False)
    ds.push_to_hub(repo_id, private=private, token=token, commit_message=commit_message)
    pushed = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    ours = DatasetCard(card)
    merged = pushed.data.to_dict() | ours.data.to_dict()
    for key in ("configs", "dataset_info"):  # written by datasets: load_dataset relies on them
        if key in pushed.data.to_dict():
            merged[key] = pushed.data.to_dict()[key]
    import yaml

    text = "---\n" + yaml.safe_dump(merged, sort_keys=False).strip() + "\n---\n" + ours.text
    api = HfApi(token=token)
    # upload_file, not DatasetCard.push_to_hub: in huggingface_hub 0.36 the card's validate()
    # posts to a hard-coded https://huggingface.co, ignoring HF_ENDPOINT
    api.upload_file(
        path_or_fileobj=text.encode("utf-8"),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type="dataset",
        commit_message=f"{commit_message}: card",
    )
    return f"{api.endpoint}/datasets/{repo_id}"
