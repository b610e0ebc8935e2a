"""What a new user walks through in the first hour: cards that parse, commands that compose, a fast CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from riveg_hf.cli import main as cli
from riveg_hf.hub import component_card, composite_card

from .helpers import REPO, save_composite, skimage_photo


def parse_bibtex(text: str) -> list[dict[str, str]]:
    """A strict little BibTeX reader: ``@type{key, field = {value} | "value" | number, ...}``, braces balanced."""
    entries, i, n = [], 0, len(text)

    def skip_ws(j):
        while j < n and text[j].isspace():
            j += 1
        return j

    while True:
        i = text.find("@", i)
        if i < 0:
            return entries
        m = re.compile(r"@(\w+)\s*\{\s*([^,\s{}]+)\s*,").match(text, i)
        assert m, f"bad entry head at {text[i : i + 40]!r}"
        entry, i = {"ENTRYTYPE": m.group(1), "ID": m.group(2)}, m.end()
        while True:
            i = skip_ws(i)
            if text[i] == "}":
                i += 1
                break
            f = re.compile(r"(\w+)\s*=\s*").match(text, i)
            assert f, f"bad field at {text[i : i + 40]!r}"
            name, i = f.group(1).lower(), f.end()
            if text[i] == "{":
                depth, j = 0, i
                while True:
                    assert j < n, f"unbalanced braces in field {name!r}"
                    depth += {"{": 1, "}": -1}.get(text[j], 0)
                    j += 1
                    if depth == 0:
                        break
                value, i = text[i + 1 : j - 1], j
            elif text[i] == '"':
                j = text.index('"', i + 1)
                value, i = text[i + 1 : j], j + 1
            else:
                v = re.compile(r"\d+").match(text, i)
                assert v, f"bad value of {name!r}"
                value, i = v.group(0), v.end()
            assert value.count("{") == value.count("}"), f"unbalanced braces in {name!r}: {value!r}"
            entry[name] = value
            i = skip_ws(i)
            if text[i] == ",":
                i += 1
        entries.append(entry)


def check_card(text: str) -> tuple[dict, list[dict]]:
    """The card's YAML front matter parses, and every ```bibtex block parses; returns both."""
    assert text.startswith("---\n"), text[:80]
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    assert isinstance(meta, dict)
    blocks = re.findall(r"```bibtex\n(.*?)```", text, flags=re.S)
    assert blocks, "no BibTeX block"
    entries = [e for b in blocks for e in parse_bibtex(b)]
    assert entries and all("title" in e and "year" in e for e in entries)
    return meta, entries


def test_bibtex_reader_catches_the_old_unbalanced_title():
    bad = "@inproceedings{x,\n  title = {{LLMs}} as Bridges},\n  year = {2024}\n}"
    with pytest.raises(AssertionError):
        parse_bibtex(bad)
    (ok,) = parse_bibtex("@inproceedings{x,\n  title = {{LLMs} as Bridges},\n  year = {2024}\n}")
    assert ok["title"] == "{LLMs} as Bridges"


def test_every_generated_and_committed_card_has_valid_yaml_and_bibtex(dummy_dir, tmp_path):
    comp = save_composite(dummy_dir, tmp_path / "comp", components=("recognizer", "grounder", "entailment"))
    texts = {"composite": str(composite_card(comp, repo_id="org/riveg"))}
    rec = {
        "command": "riveg train ...",
        "arguments": {"config": "gmner", "base_model": "base", "output": "out/x", "epochs": 1},
        "test": {"precision": 0.8, "recall": 0.7, "f1": 0.7467},
        "validation": {"precision": 0.8, "recall": 0.7, "f1": 0.7467},
        "max_length": 128,
        "wall_time_s": 10,
        "peak_rss_mb": 100,
        "uses_knowledge": False,
    }
    for kind in ("mner", "entailment", "grounder"):
        texts[kind] = str(component_card(kind, rec, repo_id=f"org/{kind}"))
    for p in sorted((REPO / "model_cards" / "results").glob("*.md")):
        texts[p.name] = p.read_text(encoding="utf-8")
    titles = set()
    for name, text in texts.items():
        _meta, entries = check_card(text)
        assert "riveg-hf" in text and "pip install" in text, name  # how to install, until it is published
        titles |= {e["title"] for e in entries}
    assert "{LLMs} as Bridges: Reformulating Grounded Multimodal Named Entity Recognition" in titles


