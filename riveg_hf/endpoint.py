"""A chat LLM behind a server as the expander's (and the knowledge writer's) language model.

RiVEG wrote its entity expansions with ChatGPT; users run large LLMs behind vLLM, SGLang, TGI, llama.cpp,
any OpenAI-compatible server or Inference Providers. :class:`ChatEndpoint` is the expander's view of
:class:`riveg_hf.serving.ChatClient` (which see for the deadline, retries, size cap, cache, where tokens go
and the opt-in for URLs named by a checkpoint): ``complete(prompts)`` -> one answer per prompt, ``""``
for a prompt whose request failed (the expander then uses its template description; nothing is cached).

Configuration: ``RiVEGPipeline.from_components(..., expander="endpoint:http://host:8080/v1")``; the model
name comes from ``RIVEG_ENDPOINT_MODEL`` (or ``endpoint_model=``) and the token from ``RIVEG_ENDPOINT_TOKEN``
-- the token is never written into a saved composite. Works with ``HF_HUB_OFFLINE=1`` set.
"""

from __future__ import annotations

from collections.abc import Sequence

from .serving.cache import default_cache_path
from .serving.client import ChatClient

__all__ = ["ChatEndpoint", "default_cache_path"]


class ChatEndpoint(ChatClient):
    """``complete(prompts)`` -> one answer per prompt from a chat-completions server (see the module doc)."""

    def complete(self, prompts: Sequence[str | list[dict]], max_tokens: int = 64) -> list[str]:
        """Answers in the order of ``prompts`` (a user turn, or a list of chat messages; ``""`` for a failed
        request), ``concurrency`` in flight."""
        results = self.chat_many(
            [{"messages": p if isinstance(p, list) else [{"role": "user", "content": p}], "max_tokens": int(max_tokens)}
             for p in prompts]
        )  # fmt: skip
        return [r.text if r.ok and r.text and r.text.strip() else "" for r in results]
