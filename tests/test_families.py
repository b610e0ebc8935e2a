"""Conformance tests generated from the family registries: every registered family of every role, on a tiny random
model of each model type it claims (its own ``tiny_builders``), keeps its role's promises -- batched equals one by
one, save / reload gives identical answers and options, outputs are JSON-safe, boxes lie inside the image, and the
role's own promises (entailment: each image encoded once per call, unless the family declares otherwise). A family
added from a user's module (no edit of riveg-hf) runs through the same checks (the last tests)."""

from __future__ import annotations

import importlib
import json
import re
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from riveg_hf.stages import Entailment, Grounder, JointReader, Recognizer, Segmenter
from riveg_hf.stages import entailment as entailment_role
from riveg_hf.stages import grounder as grounder_role
from riveg_hf.stages import reader as reader_role
from riveg_hf.stages import recognizer as recognizer_role
from riveg_hf.stages import segmenter as segmenter_role
from riveg_hf.stages.grounder import Localization, LocateRequest
from riveg_hf.stages.reader import Reading, ReadRequest
from riveg_hf.stages.registry import FamilyRegistry, Option, UnknownFamilyError

from .helpers import sake_prompt_dir

#: role -> (its base class, its registry)
ROLES: dict[str, tuple[type, FamilyRegistry]] = {
    "grounder": (Grounder, grounder_role.FAMILIES),
    "segmenter": (Segmenter, segmenter_role.FAMILIES),
    "entailment": (Entailment, entailment_role.FAMILIES),
    "reader": (JointReader, reader_role.FAMILIES),
    "recognizer": (Recognizer, recognizer_role.FAMILIES),
}


def _cases() -> list[tuple[str, str, str]]:
    return [(role, fam.family, mt) for role, (_, reg) in ROLES.items() for fam in reg.families()
            for mt in fam.tiny_builders]  # fmt: skip


# ---------------------------------------------------------------------- the inputs
def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)),
            Image.fromarray((rng.random((40, 72, 3)) * 255).astype(np.uint8)), Image.new("RGB", (64, 48))]  # fmt: skip


ENTITIES = [
    [("Obama", "PER", "a man in a suit"), ("Paris", "LOC", "a city")],
    [("NASA", "ORG", "a logo")],
    [],
]
BOXES = [[[2.0, 3.0, 30.0, 40.0], [10.0, 10.0, 60.0, 47.0]], [[0.0, 0.0, 71.0, 39.0]], []]
TWEETS = ["Obama in Paris with a red cup", "NASA rocket launch", "the city at night"]


def reader_options(family: str, tmp_path: Path) -> dict:
    """What a reader family needs beyond its model: the prompt files riveg-hf does not ship."""
    if family == "sake":
        return {"prompt_dir": str(sake_prompt_dir(tmp_path / "sake"))}
    if family == "e2e-gmner":
        instruction, system = tmp_path / "instruction.txt", tmp_path / "system.txt"
        instruction.write_text("Find the entities.\nText: ", encoding="utf-8")
        system.write_text("You are a helpful assistant.", encoding="utf-8")
        return {"instruction_file": str(instruction), "system_prompt_file": str(system)}
    return {}


def build(role: str, family: type, model_type: str, tmp_path: Path):
    """The stage of ``family`` on its tiny ``model_type`` model, through the role's base class (the dispatch)."""
    base, _ = ROLES[role]
    model, proc = family.tiny(model_type)
    if role == "reader":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stand-in prompt texts
            stage = base(
                model,
                proc,
                family=family.family,
                max_new_tokens=24,
                **reader_options(family.family, tmp_path),
            )
    else:
        stage = base(model, proc)
    assert type(stage) is family, f"{base.__name__}({type(model).__name__}) gave {type(stage).__name__}"
    return stage


def reload(role: str, stage, tmp_path: Path):
    """Save the stage and load it back with its recorded options (what a composite checkpoint does)."""
    base, _ = ROLES[role]
    stage.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = base.from_pretrained(tmp_path / "saved", **stage.options())
    assert type(again) is type(stage) and again.options() == stage.options()
    return again