def test_dataset_cards_parse_and_link_to_a_named_repository(tmp_path):
    from datasets_scripts import twitter_gmner

    from .helpers import write_release
    from .test_download import TWEETS

    out = tmp_path / "ds"
    twitter_gmner.build(write_release(tmp_path / "raw", TWEETS), out)
    text = (out / "README.md").read_text(encoding="utf-8")
    check_card(text)
    assert "](https://github.com/)" not in text and "https://github.com/<" not in text
    assert 'load_dataset("riveg/twitter-gmner"' in text and "pip install" in text


def test_template_description_article_by_sound(dummy_dir):
    from riveg_hf import RiVEGPipeline

    pipe = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"])
    exp = pipe.stages["expander"]
    from riveg_hf.stages.expander import ExpansionRequest

    got = exp.describe(
        [ExpansionRequest("NASA", "ORG", "NASA launches"), ExpansionRequest("Obama", "PER", "x")]
    )
    assert [d for d, _ in got] == ["NASA, an organization", "Obama, a person"]


# ---------------------------------------------------------------------- commands that compose
def test_predict_segment_evaluate_chain_on_the_examples(dummy_dir, tmp_path, capsys):
    comp = save_composite(
        dummy_dir, tmp_path / "comp", components=("recognizer", "grounder"), box_threshold=0.0
    )
    images = skimage_photo("astronaut.png").parent
    preds = tmp_path / "preds.jsonl"
    assert cli(["predict", "--input", str(REPO / "examples" / "tweets.jsonl"), "--images", str(images),
                "--model", str(comp), "--output", str(preds)]) == 0  # fmt: skip
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    with_image = [x for x in lines if x["id"] != "no-image"]
    assert with_image and all(Path(x["image"]).is_file() for x in with_image)  # which image each line used
    assert "image" not in next(x for x in lines if x["id"] == "no-image")
    seg = tmp_path / "seg.jsonl"
    assert cli(["segment", "--predictions", str(preds), "--segmenter", dummy_dir["segmenter"],
                "--output", str(seg)]) == 0  # fmt: skip
    segd = [json.loads(x) for x in seg.read_text().splitlines()]
    assert len(segd) == len(lines) and not any("error" in x for x in segd)
    boxed = [e for x in segd for e in x["entities"] if e["box"] is not None]
    assert boxed and all(e["mask"] is not None for e in boxed)
    # a line whose image is gone: reported, and the command exits non-zero
    gone = tmp_path / "gone.jsonl"
    gone.write_text(json.dumps({**lines[0], "image": str(tmp_path / "missing.png")}) + "\n")
    assert cli(["segment", "--predictions", str(gone), "--segmenter", dummy_dir["segmenter"],
                "--output", str(tmp_path / "g.jsonl")]) == 1  # fmt: skip
    assert "could not be segmented" in capsys.readouterr().err


def test_evaluate_module_takes_a_dataset_entities_column_as_is(tmp_path):
    import evaluate

    from datasets_scripts import twitter_gmner
    from riveg_hf.data import load_built_dataset
    from riveg_hf.metrics import GMNER_MODULE

    from .helpers import write_release
    from .test_download import TWEETS

    twitter_gmner.build(write_release(tmp_path / "raw", TWEETS), tmp_path / "ds")
    refs = load_built_dataset(tmp_path / "ds", "gmner", split="train")["entities"]
    assert set(refs[0][0]) == {"text", "type", "start", "end", "groundable", "boxes"}
    preds = [[{"start": e["start"], "end": e["end"], "type": e["type"], "box": (e["boxes"] or [None])[0]}
              for e in ex] for ex in refs]  # fmt: skip
    scores = evaluate.load(GMNER_MODULE).compute(predictions=preds, references=refs)
    assert scores["gmner_f1"] == 1.0
    preds[0][0]["box"] = None
    assert evaluate.load(GMNER_MODULE).compute(predictions=preds, references=refs)["gmner_f1"] < 1.0


