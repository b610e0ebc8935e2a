"""Tiny random components of every supported architecture, built offline (diffusers' ``get_dummy_components``).

Used by the test-suite and by anyone who wants to exercise a pipeline without downloading weights. Each family
builds its own tiny model next to its code (``Family.tiny(model_type)``, :attr:`riveg_hf.stages.Stage.tiny_builders`);
this module is the thin public API over them: :func:`tiny_preset`, :func:`get_dummy_components`, the builders by
name, and :data:`TINY_LOCATORS` (derived from the registries). Nothing here touches the network or the caller's RNG.

>>> from riveg_hf.testing import get_dummy_components
>>> comps = get_dummy_components()  # doctest: +SKIP
>>> pipe = RiVEGPipeline.from_components(**comps)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import BlipForConditionalGeneration, LlamaConfig, LlamaForCausalLM

from .options import STAGE_OPTIONS
from .stages.entailers.contrastive import tiny_clip, tiny_siglip
from .stages.entailers.itm import tiny_blip_itm
from .stages.grounders.florence2 import tiny_florence2
from .stages.grounders.gdino import tiny_grounding_dino, tiny_mm_grounding_dino
from .stages.grounders.owl import tiny_owlv2, tiny_owlvit
from .stages.recognizer import NER_LABELS, tiny_recognizer
from .stages.segmenters.sam import tiny_sam, tiny_sam2, tiny_sam3_tracker
from .stages.segmenters.sam3 import tiny_sam3
from .stages.tiny import (
    VLM_CHAT_TEMPLATE,
    blip_config,
    blip_processor,
    seeded,
    tiny_bert_tokenizer,
    tiny_bpe_tokenizer,
    tiny_clip_tokenizer,
    tiny_qwen2_5_vl,
    tiny_qwen2_vl,
    tiny_qwen3_vl,
    tiny_qwen3_vl_moe,
)

__all__ = [
    "NER_LABELS",
    "TINY_LOCATORS",
    "every_word_recognizer",
    "get_dummy_components",
    "save_dummy_components",
    "tiny_bert_tokenizer",
    "tiny_blip_captioner",
    "tiny_blip_itm",
    "tiny_clip",
    "tiny_clip_tokenizer",
    "tiny_florence2",
    "tiny_grounding_dino",
    "tiny_llm",
    "tiny_mm_grounding_dino",
    "tiny_owlv2",
    "tiny_owlvit",
    "tiny_preset",
    "tiny_qwen2_5_vl",
    "tiny_qwen2_vl",
    "tiny_qwen3_vl",
    "tiny_qwen3_vl_moe",
    "tiny_recognizer",
    "tiny_sam",
    "tiny_sam2",
    "tiny_sam3",
    "tiny_sam3_tracker",
    "tiny_siglip",
]

#: the chat template of the tiny vision-language models (kept under its earlier name)
_VLM_CHAT_TEMPLATE = VLM_CHAT_TEMPLATE
_seeded = seeded


def every_word_recognizer(label: str = "B-PER", seed: int = 0):
    """A tiny recognizer that tags every word ``label``: every word of a tweet is an entity (scaling tests)."""
    model, tok = tiny_recognizer(seed=seed)
    with torch.no_grad():
        model.classifier.bias.fill_(-20.0)
        model.classifier.bias[NER_LABELS.index(label)] = 20.0
    return model, tok


def tiny_blip_captioner(seed: int = 0):
    """A tiny random BLIP captioner (the :class:`~riveg_hf.stages.Captioner`'s model) and its processor."""
    proc = blip_processor()
    with seeded(seed):
        cfg = blip_config(proc.tokenizer)
        cfg.text_config.bos_token_id = proc.tokenizer.cls_token_id
        cfg.text_config.sep_token_id = proc.tokenizer.sep_token_id
        cfg.text_config.pad_token_id = proc.tokenizer.pad_token_id
        model = BlipForConditionalGeneration(cfg).eval()
    return model, proc


def tiny_llm(seed: int = 0, config_class=LlamaConfig, model_class=LlamaForCausalLM):
    """A tiny random causal LM with a chat template (the expander's LLM) and its tokenizer."""
    tok = tiny_bpe_tokenizer()
    with seeded(seed):
        cfg = config_class(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=2048,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = model_class(cfg).eval()
    return model, tok


def get_dummy_components(
    *,
    grounder: str = "grounding-dino",
    entailment: str | None = "blip-itm",
    segmenter: str | None = "sam2",
    expander: bool = False,
    captioner: bool = False,
) -> dict[str, Any]:
    """``(model, processor)`` pairs ready for ``RiVEGPipeline.from_components(**components)``."""
    grounders = {"grounding-dino": tiny_grounding_dino, "owlv2": tiny_owlv2}
    entailments = {"blip-itm": tiny_blip_itm, "clip": tiny_clip}
    segmenters = {"sam2": tiny_sam2, "sam": tiny_sam}
    comps: dict[str, Any] = {"recognizer": tiny_recognizer(), "grounder": grounders[grounder]()}
    if entailment:
        comps["entailment"] = entailments[entailment]()
    if segmenter:
        comps["segmenter"] = segmenters[segmenter]()
    if expander:
        comps["expander"] = tiny_llm()
    if captioner:
        comps["captioner"] = tiny_blip_captioner()
    return comps


def save_dummy_components(directory: str | Path, **kwargs: Any) -> dict[str, str]:
    """Save :func:`get_dummy_components` into ``directory/<name>`` folders; returns the paths by name."""
    out = {}
    for name, (model, proc) in get_dummy_components(**kwargs).items():
        path = Path(directory) / name
        model.save_pretrained(path)
        proc.save_pretrained(path)
        out[name] = str(path)
    return out


def _tiny_qwen2_llm():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return tiny_llm(config_class=Qwen2Config, model_class=Qwen2ForCausalLM)


#: A tiny random stand-in for each model class the presets name.
TINY_BY_CLASS = {
    "BertForTokenClassification": tiny_recognizer,
    "Qwen2ForCausalLM": _tiny_qwen2_llm,
    "BlipForImageTextRetrieval": tiny_blip_itm,
    "GroundingDinoForObjectDetection": tiny_grounding_dino,
    "Sam2Model": tiny_sam2,
    "Qwen2_5_VLForConditionalGeneration": tiny_qwen2_5_vl,
    "Sam3Model": tiny_sam3,
}
_STAGE_OPTION_NAMES = {
    ("entailment", "threshold"): "entailment_threshold",
    **{("reader", o.argument): o.name for o in STAGE_OPTIONS.values() if o.stage == "reader"},
}


def _tiny_locators() -> dict[str, Any]:
    """model type -> tiny builder of every grounder family, and of every segmenter that locates (SAM 3): what the
    per-family conformance tests run; derived from the registries, so a new family brings its own."""
    from .stages.grounder import FAMILIES as GROUNDERS
    from .stages.segmenter import FAMILIES as SEGMENTERS

    out: dict[str, Any] = {}
    for family in GROUNDERS.families():
        out.update(family.tiny_builders)
    for family in SEGMENTERS.families():
        if getattr(family, "locates", False):
            out.update(family.tiny_builders)
    return out


#: A tiny random model per model type of each grounder family (and each segmenter that locates), from the
#: families' own ``tiny_builders``: what the per-family conformance tests run.
TINY_LOCATORS = _tiny_locators()


def tiny_preset(name: str, **options: Any):
    """The preset ``name`` (see :data:`riveg_hf.pipeline.PRESETS`) with a tiny random model of each of its classes,
    its stage options and its pipeline options: the preset's wiring, runnable offline in tests."""
    import json

    from .pipeline import RiVEGPipeline, preset_path

    cfg = json.loads((preset_path(name) / "config.json").read_text(encoding="utf-8"))
    comps = {stage: TINY_BY_CLASS[c["model_class"]]() for stage, c in cfg["components"].items()}
    opts: dict[str, Any] = dict(cfg.get("pipeline_options") or {})
    for stage, c in cfg["components"].items():
        for key, value in (c.get("options") or {}).items():
            opts[_STAGE_OPTION_NAMES.get((stage, key), key)] = value
    opts.update(options)
    return RiVEGPipeline.from_components(**comps, task=cfg["task"], **opts)