# ---------------------------------------------------------------------- the role's checks (also run on new families)
def _plain(loc: Localization):
    return {"boxes": loc.boxes, "scores": loc.scores, "notes": loc.notes,
            "masks": None if loc.masks is None else [None if m is None else m.tolist() for m in loc.masks]}  # fmt: skip


def _close_locs(a: Localization, b: Localization):
    assert len(a.boxes) == len(b.boxes) and a.notes == b.notes
    for x, y in zip(a.boxes, b.boxes):
        assert (x is None) == (y is None) and (x is None or max(abs(p - q) for p, q in zip(x, y)) <= 1e-3)
    if a.scores is not None:
        for x, y in zip(a.scores, b.scores):
            assert (x is None) == (y is None) and (x is None or abs(x - y) <= 1e-4)


def conform_locator(stage, tmp_path: Path, role: str = "grounder") -> None:
    """The locator protocol (a grounder, or a segmenter that locates)."""
    locator = stage.locator() if role == "segmenter" else stage
    reqs = [LocateRequest(img, [d for _, _, d in e], text=t, entities=e)
            for img, e, t in zip(_images(), ENTITIES, TWEETS)]  # fmt: skip
    batched = locator.locate_many(reqs, vision_batch_size=8)
    assert [len(loc.boxes) for loc in batched] == [2, 1, 0]
    for r, loc in zip(reqs, batched):
        assert isinstance(loc, Localization)
        assert (loc.scores is None) == (not locator.has_scores)
        assert (loc.masks is not None) == bool(locator.returns_masks and loc.boxes)
        w, h = r.image.size
        for box in loc.boxes:
            assert box is None or (0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h)
        json.dumps(_plain(loc), allow_nan=False)
    for a, b in zip(batched, [locator.locate_many([r], vision_batch_size=1)[0] for r in reqs]):
        _close_locs(a, b)
    again = reload(role, stage, tmp_path)
    again_locator = again.locator() if role == "segmenter" else again
    for a, b in zip(batched, again_locator.locate_many(reqs, vision_batch_size=8)):
        _close_locs(a, b)


def conform_segmenter(stage, tmp_path: Path) -> None:
    """Box prompts -> one boolean mask of the image's size per box; a segmenter that locates is a locator."""
    if stage.locator() is not None:
        conform_locator(stage, tmp_path, role="segmenter")
        return
    items = list(zip(_images(), BOXES))
    batched = stage.segment_many(items, vision_batch_size=8)
    assert [len(m) for m in batched] == [2, 1, 0]
    for (img, _), masks in zip(items, batched):
        for m in masks:
            assert isinstance(m, np.ndarray) and m.dtype == bool and m.shape == (img.size[1], img.size[0])
        json.dumps([m.tolist() for m in masks])
    one = [stage.segment_many([it], vision_batch_size=1)[0] for it in items]
    again = reload("segmenter", stage, tmp_path).segment_many(items, vision_batch_size=8)
    for other in (one, again):
        for a, b in zip(batched, other):
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def _count_images(module: torch.nn.Module) -> list[int]:
    """A hook on the vision encoder counting the images each call encodes (pixel batch, or ``grid_thw`` rows)."""
    seen: list[int] = []

    def hook(_mod, args, kwargs):
        grid = kwargs.get("grid_thw")
        if grid is not None:
            seen.append(int(grid.shape[0]))
            return
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        seen.append(int(pixels.shape[0]))

    module.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def conform_entailment(stage, tmp_path: Path) -> None:
    """P(visible) in [0, 1] per hypothesis; each image encoded once per call unless the family says otherwise."""
    items = [(img, stage.hypotheses(e)) for img, e in zip(_images(), ENTITIES)]
    seen = _count_images(stage.vision_encoder())
    batched = stage.score_many(items, vision_batch_size=8)
    pairs = sum(len(h) for _, h in items)
    with_hyps = sum(1 for _, h in items if h)
    assert sum(seen) == (with_hyps if stage.encodes_image_once else pairs), (seen, stage.encodes_image_once)
    assert [len(p) for p in batched] == [2, 1, 0]
    for p in batched:
        assert all(0.0 <= float(x) <= 1.0 for x in p)
        json.dumps([float(x) for x in p], allow_nan=False)
    one = [stage.score_many([it], vision_batch_size=1)[0] for it in items]
    again = reload("entailment", stage, tmp_path).score_many(items, vision_batch_size=8)
    for other in (one, again):
        for a, b in zip(batched, other):
            np.testing.assert_allclose(a, b, atol=1e-4)


