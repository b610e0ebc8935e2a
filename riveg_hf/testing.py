"""Tiny random components of every supported architecture, built offline (diffusers' ``get_dummy_components``).

Used by the test-suite and by anyone who wants to exercise a pipeline without downloading
weights. Tokenizers are built from small in-memory vocabularies; models are random. Nothing
here touches the network or the global RNG (seeds are applied inside ``torch.random.fork_rng``).

>>> from riveg_hf.testing import get_dummy_components
>>> comps = get_dummy_components()  # doctest: +SKIP
>>> pipe = RiVEGPipeline.from_components(**comps)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import string
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForTokenClassification,
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipImageProcessor,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    LlamaConfig,
    LlamaForCausalLM,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessor,
    Owlv2Processor,
    PreTrainedTokenizerFast,
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2ImageProcessor,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2Processor,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
    SamConfig,
    SamImageProcessor,
    SamModel,
    SamProcessor,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
    SwinConfig,
)

from .options import STAGE_OPTIONS

__all__ = [
    "NER_LABELS",
    "every_word_recognizer",
    "get_dummy_components",
    "save_dummy_components",
    "tiny_bert_tokenizer",
    "tiny_blip_captioner",
    "tiny_blip_itm",
    "tiny_clip",
    "tiny_florence2",
    "tiny_grounding_dino",
    "tiny_llm",
    "tiny_mm_grounding_dino",
    "tiny_owlv2",
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

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-OTHER", "I-OTHER"]
_WORDS = (
    "the a an of in on at to and is for with photo image person people city bridge cat dog red blue green "
    "golden gate san francisco obama paris nasa rocket launch coffee cup astronaut space motorcycle galaxy "
    "location organization named entity"
).split()


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed the CPU RNG for the block, restoring the caller's RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_bert_tokenizer(lowercase: bool = False, bert_base_ids: bool = False) -> BertTokenizer:
    """A WordPiece tokenizer over letters, digits, punctuation and a few words (sub-words by character).

    ``bert_base_ids`` puts ``[PAD] [UNK] [CLS] [SEP] [MASK] . ?`` at bert-base-uncased's ids (0, 100-103,
    1012, 1029), which Grounding DINO hard-codes to separate the phrases of a prompt.
    """
    chars = string.ascii_lowercase + ("" if lowercase else string.ascii_uppercase) + string.digits
    rest = list(chars) + ["##" + c for c in chars] + [c for c in string.punctuation if c not in ".?"]
    rest += [w for w in _WORDS if w not in rest]
    if not bert_base_ids:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?", *rest]
    else:
        fixed = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}
        vocab, it = [], iter(rest)
        for i in range(1030):
            vocab.append(fixed.get(i) or next(it, f"[unused{i}]"))
    return BertTokenizer(
        vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=lowercase, model_max_length=128
    )


def tiny_clip_tokenizer(max_length: int = 16) -> CLIPTokenizer:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with a chat template, for tiny causal LMs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|pad|>", "<|bos|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator([" ".join(_WORDS)] * 5, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    tok.chat_template = (
        "{% for m in messages %}<|bos|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return tok


def tiny_recognizer(labels: list[str] = NER_LABELS, seed: int = 0, hidden_size: int = 32):
    tok = tiny_bert_tokenizer()
    with _seeded(seed):
        cfg = BertConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=128,
            id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)},
        )
        model = BertForTokenClassification(cfg).eval()
    return model, tok


def every_word_recognizer(label: str = "B-PER", seed: int = 0):
    """A tiny recognizer that tags every word ``label``: every word of a tweet is an entity (scaling tests)."""
    model, tok = tiny_recognizer(seed=seed)
    with torch.no_grad():
        model.classifier.bias.fill_(-20.0)
        model.classifier.bias[NER_LABELS.index(label)] = 20.0
    return model, tok


def tiny_grounding_dino(seed: int = 0, mm: bool = False):
    """A tiny random Grounding DINO; ``mm=True``: MM-Grounding-DINO (``MMGroundingDinoForObjectDetection``)."""
    tok = tiny_bert_tokenizer(lowercase=True, bert_base_ids=True)
    if mm:
        from transformers import MMGroundingDinoConfig as config_class
        from transformers import MMGroundingDinoForObjectDetection as model_class
    else:
        config_class, model_class = GroundingDinoConfig, GroundingDinoForObjectDetection
    with _seeded(seed):
        swin = SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=64,
            out_indices=[2, 3, 4],
        )
        cfg = config_class(
            backbone_config=swin,
            use_timm_backbone=False,
            use_pretrained_backbone=False,
            text_config=BertConfig(
                vocab_size=len(tok),
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=37,
            ),
            d_model=32,
            encoder_layers=1,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            num_queries=20,
            num_feature_levels=4,
            encoder_n_points=2,
            decoder_n_points=2,
            max_text_len=256,
        )
        model = model_class(cfg).eval()
    proc = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tok,
    )
    return model, proc


def _dual_encoder_configs(tok, image_size: int) -> dict:
    """Tiny text/vision sub-configs shared by the CLIP-like models (CLIP, OWLv2, SigLIP); the special token ids
    are the tiny tokenizer's (the defaults of the full-size configs lie outside its vocabulary)."""
    common = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}
    special = {f"{k}_token_id": getattr(tok, f"{k}_token_id", None) for k in ("bos", "eos", "pad")}
    return {
        "text_config": {**common, **special, "vocab_size": len(tok), "max_position_embeddings": 16},
        "vision_config": {**common, "image_size": image_size, "patch_size": 16},
    }


