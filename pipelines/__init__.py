"""Pre-labelling with distilabel: tasks, LLM backends, confidence, cost, resume.

Entry point: :func:`labeltriage.api.prelabel` (and `labeltriage prelabel`).
Heavy imports (distilabel, llama_cpp, openai) happen in the submodules, on first use.
"""

import warnings

__all__ = ["run_prelabel"]

# huggingface_hub's InferenceEndpoints client (imported by distilabel) trips pydantic's "protected
# namespace" check: noise in every notebook and run, nothing a user can act on. Set here, before
# any submodule imports distilabel, so library users get it as well as the CLI.
warnings.filterwarnings("ignore", message=r'Field "model_\w+" .* protected namespace', category=UserWarning)


def __getattr__(name: str):  # lazy: `import pipelines` stays cheap
    if name == "run_prelabel":
        from pipelines.runner import run_prelabel

        return run_prelabel
    raise AttributeError(name)
