"""I/O adapters of curation: the thin, swappable parts that talk to something outside the process.

``argilla_io`` (the Argilla SDK and REST API), ``webhooks`` (Argilla's signed webhooks),
``embeddings`` (the sentence-embedding model), ``hub`` (the Hugging Face Hub) and ``loop`` (a
feedback round over a run directory and Argilla). The rest of ``curation`` is pure computation
that imports none of these clients (tests/test_layers.py).
"""
