"""One construction path, one rule for options, typed data through the pipeline (issue 27).

``RiVEGPipeline.from_components``, ``RiVEGModel.from_pretrained`` (presets, ``pipeline(task, model=DIR)``, the
Inference Endpoints handler) all build through ``riveg_hf.modeling_riveg.build_model``; an option is checked by
the same rule whether it comes from the constructor, a saved checkpoint or a call.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline

import riveg_hf  # noqa: F401  (registers the tasks)
from riveg_hf import RiVEGModel, RiVEGPipeline, modeling_riveg
from riveg_hf import pipeline as pipeline_module
from riveg_hf.options import CALL_OPTIONS, STAGE_OPTIONS, call_defaults, check_stage_argument
from riveg_hf.stages import Grounder, Recognizer, Segmenter

TEXT = "Obama visits Paris with NASA people"
PIPELINE_PY = Path(pipeline_module.__file__)


def _error(fn, *args, **kwargs) -> BaseException:
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    return info.value


def _core(err: BaseException, name: str) -> str:
    """The message from the option's name on (what a construction adds before it is where the value came from)."""
    text = str(err)
    return text[text.index(name) :]


@pytest.fixture(scope="module")
def pipe(dummy_dir):
    recognizer = Recognizer.from_pretrained(dummy_dir["recognizer"])
    with torch.no_grad():  # every word an entity, so every test has entities to look at
        recognizer.model.classifier.bias.fill_(-20.0)
        recognizer.model.classifier.bias[recognizer.model.config.label2id["B-PER"]] = 20.0
    return RiVEGPipeline.from_components(
        recognizer=recognizer,
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        entailment_threshold=0.0,
        box_threshold=0.0,
    )


# ---------------------------------------------------------------------- the option cases, construction = call
@pytest.mark.parametrize(
    "name, value",
    [
        ("box_threshold", 5.0),
        ("box_threshold", -0.1),
        ("box_threshold", True),
        ("box_threshold", "high"),
        ("entailment_threshold", 1.5),
        ("entailment_threshold", False),
    ],
)
def test_a_bad_threshold_is_refused_alike_at_construction_and_at_call(pipe, dummy_dir, name, value):
    at_call = _error(pipe, TEXT, **{name: value})
    at_construction = _error(
        RiVEGPipeline.from_components,
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        entailment=dummy_dir["entailment"],
        **{name: value},
    )
    assert type(at_call) is type(at_construction) is ValueError
    assert _core(at_construction, name) == _core(at_call, name)
    assert re.search(rf"{name} must be (in \[0, 1\]|a number)", str(at_call))


def test_a_ready_stage_is_configured_through_its_checks_not_set_blindly(dummy_dir):
    grounder = Grounder.from_pretrained(dummy_dir["grounder"])
    before = grounder.box_threshold
    err = _error(
        RiVEGPipeline.from_components,
        recognizer=dummy_dir["recognizer"],
        grounder=grounder,
        box_threshold=5.0,
    )
    assert "box_threshold must be in [0, 1], got 5.0" in str(err)
    assert grounder.box_threshold == before  # refused before anything was set
    built = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], grounder=grounder, box_threshold=0.25
    )
    assert built.stages["grounder"] is grounder and grounder.box_threshold == 0.25


def test_a_ready_stages_own_option_is_checked_by_its_family(dummy_dir):
    """An option only the stage's family declares (mask_threshold: a logit for SAM 2) reaches a ready stage
    through Stage.configure: a bad value is refused and leaves the stage as it was."""
    segmenter = Segmenter.from_pretrained(dummy_dir["segmenter"])
    err = _error(
        RiVEGPipeline.from_components,
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        segmenter=segmenter,
        mask_threshold="high",
    )
    assert type(err) is ValueError and "mask_threshold must be a number, got 'high'" in str(err)
    assert segmenter.mask_threshold == 0.0
    built = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"],
        grounder=dummy_dir["grounder"],
        segmenter=segmenter,
        mask_threshold=-1.5,
    )
    assert built.stages["segmenter"] is segmenter and segmenter.mask_threshold == -1.5


