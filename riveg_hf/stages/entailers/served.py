"""A vision-language entailment model behind an OpenAI-compatible server: ``entailment="endpoint:URL"``.

Each (image, hypothesis) is asked "Does the image show {hypothesis}? Answer yes or no." with one answer token,
and ``P(yes) = p(yes) / (p(yes) + p(no))`` from that token's log-probabilities (``logprobs`` + ``top_logprobs``,
which vLLM, SGLang, TGI and OpenAI return): every variant of the two words is counted (``yes``, ``Yes``,
`` yes``, ``Ġyes``, ``▁Yes`` ...). A server that returns no log-probabilities falls back to the answer's text
(yes -> 1.0, no -> 0.0, anything else 0.5): **uncalibrated**, documented, and said once in a warning. A failed
request gives 0.0 (not visible). The threshold is the stage's ``threshold``, calibratable on labelled data like
the in-process stages (:func:`~riveg_hf.stages.entailment.calibrate_threshold`). The image is resized as for
the served grounder (:mod:`riveg_hf.serving.images`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...serving.client import ChatClient, ChatResult
from ...serving.images import DEFAULT_MIN_PIXELS, served_vlm_client, to_data_url
from ..entailment import DEFAULT_HYPOTHESIS, VLM_QUESTION, Entailment

logger = logging.getLogger(__name__)


def _word(token: str) -> str:
    return token.replace("Ġ", " ").replace("▁", " ").strip().casefold()


def p_yes(res: ChatResult) -> tuple[float, bool]:
    """(P(yes), calibrated?) from one answer (see the module doc)."""
    if not res.ok:
        return 0.0, True
    if res.logprobs:
        first = res.logprobs[0]
        tops = first.get("top_logprobs") or [{"token": first["token"], "logprob": first["logprob"]}]
        yes = sum(math.exp(t["logprob"]) for t in tops if _word(t["token"]) == "yes")
        no = sum(math.exp(t["logprob"]) for t in tops if _word(t["token"]) == "no")
        if yes + no > 0:
            return yes / (yes + no), True
    word = _word((res.text or "").split()[0] if (res.text or "").split() else "").strip(".,!")
    return {"yes": 1.0, "no": 0.0}.get(word, 0.5), False


class ServedEntailment(Entailment):
    """The VLM entailment on a server (see the module doc)."""

    kind = "served"

    def __init__(
        self,
        endpoint: str | dict,
        *,
        endpoint_model: str | None = None,
        endpoint_family: str | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = 1_003_520,
        threshold: float | None = None,
        hypothesis: str = DEFAULT_HYPOTHESIS,
        top_logprobs: int = 10,
        batch_size: int = 32,
    ):
        from ..base import Stage

        Stage.__init__(self, None, None)
        self.client, self.endpoint_family = served_vlm_client(
            endpoint, endpoint_model, endpoint_family, "entailment", default_family="qwen2_5_vl"
        )
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.threshold = float(threshold if threshold is not None else 0.5)
        self.hypothesis = hypothesis
        self.logit_bias = None
        self.top_logprobs = int(top_logprobs)
        self.batch_size = int(batch_size)
        self._warned = False

    def clients(self) -> list[ChatClient]:
        return [self.client]

    def options(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "hypothesis": self.hypothesis, "endpoint": self.client.config(),
                "endpoint_family": self.endpoint_family, "min_pixels": self.min_pixels,
                "max_pixels": self.max_pixels, "top_logprobs": self.top_logprobs}  # fmt: skip

    def save_pretrained(self, directory) -> None:
        return None

    def to(self, device):
        return self

    def score_many(
        self, items: Sequence[tuple[Any, Sequence[str]]], *, vision_batch_size: int = 8
    ) -> list[np.ndarray]:
        bodies, where = [], []
        for i, (image, hyps) in enumerate(items):
            if not hyps:
                continue
            url, _ = to_data_url(image, self.endpoint_family, self.min_pixels, self.max_pixels)
            for h in hyps:
                bodies.append({
                    "messages": [{"role": "user", "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": VLM_QUESTION.format(hypothesis=h)}]}],
                    "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs,
                })  # fmt: skip
                where.append(i)
        out = [np.zeros(len(h)) for _, h in items]
        fill = [0] * len(items)
        for i, res in zip(where, self.client.chat_many(bodies)):
            p, calibrated = p_yes(res)
            if not calibrated and not self._warned:
                self._warned = True
                logger.warning("riveg-hf: the entailment server returns no log-probabilities: P(yes) read from the "
                               "answer's text (yes / no), which is not calibrated")  # fmt: skip
            out[i][fill[i]] = p
            fill[i] += 1
        return out