def _plain_reading(r: Reading) -> dict:
    return {"entities": [vars(e) for e in r.entities], "notes": r.notes, "answer": r.answer, "error": r.error}


def conform_reader(stage, tmp_path: Path) -> None:
    """Entities placed in the tweet, boxes inside the image, one by one = batched, identical after reload."""
    reqs = [ReadRequest(img, t, id=str(k)) for k, (img, t) in enumerate(zip(_images(), TWEETS))]
    reqs.append(ReadRequest(None, "text alone", id="3"))
    batched = stage.read_many(reqs, vision_batch_size=8)
    assert len(batched) == len(reqs)
    for r, reading in zip(reqs, batched):
        assert isinstance(reading, Reading)
        for e in reading.entities:
            assert r.text[e.start : e.end] == e.entity
            if e.box is not None:
                w, h = r.image.size
                assert 0 <= e.box[0] <= e.box[2] <= w and 0 <= e.box[1] <= e.box[3] <= h
        json.dumps(_plain_reading(reading), allow_nan=False)
    one = [stage.read_many([r], vision_batch_size=1)[0] for r in reqs]
    again = reload("reader", stage, tmp_path).read_many(reqs, vision_batch_size=8)
    for other in (one, again):
        assert [x.answer for x in other] == [x.answer for x in batched]
        assert [_plain_reading(x) for x in other] == [_plain_reading(x) for x in batched]


def conform_recognizer(stage, tmp_path: Path) -> None:
    """Spans over words with a GMNER type and a score in [0, 1]; batched = one by one; identical after reload."""
    batch = [t.split() for t in TWEETS] + [[]]
    spans = stage(batch)
    for words, found in zip(batch, spans):
        for s in found:
            assert 0 <= s.start < s.end <= len(words) and s.type in stage.entity_types and 0 <= s.score <= 1
        json.dumps([vars(s) for s in found])
    assert [stage([w])[0] for w in batch] == spans
    assert reload("recognizer", stage, tmp_path)(batch) == spans


CONFORM = {
    "grounder": conform_locator,
    "segmenter": conform_segmenter,
    "entailment": conform_entailment,
    "reader": conform_reader,
    "recognizer": conform_recognizer,
}


# ---------------------------------------------------------------------- generated: every family of every role
@pytest.mark.parametrize(("role", "family", "model_type"), _cases())
def test_every_family_conforms_to_its_role(role, family, model_type, tmp_path):
    stage = build(role, ROLES[role][1].by_name(family), model_type, tmp_path)
    stage.compiled_modules()  # every compile_modules path names a module of the tiny model
    CONFORM[role](stage, tmp_path)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_family_declares_its_types_options_and_tiny_models(role):
    base, registry = ROLES[role]
    families = registry.families()
    assert families and len({f.family for f in families}) == len(families)
    for fam in families:
        assert issubclass(fam, base) and fam.family
        claimed = set(fam.model_types) | set(getattr(fam, "known_model_types", ()))
        # every model type it is dispatched by has a tiny model, and every tiny model is of a type it claims
        assert fam.tiny_builders and set(fam.model_types) <= set(fam.tiny_builders) <= claimed, fam.family
        for opt in fam.declared_options().values():
            assert isinstance(opt, Option) and opt.doc, (fam.family, opt.name)
            assert opt.check(opt.default, "x") == opt.default or opt.kind in ("str-list", "mapping")
        if not registry.choose_by_name:  # one family per model type
            for mt in fam.model_types:
                assert registry.for_model_type(mt) is fam


def _doc_table(doc: str) -> dict[str, set[str]]:
    """family -> model types, read from the first reStructuredText table of a role module's docstring."""
    lines = doc.splitlines()
    borders = [k for k, line in enumerate(lines) if re.fullmatch(r"=+( +=+)+", line.strip())]
    starts = [m.start() for m in re.finditer(r"=+", lines[borders[0]])]
    out: dict[str, set[str]] = {}
    family = None
    for line in lines[borders[1] + 1 : borders[2]]:
        cols = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
        if cols[0]:
            family = cols[0].strip("`")
            out[family] = set()
        out[family] |= {t.strip() for t in cols[1].split(",") if t.strip()}
    return out


