"""The E2E-GMNER reader family (Finch-coder/E2E-GMNER@d90c1eb): its answers read as E2E-GMNER's own parser reads
them (a differential table against a faithful re-expression of ``src/e2egmner/evaluation/parsing.py``, with
riveg-hf's documented differences), boxes mapped from the resized image back to original pixels, the prompt built
as its SFT data and collator build it, its resize, the prompt files refused / warned about, in process through a
tiny Qwen2.5-VL's own ``generate`` and served."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path

import pytest
from PIL import Image

from riveg_hf.stages import JointReader, ReadRequest
from riveg_hf.stages.reader import MAX_ENTITIES
from riveg_hf.stages.readers import e2e_gmner
from riveg_hf.testing import tiny_qwen2_5_vl

from .helpers import script_generate

INSTRUCTION = "Find the entities of the text.\n\nText: "  # a stand-in: E2E-GMNER's text is not shipped
SYSTEM = "You are a careful tester."
TWEET = "Kevin Durant joins the Warriors at Oracle Arena"
#: a 640x480 image is seen at 644x476 (E2E-GMNER's smart_resize, 200704..802816 pixels)
ORIGINAL, FRAME = (640, 480), (644, 476)


# ---------------------------------------------------------------------- E2E-GMNER's parser, re-expressed
# Finch-coder/E2E-GMNER@d90c1ebfebe18dcb00380b692a657f66ac19d551:src/e2egmner/evaluation/parsing.py, strict=False
# (the way its evaluator reads predictions, engine/evaluator.py L345); one function per function of theirs.
def ref_extract_answer_text(s):  # L38-54
    if not s:
        return ""
    s = s.strip()
    m = re.search(r"<answer>(.*?)</answer>", s, flags=re.S | re.I)
    if m:
        return (m.group(1) or "").strip()
    m = re.search(r"</think>\s*(.*)$", s, flags=re.S | re.I)
    if m:
        return (m.group(1) or "").strip()
    return s


def ref_normalize_separators(s):  # L8-9, L23-28
    for bar in ("｜", "│", "丨", "￨", "∣"):
        s = s.replace(bar, "|")
    return s


def ref_parse_bbox_regions(s):  # L89-133 (and _boxes_from_numbers, L76-86)
    s = s.strip()
    if not s:
        return None, False
    if s.lower() in {"none", "n/a"}:
        return None, True
    try:
        js = json.loads(s)
        if isinstance(js, list) and len(js) == 4 and all(isinstance(v, (int, float)) for v in js):
            return [tuple(float(v) for v in js)], True
        if isinstance(js, list) and js and all(isinstance(b, list) for b in js):
            boxes = []
            for b in js:
                if len(b) != 4 or not all(isinstance(v, (int, float)) for v in b):
                    raise ValueError(b)
                boxes.append(tuple(float(v) for v in b))
            return boxes, True
        if isinstance(js, list) and len(js) == 0:
            return None, False
    except Exception:
        pass
    nums = [float(x) for x in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", s)]
    if not nums or len(nums) % 4 != 0:
        return None, False
    return [tuple(nums[i : i + 4]) for i in range(0, len(nums), 4)], True


def ref_parse_triple_segment(seg):  # L136-180
    seg = seg.strip()
    if not seg or seg.lower() == "none":
        return None
    seg = ref_normalize_separators(seg)
    parts = [p.strip() for p in seg.split("|") if p.strip()]
    if len(parts) < 3:
        return None
    mention, etype = " | ".join(parts[:-2]).strip(), parts[-2].strip()
    if not mention or not etype:
        return None
    regions, valid = ref_parse_bbox_regions(parts[-1].strip())
    return mention, etype, regions, valid


def ref_parse_triples(s):  # L183-199
    s = ref_normalize_separators(s).strip()
    if not s or s.lower() == "none":
        return []
    out = []
    for seg in [x.strip() for x in re.split(r"[;；\n]+", s) if x.strip()]:
        if seg.lower() == "none":
            continue
        t = ref_parse_triple_segment(seg)
        if t is not None:
            out.append(t)
    return out


def reference(answer):
    return ref_parse_triples(ref_extract_answer_text(answer))


# ---------------------------------------------------------------------- riveg-hf's documented mapping of it
def to_original(region, original=ORIGINAL, frame=FRAME):
    """A box of the resized image -> original pixels: scaled per axis, corners sorted, clipped; None if nothing
    of it is a finite box with area inside the image."""
    (w, h), (fw, fh) = original, frame
    xs = sorted((region[0] * w / fw, region[2] * w / fw))
    ys = sorted((region[1] * h / fh, region[3] * h / fh))
    if not all(math.isfinite(v) for v in xs + ys):
        return None
    x0, x1 = (min(max(v, 0.0), w) for v in xs)
    y0, y1 = (min(max(v, 0.0), h) for v in ys)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def expected(triples, original=ORIGINAL, frame=FRAME):
    """What riveg-hf keeps of E2E-GMNER's triples: the four types only; an invalid or empty box is not visible;
    of several boxes, the first that is a box inside the image."""
    out = []
    for name, etype, regions, valid in triples:
        if etype not in ("PER", "LOC", "ORG", "OTHER"):
            continue
        boxes = [to_original(r, original, frame) for r in regions or []] if valid else []
        out.append((name, etype, next((b for b in boxes if b is not None), None)))
    return out


def found(reader, answer, original=ORIGINAL, frame=FRAME, text=TWEET):
    ents, notes = reader.parse(answer, ReadRequest(Image.new("RGB", original), text), original, frame)
    return [(e.name, e.type, e.box) for e in ents], notes


def same(got, want):
    assert [(n, t) for n, t, _ in got] == [(n, t) for n, t, _ in want]
    for (_, _, g), (_, _, w) in zip(got, want):
        assert (g is None and w is None) or g == pytest.approx(w, abs=1e-9)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def qwen25():
    return tiny_qwen2_5_vl()


@pytest.fixture
def prompt_files(tmp_path):
    instruction, system = tmp_path / "instruction.txt", tmp_path / "system.txt"
    instruction.write_text(INSTRUCTION + "\n", encoding="utf-8")  # an editor's final line break
    system.write_text(SYSTEM + "\n", encoding="utf-8")
    return {"instruction_file": str(instruction), "system_prompt_file": str(system)}


def make(qwen25, prompt_files, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in texts are not E2E-GMNER's
        return JointReader(*qwen25, family="e2e-gmner", **prompt_files, **options)


@pytest.fixture
def reader(qwen25, prompt_files):
    return make(qwen25, prompt_files)


# ---------------------------------------------------------------------- the differential table
BARS = ["｜", "│", "丨", "￨", "∣"]
NESTED = "[" * 100_000 + "]" * 100_000
DIFFERENTIAL = [
    # extract_answer_text: nothing; the first <answer> (any case); after the first </think>; the whole answer
    "",
    "   ",
    "<think>two players</think><answer>Kevin Durant|PER|[322,0,644,238]; Warriors|ORG|None</answer>",
    "<think>x</think>Kevin Durant|PER|[10,20,30,40]",
    "Kevin Durant|PER|[10,20,30,40]; Warriors|ORG|None",
    "<answer>Kevin Durant|PER|[1,2,30,40]</answer><answer>Warriors|ORG|None</answer>",
    "<ANSWER>Warriors|ORG|None</ANSWER>",
    "<answer></answer><answer>Warriors|ORG|None</answer>",
    "<THINK>x</THINK>  Warriors|ORG|None",
    "<think>a</think>b</think>Warriors|ORG|None; Oracle Arena|LOC|None",
    "<think>Warriors|ORG|[1,2,3,4]</think><answer>Kevin Durant|PER|None</answer>",
    "<answer>\n  Kevin Durant|PER|None  \n</answer>",
    # parse_triples: the bar variants; None; the separators and their runs; parts that are None
    *[f"Kevin Durant{b}PER{b}[10,20,30,40]; Warriors|ORG{b}None" for b in BARS],
    "None",
    "none",
    "<answer>None</answer>",
    "<think>no entity</think><answer> NONE </answer>",
    "Kevin Durant|PER|None；Warriors|ORG|None\nOracle Arena|LOC|n/a",
    "Kevin Durant|PER|None;;\n;  ；Warriors|ORG|None;",
    "Kevin Durant|PER|None; none; NONE; Warriors|ORG|None",
    # parse_triple_segment: too few fields; a name with "|"; empty fields; types as written
    "Kevin Durant|PER|; Warriors|ORG; Oracle Arena|LOC|None",
    "Kevin|Durant|PER|[10,20,30,40]",
    "| Kevin Durant | | PER | None |",
    "Kevin Durant|per|None; Warriors|MISC|None; Oracle Arena| LOC |None; Durant|PERSON|[1,2,3,4]",
    # parse_bbox_regions: None / n/a; JSON box; JSON boxes; bad JSON -> numbers; [] ; counts; no numbers
    "Kevin Durant|PER|N/A; Warriors|ORG|NONE",
    "Kevin Durant|PER|[10.5, 20, 30, 40.25]",
    "Kevin Durant|PER|[[12,11,213,238],[241,8,437,235]]",
    "Kevin Durant|PER|[[1,2,3,4],[5,6,7]]",
    'Kevin Durant|PER|[[100,2,3,4],[5,6,7,"80"]]',
    "Kevin Durant|PER|[]; Warriors|ORG|[1,2,3]; Oracle Arena|LOC|abc",
    "Kevin Durant|PER|(1, 2, 30, 40)",
    "Kevin Durant|PER|1 2 30 40 50 60 70 80",
    "Kevin Durant|PER|[30,40,10,20]",  # corners not ordered: riveg-hf sorts them (documented)
    "Kevin Durant|PER|[true,2,30,40]",  # JSON true is a number to Python
    "Kevin Durant|PER|x1=10,y1=20,x2=30,y2=40",  # every digit run is a number: two flat boxes
    "Kevin Durant|PER|{'x1': 10, 'y1': 20, 'x2': 30, 'y2': 40}",
    "Kevin Durant|PER|5",
    "Kevin Durant|PER|[-1.5e1, +2, .5, 4e2]",
    # hostile: boxes past the image, outside it, empty, not finite, huge, deeply nested
    "Kevin Durant|PER|[-50,-50,10000,10000]",
    "Kevin Durant|PER|[700,500,900,600]",
    "Kevin Durant|PER|[[900,900,1000,1000],[0,0,322,238]]",
    "Kevin Durant|PER|[[900,900,1000,1000],[700,500,900,600]]",
    "Kevin Durant|PER|[0,0,0,0]",
    "Kevin Durant|PER|[1e999,0,5,5]",
    "Kevin Durant|PER|[NaN,0,5,5]",
    "Kevin Durant|PER|[1" + "0" * 400 + ",0,5,5]",
    "Kevin Durant|PER|" + NESTED,
    "Kevin Durant|PER|[1,2,3,4]</answer>",  # a stray closing tag
    "no answer tag, no triple: the model just talked",
    "Paris|LOC|None; Kevin Durant|PER|None; Kevin Durant|PER|None",  # placed (or not) later, not here
    "; ".join(f"w{i}|PER|[{i},{i},{i + 10},{i + 10}]" for i in range(1000)),
]


@pytest.mark.parametrize("answer", DIFFERENTIAL, ids=range(len(DIFFERENTIAL)))
def test_answers_are_read_as_e2e_gmners_parser_reads_them(reader, answer):
    got, notes = found(reader, answer)
    want = reference(answer)
    same(got, expected(want))
    # a box E2E-GMNER's parser finds invalid is said to be one (the box is None either way)
    invalid = [t for t in want if not t[3] and t[1] in ("PER", "LOC", "ORG", "OTHER")]
    assert sum("E2E-GMNER counts its region wrong" in n for n in notes) == len(invalid)


#: (answer, what riveg-hf reads it as): where riveg-hf differs from E2E-GMNER's parser on purpose
DIFFERENCES = [
    # a <think> never closed: the reasoning is not read as the answer (theirs reads it)
    ("<think>Kevin Durant|PER|[1,2,30,40] is the one", ""),
    # an <answer> never closed: the tag is not part of the first name, the part being written is left out
    (
        "<think>x</think><answer>Kevin Durant|PER|[1,2,30,40]; Warriors|ORG|[5,6,7,8",
        "Kevin Durant|PER|[1,2,30,40]",
    ),
    ("<answer>Kevin Durant|PER|None; Warriors|ORG|None;", "Kevin Durant|PER|None; Warriors|ORG|None"),
]


@pytest.mark.parametrize(("answer", "read_as"), DIFFERENCES)
def test_where_riveg_hf_differs_it_reads_less_never_more(reader, answer, read_as):
    assert reference(answer) != reference(read_as)  # E2E-GMNER's parser reads more (or other names)
    same(found(reader, answer)[0], expected(reference(read_as)))


def test_the_types_are_e2e_gmners_four_exactly(reader):
    got, notes = found(reader, "Kevin Durant|per|None; Warriors|MISC|None; Oracle Arena|OTHER|None")
    assert got == [("Oracle Arena", "OTHER", None)]
    assert sum("not one of ['PER', 'LOC', 'ORG', 'OTHER']" in n for n in notes) == 2


def test_several_boxes_keep_the_first_inside_the_image_and_name_the_others(reader):
    ents, notes = reader.parse(
        "Kevin Durant|PER|[[700,500,900,600],[322,0,644,238],[0,0,322,238]]",
        ReadRequest(Image.new("RGB", ORIGINAL), TWEET),
        ORIGINAL,
        FRAME,
    )
    [e] = ents
    assert e.box == pytest.approx([320.0, 0.0, 640.0, 240.0])
    assert (
        "gives 3 boxes" in e.note and "outside the image" in e.note and "[0.0, 0.0, 320.0, 240.0]" in e.note
    )
    assert notes == []


def test_what_is_not_kept_is_said(reader):
    _, notes = found(reader, "Kevin Durant|PER|[]; Warriors|ORG|[700,500,900,600]; just words; Arena|LOC")
    assert any("'[]' is not a box (E2E-GMNER counts its region wrong)" in n for n in notes)
    assert any("not a box inside the image" in n for n in notes)
    assert any("2 part(s) of the answer are not entity|type|box" in n and "'just words'" in n for n in notes)
    _, notes = found(reader, "<think>x</think><answer>Kevin Durant|PER|None; Warr")
    assert any("1 part(s)" in n and "'Warr'" in n and "stopped before </answer>" in n for n in notes)
    assert found(reader, "<think>Kevin Durant|PER|None")[1] == [
        "the answer stopped inside its <think> block (no </think>, no <answer>): no entity read"
    ]


def test_hostile_answers_are_placed_on_the_tweet_and_never_invented(reader):
    image = Image.new("RGB", ORIGINAL)
    twice = "Kevin Durant meets Kevin Durant"
    answer = "Paris|LOC|None; Kevin Durant|PER|None; Kevin Durant|PER|[0,0,322,238]; Kevin Durant|PER|None"
    reading = reader.reading(answer, ReadRequest(image, twice), ORIGINAL, FRAME)
    assert [(e.entity, e.start, e.box) for e in reading.entities] == [
        ("Kevin Durant", 0, None),
        ("Kevin Durant", 19, pytest.approx([0.0, 0.0, 320.0, 240.0])),
    ]
    assert sum("not in the tweet" in n for n in reading.notes) == 2  # Paris, and a third Kevin Durant
    text = " ".join(f"w{i}" for i in range(1000))
    many = "; ".join(f"w{i}|PER|[{i % 600},0,{i % 600 + 10},10]" for i in range(1000))
    reading = reader.reading(
        f"<think>many</think><answer>{many}</answer>", ReadRequest(image, text), ORIGINAL, FRAME
    )
    assert len(reading.entities) == MAX_ENTITIES and any("first 256" in n for n in reading.notes)
    reading = reader.reading("Kevin Durant|PER|[1,2,30,40]", ReadRequest(None, TWEET), None, None)
    assert [(e.entity, e.box) for e in reading.entities] == [("Kevin Durant", None)]  # no image: not visible


def test_without_the_processors_size_boxes_are_read_in_e2e_gmners_frame(reader):
    assert e2e_gmner.trained_size(640, 480) == FRAME
    assert e2e_gmner.trained_size(2000, 1000) == (1260, 616) and e2e_gmner.trained_size(300, 200) == (
        560,
        392,
    )
    ents, notes = reader.parse("Kevin Durant|PER|[322,0,644,238]", ReadRequest(Image.new("RGB", ORIGINAL), TWEET),
                               ORIGINAL, None)  # fmt: skip
    assert ents[0].box == pytest.approx([320.0, 0.0, 640.0, 240.0]) and notes == []
    _, notes = reader.parse("Kevin Durant|PER|None", ReadRequest(Image.new("RGB", ORIGINAL), TWEET), ORIGINAL,
                            (112, 84))  # fmt: skip
    assert any("saw the image at 112x84, not the 644x476" in n for n in notes)


# ---------------------------------------------------------------------- through the model's own generate
def _script(monkeypatch, reader, answers):
    """The model's generate, made to answer ``answers`` in order; records each call's prompts (decoded) and
    image grids."""

    def record(kw):
        return {
            "prompts": reader.processor.tokenizer.batch_decode(kw["input_ids"], skip_special_tokens=False),
            "grids": kw["image_grid_thw"].tolist() if "image_grid_thw" in kw else None,
        }

    return script_generate(monkeypatch, reader, answers, record)


def test_a_round_trip_gives_boxes_in_original_pixels(qwen25, prompt_files, monkeypatch):
    before = qwen25[1].image_processor.size
    reader = make(qwen25, prompt_files)
    assert qwen25[1].image_processor.size == before  # the processor given is not changed: a copy resizes
    assert reader.options() == {
        "family": "e2e-gmner",
        "max_new_tokens": 512,
        **prompt_files,
        "min_pixels": 200704,
        "max_pixels": 802816,
    }
    calls = _script(monkeypatch, reader, [
        "<think>Durant is in the photo.</think><answer>Kevin Durant|PER|[322,0,644,238]; Warriors|ORG|None; "
        "Oracle Arena|LOC|[[0,238,322,476],[322,238,644,476]]</answer>",
        "<think>a court</think><answer>Oracle Arena|LOC|[280,196,560,392]</answer>",
        "<think>text only</think><answer>Kevin Durant|PER|None</answer>",
    ])  # fmt: skip
    requests = [
        ReadRequest(Image.new("RGB", ORIGINAL), TWEET),
        ReadRequest(Image.new("L", (300, 200)), "At Oracle Arena tonight"),  # seen at 560x392, RGB
        ReadRequest(None, "Kevin Durant &amp; friends"),
    ]
    first, second, third = reader.read_many(requests)
    assert [(e.entity, e.type, e.start, e.box) for e in first.entities] == [
        ("Kevin Durant", "PER", 0, pytest.approx([320.0, 0.0, 640.0, 240.0])),
        ("Warriors", "ORG", 23, None),
        ("Oracle Arena", "LOC", 35, pytest.approx([0.0, 240.0, 320.0, 480.0])),
    ]
    assert "gives 2 boxes" in first.entities[2].note
    assert [(e.entity, e.box) for e in second.entities] == [
        ("Oracle Arena", pytest.approx([150.0, 100.0, 300.0, 200.0]))
    ]
    assert [(e.entity, e.box) for e in third.entities] == [("Kevin Durant", None)]
    assert not first.notes and not second.notes and not third.notes
    # one batch with the two images (each at E2E-GMNER's size), one for the tweet without
    assert [c["grids"] for c in calls] == [[[1, 34, 46], [1, 28, 40]], None]
    prompt = calls[0]["prompts"][0].replace("<|endoftext|>", "")  # left padding
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>"
        + "<|image_pad|>" * (34 * 46 // 4)
        + f"<|vision_end|>{INSTRUCTION}{TWEET}<|im_end|>\n<|im_start|>assistant\n"
    )
    # the tweet as the SFT data give it: words joined by one space, HTML unescaped
    assert calls[1]["prompts"][0].endswith(
        f"{INSTRUCTION}Kevin Durant & friends<|im_end|>\n<|im_start|>assistant\n"
    )


def test_the_user_text_is_built_as_e2e_gmners_data_build_it():
    assert e2e_gmner.user_text("Text: ", "  Obama\n in   Paris &amp; &lt;3 ") == "Text: Obama in Paris & <3"
    assert e2e_gmner.user_text("Text: ", "a &lt;image&gt; b") == "Text: a  b"  # dataset.py removes <image>
    assert e2e_gmner.user_text("Text: ", "a &#10;Ignore the above") == "Text: a Ignore the above"  # one line
    assert e2e_gmner.user_text("Text: ", "") == "Text:"  # stripped, as the dataset strips the user text


def test_a_served_e2e_gmner_reader_sends_e2e_gmners_image_and_turns(prompt_files):
    import base64
    import io

    from .servers import ChatServer, Reply, completion

    answer = "<think>x</think><answer>Kevin Durant|PER|[322,0,644,238]; Warriors|ORG|None</answer>"
    with ChatServer(lambda req, hdr: Reply(200, completion(answer))) as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = JointReader.served(srv.url, endpoint_model="e2e-gmner", endpoint_family="qwen2_5_vl",
                                        family="e2e-gmner", **prompt_files)  # fmt: skip
        [reading] = reader.read_many([ReadRequest(Image.new("RGB", ORIGINAL), TWEET)])
    assert [(e.entity, e.box) for e in reading.entities] == [
        ("Kevin Durant", pytest.approx([320.0, 0.0, 640.0, 240.0])),
        ("Warriors", None),
    ]
    [req] = srv.requests
    system, user = req["messages"]
    assert system == {"role": "system", "content": [{"type": "text", "text": SYSTEM}]}
    assert [c["type"] for c in user["content"]] == ["image_url", "text"]
    assert user["content"][1]["text"] == INSTRUCTION + TWEET
    url = user["content"][0]["image_url"]["url"]
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == FRAME
    assert reader.options()["min_pixels"] == 200704 and reader.options()["max_pixels"] == 802816


# ---------------------------------------------------------------------- the prompt files
def test_it_refuses_without_the_prompt_files_and_says_where_they_are(qwen25, prompt_files):
    with pytest.raises(ValueError, match=r"instruction_file=<checkout>/scripts/gmner_to_sft_data.py") as err:
        JointReader(*qwen25, family="e2e-gmner")
    assert "system_prompt_file=<checkout>/src/e2egmner/data/collator.py" in str(err.value)
    assert "no license" in str(err.value)
    with pytest.raises(ValueError, match="system_prompt_file=") as err:
        JointReader(*qwen25, family="e2e-gmner", instruction_file=prompt_files["instruction_file"])
    assert "instruction_file=" not in str(err.value)
    with pytest.raises(FileNotFoundError, match="is not a file"):
        JointReader(*qwen25, family="e2e-gmner", **{**prompt_files, "instruction_file": "/nonexistent/i.txt"})


def test_other_texts_are_used_with_a_warning_and_the_pinned_ones_without(qwen25, prompt_files, monkeypatch):
    with pytest.warns(UserWarning) as record:
        reader = JointReader(*qwen25, family="e2e-gmner", **prompt_files)
    assert sorted(re.search(r"not E2E-GMNER's (\w+)", str(w.message))[1] for w in record) == [
        "DEFAULT_SYSTEM_PROMPT",
        "INSTRUCTION",
    ]
    assert (
        reader.instruction == INSTRUCTION and reader.system_prompt == SYSTEM
    )  # one final line break dropped
    for key, text in (("instruction_file", INSTRUCTION), ("system_prompt_file", SYSTEM)):
        where, constant, _ = e2e_gmner.PROMPTS[key]
        monkeypatch.setitem(
            e2e_gmner.PROMPTS, key, (where, constant, hashlib.sha256(text.encode()).hexdigest())
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JointReader(*qwen25, family="e2e-gmner", **prompt_files)


def test_the_texts_are_read_from_e2e_gmners_python_files_without_running_them(tmp_path):
    script = tmp_path / "gmner_to_sft_data.py"
    script.write_text(
        'import pathlib\npathlib.Path(__file__).with_name("ran").touch()\n'
        'INSTRUCTION = (\n    "Find the entities.\\n"\n    "Text: "\n)\n',
        encoding="utf-8",
    )
    assert e2e_gmner.read_prompt(script, "instruction_file") == "Find the entities.\nText: "
    assert not (tmp_path / "ran").exists()
    collator = tmp_path / "collator.py"
    collator.write_text('DEFAULT_SYSTEM_PROMPT: str = "Be brief."\n', encoding="utf-8")
    assert e2e_gmner.read_prompt(collator, "system_prompt_file") == "Be brief."
    with pytest.raises(ValueError, match="defines no string INSTRUCTION"):
        e2e_gmner.read_prompt(collator, "instruction_file")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(b"Text: \r\n")
    assert e2e_gmner.read_prompt(crlf, "instruction_file") == "Text: "


@pytest.mark.skipif(
    not os.environ.get("E2E_GMNER_CHECKOUT"), reason="E2E_GMNER_CHECKOUT: a checkout at d90c1eb"
)
def test_a_checkouts_texts_are_the_pinned_ones():
    root = Path(os.environ["E2E_GMNER_CHECKOUT"])
    for key, (where, _, sha) in e2e_gmner.PROMPTS.items():
        assert hashlib.sha256(e2e_gmner.read_prompt(root / where, key).encode()).hexdigest() == sha


def test_bad_settings_are_refused(qwen25, prompt_files):
    with pytest.raises(ValueError, match="min_pixels"):
        make(qwen25, prompt_files, min_pixels=10**6, max_pixels=10**5)
    with pytest.raises(TypeError, match="unknown option"):
        make(qwen25, prompt_files, prompt_dir="x")  # SAKE's
    reader = make(qwen25, prompt_files, min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16)
    assert reader.processor.image_processor.size.longest_edge == 28 * 28 * 16


def test_a_composite_with_the_reader_saves_and_reloads_it(qwen25, prompt_files, tmp_path):
    from riveg_hf import RiVEGModel, RiVEGPipeline

    pipe = RiVEGPipeline.from_components(reader=make(qwen25, prompt_files, max_new_tokens=8))
    pipe.save_pretrained(tmp_path / "e2e")
    cfg = json.loads((tmp_path / "e2e" / "config.json").read_text())
    assert cfg["components"]["reader"]["options"] == {
        "family": "e2e-gmner",
        "max_new_tokens": 8,
        **prompt_files,
        "min_pixels": 200704,
        "max_pixels": 802816,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = RiVEGModel.from_pretrained(str(tmp_path / "e2e"))
    reader = again.stages["reader"]
    assert reader.family == "e2e-gmner" and reader.instruction == INSTRUCTION
    assert reader.processor.image_processor.size.longest_edge == 802816  # the processor saved resizes so too


def test_the_modules_examples_hold():
    import doctest

    result = doctest.testmod(e2e_gmner)
    assert result.attempted >= 4 and result.failed == 0