def tiny_mm_grounding_dino(seed: int = 0):
    return tiny_grounding_dino(seed, mm=True)


def tiny_owlv2(seed: int = 0):
    tok = tiny_clip_tokenizer()
    with _seeded(seed):
        cfg = Owlv2Config(**_dual_encoder_configs(tok, 64), projection_dim=32)
        model = Owlv2ForObjectDetection(cfg).eval()
    return model, Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer=tok
    )


def _blip_config(tok) -> BlipConfig:
    return BlipConfig(
        text_config={
            "vocab_size": len(tok),
            "bos_token_id": tok.cls_token_id,
            "sep_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "encoder_hidden_size": 32,
            "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 16,
        },
        projection_dim=16,
        image_text_hidden_size=16,
    )


def _blip_processor() -> BlipProcessor:
    return BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tiny_bert_tokenizer(lowercase=True),
    )


def tiny_blip_itm(seed: int = 0):
    proc = _blip_processor()
    with _seeded(seed):
        model = BlipForImageTextRetrieval(_blip_config(proc.tokenizer)).eval()
    return model, proc


def tiny_blip_captioner(seed: int = 0):
    proc = _blip_processor()
    with _seeded(seed):
        cfg = _blip_config(proc.tokenizer)
        cfg.text_config.bos_token_id = proc.tokenizer.cls_token_id
        cfg.text_config.sep_token_id = proc.tokenizer.sep_token_id
        cfg.text_config.pad_token_id = proc.tokenizer.pad_token_id
        model = BlipForConditionalGeneration(cfg).eval()
    return model, proc


def tiny_clip(seed: int = 0):
    tok = tiny_clip_tokenizer()
    with _seeded(seed):
        cfg = CLIPConfig(**_dual_encoder_configs(tok, 32), projection_dim=16)
        model = CLIPModel(cfg).eval()
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return model, CLIPProcessor(image_processor=ip, tokenizer=tok)


def tiny_siglip(seed: int = 0):
    tok = tiny_clip_tokenizer()
    with _seeded(seed):
        model = SiglipModel(SiglipConfig(**_dual_encoder_configs(tok, 32))).eval()
    ip = SiglipImageProcessor(size={"height": 32, "width": 32})
    return model, SiglipProcessor(image_processor=ip, tokenizer=tok)


def tiny_sam2(seed: int = 0):
    with _seeded(seed):
        backbone = Sam2HieraDetConfig(
            hidden_size=12,
            image_size=128,
            patch_stride=4,
            patch_kernel_size=7,
            patch_padding=3,
            blocks_per_stage=[1, 1, 2, 1],
            embed_dim_per_stage=[12, 24, 48, 96],
            global_attention_blocks=[3],
        )
        vision = Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=[96, 48, 24, 12],
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
            fpn_hidden_size=32,
        )
        cfg = Sam2Config(
            vision_config=vision,
            prompt_encoder_config=Sam2PromptEncoderConfig(
                hidden_size=32, image_size=128, patch_size=16, mask_input_channels=8
            ),
            mask_decoder_config=Sam2MaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
        model = Sam2Model(cfg).eval()
    return model, Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 128, "width": 128}))