def test_an_unknown_argument_is_an_error_listing_the_valid_ones_at_construction_and_at_call(pipe, dummy_dir):
    at_construction = _error(
        RiVEGPipeline.from_components, recognizer=dummy_dir["recognizer"], box_treshold=0.2
    )
    at_call = _error(pipe, TEXT, box_treshold=0.2)
    assert type(at_construction) is type(at_call) is TypeError
    for err in (at_construction, at_call):
        assert "unknown option 'box_treshold'" in str(err) and "'box_threshold'" in str(err)
    # every stage option and call option is listed as valid at construction
    assert all(f"'{name}'" in str(at_construction) for name in [*STAGE_OPTIONS, *CALL_OPTIONS])


def test_hub_arguments_are_accepted_by_from_components(dummy_dir):
    built = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], force_download=False, proxies=None, local_files_only=True
    )
    assert set(built.stages) == {"recognizer", "expander"}


@pytest.mark.parametrize(
    "option, value, stage",
    [
        ("mask_threshold", 0.4, "segmenter"),
        ("hypothesis", "{entity}", "entailment"),
        ("entailment_threshold", 0.5, "entailment"),
        ("box_threshold", 0.3, "grounder"),
    ],
)
def test_an_option_whose_stage_is_absent_names_that_stage(dummy_dir, option, value, stage):
    err = _error(RiVEGPipeline.from_components, recognizer=dummy_dir["recognizer"], **{option: value})
    assert type(err) is ValueError
    assert f"{option} is an option of the {stage}" in str(err) and f"pass {stage}=..." in str(err)


def test_served_settings_without_a_served_stage_are_refused(dummy_dir):
    err = _error(RiVEGPipeline.from_components, recognizer=dummy_dir["recognizer"], endpoint_model="my-llm")
    assert type(err) is ValueError and "endpoint_model is an option of a served stage" in str(err)
    # None means "not given" (what a command line passes when the flag is absent)
    assert (
        "recognizer"
        in RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], endpoint_model=None).stages
    )


def test_box_threshold_on_a_segmenter_that_does_not_locate_is_refused(dummy_dir):
    err = _error(
        RiVEGPipeline.from_components,
        recognizer=dummy_dir["recognizer"],
        segmenter=dummy_dir["segmenter"],
        box_threshold=0.3,
    )
    assert (
        type(err) is ValueError
        and "option of the grounder" in str(err)
        and "segments boxes it is given" in str(err)
    )