# ---------------------------------------------------------------------- quiet and fast
def test_cli_help_and_version_do_not_import_torch():
    code = (
        "import sys, runpy; sys.argv = ['riveg', '--help']\n"
        "try:\n    runpy.run_module('riveg_cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'gradio') if m in sys.modules)\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "HEAVY []" in out.stdout and "predict" in out.stdout
    ver = subprocess.run([sys.executable, "-m", "riveg_hf.cli", "--version"], capture_output=True, text=True)
    assert ver.returncode == 0 and ver.stdout.startswith("riveg-hf ")


def test_tiny_components_load_quietly(dummy_dir, tmp_path):
    """No bos_token_id warning, no per-component progress bars unless asked for."""
    code = (
        "import riveg_hf\nfrom riveg_hf import RiVEGPipeline\n"
        f"p = RiVEGPipeline.from_components(recognizer={dummy_dir['recognizer']!r}, grounder={dummy_dir['grounder']!r},"
        f" entailment={dummy_dir['entailment']!r})\n"
        f"p.save_pretrained({str(tmp_path / 'c')!r})\n"
        "from transformers import pipeline\n"
        f"pipeline('grounded-mner', model={str(tmp_path / 'c')!r})\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("TQDM_DISABLE", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "bos_token_id" not in out.stderr and "eos_token_id" not in out.stderr, out.stderr[-2000:]
    assert "Loading weights" not in out.stderr and "Writing model shards" not in out.stderr, out.stderr[
        -2000:
    ]


def test_the_iterator_of_a_sized_input_has_a_length(dummy_dir):
    from riveg_hf import RiVEGPipeline

    pipe = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"])
    it = pipe.get_iterator(["a b", "c d", "e"], 0, 2, {}, {}, {})
    assert len(it) == 3 and len(list(it)) == 3
    gen = pipe.get_iterator((x for x in ["a"]), 0, 2, {}, {}, {})
    assert not hasattr(gen, "__len__")  # a generator has no length: no __len__ at all
    ds = __import__("datasets").Dataset.from_dict({"text": ["a b", "c", "d e f"]})
    lazy = pipe(ds, batch_size=2)
    assert len(lazy) == 3 and next(lazy) is not None and len(lazy) == 2


def test_labels_of_coinciding_boxes_do_not_overlap():
    import numpy as np
    from PIL import Image

    from riveg_hf.visualize import label_boxes

    img = Image.new("RGB", (200, 150))
    ents = [
        {"entity": n, "type": "PER", "score": 0.9, "box": {"xmin": 20, "ymin": 40, "xmax": 120, "ymax": 120}}
        for n in ("Obama", "Barack Obama", "President")
    ]
    rects = label_boxes(img, ents)
    assert len(rects) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            a, b = rects[i], rects[j]
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0, (a, b)
    assert all(r[0] >= 0 and r[1] >= 0 and r[2] <= 200 and r[3] <= 150 for r in rects)
    assert np.asarray(img).shape == (150, 200, 3)


def test_failed_loads_name_the_model_and_the_fix(tmp_path, capsys):
    from datasets_scripts import twitter_gmner

    from .helpers import write_release
    from .test_download import TWEETS

    twitter_gmner.build(write_release(tmp_path / "raw", TWEETS), tmp_path / "ds")
    missing = str(tmp_path / "no-such-model")
    code = cli(["train", "mner", "--dataset", str(tmp_path / "ds"), "--base-model", missing,
                "--output", str(tmp_path / "out"), "--local-files-only"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and f"--base-model {missing!r} could not be loaded" in err and "local folder" in err
    assert cli(["predict", "--text", "Obama", "--model", missing, "--local-files-only"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "RIVEG_MODEL" in err and "--model" in err
