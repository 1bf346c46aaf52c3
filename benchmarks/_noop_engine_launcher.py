"""A do-nothing, in-memory Argilla search engine, registered by the benchmark alone.

Run as ``python -m _noop_engine_launcher server|worker`` (``benchmarks/`` on ``PYTHONPATH``) with
``ARGILLA_SEARCH_ENGINE=noop``: it registers :class:`NoopSearchEngine` with Argilla's engine registry,
then delegates to :func:`argilla_stack.launch.main`, which runs the stock server or worker. Every
write is dropped, ``search`` and ``similarity_search`` return nothing, progress is ``{}``. This is
the ceiling of the stock server's own bulk path (database writes, validation, HTTP), against which
`benchmarks/stack_scale.py` measures the embedded engine's overhead.
"""

from __future__ import annotations

from typing import Any

from argilla_server.search_engine import SearchEngine
from argilla_server.search_engine.base import FloatMetadataMetrics, SearchResponses

ENGINE_NAME = "noop"


@SearchEngine.register(engine_name=ENGINE_NAME)
class NoopSearchEngine(SearchEngine):
    """Implements every abstract method of `SearchEngine` and does nothing."""

    @classmethod
    async def new_instance(cls) -> NoopSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME}

    async def create_index(self, dataset: Any) -> None:
        return None

    async def delete_index(self, dataset: Any) -> None:
        return None

    async def configure_metadata_property(self, dataset: Any, metadata_property: Any) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: Any) -> None:
        return None

    async def index_records(self, dataset: Any, records: Any) -> None:
        return None

    async def partial_record_update(self, record: Any, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Any, records: Any) -> None:
        return None

    async def update_record_response(self, response: Any) -> None:
        return None

    async def delete_record_response(self, response: Any) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Any) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Any) -> None:
        return None

    async def get_dataset_progress(self, dataset: Any) -> dict:
        return {}

    async def get_dataset_user_progress(self, dataset: Any, user: Any) -> dict:
        return {}

    async def compute_metrics_for(self, metadata_property: Any) -> FloatMetadataMetrics:
        return FloatMetadataMetrics(min=None, max=None)

    async def search(self, dataset: Any, *args: Any, **kwargs: Any) -> SearchResponses:
        return SearchResponses(items=[], total=0)

    async def similarity_search(self, dataset: Any, *args: Any, **kwargs: Any) -> SearchResponses:
        return SearchResponses(items=[], total=0)


def main() -> None:
    from argilla_stack.launch import main as launch_main

    launch_main()


if __name__ == "__main__":
    main()
