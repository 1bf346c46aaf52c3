"""Pre-labelling with distilabel: tasks, LLM backends, confidence, cost, resume.

Entry point: :func:`pipelines.runner.run_prelabel` (used by `labeltriage prelabel`).
Heavy imports (distilabel, llama_cpp, openai) happen in the submodules, on first use.
"""

__all__ = ["run_prelabel"]


def __getattr__(name: str):  # lazy: `import pipelines` stays cheap
    if name == "run_prelabel":
        from pipelines.runner import run_prelabel

        return run_prelabel
    raise AttributeError(name)