@pytest.mark.parametrize("role", sorted(ROLES))
def test_the_docstring_tables_and_errors_come_from_the_registry(role):
    _, registry = ROLES[role]
    module = {"grounder": grounder_role, "segmenter": segmenter_role, "entailment": entailment_role,
              "reader": reader_role, "recognizer": recognizer_role}[role]  # fmt: skip
    families = registry.families()
    if role != "recognizer":  # one family: the module doc says it in words
        expected = {f.family: set(f.model_types) | set(getattr(f, "known_model_types", ())) for f in families}
        assert _doc_table(module.__doc__) == expected
    assert registry.table().count("\n") == len(families) + 1
    if not registry.choose_by_name:
        with pytest.raises(UnknownFamilyError) as err:
            registry.for_model_type("not-a-model")
        assert "'not-a-model'" in str(err.value)
        assert all(t in str(err.value) for f in families for t in f.model_types)


def test_an_unknown_segmenter_model_type_is_an_error_listing_the_supported_ones():
    from riveg_hf.stages.entailers.itm import tiny_blip_itm

    model, proc = tiny_blip_itm()
    with pytest.raises(TypeError, match=r"segmenter: .*'blip'.* is not supported; supported: \['sam', 'sam2', "
                                        r"'sam3', 'sam3_tracker'\]"):  # fmt: skip
        Segmenter(model, proc)
    for claimed_before in ("sam_hq", "edgetam"):  # claimed with no tiny model or test: no longer claimed
        with pytest.raises(UnknownFamilyError):
            segmenter_role.family_class(claimed_before)


# ---------------------------------------------------------------------- options: one rule everywhere
def test_options_are_validated_alike_at_construction_configure_and_reload(tmp_path):
    from riveg_hf.stages.grounders.gdino import tiny_grounding_dino

    model, proc = tiny_grounding_dino()
    with pytest.raises(ValueError, match=r"grounder \(grounding-dino\): box_threshold must be in \[0, 1\], got 5.0 "
                                         r"\(a box score is a probability\); pass a number in \[0, 1\]"):  # fmt: skip
        Grounder(model, proc, box_threshold=5.0)
    g = Grounder(model, proc)
    assert g.box_threshold == 0.3  # the family's default
    with pytest.raises(ValueError, match="box_threshold must be in"):
        g.configure(box_threshold=5.0)
    assert g.box_threshold == 0.3  # refused: unchanged
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['box_treshold'\]; valid: \['box_threshold', "
                                        r"'max_text_tokens'\]"):  # fmt: skip
        g.configure(box_treshold=0.2)
    with pytest.raises(ValueError, match="box_threshold must be a number, got True"):
        g.configure(box_threshold=True)
    assert g.configure(box_threshold=np.float32(0.25)) is g and g.options()["box_threshold"] == 0.25
    assert type(g.options()["box_threshold"]) is float
    g.configure(box_threshold=None)  # None: the default again
    assert g.box_threshold == 0.3
    g.save_pretrained(tmp_path / "g")
    with pytest.raises(
        ValueError, match="box_threshold must be in"
    ):  # a saved checkpoint's option: same rule
        Grounder.from_pretrained(tmp_path / "g", box_threshold=1.5)