def _tiny_sam3_vision():
    """The tiny SAM 3 image encoder config shared by SAM 3 and the SAM 3 tracker (112 px, 8x8 patches)."""
    from transformers import Sam3VisionConfig, Sam3ViTConfig

    vit = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=112, patch_size=14, window_size=4, global_attn_indexes=[1],
                        pretrain_image_size=56)  # fmt: skip
    return Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]]
    )


def tiny_sam3_tracker(seed: int = 0):
    """A tiny random SAM 3 tracker (box/point prompts, SAM 2 interface) with its processor."""
    from transformers import (
        Sam3TrackerConfig,
        Sam3TrackerModel,
        Sam3TrackerProcessor,
    )
    from transformers.models.sam3_tracker.configuration_sam3_tracker import (
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerPromptEncoderConfig,
    )

    with _seeded(seed):
        cfg = Sam3TrackerConfig(
            vision_config=_tiny_sam3_vision(),
            prompt_encoder_config=Sam3TrackerPromptEncoderConfig(
                hidden_size=32, image_size=112, patch_size=14, mask_input_channels=8
            ),
            mask_decoder_config=Sam3TrackerMaskDecoderConfig(
                hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
            ),
        )
        model = Sam3TrackerModel(cfg).eval()
    return model, Sam3TrackerProcessor(image_processor=Sam2ImageProcessor(size={"height": 112, "width": 112}))


def tiny_sam3(seed: int = 0):
    """A tiny random SAM 3 (text-prompted detection + segmentation) with its processor."""
    from transformers import (
        Sam3Config,
        Sam3ImageProcessor,
        Sam3Model,
        Sam3Processor,
    )

    tok = tiny_clip_tokenizer(max_length=32)
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    with _seeded(seed):
        cfg = Sam3Config(
            vision_config=_tiny_sam3_vision(),
            text_config={
                "vocab_size": len(tok),
                "hidden_size": 32,
                "intermediate_size": 64,
                "projection_dim": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "max_position_embeddings": 32,
                "bos_token_id": tok.bos_token_id,
                "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id,
            },
            geometry_encoder_config={"num_layers": 1, **small},
            detr_encoder_config={"num_layers": 1, **small},
            detr_decoder_config={"num_layers": 1, "num_queries": 10, **small},
            mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2, "num_upsampling_stages": 3},
        )
        model = Sam3Model(cfg).eval()
    proc = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112}), tokenizer=tok
    )
    return model, proc


def tiny_sam(seed: int = 0):
    with _seeded(seed):
        cfg = SamConfig(
            vision_config={
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 64,
                "patch_size": 16,
                "output_channels": 32,
                "window_size": 2,
                "global_attn_indexes": [0],
                "mlp_dim": 64,
                "num_pos_feats": 16,
            },
            prompt_encoder_config={
                "hidden_size": 32,
                "image_size": 64,
                "patch_size": 16,
                "mask_input_channels": 4,
            },
            mask_decoder_config={
                "hidden_size": 32,
                "mlp_dim": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "iou_head_hidden_dim": 32,
            },
        )
        model = SamModel(cfg).eval()
    ip = SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    return model, SamProcessor(image_processor=ip)


def tiny_llm(seed: int = 0, config_class=LlamaConfig, model_class=LlamaForCausalLM):
    tok = tiny_bpe_tokenizer()
    with _seeded(seed):
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


#: A Qwen-style chat template (image first, then the text) for the tiny vision-language models.
_VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


#: the text-model sizes shared by the tiny vision-language models (head_dim 8 = 32 / 4)
_VLM_TEXT_DIMS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def _vlm_tokenizer():
    tok = tiny_bpe_tokenizer()
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
                "<|endoftext|>"]  # fmt: skip
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.pad_token, tok.eos_token = "<|endoftext|>", "<|im_end|>"
    return tok, {t: tok.convert_tokens_to_ids(t) for t in specials}


