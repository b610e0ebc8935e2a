"""Florence-2: caption-to-phrase grounding of the image's queries, one generation per image.

The queries are joined into one caption (``"q1. q2. q3"``) and grounded with
``<CAPTION_TO_PHRASE_GROUNDING>``; the processor's own post-processing maps its ``<loc_N>`` tokens to pixels.
Florence-2 grounds the **noun phrases** of a caption, not the caption's sentences: for "A green car parked in
front of a yellow building." it answers "A green car" and "a yellow building" (transformers.js' Florence-2
test, in ``tests/fixtures/real_vlm_answers.json``), and its processor drops non-ASCII letters from the phrases
("Beyoncé" -> "Beyonc"). So a phrase belongs to the query that **contains** it (whole words), both sides folded
the way the processor folds (ASCII only) and normalised (:func:`~riveg_hf.stages.vlm_answers.normalize_name`);
phrases come in caption order, so each is given to the first query at or after the previous phrase's query that
contains it, and a query keeps its first phrase (a description's head: "a man" of "a man in a suit"). A query
that contains no phrase is "not visible", with a note. A Florence-2 fine-tuned by ``riveg train grounder``
answers each query whole, which this rule takes as well (a query contains itself).

Why not ``<OPEN_VOCABULARY_DETECTION>`` per query: it costs one generation per entity instead of one per image,
and the phrase rule recovers the head of each description, which is what the detector can see. Florence-2
gives no score: ``box_score`` is None (the entailment stage or the answer decides visibility).
"""

from __future__ import annotations

from ..grounder import Grounder, Localization, LocateRequest, clip_box, register
from ..vlm_answers import normalize_name
from ._detector import clean_query

#: Florence-2's task for grounding phrases of a caption
FLORENCE2_TASK = "<CAPTION_TO_PHRASE_GROUNDING>"
NOT_GROUNDED = (
    "not grounded: no phrase of Florence-2's answer is part of this query (reported as not visible)"
)


def _fold(text: str) -> str:
    return normalize_name(str(text).encode("ascii", "ignore").decode("ascii"))


def assign_phrases(phrases: list[str], queries: list[str]) -> list[int | None]:
    """Per query, the index of its phrase (see the module doc), or None.

    >>> assign_phrases(["A green car", "a yellow building"], ["a green car parked", "a yellow building"])
    [0, 1]
    >>> assign_phrases(["Beyonc"], ["Beyoncé on stage"])
    [0]
    """
    folded_q = [f" {_fold(q)} " for q in queries]
    out: list[int | None] = [None] * len(queries)
    cursor = 0
    for p, phrase in enumerate(phrases):
        fp = _fold(phrase)
        if not fp:
            continue
        order = [
            *range(cursor, len(queries)),
            *(k for k in range(cursor) if out[k] is None),
        ]  # caption order first
        cands = [k for k in order if f" {fp} " in folded_q[k]]
        if not cands:  # a query the answer grounds whole, or a phrase longer than its query
            cands = [k for k in order if folded_q[k].strip() and folded_q[k] in f" {fp} "]
        if not cands:
            continue
        free = [
            k for k in cands if out[k] is None
        ]  # a repeated phrase ("a man" twice) goes to the next query
        k = free[0] if free else cands[0]
        cursor = k
        if out[k] is None:
            out[k] = p
    return out


# ---------------------------------------------------------------------- tiny model (tests)
_FLORENCE2_POST = {
    "phrase_grounding": {"FILTER_BY_BLACK_LIST": True},
    "pure_text": {},
    "description_with_bboxes": {},
    "description_with_polygons": {},
    "polygons": {},
    "bboxes": {},
    "description_with_bboxes_or_polygons": {},
}


