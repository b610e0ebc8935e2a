"""transformers' Hub arguments on a composite: AutoModel, pipeline() and RiVEGModel.from_pretrained honour
``subfolder``, ``revision``, ``cache_dir``, ``force_download``, ``proxies``, ``token``, ``local_files_only``
and pass them to every component; the arguments that cannot apply are refused with why.

The Hub is a real Hugging Face cache laid out by hand (``models--org--name/refs/main`` + ``snapshots/<sha>/``),
read offline: the same code path as a download that already happened. Every file request that reaches
huggingface_hub is recorded, so a test sees which arguments each component's files were asked with.
"""

from __future__ import annotations

import shutil

import pytest
from transformers import AutoModel, pipeline

import riveg_hf  # noqa: F401  (registers the tasks)
from riveg_hf import RiVEGModel, RiVEGPipeline

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA_REC = "fedcba9876543210fedcba9876543210fedcba98"
TEXT = "Barack Obama visited Paris with NASA"


def _hub_repo(cache, repo_id: str, sha: str):
    """A repo in a Hugging Face cache folder at commit ``sha`` (``main`` points to it); returns its snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snap


@pytest.fixture(scope="module")
def composite(dummy_dir, tmp_path_factory):
    """A two-stage composite saved in subfolder ``gmner/`` of repo ``org/riveg`` in a Hub cache, and the same
    composite as a plain folder, with the pipeline's outputs on one input."""
    pipe = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], grounder=dummy_dir["grounder"], box_threshold=0.0
    )
    root = tmp_path_factory.mktemp("hubargs")
    pipe.save_pretrained(root / "plain")
    cache = root / "cache"
    shutil.copytree(root / "plain", _hub_repo(cache, "org/riveg", SHA) / "gmner")  # a new folder in it
    return {"cache": cache, "plain": root / "plain", "expected": pipe({"text": TEXT, "image": None})}


@pytest.fixture
def requests(monkeypatch):
    """Every file request transformers sends to huggingface_hub, with its arguments; the real cache answers
    (without force_download / proxies / token, which this offline machine cannot use)."""
    import transformers.utils.hub as hub

    seen: list[dict] = []
    real_file, real_snapshot = hub.hf_hub_download, hub.snapshot_download

    def record(real):
        def call(repo_id, *args, **kwargs):
            seen.append({"repo_id": repo_id, **kwargs})
            kwargs.update(force_download=False, proxies=None, token=None, local_files_only=True)
            return real(repo_id, *args, **kwargs)

        return call

    monkeypatch.setattr(hub, "hf_hub_download", record(real_file))
    monkeypatch.setattr(hub, "snapshot_download", record(real_snapshot))
    return seen


def _outputs(model):
    return RiVEGPipeline(model=model, task="grounded-mner")({"text": TEXT, "image": None})


def test_automodel_loads_a_composite_saved_in_a_subfolder_of_a_hub_repo(composite):
    model = AutoModel.from_pretrained("org/riveg", subfolder="gmner", cache_dir=str(composite["cache"]))
    assert isinstance(model, RiVEGModel)
    sources = {name: stage.source for name, stage in model.stages.items() if stage.model is not None}
    # every component from the composite's own commit, in its folder under the subfolder
    assert sources == {
        name: {"location": "org/riveg", "revision": SHA, "subfolder": f"gmner/{name}"}
        for name in ("recognizer", "grounder")
    }
    assert _outputs(model) == composite["expected"]


def test_a_local_composite_in_a_subfolder_through_automodel_and_pipeline(composite, tmp_path):
    shutil.copytree(composite["plain"], tmp_path / "nested" / "gmner")
    model = AutoModel.from_pretrained(str(tmp_path / "nested"), subfolder="gmner")
    assert _outputs(model) == composite["expected"]
    pipe = pipeline("grounded-mner", model=str(tmp_path / "nested"), model_kwargs={"subfolder": "gmner"})
    assert pipe({"text": TEXT, "image": None}) == composite["expected"]