def tiny_qwen3_vl(seed: int = 0):
    """A tiny random Qwen3-VL (relative 0-1000 box coordinates) with a Qwen-style processor."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tok, ids = _vlm_tokenizer()
    with _seeded(seed):
        cfg = Qwen3VLConfig(
            text_config={
                "vocab_size": len(tok),
                **_VLM_TEXT_DIMS,
                "head_dim": 8,
                "max_position_embeddings": 4096,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": 10000.0,
                    "mrope_section": [1, 1, 2],
                    "mrope_interleaved": True,
                },
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 4,
                "out_hidden_size": 32,
                "patch_size": 16,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "num_position_embeddings": 64,
                "deepstack_visual_indexes": [1],
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
            vision_end_token_id=ids["<|vision_end|>"],
        )
        model = Qwen3VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    proc = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=32 * 32 * 16),
        tokenizer=tok,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=_VLM_CHAT_TEMPLATE,
    )
    return model, proc


def tiny_qwen2_vl(seed: int = 0):
    """A tiny random Qwen2-VL (relative 0-1000 coordinates, box-token answers) with a Qwen-style processor."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok, ids = _vlm_tokenizer()
    with _seeded(seed):
        cfg = Qwen2VLConfig(
            text_config={
                "vocab_size": len(tok),
                **_VLM_TEXT_DIMS,
                "max_position_embeddings": 4096,
                "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": 1,
                "embed_dim": 32,
                "hidden_size": 32,
                "num_heads": 4,
                "mlp_ratio": 2,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
        )
        model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    proc = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=_VLM_CHAT_TEMPLATE,
    )
    return model, proc


def tiny_qwen3_vl_moe(seed: int = 0):
    """A tiny random Qwen3-VL-MoE (the Qwen3-VL-30B-A3B / 235B-A22B architecture): relative 0-1000 coordinates."""
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    dense, proc = tiny_qwen3_vl(seed)
    tok = proc.tokenizer
    cfg = dense.config.to_dict()
    text = {k: v for k, v in cfg["text_config"].items() if k not in ("model_type", "architectures")}
    text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, decoder_sparse_step=1,
                num_local_experts=4)  # fmt: skip
    vision = {k: v for k, v in cfg["vision_config"].items() if k not in ("model_type", "architectures")}
    with _seeded(seed):
        moe = Qwen3VLMoeForConditionalGeneration(
            Qwen3VLMoeConfig(
                text_config=text,
                vision_config=vision,
                image_token_id=cfg["image_token_id"],
                video_token_id=cfg["video_token_id"],
                vision_start_token_id=cfg["vision_start_token_id"],
                vision_end_token_id=cfg["vision_end_token_id"],
            )
        ).eval()
    moe.generation_config.eos_token_id = dense.generation_config.eos_token_id
    moe.generation_config.pad_token_id = dense.generation_config.pad_token_id
    assert tok is proc.tokenizer
    return moe, proc


def tiny_qwen2_5_vl(seed: int = 0):
    """A tiny random Qwen2.5-VL (transformers' own classes) with a Qwen-style processor and chat template."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok, ids = _vlm_tokenizer()
    with _seeded(seed):
        cfg = Qwen2_5_VLConfig(
            text_config={
                "vocab_size": len(tok),
                **_VLM_TEXT_DIMS,
                "max_position_embeddings": 4096,
                "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config={
                "depth": 1,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 4,
                "out_hidden_size": 32,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "fullatt_block_indexes": [0],
                "window_size": 112,
            },
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
        )
        model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    proc = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=_VLM_CHAT_TEMPLATE,
    )
    return model, proc


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
    )
    from transformers.models.florence2.configuration_florence2 import Florence2VisionConfig

    backend = tiny_bpe_tokenizer().backend_tokenizer
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<|pad|>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    tok.add_tokens([f"<loc_{i}>" for i in range(1000)], special_tokens=True)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<s>", "</s>")}
    with _seeded(seed):
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

#: A tiny random model per grounder family (model type -> builder): what the per-family conformance tests run.
#: A new family adds its module (riveg_hf.stages.grounders), its line in FAMILY_MODULES, and its builder here.
TINY_LOCATORS = {
    "grounding-dino": tiny_grounding_dino,
    "mm-grounding-dino": lambda: tiny_mm_grounding_dino(),
    "owlv2": tiny_owlv2,
    "florence2": tiny_florence2,
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "qwen3_vl": tiny_qwen3_vl,
    "qwen3_vl_moe": tiny_qwen3_vl_moe,
    "sam3": tiny_sam3,  # a segmenter that locates (Segmenter.locator())
}


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
