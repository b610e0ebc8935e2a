"""Served models: the stages that talk to an inference server (vLLM, SGLang, TGI, llama.cpp, Ollama ...)
instead of running a model in this process. :class:`ChatClient` is the one client they all use."""

from .cache import AnswerCache, default_cache_path
from .client import (
    SETTING_BOUNDS,
    TRUST_ENV,
    ChatClient,
    ChatResult,
    UntrustedEndpointError,
    chat_completions_url,
    check_setting,
    checked_token,
    endpoint_token,
    one_line,
    redact,
    trusted_by_env,
)
from .images import PIXEL_BOUNDS

__all__ = [
    "PIXEL_BOUNDS",
    "SETTING_BOUNDS",
    "TRUST_ENV",
    "AnswerCache",
    "ChatClient",
    "ChatResult",
    "UntrustedEndpointError",
    "chat_completions_url",
    "check_setting",
    "checked_token",
    "default_cache_path",
    "endpoint_token",
    "one_line",
    "redact",
    "trusted_by_env",
]
