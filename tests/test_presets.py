"""The documented presets: their wiring runs end to end on the examples with tiny random weights."""

from __future__ import annotations

import json
import warnings

import pytest

from riveg_hf.cli import main as cli
from riveg_hf.pipeline import PRESETS, preset_path
from riveg_hf.testing import tiny_preset

from .helpers import REPO, sake_prompt_dir, skimage_photo


@pytest.mark.parametrize(
    "name",
    # the VLM and SAM 3 presets generate / segment for minutes on 2 cores: CI runs them (tests/run.sh, CI=true)
    [pytest.param(n, marks=pytest.mark.slow) if n in ("vlm", "sam3") else n for n in sorted(PRESETS)],
)
def test_preset_runs_on_the_examples_with_tiny_weights(name, tmp_path):
    cfg = json.loads((preset_path(name) / "config.json").read_text())
    if "reader" in cfg["components"]:  # one model reads everything: short answers, SAKE's prompt files
        options = {"reader_max_new_tokens": 16}
        if cfg["components"]["reader"]["options"]["family"] == "sake":
            options["reader_prompt_dir"] = str(sake_prompt_dir(tmp_path, fmnerg=name.endswith("fmnerg")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the stand-in prompt files are not SAKE's (a warning says so)
            pipe = tiny_preset(name, **options)
    else:
        pipe = tiny_preset(name, box_threshold=0.0)
    assert {k: type(v.model).__name__ for k, v in pipe.stages.items() if v.model is not None} == {
        k: c["model_class"] for k, c in cfg["components"].items()
    }
    images = skimage_photo("astronaut.png").parent
    rows = [json.loads(x) for x in (REPO / "examples" / "tweets.jsonl").read_text().splitlines()]
    inputs = [{"text": r["text"], "image": str(images / r["image"]) if r["image"] else None} for r in rows]
    out = pipe(inputs, batch_size=4)
    assert len(out) == len(rows) and all(isinstance(o, list) for o in out)  # no input lost, none failed
    assert all(e["mask"] is not None for o in out for e in o if e["box"] is not None)  # segmented-mner
    # a saved preset composite reloads and answers the same
    pipe.save_pretrained(tmp_path / name)
    from transformers import pipeline

    again = pipeline(cfg["task"], model=str(tmp_path / name))
    assert again(inputs[:2], batch_size=2) == out[:2]
    # the model card's component table names every component class
    from riveg_hf.hub import composite_card

    card = str(composite_card(tmp_path / name, repo_id=f"org/{name}"))
    assert all(c["model_class"] in card for c in cfg["components"].values())


def test_vlm_preset_lets_the_vlm_decide_visibility():
    cfg = json.loads((preset_path("vlm") / "config.json").read_text())
    assert cfg["pipeline_options"] == {"visibility": "grounder"} and "entailment" not in cfg["components"]


def test_unknown_preset_lists_the_valid_ones(capsys):
    assert cli(["predict", "--text", "x", "--preset", "sota"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'sota'" in err and "riveg-2024" in err and "vlm" in err
