"""Round 3 of the hardening (issue #30): `riveg push` and the scoring protocols. Each test fails on the code before
it: a pushed requirements.txt that an index wheel could satisfy, a wheel packing whatever lay in the package
folder, a Hub token sent to any HF_ENDPOINT, E2E-GMNER's recursive matching, H-Index candidates keyed by int,
iou_threshold ignored by the published protocols, and a type_map (`--level coarse`) that renames nothing."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from riveg_hf.metrics import MetricInputError, compute_gmner, compute_smner
from riveg_hf.types import ENTITY_TYPES

from .helpers import REPO

A = [0.0, 0.0, 10.0, 10.0]
FAR = [50.0, 50.0, 60.0, 60.0]
HALF = [0.0, 0.0, 10.0, 5.0]  # IoU(HALF, A) = 0.5 exactly


def g(start, end, text, boxes, type_="PER"):
    return {"start": start, "end": end, "type": type_, "text": text, "boxes": boxes}


def p(start, end, text, box, type_="PER"):
    return {"start": start, "end": end, "type": type_, "entity": text, "box": box}


# ---------------------------------------------------------------------- 1. the pushed requirements.txt
def _fake_wheel(folder: Path, version: str, build: str | None = None) -> Path:
    """A wheel named riveg-hf ``version`` (optionally with a build tag), as anyone could upload to an index."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"riveg_hf-{version}.dist-info"
    name = f"riveg_hf-{version}{'-' + build if build else ''}-py3-none-any.whl"
    with zipfile.ZipFile(folder / name, "w") as zf:
        zf.writestr("riveg_hf/__init__.py", "PWNED = True\n")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: riveg-hf\nVersion: {version}\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: x\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return folder / name