def test_each_role_refuses_a_bad_option_value_saying_what_is_expected():
    from riveg_hf.stages.entailers.itm import tiny_blip_itm
    from riveg_hf.stages.recognizer import tiny_recognizer
    from riveg_hf.stages.segmenters.sam import tiny_sam2
    from riveg_hf.stages.segmenters.sam3 import tiny_sam3
    from riveg_hf.stages.tiny import tiny_qwen2_5_vl

    e = Entailment(*tiny_blip_itm())
    for bad, what in ((-0.1, "threshold must be in"), ("high", "threshold must be a number")):
        with pytest.raises(ValueError, match=what):
            e.configure(threshold=bad)
    with pytest.raises(ValueError, match=r"hypothesis .* does not format .*\{entity\}"):
        e.configure(hypothesis="{entity} {colour}")
    assert e.hypothesis == entailment_role.DEFAULT_HYPOTHESIS and e.kind == e.family == "itm"
    assert e.configure(threshold=0.7).threshold == 0.7
    seg = Segmenter(*tiny_sam2())
    with pytest.raises(ValueError, match="multimask must be True or False, got 'yes'"):
        seg.configure(multimask="yes")
    sam3 = Segmenter(*tiny_sam3())
    with pytest.raises(ValueError, match=r"segmenter \(sam3\): box_threshold must be in \[0, 1\]"):
        sam3.configure(box_threshold=2)
    assert sam3.configure(box_threshold=0.6).locator().box_threshold == 0.6
    rec = Recognizer(*tiny_recognizer())
    with pytest.raises(ValueError, match="stride must be in"):
        rec.configure(stride=10_000)
    assert rec.stride == 32
    with pytest.raises(ValueError, match="batch_size must be in"):
        Recognizer(*tiny_recognizer(), batch_size=0)
    reader = JointReader(*tiny_qwen2_5_vl())
    with pytest.raises(ValueError, match="max_new_tokens must be in"):
        reader.configure(max_new_tokens=10**9)
    with pytest.raises(ValueError, match="family is 'qwen-vl', got 'sake'"):
        reader.configure(family="sake")
    assert reader.configure(max_new_tokens=5).options()["max_new_tokens"] == 5


def test_compile_modules_that_name_nothing_are_an_error():
    from riveg_hf.stages.grounders.gdino import tiny_grounding_dino

    g = Grounder(*tiny_grounding_dino())
    assert set(g.compiled_modules()) == {"model.model.backbone"}
    g.compile_modules = ("model.model.no_such_module",)
    with pytest.raises(AttributeError, match="'model.model.no_such_module' names nothing"):
        g.compiled_modules()


# ---------------------------------------------------------------------- a family from the user's own module
NEW_FAMILIES = '''
"""Three new families, each one class registering itself: no edit of riveg-hf."""
import numpy as np
import torch

from riveg_hf.stages.entailment import Entailment, _features
from riveg_hf.stages.entailment import register as register_entailment
from riveg_hf.stages.grounder import Grounder, Localization
from riveg_hf.stages.grounder import register as register_grounder
from riveg_hf.stages.registry import Option
from riveg_hf.stages.segmenter import Segmenter
from riveg_hf.stages.segmenter import register as register_segmenter


def tiny_clip(seed=0):
    from riveg_hf.stages.entailers.contrastive import tiny_clip as build

    return build(seed)


@register_grounder
class WholeImageGrounder(Grounder):
    """A toy grounder: the whole image for every query, scored by a dual encoder."""

    family = "whole-image"
    model_types = ("clip",)
    default_box_threshold = 0.2
    compile_modules = ("model.vision_model",)
    family_options = (Option("margin", 0, "int", "pixels left out at each side", low=0),)
    tiny_builders = {"clip": tiny_clip}

    def _locate(self, requests, vision_batch_size):
        out = []
        for r in requests:
            enc = self.processor(text=list(r.queries), images=r.image, return_tensors="pt", padding=True)
            probs = torch.sigmoid(self.model(**enc).logits_per_image[0].float() / 10).tolist()
            w, h = r.image.size
            m = self.margin
            out.append(Localization([[m, m, w - m, h - m] for _ in r.queries], probs))
        return out


@register_entailment
class ClipSoftEntailment(Entailment):
    """A toy entailment family: sigmoid(10 * cos) of CLIP's embeddings, the image encoded once."""

    family = "clip-soft"
    model_types = ("clip",)
    tiny_builders = {"clip": tiny_clip}

    def vision_encoder(self):
        return self.model.vision_model

    def _score_pairs(self, pixels, pairs):
        img = _features(self.model.get_image_features(pixel_values=pixels))
        enc = self._tokenize([h for _, h in pairs])
        enc.pop("token_type_ids", None)
        txt = _features(self.model.get_text_features(**enc))
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        idx = torch.tensor([k for k, _ in pairs])
        return torch.sigmoid(10 * (txt * img.index_select(0, idx)).sum(-1)).numpy().astype(np.float64)


def tiny_sam_hq(seed=0):
    import transformers

    from riveg_hf.stages.tiny import seeded

    with seeded(seed):
        cfg = transformers.SamHQConfig(
            vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 64,
                           "patch_size": 16, "output_channels": 32, "window_size": 2, "global_attn_indexes": [1],
                           "mlp_dim": 64, "num_pos_feats": 16},
            prompt_encoder_config={"hidden_size": 32, "image_size": 64, "patch_size": 16, "mask_input_channels": 4},
            mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                 "iou_head_hidden_dim": 32, "vit_dim": 32},
        )
        model = transformers.SamHQModel(cfg).eval()
    ip = transformers.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    return model, transformers.SamHQProcessor(image_processor=ip)


@register_segmenter
class SamHQSegmenter(Segmenter):
    """SAM-HQ: box prompts, one image per call."""

    family = "sam-hq"
    model_types = ("sam_hq",)
    tiny_builders = {"sam_hq": tiny_sam_hq}

    @torch.no_grad()
    def segment_many(self, items, *, vision_batch_size=8):
        out = []
        for image, boxes in items:
            if not len(boxes):
                out.append([])
                continue
            enc = self.processor(images=image, input_boxes=[[list(map(float, b)) for b in boxes]],
                                 return_tensors="pt")
            sizes = [enc.pop("original_sizes"), enc.pop("reshaped_input_sizes")]
            enc["input_boxes"] = enc["input_boxes"].float()
            pred = self.model(**enc, multimask_output=False).pred_masks
            logits = self.processor.post_process_masks(pred, *sizes, binarize=False)[0]
            out.append([(logits[i, 0] > self.mask_threshold).numpy() for i in range(len(boxes))])
        return out
'''