def test_a_threshold_at_a_call_whose_stage_will_not_run_is_refused_not_ignored(pipe, dummy_dir):
    """At construction an option for an absent stage is an error (above); at a call too: a box_threshold with no
    stage that locates, an entailment_threshold with no entailment stage or with visibility='grounder'."""
    bare = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"])
    for call, match in (
        (lambda: bare(TEXT, box_threshold=0.3), "box_threshold: this composite has no stage that locates"),
        (lambda: bare(TEXT, entailment_threshold=0.3), "entailment_threshold: this composite has no entailment"),
        (lambda: pipe(TEXT, entailment_threshold=0.3, visibility="grounder"), "the entailment stage does not run"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            call()
    assert bare(TEXT, box_threshold=None) == bare(TEXT)  # None: "not given"
    assert isinstance(pipe(TEXT, entailment_threshold=0.3, box_threshold=0.3), list)  # both stages run


def test_one_rule_for_a_threshold_as_stage_option_and_as_call_option():
    """box_threshold / entailment_threshold: the stage's default when built, the call's override when called;
    one check for both (the call option's)."""
    for name in ("box_threshold", "entailment_threshold"):
        opt = STAGE_OPTIONS[name]
        call = CALL_OPTIONS[name]
        assert call.default is None  # None at a call: the stage's own default
        for bad in (5.0, -1, True, "x"):
            with pytest.raises(ValueError) as at_call:
                call.check(bad)
            with pytest.raises(ValueError) as at_stage:
                check_stage_argument(opt.stage, opt.argument, bad)
            assert str(at_stage.value) == str(at_call.value)
    with pytest.raises(ValueError, match=r"box_threshold must be in \[0, 1\]"):
        check_stage_argument("segmenter", "box_threshold", 2.0)  # SAM 3, the locator without a grounder


# ---------------------------------------------------------------------- a saved checkpoint: the same rule
def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "component, argument, value, core",
    [
        ("grounder", "box_threshold", 5.0, "box_threshold must be in [0, 1], got 5.0"),
        ("entailment", "threshold", True, "entailment_threshold must be a number, got True"),
    ],
)
def test_a_saved_checkpoint_with_a_bad_option_value_is_refused_at_load(
    pipe, tmp_path, component, argument, value, core
):
    pipe.save_pretrained(tmp_path / "c")
    _edit_config(
        tmp_path / "c", lambda cfg: cfg["components"][component]["options"].update({argument: value})
    )
    for load in (
        lambda: RiVEGModel.from_pretrained(tmp_path / "c"),
        lambda: pipeline("grounded-mner", model=str(tmp_path / "c")),
    ):
        err = _error(load)
        assert type(err) is ValueError and core in str(err) and str(tmp_path / "c") in str(err)
    with pytest.raises(ValueError) as at_call:
        pipe(TEXT, **{"entailment_threshold" if argument == "threshold" else argument: value})
    assert core in str(at_call.value)


def test_a_saved_checkpoint_with_a_bad_call_default_is_refused_at_load(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "c")
    _edit_config(tmp_path / "c", lambda cfg: cfg.update(pipeline_options={"box_threshold": 5.0}))
    err = _error(RiVEGModel.from_pretrained, tmp_path / "c")
    assert type(err) is ValueError and "box_threshold must be in [0, 1], got 5.0" in str(err)
    _edit_config(tmp_path / "c", lambda cfg: cfg.update(pipeline_options={"box_treshold": 0.5}))
    err = _error(RiVEGModel.from_pretrained, tmp_path / "c")
    assert type(err) is TypeError and "unknown option 'box_treshold'" in str(err)


def test_a_good_checkpoint_round_trips_its_options(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "c")
    again = pipeline("grounded-mner", model=str(tmp_path / "c"))
    assert {k: s.options() for k, s in again.stages.items()} == {
        k: s.options() for k, s in pipe.stages.items()
    }
    image = Image.new("RGB", (64, 48), (90, 120, 30))
    assert again({"text": TEXT, "image": image}) == pipe({"text": TEXT, "image": image})


# ---------------------------------------------------------------------- one path
def test_every_construction_goes_through_build_model(pipe, dummy_dir, tmp_path, monkeypatch):
    calls = []
    real = modeling_riveg.build_model

    def spy(*args, **kwargs):
        calls.append(kwargs.get("where", "from_components"))
        return real(*args, **kwargs)

    monkeypatch.setattr(modeling_riveg, "build_model", spy)
    monkeypatch.setattr(pipeline_module, "build_model", spy)
    RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"])
    pipe.save_pretrained(tmp_path / "c")
    pipeline("grounded-mner", model=str(tmp_path / "c"))  # what presets and the endpoint handler do
    assert calls == ["from_components", str(tmp_path / "c")]


def test_the_old_side_channels_are_gone():
    source = PIPELINE_PY.read_text()
    for gone in ("_route_options", "_make_stage", '"_served"', '"_locator"', "setattr(seg"):
        assert gone not in source


# ---------------------------------------------------------------------- call defaults from the table
def test_call_defaults_come_from_the_options_table_not_from_hook_signatures(pipe, monkeypatch):
    import inspect

    for hook in ("preprocess", "_forward", "postprocess"):
        params = inspect.signature(getattr(RiVEGPipeline, hook)).parameters
        assert not set(params) & set(CALL_OPTIONS), (
            f"{hook} declares a call option's default in its signature"
        )
    assert call_defaults("postprocess") == {"mask_format": "rle"}
    assert (
        call_defaults("forward")["errors"] == "return"
        and call_defaults("forward")["use_descriptions"] is True
    )
    # the table is what the hooks read: another default there changes what a call does
    image = Image.new("RGB", (64, 48), (10, 200, 30))
    with_descriptions = pipe({"text": TEXT, "image": image})
    monkeypatch.setitem(
        CALL_OPTIONS, "use_descriptions", dataclasses.replace(CALL_OPTIONS["use_descriptions"], default=False)
    )
    assert pipe({"text": TEXT, "image": image}) == pipe(
        {"text": TEXT, "image": image}, use_descriptions=False
    )
    monkeypatch.undo()
    assert pipe({"text": TEXT, "image": image}) == with_descriptions


# ---------------------------------------------------------------------- typed data, short functions
def test_every_function_in_pipeline_py_is_at_most_60_lines():
    tree = ast.parse(PIPELINE_PY.read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_postprocess_only_serializes_the_entity_records(pipe):
    """The forward pass hands typed records over; postprocess writes each one's validated result."""
    image = Image.new("RGB", (64, 48), (10, 200, 30))
    prepared = pipe.preprocess({"tokens": TEXT.split(), "image": image})
    [result] = pipe.forward([prepared], errors="raise")
    assert result.entities and all(isinstance(e, pipeline_module._Entity) for e in result.entities)
    out = pipe.postprocess(result)
    assert out == [e.output("rle").to_dict() for e in result.entities]
    assert out == pipe({"tokens": TEXT.split(), "image": image})
    for e, o in zip(result.entities, out):
        assert (o["entity"], o["start"], o["end"], o["token_start"], o["token_end"]) == (
            e.entity, e.start, e.end, e.token_start, e.token_end
        )  # fmt: skip
        assert o["groundable"] == (o["box"] is not None)  # a box only where the entity is kept
    assert pipe.postprocess(result, mask_format="none") == out  # no segmenter: no mask either way


def test_each_entity_gets_its_own_grounding_and_a_failing_image_loses_only_itself(pipe, monkeypatch):
    """Per-entity results are carried on the record, so an image retried alone answers as it does alone."""
    images = [Image.new("RGB", (64 + 8 * i, 48), (40 * i, 90, 30)) for i in range(3)]
    inputs = [{"text": TEXT, "image": im} for im in images]
    alone = [pipe(x) for x in inputs]
    grounder = pipe.stages["grounder"]
    real = grounder.locate_many

    def fails_on_the_second(requests, **kw):
        if any(r.image.size == images[1].size for r in requests):
            raise RuntimeError("this image cannot be grounded")
        return real(requests, **kw)

    monkeypatch.setattr(grounder, "locate_many", fails_on_the_second)
    together = pipe(inputs, batch_size=3)
    assert together[0] == alone[0] and together[2] == alone[2]
    assert together[1] == {"error": "RuntimeError: this image cannot be grounded", "index": 1}


def test_entities_past_the_cap_keep_their_note_and_no_box(pipe):
    image = Image.new("RGB", (64, 48), (10, 200, 30))
    full = pipe({"tokens": TEXT.split(), "image": image}, max_entities_per_image=100)
    capped = pipe({"tokens": TEXT.split(), "image": image}, max_entities_per_image=1)
    assert [e["entity"] for e in capped] == [e["entity"] for e in full]  # none lost
    assert "grounding" not in capped[0] and capped[0]["box_score"] is not None  # the first one is grounded
    assert not any("grounding" in e for e in full)
    for e in capped[1:]:
        assert e["box"] is None and e["box_score"] is None and e["grounding"].startswith("skipped:")
