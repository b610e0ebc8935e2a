"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL (dense and MoE): one JSON answer per image for all of its entities.

The prompt, the answer format and the coordinate conventions are :mod:`riveg_hf.stages.vlm_grounding`; how
an answer is read and matched to the entities is :mod:`riveg_hf.stages.vlm_answers`. ``vision_batch_size``
images go into one batched (left-padded) greedy generation. The answer is decoded **as a whole sequence**
(special tokens kept, so Qwen2-VL's box tokens survive; a character split over two tokens decodes whole), and
each token's character span is kept so that ``box_score`` is the mean probability of the tokens of that
entity's box.
"""

from __future__ import annotations

import torch

from ..grounder import Grounder, Localization, LocateRequest, register
from ..tiny import TINY_VLMS
from ..vlm_grounding import (
    VLM_FAMILIES,
    format_grounding_answer,
    from_original_xyxy,
    grounding_messages,
    max_new_tokens_for,
    read_grounding_answer,
)

_END_MARKERS = ("<|im_end|>", "<|endoftext|>")


def decode_with_offsets(tok, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``ids`` decoded at once, and each token's character span in it (prefix decoding)."""
    text = tok.decode(ids, skip_special_tokens=False)
    spans, prev = [], 0
    for k in range(1, len(ids) + 1):
        cur = len(tok.decode(ids[:k], skip_special_tokens=False)) if k < len(ids) else len(text)
        cur = max(prev, min(cur, len(text)))
        spans.append((prev, cur))
        prev = cur
    return text, spans


def strip_end(text: str) -> str:
    for marker in _END_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    return text


@register
class QwenVLGrounder(Grounder):
    family = "vlm"
    model_types = tuple(VLM_FAMILIES)
    tiny_builders = TINY_VLMS
    default_box_threshold = 0.0
    uses_context = True
    batches_on_cpu = True  # decoding several images together costs about one (see the pipeline)

    def __init__(self, model, processor, **options):
        super().__init__(model, processor, **options)
        self.convention = VLM_FAMILIES[model.config.model_type]
        processor.tokenizer.padding_side = "left"  # batched generation

    def input_size(self, grid_thw) -> tuple[int, int]:
        """(width, height) of the image as the processor resized it, from its ``image_grid_thw`` row."""
        patch = int(getattr(self.processor.image_processor, "patch_size", 14) or 14)
        _, gh, gw = (int(v) for v in grid_thw)
        return gw * patch, gh * patch

    # ------------------------------------------------------------------ training (riveg train grounder)
    def training_prompt(self, text: str, entities) -> str:
        """The exact chat the grounder sends, rendered for generation (the SFT prompt)."""
        return self.processor.apply_chat_template(grounding_messages(text, entities), add_generation_prompt=True,
                                                  tokenize=False)  # fmt: skip

    def training_target(self, entities, boxes, image_size, input_size) -> str:
        """The answer for gold boxes (pixel xyxy of the original image; None = not visible) in this family's
        own coordinates: the visible entities only, labelled with their names."""
        return format_grounding_answer(
            [e for e, _, _ in entities],
            [
                None if b is None else from_original_xyxy(b, self.convention, image_size, input_size)
                for b in boxes
            ],
        )

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        proc, tok = self.processor, self.processor.tokenizer
        out = []
        for start in range(0, len(requests), vision_batch_size):
            chunk = requests[start : start + vision_batch_size]
            prompts = [
                proc.apply_chat_template(grounding_messages(r.text, r.named_entities), add_generation_prompt=True,
                                         tokenize=False)
                for r in chunk
            ]  # fmt: skip
            enc = proc(text=prompts, images=[r.image for r in chunk], return_tensors="pt", padding=True)
            grids = enc["image_grid_thw"].tolist()
            gen = self.model.generate(
                **self._inputs(enc),
                max_new_tokens=max_new_tokens_for(max(len(r.queries) for r in chunk)),
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
            new = gen.sequences[:, enc["input_ids"].shape[1] :].cpu()
            probs = torch.stack(
                [torch.softmax(s.float(), dim=-1).gather(1, new[:, t : t + 1].to(s.device)).squeeze(1).cpu()
                 for t, s in enumerate(gen.scores)],
                dim=1,
            )  # fmt: skip
            stop = {tok.eos_token_id, tok.pad_token_id} - {None}
            for k, r in enumerate(chunk):
                ids = new[k].tolist()
                n_tok = next((t for t, x in enumerate(ids) if x in stop), len(ids))
                text, spans = decode_with_offsets(tok, ids[:n_tok])
                read = read_grounding_answer(
                    strip_end(text),
                    r.named_entities,
                    self.convention,
                    r.image.size,
                    self.input_size(grids[k]),
                )
                scores = []
                for box, span in zip(read.boxes, read.spans):
                    toks = [t for t, (a, b) in enumerate(spans) if span and a < span[1] and b > span[0]]
                    scores.append(float(probs[k, toks].mean()) if box is not None and toks else None)
                out.append(Localization(read.boxes, scores, None, read.notes))
        return out
