"""Shared pieces of the tiny random models the families build (``Family.tiny()``): small in-memory tokenizers,
seeded construction, and the tiny vision-language models several roles share (a Qwen-VL is a grounder, an
entailment model and a joint reader). Nothing here touches the network or the caller's RNG (seeds are applied
inside ``torch.random.fork_rng``). The public test API is :mod:`riveg_hf.testing`.
"""

from __future__ import annotations

import contextlib
import string

import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipImageProcessor,
    BlipProcessor,
    CLIPTokenizer,
    PreTrainedTokenizerFast,
)

WORDS = (
    "the a an of in on at to and is for with photo image person people city bridge cat dog red blue green "
    "golden gate san francisco obama paris nasa rocket launch coffee cup astronaut space motorcycle galaxy "
    "location organization named entity"
).split()


@contextlib.contextmanager
def seeded(seed: int):
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
    rest += [w for w in WORDS if w not in rest]
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
    """A CLIP tokenizer over lowercase letters, digits and punctuation (no download), for tiny test models."""
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
    tk.train_from_iterator([" ".join(WORDS)] * 5, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    tok.chat_template = (
        "{% for m in messages %}<|bos|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return tok


def dual_encoder_configs(tok, image_size: int) -> dict:
    """Tiny text/vision sub-configs shared by the CLIP-like models (CLIP, OWLv2, SigLIP); the special token ids
    are the tiny tokenizer's (the defaults of the full-size configs lie outside its vocabulary)."""
    common = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2}
    special = {f"{k}_token_id": getattr(tok, f"{k}_token_id", None) for k in ("bos", "eos", "pad")}
    return {
        "text_config": {**common, **special, "vocab_size": len(tok), "max_position_embeddings": 16},
        "vision_config": {**common, "image_size": image_size, "patch_size": 16},
    }


def blip_config(tok) -> BlipConfig:
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


def blip_processor() -> BlipProcessor:
    return BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=tiny_bert_tokenizer(lowercase=True),
    )


def tiny_sam3_vision():
    """The tiny SAM 3 image encoder config shared by SAM 3 and the SAM 3 tracker (112 px, 8x8 patches)."""
    from transformers import Sam3VisionConfig, Sam3ViTConfig

    vit = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=112, patch_size=14, window_size=4, global_attn_indexes=[1],
                        pretrain_image_size=56)  # fmt: skip
    return Sam3VisionConfig(
        backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]]
    )


VLM_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


#: the text-model sizes shared by the tiny vision-language models (head_dim 8 = 32 / 4)
VLM_TEXT_DIMS = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


def vlm_tokenizer():
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

    tok, ids = vlm_tokenizer()
    with seeded(seed):
        cfg = Qwen3VLConfig(
            text_config={
                "vocab_size": len(tok),
                **VLM_TEXT_DIMS,
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
        chat_template=VLM_CHAT_TEMPLATE,
    )
    return model, proc


def _tiny_qwen2_family(seed: int, version: str):
    """A tiny random Qwen2-VL (``"2"``) or Qwen2.5-VL (``"2.5"``): one text model, each version's vision tower,
    config, model and processor classes."""
    import transformers
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    prefix = {"2": "Qwen2VL", "2.5": "Qwen2_5_VL"}[version]
    config_class, model_class, processor_class = (
        getattr(transformers, f"{prefix}{suffix}")
        for suffix in ("Config", "ForConditionalGeneration", "Processor")
    )
    vision = {"depth": 1, "hidden_size": 32, "num_heads": 4, "patch_size": 14, "spatial_merge_size": 2,
              "temporal_patch_size": 2}  # fmt: skip
    if version == "2":
        vision.update(embed_dim=32, mlp_ratio=2)
    else:
        vision.update(intermediate_size=64, out_hidden_size=32, fullatt_block_indexes=[0], window_size=112)
    tok, ids = vlm_tokenizer()
    with seeded(seed):
        cfg = config_class(
            text_config={
                "vocab_size": len(tok),
                **VLM_TEXT_DIMS,
                "max_position_embeddings": 4096,
                "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
                "bos_token_id": ids["<|endoftext|>"],
                "eos_token_id": ids["<|im_end|>"],
                "pad_token_id": ids["<|endoftext|>"],
            },
            vision_config=vision,
            image_token_id=ids["<|image_pad|>"],
            video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"],
        )
        model = model_class(cfg).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    proc = processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=VLM_CHAT_TEMPLATE,
    )
    return model, proc


def tiny_qwen2_vl(seed: int = 0):
    """A tiny random Qwen2-VL (relative 0-1000 coordinates, box-token answers) with a Qwen-style processor."""
    return _tiny_qwen2_family(seed, "2")


def tiny_qwen2_5_vl(seed: int = 0):
    """A tiny random Qwen2.5-VL (transformers' own classes) with a Qwen-style processor and chat template."""
    return _tiny_qwen2_family(seed, "2.5")


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
    with seeded(seed):
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


#: model type -> tiny builder of the Qwen-VL architectures (grounder, entailment, reader families)
TINY_VLMS = {
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "qwen3_vl": tiny_qwen3_vl,
    "qwen3_vl_moe": tiny_qwen3_vl_moe,
}