def _pip_download(reqs: Path, index: Path, cwd: Path, dest: Path) -> subprocess.CompletedProcess:
    """pip resolving ``reqs`` as an endpoint would, from another working directory, with ``index`` standing for
    the package index (its wheels are offered like PyPI's)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-index", "--find-links", str(index),
         "-d", str(dest), "-r", str(reqs)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
    )  # fmt: skip


def test_pushed_requirements_install_the_shipped_wheel_never_an_index_wheel_of_the_same_name(tmp_path):
    from riveg_hf import RiVEGPipeline, __version__
    from riveg_hf.hub import prepare_for_push
    from riveg_hf.testing import every_word_recognizer

    repo = tmp_path / "repository"
    RiVEGPipeline.from_components(recognizer=every_word_recognizer()).save_pretrained(repo)
    prepare_for_push(repo, "me/riveg")
    (wheel,) = (repo / "wheels").glob("riveg_hf-*.whl")
    lines = (repo / "requirements.txt").read_text().splitlines()
    assert f"riveg-hf=={__version__}" not in lines  # the name alone is free on PyPI
    # the riveg-hf part of the file (the transformers / torch pins need a real index)
    riveg = [x for x in lines if not x.startswith(("transformers==", "torch=="))]
    assert len(riveg) == len(lines) - 2
    (repo / "requirements.txt").write_text("\n".join(riveg) + "\n")
    # the index: the squatted names pip would prefer (a build tag sorts above no tag; a higher version)
    index = tmp_path / "index"
    _fake_wheel(index, __version__, build="1")
    _fake_wheel(index, "99.0.0")
    # the Inference Toolkit runs `pip install -r /repository/requirements.txt` from /app
    app = tmp_path / "app"
    app.mkdir()
    got = _pip_download(repo / "requirements.txt", index, app, tmp_path / "got")
    assert got.returncode == 0, got.stdout + got.stderr
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == [wheel.name]
    # without the shipped wheels/ (e.g. requirements.txt downloaded alone), the install fails: no index fallback
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(repo / "requirements.txt", alone)
    miss = _pip_download(alone / "requirements.txt", index, app, tmp_path / "miss")
    assert miss.returncode != 0 and "riveg-hf==" in miss.stdout + miss.stderr
    assert not (tmp_path / "miss").exists() or not any((tmp_path / "miss").iterdir())


def test_push_ships_one_wheel_and_names_it_in_requirements(tmp_path):
    from riveg_hf import RiVEGPipeline
    from riveg_hf.hub import prepare_for_push
    from riveg_hf.testing import every_word_recognizer
    from riveg_hf.wheel import wheel_version

    folder = tmp_path / "repo"
    RiVEGPipeline.from_components(recognizer=every_word_recognizer()).save_pretrained(folder)
    _fake_wheel(folder / "wheels", "0.0.1+shipped.0123456789abcdef")  # left by an earlier push
    prepare_for_push(folder, "me/riveg")
    (whl,) = (folder / "wheels").glob("riveg_hf-*.whl")
    lines = (folder / "requirements.txt").read_text().splitlines()
    assert "--find-links wheels" in lines and f"riveg-hf=={wheel_version(whl)}" in lines
    assert "+shipped." in wheel_version(whl)
    with pytest.raises(ValueError, match="shipped"):
        from riveg_hf.wheel import requirements_lines

        requirements_lines(_fake_wheel(tmp_path / "w", "0.1.0"))


def _copy_packages(dest: Path) -> dict[str, Path]:
    from riveg_hf.wheel import PACKAGES

    roots = {}
    for pkg in PACKAGES:
        roots[pkg] = dest / pkg
        shutil.copytree(REPO / pkg, roots[pkg], ignore=shutil.ignore_patterns("__pycache__"))
    return roots


def test_the_wheel_ships_the_package_files_only_never_dotfiles_or_junk(tmp_path):
    from riveg_hf.wheel import build_wheel, package_files

    roots = _copy_packages(tmp_path / "site")
    clean = {arc for arc, _ in package_files(roots)}
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the package")
    planted = {
        "riveg_hf/.env": "HF_TOKEN=hf_xxx\n",
        "riveg_hf/.env.py": "TOKEN = 'x'\n",
        "riveg_hf/notes.txt": "todo\n",
        "riveg_hf/NOTES.md": "private notes\n",
        "riveg_hf/defaults/secret.json": "{}\n",
        "riveg_hf/.git/config": "[remote]\n",
        "riveg_hf/.cache/mod.py": "x = 1\n",
        "riveg_hf/__pycache__/x.cpython-311.pyc": "junk",
        "model_cards/results/draft.md": "draft\n",
        "riveg_cli/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    }
    for rel, text in planted.items():
        (tmp_path / "site" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "site" / rel).write_text(text)
    (roots["riveg_hf"] / "leak.py").symlink_to(outside)  # a link out of the package
    whl = build_wheel(tmp_path / "out", roots=roots)
    names = set(zipfile.ZipFile(whl).namelist())
    payload = {n for n in names if ".dist-info/" not in n}
    assert payload == clean  # exactly what was there before the planting
    assert not payload & set(planted) and "riveg_hf/leak.py" not in payload
    assert all(n.endswith(".py") or n.endswith((".md", ".json")) for n in payload)
    assert {"riveg_hf/templates/handler.py", "riveg_hf/defaults/grounded-mner/config.json",
            "model_cards/riveg_composite.md", "riveg_cli/__init__.py"} <= payload  # fmt: skip
    # the same files give the same wheel (its version names their digest)
    again = build_wheel(tmp_path / "out2", roots=roots)
    assert again.name == whl.name and again.read_bytes() == whl.read_bytes()


def test_the_wheel_leaves_out_what_git_ignores_in_a_clone(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from riveg_hf.wheel import package_files

    roots = _copy_packages(tmp_path / "clone")
    (tmp_path / "clone" / ".gitignore").write_text("local_settings.py\n")
    (roots["riveg_hf"] / "local_settings.py").write_text("HF_TOKEN = 'hf_xxx'\n")
    (roots["riveg_hf"] / "new_module.py").write_text("X = 1\n")  # untracked but not ignored: a module
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    subprocess.run(["git", "init", "-q", str(tmp_path / "clone")], check=True, env=env)
    names = {arc for arc, _ in package_files(roots)}
    assert "riveg_hf/local_settings.py" not in names and "riveg_hf/new_module.py" in names


def test_the_package_data_copy_matches_pyproject():
    import tomllib

    from riveg_hf.wheel import PACKAGE_DATA

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {k: tuple(v) for k, v in declared.items()} == PACKAGE_DATA


# ---------------------------------------------------------------------- 2. where the Hub token goes
@pytest.mark.parametrize(
    "endpoint",
    [
        "http://huggingface.co",
        "https://hf-mirror.example.com",
        "https://huggingface.co.evil.example",
        "https://evilhuggingface.co",
        "https://user:pw@huggingface.co",
        "https://huggingface.co:8443",
        "ftp://huggingface.co",
        "huggingface.co",
    ],
)
def test_a_hub_token_goes_only_over_https_to_huggingface_co(endpoint):
    from riveg_hf.hub import hub_endpoint_for_token

    with pytest.raises(ValueError, match="only sent over https to huggingface.co"):
        hub_endpoint_for_token(endpoint)


def test_hub_endpoints_a_token_may_go_to():
    from riveg_hf.hub import hub_endpoint_for_token

    assert hub_endpoint_for_token("https://huggingface.co/") == "https://huggingface.co"
    assert hub_endpoint_for_token("https://hub-ci.huggingface.co") == "https://hub-ci.huggingface.co"
    assert hub_endpoint_for_token("https://HuggingFace.co:443") == "https://HuggingFace.co:443"


@pytest.fixture
def composite_folder(tmp_path):
    from riveg_hf import RiVEGPipeline
    from riveg_hf.testing import every_word_recognizer

    folder = tmp_path / "comp"
    RiVEGPipeline.from_components(recognizer=every_word_recognizer()).save_pretrained(folder)
    return folder


def test_push_never_sends_the_token_to_an_http_or_foreign_hf_endpoint(composite_folder, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub import constants

    from riveg_hf.cli import main as cli
    from riveg_hf.hub import push_composite

    made = []

    class FakeApi:
        def __init__(self, endpoint=None, token=None, **kw):
            made.append({"endpoint": endpoint, "token": token})

        def create_repo(self, *a, **kw):
            return None

        def upload_folder(self, **kw):
            return "https://huggingface.co/org/x/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    before = sorted(p.name for p in composite_folder.iterdir())
    for bad in ("http://huggingface.co", "https://attacker.example"):
        monkeypatch.setenv("HF_ENDPOINT", bad)
        monkeypatch.setattr(constants, "ENDPOINT", bad)
        with pytest.raises(ValueError, match="HF_ENDPOINT is"):
            push_composite(composite_folder, "org/x", token="hf_secret")
        assert cli(["push", str(composite_folder), "org/x"]) == 2
        assert "only sent over https to huggingface.co" in capsys.readouterr().err
    assert made == [] and sorted(p.name for p in composite_folder.iterdir()) == before
    monkeypatch.delenv("HF_ENDPOINT")
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    push_composite(composite_folder, "org/x", token="hf_secret")
    assert made == [{"endpoint": None, "token": "hf_secret"}]  # huggingface_hub's endpoint, the one checked


# ---------------------------------------------------------------------- 3a. E2E-GMNER's maximum matching
def _recursive_matching(left: int, right: int, edges: dict[int, list[int]]) -> int:
    """The recursive augmenting-path matching protocols.py had (the reference of the differential test)."""
    match_r: dict[int, int] = {}

    def augment(u: int, seen: set[int]) -> bool:
        for v in edges.get(u, []):
            if v in seen:
                continue
            seen.add(v)
            if v not in match_r or augment(match_r[v], seen):
                match_r[v] = u
                return True
        return False

    return sum(augment(u, set()) for u in range(left))


def test_e2e_matching_is_the_recursive_one_and_scipys_maximum_on_random_graphs():
    from riveg_hf.metrics.protocols import _max_matching

    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:  # the recursive reference alone
        linear_sum_assignment = None
    import numpy as np

    rng = random.Random(30)
    for k in range(700):
        left, right = (
            (rng.randint(0, 9), rng.randint(0, 9)) if k < 600 else (rng.randint(20, 60), rng.randint(20, 60))
        )
        density = rng.random()
        edges = {u: [v for v in range(right) if rng.random() < density] for u in range(left)}
        for u in edges:
            rng.shuffle(edges[u])
        got = _max_matching(left, right, edges)
        assert got == _recursive_matching(left, right, edges), edges
        if linear_sum_assignment is not None and left and right:
            w = np.zeros((left, right))
            for u, vs in edges.items():
                w[u, vs] = 1
            rows, cols = linear_sum_assignment(w, maximize=True)
            assert got == int(w[rows, cols].sum()), edges


def test_e2e_gmner_scores_a_tweet_with_1100_identical_mentions():
    n = 1100
    golds = [g(i, i + 1, "Messi", [A]) for i in range(n)]
    preds = [p(i, i + 1, "Messi", A if i % 2 else FAR) for i in range(n)]
    start = time.perf_counter()
    s = compute_gmner([preds], [golds], protocol="e2e-gmner")  # was: RecursionError
    assert time.perf_counter() - start < 60
    assert s["mner_f1"] == 1.0 and s["gmner_precision"] == s["gmner_recall"] == 0.5
    # through the CLI's path too: every protocol at once on the same tweet
    for protocol in ("riveg", "h-index", "fmnerg"):
        compute_gmner([preds], [golds], protocol=protocol)


# ---------------------------------------------------------------------- 3b. H-Index candidates' keys
def test_h_index_candidates_keyed_by_int_or_str_score_the_same():
    golds, preds = [g(0, 1, "Messi", [A])], [p(0, 1, "Messi", [0.0, 0.0, 9.0, 9.0])]
    by_str = compute_gmner([preds], [golds], protocol="h-index", candidates={"0": [FAR, A]})
    by_int = compute_gmner([preds], [golds], protocol="h-index", candidates={0: [FAR, A]})  # was F1 0.0
    assert by_str["gmner_f1"] == by_int["gmner_f1"] == 1.0
    by_int = compute_gmner({7: preds}, {7: golds}, protocol="fmnerg", candidates={7: [FAR, A]})
    assert by_int["gmner_f1"] == 1.0


@pytest.mark.parametrize(
    ("candidates", "match"),
    [
        ({0: [A], "0": [A]}, "same example"),
        ({"1": [A]}, r"not among the references' ids .*position of the example"),
        ([[A]], "must be a dict"),
        ({"0": A}, r"candidates\['0'\]\[0\]"),
        ({"0": [None]}, "is None"),
        ({"0": "boxes"}, "must be a list of"),
    ],
)
def test_h_index_candidates_that_cannot_be_read_are_refused(candidates, match):
    golds, preds = [g(0, 1, "Messi", [A])], [p(0, 1, "Messi", A)]
    with pytest.raises(MetricInputError, match=match):
        compute_gmner([preds], [golds], protocol="h-index", candidates=candidates)


def test_h_index_warns_about_examples_without_candidates():
    golds, preds = [[g(0, 1, "Messi", [A])]] * 2, [[p(0, 1, "Messi", A)]] * 2
    with pytest.warns(UserWarning, match=r"no entry for 1 of 2 example\(s\)"):
        compute_gmner(preds, golds, protocol="h-index", candidates={0: [A]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_gmner(preds, golds, protocol="h-index", candidates={0: [A], 1: []})


@pytest.mark.parametrize("protocol", ["riveg-hf", "riveg", "e2e-gmner"])
def test_candidates_are_refused_by_the_protocols_that_do_not_read_them(protocol):
    with pytest.raises(MetricInputError, match="candidates"):
        compute_gmner(
            [[p(0, 1, "Messi", A)]], [[g(0, 1, "Messi", [A])]], protocol=protocol, candidates={0: [A]}
        )


# ---------------------------------------------------------------------- 3c. iou_threshold
@pytest.mark.parametrize("protocol", ["riveg", "h-index", "fmnerg"])
def test_a_protocol_that_fixes_the_iou_threshold_refuses_another(protocol):
    golds, preds = [[g(0, 1, "Messi", [A])]], [[p(0, 1, "Messi", HALF)]]
    with pytest.raises(
        MetricInputError, match=r"fixes the IoU threshold at its published value \(IoU [>=]+ 0\.5"
    ):
        compute_gmner(preds, golds, protocol=protocol, iou_threshold=0.7)  # was: silently scored at 0.5
    compute_gmner(preds, golds, protocol=protocol, iou_threshold=0.5)  # the published value is fine


def test_iou_threshold_is_honoured_by_riveg_hf_and_e2e_gmner():
    golds, preds = [[g(0, 1, "Messi", [A])]], [[p(0, 1, "Messi", HALF)]]  # IoU 0.5
    for protocol in ("riveg-hf", "e2e-gmner"):
        assert compute_gmner(preds, golds, protocol=protocol)["gmner_f1"] == 1.0
        assert compute_gmner(preds, golds, protocol=protocol, iou_threshold=0.7)["gmner_f1"] == 0.0


@pytest.mark.parametrize("bad", [0, 1.5, -0.5, float("nan"), "0.5", True, None])
def test_an_iou_threshold_outside_0_1_is_refused(bad):
    with pytest.raises(MetricInputError, match=r"iou_threshold must be a number in \(0, 1\]"):
        compute_gmner([[]], [[]], iou_threshold=bad)
    with pytest.raises(MetricInputError, match="iou_threshold"):
        compute_smner([[]], [[]], iou_threshold=bad)


# ---------------------------------------------------------------------- 3d. --level coarse on coarse types
def test_a_type_map_that_renames_none_of_the_types_is_refused():
    from riveg_hf.data.fmnerg import FINE_TO_COARSE, FINE_TYPES

    golds, preds = [[g(0, 1, "Messi", [A])]], [[p(0, 1, "Messi", A)]]
    for protocol in ("riveg-hf", "riveg", "h-index", "e2e-gmner", "fmnerg"):
        with pytest.raises(MetricInputError, match=r"renames none of the data's types \['PER', 'LOC'"):
            compute_gmner(preds, golds, type_names=ENTITY_TYPES, type_map=FINE_TO_COARSE, protocol=protocol)
    with pytest.raises(MetricInputError, match="renames none"):
        compute_smner([[]], [[]], type_map=FINE_TO_COARSE)
    with pytest.raises(MetricInputError, match="type_map must be a dict"):
        compute_gmner(preds, golds, type_map=[("PER", "person")])
    # on fine types it maps (keys matched like types, without regard to case)
    fine = [[g(0, 1, "Messi", [A], "athlete")]]
    s = compute_gmner([[p(0, 1, "Messi", A, "politician")]], fine, type_names=list(FINE_TYPES),
                      type_map={k.upper(): v for k, v in FINE_TO_COARSE.items()})  # fmt: skip
    assert s["gmner_f1"] == 1.0 and set(s["per_type"]) == {"person"}
    # a map that renames some of the types is a choice, not a no-op
    assert compute_gmner(preds, golds, type_map={"PER": "person", "LOC": "location"})["gmner_f1"] == 1.0


def test_riveg_evaluate_level_coarse_on_twitter_gmner_says_the_data_has_no_fine_types(tmp_path, capsys):
    from datasets_scripts import twitter_gmner
    from riveg_hf.cli import main as cli

    from .helpers import write_release

    ex = {"id": "1", "tokens": ["Messi", "scores"], "tags": ["B-PER", "O"], "objects": [("Messi", A)],
          "size": (64, 48)}  # fmt: skip
    raw = write_release(tmp_path / "raw", {"train": [ex], "dev": [ex], "test": [ex]})
    twitter_gmner.build(raw, tmp_path / "ds")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "1", "entities": [p(0, 1, "Messi", A)]}) + "\n")
    args = ["evaluate", "--predictions", str(preds), "--dataset", str(tmp_path / "ds")]
    assert cli(args) == 0
    capsys.readouterr()
    assert cli([*args, "--level", "coarse"]) == 2  # was: 0, the same scores as without it
    err = capsys.readouterr().err
    assert "renames none of the data's types ['PER', 'LOC', 'ORG', 'OTHER']" in err and "--level" in err
    assert (
        cli([*args, "--level", "fine"]) == 2
    )  # was: 0, the same scores as without it (nothing is fine here)
    err = capsys.readouterr().err
    assert (
        "--level fine scores Twitter-FMNERG's fine types" in err and "['PER', 'LOC', 'ORG', 'OTHER']" in err
    )