def tiny_florence2(seed: int = 0):
    """A tiny random Florence-2 (DaViT + BART) with a tokenizer that has the 1000 ``<loc_*>`` tokens."""
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.florence2.configuration_florence2 import Florence2VisionConfig

    from ..tiny import seeded, tiny_bpe_tokenizer

    backend = tiny_bpe_tokenizer().backend_tokenizer
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<|pad|>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    tok.add_tokens([f"<loc_{i}>" for i in range(1000)], special_tokens=True)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>")}
    with seeded(seed):
        vision = Florence2VisionConfig(depths=(1, 1, 1, 1), embed_dim=(8, 16, 32, 32), num_heads=(1, 1, 2, 2),
                                       num_groups=(1, 1, 2, 2), window_size=2, projection_dim=32,
                                       max_position_embeddings=16, max_temporal_embeddings=4)  # fmt: skip
        text = BartConfig(vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                          decoder_ffn_dim=64, max_position_embeddings=512, bos_token_id=ids["<s>"],
                          eos_token_id=ids["</s>"], pad_token_id=tok.pad_token_id,
                          decoder_start_token_id=ids["</s>"], forced_bos_token_id=None)  # fmt: skip
        model = Florence2ForConditionalGeneration(
            Florence2Config(vision_config=vision, text_config=text, image_token_id=tok.image_token_id)
        ).eval()
    ip = CLIPImageProcessor(
        size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64}, do_center_crop=False
    )
    ip.image_seq_length = 5  # 2x2 patches + 1 pooled token for 64 px
    return model, Florence2Processor(image_processor=ip, tokenizer=tok, post_processor_config=_FLORENCE2_POST)


@register
class Florence2Grounder(Grounder):
    family = "florence2"
    model_types = ("florence2",)
    tiny_builders = {"florence2": tiny_florence2}
    default_box_threshold = 0.0
    has_scores = False
    batches_on_cpu = True

    # ------------------------------------------------------------------ training (riveg train grounder)
    def training_prompt(self, text: str, entities) -> str:
        return FLORENCE2_TASK + ". ".join(clean_query(d) for _, _, d in entities)

    def training_target(self, entities, boxes, image_size, input_size=None) -> str:
        """``query<loc_x0><loc_y0><loc_x1><loc_y1>`` per visible entity (quantized by the processor); an entity
        that is not visible is left out."""
        import torch

        post, parts = self.processor.post_processor, []
        for (_, _, desc), box in zip(entities, boxes):
            if box is not None:
                q = post.quantize(torch.tensor([box]), size=image_size)[0].tolist()
                parts.append(clean_query(desc) + "".join(f"<loc_{int(v)}>" for v in q))
        return "".join(parts)

    def _locate(self, requests: list[LocateRequest], vision_batch_size: int) -> list[Localization]:
        proc = self.processor
        out = []
        for start in range(0, len(requests), vision_batch_size):
            chunk = requests[start : start + vision_batch_size]
            cleaned = [[clean_query(q) for q in r.queries] for r in chunk]
            prompts = [FLORENCE2_TASK + ". ".join(qs) for qs in cleaned]
            enc = proc(text=prompts, images=[r.image for r in chunk], return_tensors="pt", padding=True)
            n_max = max(len(qs) for qs in cleaned)
            gen = self.model.generate(**self._inputs(enc), max_new_tokens=16 + 16 * n_max, do_sample=False,
                                      num_beams=1)  # fmt: skip
            for r, qs, text in zip(chunk, cleaned, proc.batch_decode(gen, skip_special_tokens=False)):
                out.append(self._read(text, r, qs))
        return out

    def _read(self, text: str, request: LocateRequest, queries: list[str]) -> Localization:
        size = request.image.size
        parsed = self.processor.post_process_generation(text=text, task=FLORENCE2_TASK, image_size=size)
        found = parsed.get(FLORENCE2_TASK) or {}
        labels, boxes = list(found.get("labels") or []), list(found.get("bboxes") or [])
        which = assign_phrases([str(x) for x in labels], list(request.queries))
        out_boxes, notes = [], []
        for k in which:
            box = clip_box(boxes[k], size) if k is not None else None
            out_boxes.append(box)
            notes.append(None if box is not None else NOT_GROUNDED)
        return Localization(out_boxes, None, None, notes)
