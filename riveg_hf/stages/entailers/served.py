"""A vision-language entailment model behind an OpenAI-compatible server: ``entailment="endpoint:URL"``.

Each (image, hypothesis) is asked "Does the image show {hypothesis}? Answer yes or no." with one answer token,
and ``P(yes) = p(yes) / (p(yes) + p(no))`` from that token's log-probabilities (``logprobs`` + ``top_logprobs``,
which vLLM, SGLang, TGI and OpenAI return): every variant of the two words is counted (``yes``, ``Yes``,
`` yes``, ``Ġyes``, ``▁Yes`` ...). A server that returns no log-probabilities (or ones that are not: a
log-probability is a real number <= 0) falls back to the answer's text (yes -> 1.0, no -> 0.0, anything else
0.5): **uncalibrated**, documented, and said once in a warning. Every P(yes) is a probability in [0, 1].

**A failure is unknown, never a "no".** A request that fails (the server's 5xx after every retry, a timeout,
not a chat completion, an image that cannot be encoded, any exception while its answer is read) gives that
hypothesis **NaN** in :meth:`~ServedEntailment.score_many` (the pipeline reads NaN as not visible with
``groundable_score`` None) and a note naming the error in :meth:`~ServedEntailment.score_many_noted`; the other
hypotheses and images are untouched. The threshold is the stage's ``threshold``, calibratable on labelled
data like the in-process stages (:func:`~riveg_hf.stages.entailment.calibrate_threshold`). The image is
resized as for the served grounder (:mod:`riveg_hf.serving.images`); the hypothesis is put on one line
(:func:`~riveg_hf.serving.client.one_line`). A client the user did not trust refuses before any image work.

Bounds of the numbers a checkpoint may set (:data:`OPTION_BOUNDS`, plus the client's
:data:`~riveg_hf.serving.client.SETTING_BOUNDS` and :data:`~riveg_hf.serving.images.PIXEL_BOUNDS`), checked
when the stage is built.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...serving.cache import clean_logprobs
from ...serving.client import ChatResult, check_setting, one_line
from ...serving.images import DEFAULT_MIN_PIXELS, to_data_url
from ..entailment import DEFAULT_HYPOTHESIS, VLM_QUESTION, Entailment
from ..served import ServedStage

logger = logging.getLogger(__name__)

#: option -> (lowest, highest, integer?, why)
OPTION_BOUNDS: dict[str, tuple[float, float, bool, str]] = {
    "threshold": (0.0, 1.0, False, "P(yes) is a probability"),
    "top_logprobs": (1, 20, True, "alternatives per answer token; the OpenAI API's maximum is 20"),
    "batch_size": (1, 4096, True, "hypotheses per batch"),
}
NOTE_UNKNOWN = "visibility unknown, not a 'no': the entailment server gave no answer ({reason})"


def _word(token: str) -> str:
    return token.replace("Ġ", " ").replace("▁", " ").strip().casefold()


def p_yes(res: ChatResult) -> tuple[float | None, bool]:
    """(P(yes) in [0, 1], calibrated?) from one answer, or ``(None, False)`` for a failed one: unknown (see the
    module doc)."""
    if not res.ok:
        return None, False
    logprobs = (
        clean_logprobs(res.logprobs) if res.logprobs else None
    )  # validated again: a ChatResult is public
    if logprobs:
        first = logprobs[0]
        tops = first["top_logprobs"] or [{"token": first["token"], "logprob": first["logprob"]}]
        yes = sum(math.exp(t["logprob"]) for t in tops if _word(t["token"]) == "yes")
        no = sum(math.exp(t["logprob"]) for t in tops if _word(t["token"]) == "no")
        if yes + no > 0 and math.isfinite(yes + no):
            return min(1.0, max(0.0, yes / (yes + no))), True
    words = res.text.split() if isinstance(res.text, str) else []
    word = _word(words[0] if words else "").strip(".,!")
    return {"yes": 1.0, "no": 0.0}.get(word, 0.5), False


class ServedEntailment(ServedStage, Entailment):
    """The VLM entailment on a server (see the module doc)."""

    family = "served"

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

        given = {"threshold": 0.5 if threshold is None else threshold, "top_logprobs": top_logprobs,
                 "batch_size": batch_size}  # fmt: skip
        checked = {
            name: check_setting(name, given[name], lo, hi, integer=integer, why=why, where="entailment")
            for name, (lo, hi, integer, why) in OPTION_BOUNDS.items()
        }
        if not isinstance(hypothesis, str):
            raise ValueError(
                f"entailment setting 'hypothesis' must be a string, got {type(hypothesis).__name__}"
            )
        Stage.__init__(self, None, None)
        self._connect("entailment", endpoint, endpoint_model, endpoint_family, min_pixels, max_pixels,
                      default_family="qwen2_5_vl")  # fmt: skip
        self.threshold = checked["threshold"]
        self.hypothesis = hypothesis
        self.logit_bias = None
        self.top_logprobs = checked["top_logprobs"]
        self.batch_size = checked["batch_size"]
        self._warned = False

    def options(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "hypothesis": self.hypothesis, **self.served_options(),
                "top_logprobs": self.top_logprobs}  # fmt: skip

    def _question(self, url: str, hypothesis: str) -> dict[str, Any]:
        return {
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "text", "text": VLM_QUESTION.format(hypothesis=one_line(hypothesis))}]}],
            "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": self.top_logprobs,
        }  # fmt: skip

    def score_many_noted(
        self, items: Sequence[tuple[Any, Sequence[str]]], *, vision_batch_size: int = 8
    ) -> tuple[list[np.ndarray], list[list[str | None]]]:
        """(P(yes) per hypothesis, NaN where unknown; a note per hypothesis, None where it was answered)."""
        self.client.check_trusted()  # before any image work
        out = [np.full(len(hyps), np.nan) for _, hyps in items]
        notes: list[list[str | None]] = [[None] * len(hyps) for _, hyps in items]
        bodies, where = [], []
        for i, (image, hyps) in enumerate(items):
            if not len(hyps):
                continue
            try:
                url, _ = to_data_url(image, self.endpoint_family, self.min_pixels, self.max_pixels)
            except Exception as err:  # this image's failure only
                reason = self.client.redact(f"the image could not be sent: {type(err).__name__}: {err}")
                notes[i] = [NOTE_UNKNOWN.format(reason=reason)] * len(hyps)
                continue
            for j, h in enumerate(hyps):
                bodies.append(self._question(url, h))
                where.append((i, j))
        results = self.client.chat_many(bodies) if bodies else []
        for (i, j), res in zip(where, results):
            try:
                p, calibrated = p_yes(res)
                reason = res.error
            except Exception as err:  # an answer no one foresaw: unknown, for this hypothesis only
                p, calibrated, reason = None, True, self.client.redact(f"{type(err).__name__}: {err}")
            if p is None:
                notes[i][j] = NOTE_UNKNOWN.format(reason=reason or "no answer")
                continue
            if not calibrated and not self._warned:
                self._warned = True
                logger.warning("riveg-hf: the entailment server returns no log-probabilities: P(yes) read from the "
                               "answer's text (yes / no), which is not calibrated")  # fmt: skip
            out[i][j] = p
        return out, notes

    def score_many(
        self, items: Sequence[tuple[Any, Sequence[str]]], *, vision_batch_size: int = 8
    ) -> list[np.ndarray]:
        """P(yes) per hypothesis; NaN where unknown (see :meth:`score_many_noted` for why)."""
        return self.score_many_noted(items, vision_batch_size=vision_batch_size)[0]