def test_pipeline_passes_hub_arguments_to_the_composite(composite):
    pipe = pipeline(
        "grounded-mner",
        model="org/riveg",
        revision="main",
        model_kwargs={"subfolder": "gmner", "cache_dir": str(composite["cache"])},
    )
    assert pipe.model.stages["grounder"].source["revision"] == SHA
    assert pipe({"text": TEXT, "image": None}) == composite["expected"]


def test_force_download_proxies_token_and_cache_dir_reach_every_file_of_every_component(composite, requests):
    proxies = {"https": "http://proxy.example:3128"}
    model = RiVEGModel.from_pretrained(
        "org/riveg",
        subfolder="gmner",
        revision="main",
        cache_dir=composite["cache"],
        force_download=True,
        proxies=proxies,
        token="hf_test_token",
        local_files_only=True,
    )
    assert _outputs(model) == composite["expected"]
    assert requests, "force_download must send every file request to huggingface_hub"
    folders = {r.get("subfolder") for r in requests}
    assert {"gmner", "gmner/recognizer", "gmner/grounder"} <= folders  # config, and both components
    for r in requests:
        assert r["repo_id"] == "org/riveg"
        assert r["force_download"] is True and r["proxies"] == proxies and r["token"] == "hf_test_token"
        assert r["cache_dir"] == str(composite["cache"]) and r["local_files_only"] is True
        assert (
            getattr(r["revision"], "resolved", None) == SHA
        )  # "main", resolved once for the whole composite


def test_a_component_referenced_as_another_repo_keeps_its_pinned_revision(composite, requests, tmp_path):
    import json

    cache = tmp_path / "cache"
    shutil.copytree(composite["cache"], cache)
    shutil.copytree(
        composite["plain"] / "recognizer", _hub_repo(cache, "org/ner", SHA_REC), dirs_exist_ok=True
    )
    cfg_path = cache / "models--org--riveg" / "snapshots" / SHA / "gmner" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["components"]["recognizer"] = {
        **{k: v for k, v in cfg["components"]["recognizer"].items() if k != "path"},
        "repo_id": "org/ner",
        "revision": SHA_REC,
    }
    cfg_path.write_text(json.dumps(cfg))
    model = RiVEGModel.from_pretrained(
        "org/riveg", subfolder="gmner", cache_dir=str(cache), force_download=True, local_files_only=True
    )
    assert model.stages["recognizer"].source == {"location": "org/ner", "revision": SHA_REC}
    assert _outputs(model) == composite["expected"]
    ner = [r for r in requests if r["repo_id"] == "org/ner"]
    assert ner and all(
        str(r["revision"]) == SHA_REC and not r.get("subfolder") and r["force_download"] is True for r in ner
    )


def test_arguments_that_change_nothing_are_accepted(composite):
    model = RiVEGModel.from_pretrained(
        str(composite["plain"]),
        trust_remote_code=False,
        use_safetensors=True,
        low_cpu_mem_usage=True,
        device_map="cpu",
        code_revision=None,
        adapter_kwargs={"revision": None},
        torch_dtype="float32",
        _from_auto=True,
    )
    assert _outputs(model) == composite["expected"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"trust_remote_code": True}, ValueError, "never runs a checkpoint's code"),
        ({"use_safetensors": False}, ValueError, "safetensors weights only"),
        ({"device_map": "auto"}, ValueError, "device="),
        ({"code_revision": "abc"}, ValueError, "remote code"),
        ({"adapter_kwargs": {"adapter_name": "x"}}, ValueError, "not a PEFT adapter"),
        ({"adapter_kwargs": {"revision": "other"}}, ValueError, "not a PEFT adapter"),
        ({"dtype": "float32", "torch_dtype": "float16"}, ValueError, "disagree"),
        ({"dtype": "floaty"}, ValueError, "not a torch dtype"),
        ({"subfolder": "../outside"}, OSError, "without '..'"),
        (
            {"attn_implemntation": "sdpa"},
            TypeError,
            r"unexpected arguments \['attn_implemntation'\].*force_download",
        ),
    ],
)
def test_arguments_that_cannot_apply_are_refused_with_why(composite, kwargs, error, message):
    with pytest.raises(error, match=message):
        RiVEGModel.from_pretrained(str(composite["plain"]), **kwargs)
