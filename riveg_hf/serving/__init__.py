"""Served models: the stages that talk to an inference server (vLLM, SGLang, TGI, llama.cpp, Ollama ...)
instead of running a model in this process. :class:`ChatClient` is the one client they all use."""

from .cache import AnswerCache, default_cache_path
from .client import (
    TRUST_ENV,
    ChatClient,
    ChatResult,
    UntrustedEndpointError,
    chat_completions_url,
    endpoint_token,
    trusted_by_env,
)

__all__ = [
    "TRUST_ENV",
    "AnswerCache",
    "ChatClient",
    "ChatResult",
    "UntrustedEndpointError",
    "chat_completions_url",
    "default_cache_path",
    "endpoint_token",
    "trusted_by_env",
]
