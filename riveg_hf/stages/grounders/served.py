"""A vision-language grounder behind an OpenAI-compatible server (vLLM, SGLang, TGI, lmdeploy ...):
``grounder="endpoint:URL"`` with ``endpoint_model=`` (the served model's name) and ``endpoint_family=`` (its
family: ``qwen2_5_vl`` / ``qwen3_vl`` / ``qwen3_vl_moe`` / ``qwen2_vl``; inferred from the model's name when it
can be).

The same prompt and the same answer reader as the in-process VLM grounder (:mod:`~riveg_hf.stages.vlm_grounding`,
:mod:`~riveg_hf.stages.vlm_answers`), so the same answer text gives the same boxes. **One request per image for
all its entities**; the requests of a batch are in flight together (up to the client's ``concurrency``). The image
is resized here to the size the model's processor would choose (:mod:`riveg_hf.serving.images`) so that an
absolute-pixel family (Qwen2.5-VL) answers in pixels of the image the client sent, which are mapped back to the
original. ``box_score`` is the mean probability of the box's tokens when the server returns log-probabilities,
else None. A request that fails (timeout, 5xx after the retries, not a chat completion) gives every entity of
that image "not visible" with a ``grounding`` note; the other images are untouched.
"""

from __future__ import annotations

import math
from typing import Any

from ...serving.client import ChatClient, ChatResult
from ...serving.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, served_vlm_client, to_data_url
from ..grounder import Grounder, Localization, LocateRequest
from ..vlm_grounding import VLM_FAMILIES, build_grounding_prompt, max_new_tokens_for, read_grounding_answer

NOTE_NO_ANSWER = "the grounder's server gave no answer ({reason}): reported as not visible"


class ServedGrounder(Grounder):
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
        super().__init__(None, None, box_threshold=box_threshold)
        self.client, family = served_vlm_client(endpoint, endpoint_model, endpoint_family, "grounder")
        self.endpoint_family = family
        self.convention = VLM_FAMILIES[family]
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        self.logprobs = bool(logprobs)

    def clients(self) -> list[ChatClient]:
        return [self.client]

    def options(self) -> dict[str, Any]:
        return {"box_threshold": self.box_threshold, "endpoint": self.client.config(),
                "endpoint_family": self.endpoint_family, "min_pixels": self.min_pixels,
                "max_pixels": self.max_pixels, "logprobs": self.logprobs}  # fmt: skip

    def save_pretrained(self, directory) -> None:  # nothing but the options: the weights are the server's
        return None

    def to(self, device):
        return self

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        bodies, sent_sizes = [], []
        for r in requests:
            url, sent = to_data_url(r.image, self.endpoint_family, self.min_pixels, self.max_pixels)
            sent_sizes.append(sent)
            text = build_grounding_prompt(r.text, r.named_entities)
            body: dict[str, Any] = {
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                          {"type": "text", "text": text}]}],
                "max_tokens": max_new_tokens_for(len(r.queries)),
                "temperature": 0.0,
            }  # fmt: skip
            if self.logprobs:
                body["logprobs"] = True
            bodies.append(body)
        results = self.client.chat_many(bodies)  # every image of the batch in flight together
        return [self._read(r, res, sent) for r, res, sent in zip(requests, results, sent_sizes)]

    def _read(self, r: LocateRequest, res: ChatResult, sent: tuple[int, int]) -> Localization:
        n = len(r.queries)
        if not res.ok:
            return Localization([None] * n, [None] * n, None, [NOTE_NO_ANSWER.format(reason=res.error)] * n)
        read = read_grounding_answer(res.text, r.named_entities, self.convention, r.image.size, sent)
        spans = _token_spans(res)
        scores = []
        for box, span in zip(read.boxes, read.spans):
            probs = (
                [p for (a, b), p in spans if span and a < span[1] and b > span[0]] if box is not None else []
            )
            scores.append(sum(probs) / len(probs) if probs else None)
        return Localization(read.boxes, scores, None, read.notes)


def _token_spans(res: ChatResult) -> list[tuple[tuple[int, int], float]]:
    """Each answer token's character span and probability, when the tokens spell the answer; else []."""
    if not res.logprobs:
        return []
    out, pos = [], 0
    for t in res.logprobs:
        out.append(((pos, pos + len(t["token"])), math.exp(max(t["logprob"], -1e4))))
        pos += len(t["token"])
    joined = "".join(t["token"] for t in res.logprobs)
    return out if joined == (res.text or "")[: len(joined)] and joined else []
