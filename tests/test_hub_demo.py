"""Hub readiness: visualisation, model cards, push (upload replaced), endpoint handler, demo app and browser."""

import base64
import io
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from riveg_hf import RiVEGPipeline
from riveg_hf.cli import main as cli
from riveg_hf.hub import component_card, composite_card, push_composite
from riveg_hf.masks import encode_rle
from riveg_hf.visualize import draw_entities, entity_colors, highlight_spans

from .helpers import save_composite, skimage_photo, skip_or_fail


@pytest.fixture(scope="module")
def composite(dummy_dir, tmp_path_factory):
    return save_composite(
        dummy_dir,
        tmp_path_factory.mktemp("hub") / "riveg-tiny",
        ("recognizer", "grounder", "segmenter"),
        box_threshold=0.0,
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- visualisation
def test_draw_entities_boxes_masks_and_shared_colours():
    img = Image.new("RGB", (100, 80), (255, 255, 255))
    mask = np.zeros((80, 100), bool)
    mask[50:70, 60:90] = True
    ents = [
        {
            "entity": "Obama",
            "type": "PER",
            "start": 0,
            "end": 5,
            "box": {"xmin": 10, "ymin": 30, "xmax": 40, "ymax": 70},
            "box_score": 0.9,
            "mask": None,
        },
        {
            "entity": "Paris",
            "type": "LOC",
            "start": 10,
            "end": 15,
            "box": [60, 50, 90, 70],
            "box_score": 0.5,
            "mask": encode_rle(mask),
        },
        {"entity": "NASA", "type": "ORG", "start": 20, "end": 24, "box": None, "mask": None},
    ]
    out = draw_entities(img, ents)
    assert out.size == (100, 80) and img.getpixel((10, 50)) == (255, 255, 255)  # the input is not modified
    c0, c1, _ = entity_colors(3)
    assert out.getpixel((10, 50)) == c0  # left edge of Obama's box, in its colour
    inside_mask = np.asarray(out)[65, 75]
    assert tuple(inside_mask) != (255, 255, 255) and abs(int(inside_mask[0]) - c1[0]) < abs(255 - c1[0]) + 1
    spans = highlight_spans("Obama and Paris or NASA!", ents)
    assert "".join(t for t, _ in spans) == "Obama and Paris or NASA!"
    assert [lab for _, lab in spans if lab] == ["Obama (PER)", "Paris (LOC)", "NASA (ORG)"]


# ---------------------------------------------------------------------- cards and push
def test_composite_card_and_push_with_upload_replaced(composite, tmp_path):
    folder = tmp_path / "push"
    shutil.copytree(composite, folder)
    calls, staged = [], []

    def upload(**kw):
        calls.append(kw)
        staged.append(sorted(p.name for p in Path(kw["folder_path"]).iterdir()))
        assert not (folder / "README.md").exists()  # nothing written into the checkpoint before the upload
        return "ok"

    push_composite(folder, "org/riveg-tiny", results={"gmner_f1": 0.5}, upload=upload)
    (call,) = calls
    assert call["folder_path"] != str(folder) and Path(call["folder_path"]).name == folder.name
    assert {k: v for k, v in call.items() if k != "folder_path"} == {
        "repo_id": "org/riveg-tiny",
        "repo_type": "model",
        "commit_message": "Upload RiVEG composite checkpoint",
        "ignore_patterns": ["checkpoint-*", "*.part-*", "__pycache__"],
    }
    assert {"README.md", "handler.py", "requirements.txt", "config.json"} <= set(staged[0])
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "riveg-hf" and "grounded-mner" in card.data.tags
    assert card.data.eval_results[0].metric_value == 0.5
    text = (folder / "README.md").read_text()
    assert (
        "GroundingDinoForObjectDetection" in text
        and 'pipeline("segmented-mner", model="org/riveg-tiny")' in text
    )
    assert (folder / "handler.py").is_file() and "riveg-hf" in (folder / "requirements.txt").read_text()
    with pytest.raises(FileNotFoundError, match="save a composite first"):
        push_composite(tmp_path, "org/x", upload=lambda **kw: None)


def test_hub_reference_components_appear_in_the_card(composite, tmp_path):
    folder = tmp_path / "ref"
    shutil.copytree(composite, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["components"]["grounder"] = {
        "model_class": "GroundingDinoForObjectDetection",
        "repo_id": "IDEA-Research/grounding-dino-tiny",
        "revision": "abc123",
        "options": {},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    card = composite_card(folder, repo_id="org/r")
    assert card.data.base_model == ["IDEA-Research/grounding-dino-tiny"]
    assert "@ `abc123`" in card.content


def test_component_card_model_index_from_a_run_record():
    rec = {
        "command": "riveg train mner ...",
        "arguments": {
            "config": "twitter2017",
            "base_model": "bert-base-cased",
            "output": "out/mner",
            "epochs": 3,
        },
        "test": {"precision": 0.8, "recall": 0.7, "f1": 0.7467},
        "max_length": 128,
        "wall_time_s": 10,
        "peak_rss_mb": 100,
        "uses_knowledge": False,
    }
    card = component_card("mner", rec, repo_id="org/mner")
    assert card.data.base_model == "bert-base-cased" and card.data.datasets == ["riveg/twitter-mner"]
    f1 = [r for r in card.data.eval_results if r.metric_type == "f1"]
    assert f1[0].metric_value == 74.67 and f1[0].dataset_name == "Twitter-2017"


def test_riveg_push_cli_reaches_the_upload(composite, tmp_path, monkeypatch):
    folder = tmp_path / "p"
    shutil.copytree(composite, folder)
    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            seen["create"] = repo_id

        def upload_folder(self, **kw):
            seen["upload"] = kw["repo_id"]
            return "commit"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    assert cli(["push", str(folder), "org/name"]) == 0
    assert seen == {"create": "org/name", "upload": "org/name"}


def test_push_without_network_is_one_line_and_changes_nothing(composite, tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE=1 (as in the tests) makes the real HfApi refuse: one clear line, the folder untouched."""
    folder = tmp_path / "p"
    shutil.copytree(composite, folder)
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(["push", str(folder), "org/name"]) == 2
    err = capsys.readouterr().err
    assert "could not upload" in err and "was not changed" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not (folder / "README.md").exists() and not (folder / "handler.py").exists()


# ---------------------------------------------------------------------- endpoint handler
@pytest.fixture(scope="module")
def handler(composite, tmp_path_factory):
    import importlib.util

    folder = tmp_path_factory.mktemp("ep") / "repo"
    shutil.copytree(composite, folder)
    from riveg_hf.hub import prepare_for_push

    prepare_for_push(folder, "org/x")
    spec = importlib.util.spec_from_file_location("handler", folder / "handler.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.EndpointHandler(str(folder)), mod


def _b64(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_handler_base64_and_url(handler, photo, tmp_path, monkeypatch):
    """Base64 works; URLs are refused unless enabled; enabled, only 'public' hosts are fetched (here
    127.0.0.2 stands for the public internet, 127.0.0.1 for the private network) and the answer is JSON."""
    from .test_security import Recorder

    h, _ = handler
    out = h(
        {"inputs": {"text": "Obama visits Paris", "image": _b64(photo)}, "parameters": {"box_threshold": 0.0}}
    )
    assert isinstance(out, list) and all("box" in e for e in out)
    json.dumps(out)
    buf = io.BytesIO()
    photo.save(buf, format="PNG")
    public = Recorder("127.0.0.2", {"/p.png": (200, {"Content-Type": "image/png"}, buf.getvalue())})
    internal = Recorder("127.0.0.1", {"/p.png": (200, {"Content-Type": "image/png"}, buf.getvalue())})
    try:

        def ask(url):
            return h(
                {"inputs": {"text": "Obama visits Paris", "image": url}, "parameters": {"box_threshold": 0.0}}
            )

        monkeypatch.delenv("RIVEG_ALLOW_URL_IMAGES", raising=False)
        refused = ask(f"{public.base}/p.png")
        assert refused["status"] == 400 and "not accepted by this endpoint" in refused["error"]
        assert public.requests == []
        monkeypatch.setenv("RIVEG_ALLOW_URL_IMAGES", "1")
        private = ask(f"{internal.base}/p.png")
        assert private["status"] == 400 and "could not fetch the image URL" in private["error"]
        assert internal.requests == []
        import ipaddress

        import riveg_hf.net

        monkeypatch.setattr(
            riveg_hf.net, "is_public_address", lambda ip: ip == ipaddress.ip_address("127.0.0.2")
        )
        assert ask(f"{public.base}/p.png") == out
        assert public.requests == ["/p.png"] and internal.requests == []
    finally:
        public.close()
        internal.close()


def test_handler_answers_json_and_checks_parameter_types(handler, photo):
    h, _ = handler
    base = {"text": "Obama visits Paris", "image": _b64(photo)}
    for params, message in [
        ({"mask_format": "array"}, "must be one of ['rle', 'none']"),
        ({"box_threshold": True}, "must be a number, got true"),
        ({"entailment_threshold": False}, "must be a number, got false"),
        ({"box_threshold": 1.5}, "must be in [0, 1]"),
        ({"use_descriptions": 1}, "must be true or false"),
        ({"max_entities_per_image": 0}, "positive integer"),
        ({"max_entities_per_image": 2.5}, "must be an integer"),
    ]:
        out = h({"inputs": base, "parameters": params})
        assert isinstance(out, dict) and out["status"] == 400 and message in out["error"], (params, out)
    out = h({"inputs": base, "parameters": {"mask_format": "none", "max_entities_per_image": 1}})
    assert isinstance(out, list)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"text": "x"}, 400, "request body must be"),
        ({"inputs": 3}, 400, "'inputs' must be an object"),
        ({"inputs": {"text": 5}}, 400, "'inputs.text' must be a string"),
        ({"inputs": {"text": "x" * 10_001}}, 413, "limit is 10000"),
        ({"inputs": {"text": "x", "image": "not base64!!"}}, 400, "neither valid base64"),
        ({"inputs": {"text": "x", "image": base64.b64encode(b"garbage").decode()}}, 400, "not an image"),
        ({"inputs": {"text": "x"}, "parameters": {"box_treshold": 1}}, 400, "unknown parameters"),
        ({"inputs": {"text": "x"}, "parameters": {"box_threshold": "high"}}, 400, "must be a number"),
    ],
)
def test_handler_bad_payloads_get_4xx_errors(handler, payload, status, message):
    h, _ = handler
    out = h(payload)
    assert out["status"] == status and message in out["error"]


def test_handler_refuses_huge_images(handler):
    from .test_utils import _huge_png_bytes

    h, _ = handler
    out = h({"inputs": {"text": "x", "image": base64.b64encode(_huge_png_bytes(20000, 20000)).decode()}})
    assert out["status"] == 413 and "pixels" in out["error"]


# ---------------------------------------------------------------------- demo app
@pytest.fixture(scope="module")
def demo_server(composite):
    from riveg_hf import RiVEGModel
    from riveg_hf.demo import build_demo

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    pipe = RiVEGPipeline(model=RiVEGModel.from_pretrained(str(composite)), task="segmented-mner")
    demo = build_demo(pipe)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", pipe
    demo.close()


def test_demo_through_gradio_client(demo_server):
    from gradio_client import Client, handle_file

    url, pipe = demo_server
    client = Client(url, verbose=False)
    img = skimage_photo("astronaut.png")
    text = "Astronaut Eileen Collins at NASA"
    spans, annotated, as_json = client.predict(handle_file(str(img)), text, 0.0, 0.5, api_name="/predict")
    direct = pipe({"text": text, "image": Image.open(img).convert("RGB")}, box_threshold=0.0)
    assert as_json == json.loads(json.dumps(direct))
    assert "".join(s["token"] for s in spans["value"]) == text
    labels = [s["class_or_confidence"] for s in spans["value"] if s["class_or_confidence"]]
    assert labels == [f"{e['entity']} ({e['type']})" for e in direct]
    # the text highlight and the image share one colour per entity
    assert spans["color_map"] == annotated["color_map"] and set(spans["color_map"]) == set(labels)
    n_visible = sum(e["box"] is not None for e in direct)
    assert len(annotated["value"]["annotations"]) == n_visible


def test_demo_renders_and_round_trips_in_headless_chromium(demo_server, tmp_path):
    from playwright.sync_api import sync_playwright  # a dev dependency

    url, _ = demo_server
    with sync_playwright() as p:
        chromium = next(
            (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
            None,
        )
        if chromium is None and os.path.exists(p.chromium.executable_path):
            chromium = p.chromium.executable_path  # `playwright install chromium`
        if chromium is None:
            skip_or_fail(
                "no Chromium for the browser test: install Debian's chromium (tests/run.sh does under CI=true) "
                "or run `playwright install chromium`"
            )
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="networkidle")
            assert page.locator("#riveg-run").is_visible() and page.locator("#riveg-text").is_visible()
            page.locator("#riveg-text textarea").fill("Obama visits Paris with NASA")
            page.locator("#riveg-run").click()
            page.wait_for_function(
                "() => document.querySelector('#riveg-json') && document.querySelector('#riveg-json').innerText.includes('entity')",
                timeout=60_000,
            )
            json_text = page.locator("#riveg-json").inner_text()
            assert "entity" in json_text and "description" in json_text
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_riveg_demo_command_serves_on_localhost(composite):
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riveg_hf.cli",
            "demo",
            "--model",
            str(composite),
            "--port",
            str(port),
            "--task",
            "segmented-mner",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    assert resp.status == 200 and b"gradio" in resp.read().lower()
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()[-2000:]
                assert time.time() < deadline, "the demo did not come up in 180 s"
                time.sleep(1)
        # bound to the loopback interface only (listening sockets from /proc/net/tcp: address:port in hex)
        listening = set()
        with open("/proc/net/tcp") as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, p = local.split(":")
                if state == "0A" and int(p, 16) == port:
                    listening.add(addr)
        assert listening == {"0100007F"}  # 127.0.0.1, not 0.0.0.0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------- deployable as pushed
def test_a_pushed_composite_installs_and_serves_from_its_own_folder(tmp_path):
    """What Inference Endpoints does with a pushed repository: a fresh environment (the endpoint image's
    torch / transformers already there) runs `pip install -r requirements.txt` -- here with no index at all, so
    riveg-hf can only come from the wheel shipped in the folder -- then calls handler.py on a request."""
    import site
    import subprocess
    import sys

    from riveg_hf.hub import prepare_for_push
    from riveg_hf.testing import every_word_recognizer

    folder = tmp_path / "repo"
    RiVEGPipeline.from_components(recognizer=every_word_recognizer()).save_pretrained(folder)
    prepare_for_push(folder, "me/riveg")
    reqs = (folder / "requirements.txt").read_text()
    assert "--find-links wheels" in reqs and "transformers==" in reqs and "torch==" in reqs
    assert len(list((folder / "wheels").glob("riveg_hf-*-py3-none-any.whl"))) == 1
    # the endpoint image: a fresh venv seeing this machine's third-party packages, but not riveg-hf
    venv = tmp_path / "endpoint-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = tmp_path / "image-packages"
    deps.mkdir()
    ours = ("riveg", "model_cards", "datasets_scripts", "__editable__")
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if (
                not entry.name.lower().startswith(ours)
                and entry.suffix != ".pth"
                and not (deps / entry.name).exists()
            ):
                (deps / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    vsite = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    (Path(vsite) / "image-packages.pth").write_text(str(deps) + "\n")
    for own in Path(vsite).glob(
        "setuptools*"
    ):  # the venv's old setuptools would shadow the image's (torch pins it)
        subprocess.run(["rm", "-rf", str(own)], check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
    probe = subprocess.run(
        [str(py), "-c", "import riveg_hf"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert probe.returncode != 0  # not installed in the endpoint yet
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "-r", "requirements.txt"],
                          capture_output=True, text=True, env=env, cwd=folder)  # fmt: skip
    assert inst.returncode == 0, inst.stdout + inst.stderr
    code = (
        "import json, riveg_hf; from handler import EndpointHandler; "
        "out = EndpointHandler('.')({'inputs': {'text': 'Obama visits Paris'}}); "
        "print(json.dumps({'where': riveg_hf.__file__, 'out': out}))"
    )
    run = subprocess.run(
        [str(py), "-c", code], capture_output=True, text=True, env=env, cwd=folder, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["where"].startswith(vsite)  # from the shipped wheel, installed into the endpoint's environment
    assert [e["entity"] for e in got["out"]] == ["Obama", "visits", "Paris"]