@pytest.fixture
def new_family_module(tmp_path, monkeypatch):
    (tmp_path / "my_families.py").write_text(textwrap.dedent(NEW_FAMILIES), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("my_families")
    yield module
    sys.modules.pop("my_families", None)
    grounder_role.FAMILIES.unregister("whole-image")
    entailment_role.FAMILIES.unregister("clip-soft")
    segmenter_role.FAMILIES.unregister("sam-hq")


@pytest.mark.parametrize(("role", "family", "model_type"),
                         [("grounder", "whole-image", "clip"), ("entailment", "clip-soft", "clip"),
                          ("segmenter", "sam-hq", "sam_hq")])  # fmt: skip
def test_a_family_from_a_users_module_is_one_module_and_runs_the_generated_checks(
    new_family_module, role, family, model_type, tmp_path
):
    _, registry = ROLES[role]
    cls = registry.by_name(family)
    assert cls.__module__ == "my_families" and family in registry.names()
    assert (role, family, model_type) in _cases()  # the generated tests would run it
    stage = build(role, cls, model_type, tmp_path)
    stage.compiled_modules()
    CONFORM[role](stage, tmp_path)
    if role == "grounder":  # its own option, declared once, validated like the library's
        with pytest.raises(
            ValueError, match=r"grounder \(whole-image\): margin must be in \[0, inf\], got -1"
        ):
            stage.configure(margin=-1)
        assert stage.options() == {"box_threshold": 0.2, "margin": 0}
        assert f"`{family}`" in registry.table()


def test_a_family_that_claims_a_served_model_type_is_refused(new_family_module):
    from riveg_hf.stages.grounder import register

    with pytest.raises(
        TypeError, match=r"claims model types \['owlv2'\], already served by the family 'owl'"
    ):

        @register
        class Clash(Grounder):
            family = "clash"
            model_types = ("owlv2",)


def test_a_stage_without_declared_options_configures_by_its_current_values():
    from riveg_hf.stages import Expander

    ex = Expander(None, None)
    assert ex.configure(max_new_tokens=12, prompt="Describe {entity}.") is ex and ex.max_new_tokens == 12
    with pytest.raises(
        ValueError, match="max_new_tokens must be of type int like its current value 12, got 'many'"
    ):
        ex.configure(max_new_tokens="many")
    with pytest.raises(TypeError, match=r"expander: unknown option\(s\) \['box_threshold'\]; valid: "):
        ex.configure(box_threshold=0.3)
