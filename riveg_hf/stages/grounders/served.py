"""A vision-language grounder behind an OpenAI-compatible server (vLLM, SGLang, TGI, lmdeploy ...):
``grounder="endpoint:URL"`` with ``endpoint_model=`` (the served model's name) and ``endpoint_family=`` (its
family: ``qwen2_5_vl`` / ``qwen3_vl`` / ``qwen3_vl_moe`` / ``qwen2_vl``; inferred from the model's name when it
can be).

The same prompt and the same answer reader as the in-process VLM grounder (:mod:`~riveg_hf.stages.vlm_grounding`,
:mod:`~riveg_hf.stages.vlm_answers`), so the same answer text gives the same boxes. **One request per image for
all its entities**; the requests of a batch are in flight together (up to the client's ``concurrency``). The image
is resized here to the size the model's processor would choose (:mod:`riveg_hf.serving.images`) so that an
absolute-pixel family (Qwen2.5-VL) answers in pixels of the image the client sent, which are mapped back to the
original. ``box_score`` is the mean probability of the box's tokens when the server returns log-probabilities
(validated: a log-probability is a real number <= 0, so a score is always in [0, 1]), else None. A request
that fails (timeout, 5xx after the retries, not a chat completion), an image that cannot be encoded, or any
exception while one answer is read gives every entity of that image "not visible" with a ``grounding`` note
naming the error (with any credential redacted); the other images are untouched. The tweet, the entities'
names and descriptions go into the prompt on one line each (:func:`~riveg_hf.serving.client.one_line`): a
line break in a field never starts a new instruction. A client the user did not trust refuses before any
image work. ``box_threshold`` is in [0, 1]; ``min_pixels`` / ``max_pixels`` within
:data:`~riveg_hf.serving.images.PIXEL_BOUNDS` (checked when the stage is built, as the client's
:data:`~riveg_hf.serving.client.SETTING_BOUNDS`).
"""

from __future__ import annotations

import math
from typing import Any

from ...serving.cache import clean_logprobs
from ...serving.client import ChatResult, check_setting, one_line
from ...serving.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, to_data_url
from ..grounder import Grounder, Localization, LocateRequest
from ..served import ServedStage
from ..vlm_grounding import VLM_FAMILIES, build_grounding_prompt, max_new_tokens_for, read_grounding_answer

NOTE_NO_ANSWER = "the grounder's server gave no answer ({reason}): reported as not visible"
NOTE_NOT_SENT = "the image could not be sent to the grounder's server ({reason}): reported as not visible"
NOTE_UNREADABLE = "the grounder's answer could not be read ({reason}): reported as not visible"


class ServedGrounder(ServedStage, Grounder):
    """The Qwen-VL grounder on a server (see the module doc)."""

    family = "vlm-served"
    model_types = ()  # not a local model: built from an endpoint
    default_box_threshold = 0.0
    uses_context = True
    batches_on_cpu = True

    def __init__(
        self,
        endpoint: str | dict,
        *,
        endpoint_model: str | None = None,
        endpoint_family: str | None = None,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        box_threshold: float | None = None,
        logprobs: bool = True,
    ):
        if box_threshold is not None:
            box_threshold = check_setting("box_threshold", box_threshold, 0.0, 1.0, where="grounder",
                                          why="a box score is a probability")  # fmt: skip
        self._connect("grounder", endpoint, endpoint_model, endpoint_family, min_pixels, max_pixels)
        super().__init__(None, None, box_threshold=box_threshold)
        self.convention = VLM_FAMILIES[self.endpoint_family]
        self.logprobs = bool(logprobs)

    def options(self) -> dict[str, Any]:
        return {"box_threshold": self.box_threshold, **self.served_options(), "logprobs": self.logprobs}

    def _failed(self, r: LocateRequest, note: str, err: BaseException) -> Localization:
        n = len(r.queries)
        reason = self.client.redact(f"{type(err).__name__}: {err}")
        return Localization([None] * n, [None] * n, None, [note.format(reason=reason)] * n)

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        self.client.check_trusted()  # before any image work
        out: list[Localization | None] = [None] * len(requests)
        bodies, asked = [], []  # asked: (index, entities on one line, size sent)
        for k, r in enumerate(requests):
            try:
                named = [(one_line(e), one_line(t), one_line(d)) for e, t, d in r.named_entities]
                url, sent = to_data_url(r.image, self.endpoint_family, self.min_pixels, self.max_pixels)
                text = build_grounding_prompt(one_line(r.text), named)
            except Exception as err:  # this image's failure only
                out[k] = self._failed(r, NOTE_NOT_SENT, err)
                continue
            body: dict[str, Any] = {
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                          {"type": "text", "text": text}]}],
                "max_tokens": max_new_tokens_for(len(r.queries)),
                "temperature": 0.0,
            }  # fmt: skip
            if self.logprobs:
                body["logprobs"] = True
            bodies.append(body)
            asked.append((k, named, sent))
        results = (
            self.client.chat_many(bodies) if bodies else []
        )  # every image of the batch in flight together
        for (k, named, sent), res in zip(asked, results):
            try:
                out[k] = self._read(requests[k], res, sent, named)
            except Exception as err:  # an answer no one foresaw: this image's failure only
                out[k] = self._failed(requests[k], NOTE_UNREADABLE, err)
        return out  # type: ignore[return-value]

    def _read(self, r: LocateRequest, res: ChatResult, sent: tuple[int, int], named=None) -> Localization:
        n = len(r.queries)
        if not res.ok:
            reason = self.client.redact(res.error)
            return Localization([None] * n, [None] * n, None, [NOTE_NO_ANSWER.format(reason=reason)] * n)
        named = r.named_entities if named is None else named
        read = read_grounding_answer(res.text, named, self.convention, r.image.size, sent)
        spans = _token_spans(res)
        scores = []
        for box, span in zip(read.boxes, read.spans):
            probs = (
                [p for (a, b), p in spans if span and a < span[1] and b > span[0]] if box is not None else []
            )
            scores.append(min(1.0, max(0.0, sum(probs) / len(probs))) if probs else None)
        return Localization(read.boxes, scores, None, read.notes)


def _token_spans(res: ChatResult) -> list[tuple[tuple[int, int], float]]:
    """Each answer token's character span and probability (in [0, 1]), when the tokens spell the answer;
    else []."""
    logprobs = (
        clean_logprobs(res.logprobs) if res.logprobs else None
    )  # validated again: a ChatResult is public
    if not logprobs:
        return []
    out, pos = [], 0
    for t in logprobs:
        out.append(((pos, pos + len(t["token"])), math.exp(max(t["logprob"], -1e4))))
        pos += len(t["token"])
    joined = "".join(t["token"] for t in logprobs)
    return out if joined == (res.text or "")[: len(joined)] and joined else []
