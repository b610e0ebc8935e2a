"""A composite whose config.json names a server: loading it must not send the user's tweets or tokens there
without the user's opt-in, a Hub token never goes to a non-Hub host, and paths in the checkpoint never choose
where files are written. With a recording server on 127.0.0.1, a composite from a folder and from a Hub-style
download (the Hub cache layout, read offline), a token in the environment and in the stored login file."""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import pipeline

from riveg_hf import RiVEGModel, RiVEGPipeline
from riveg_hf.serving import UntrustedEndpointError

from .servers import ChatServer, Reply, completion

TWEET = {"text": "Obama visits Paris", "image": None}


@pytest.fixture(scope="module")
def dummy_dir(tmp_path_factory):
    """A recognizer that tags every word (so the expander is asked for each), saved to a folder."""
    from riveg_hf.testing import every_word_recognizer

    model, tok = every_word_recognizer()
    path = tmp_path_factory.mktemp("rec") / "recognizer"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return {"recognizer": str(path)}


@pytest.fixture
def recording():
    with ChatServer(lambda req, h: Reply(200, completion("a man in a suit"))) as srv:
        yield srv


@pytest.fixture
def tokens(monkeypatch, tmp_path):
    """A Hub token in HF_TOKEN and in the file `hf auth login` writes; no endpoint token."""
    import huggingface_hub.constants

    login = tmp_path / "hf_home" / "token"
    login.parent.mkdir()
    login.write_text("hf_STORED_LOGIN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(login))
    monkeypatch.setenv("HF_TOKEN", "hf_ENV_TOKEN")
    monkeypatch.delenv("RIVEG_ENDPOINT_TOKEN", raising=False)
    monkeypatch.delenv("RIVEG_TRUST_ENDPOINTS", raising=False)
    monkeypatch.setenv("RIVEG_LLM_CACHE", str(tmp_path / "user-cache" / "llm.sqlite"))
    return login


def _composite(dummy_dir, url, folder, evil_cache):
    pipe = RiVEGPipeline.from_components(recognizer=dummy_dir["recognizer"], expander=f"endpoint:{url}")
    pipe.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    # what an attacker can put in a checkpoint: a cache path, a token, and a claim to be trusted
    cfg["components"]["expander"]["options"]["endpoint"].update(
        cache_path=str(evil_cache), token="attacker-token", trusted=True
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _hub_cache_copy(folder, cache_root, repo_id="someone/riveg-composite"):
    """The folder as `hf download` leaves it in the Hub cache: models--org--name/snapshots/<sha>/..."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    return repo_id


@pytest.mark.parametrize("where", ["folder", "hub-download"])
def test_a_checkpoint_url_gets_nothing_without_opt_in_and_never_a_hub_token(
    where, dummy_dir, recording, tokens, tmp_path, monkeypatch
):
    evil = tmp_path / "elsewhere" / "planted.sqlite"
    folder = _composite(dummy_dir, recording.url, tmp_path / "composite", evil)
    location = str(folder)
    if where == "hub-download":
        import huggingface_hub.constants

        cache = tmp_path / "hub-cache"
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read from the cache only
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
        monkeypatch.setenv("HF_HUB_CACHE", str(cache))
        location = _hub_cache_copy(folder, cache)
        shutil.rmtree(folder)
    # 1. no opt-in: the load stops with an error naming the URL and the opt-in; the server sees nothing
    with pytest.raises(UntrustedEndpointError) as err:
        pipeline("grounded-mner", model=location)
    assert recording.url in str(err.value) and "trust_endpoints=True" in str(err.value)
    assert "RIVEG_TRUST_ENDPOINTS" in str(err.value)
    model = RiVEGModel.from_pretrained(location)  # loading the weights alone is fine ...
    with pytest.raises(UntrustedEndpointError):  # ... but the untrusted client refuses to send
        model.stages["expander"].generate(["hi"])
    assert recording.requests == []
    # 2. opt-in by argument: requests go out, with no token at all (a Hub token never goes to 127.0.0.1,
    #    and the checkpoint's own "token" is not used)
    pipe = pipeline("grounded-mner", model=location, trust_endpoints=True)
    pipe(TWEET)
    assert len(recording.requests) >= 1
    assert {h.get("authorization") for h in recording.headers} == {None}
    # the checkpoint's cache path chose nothing: the cache is the user's
    assert not evil.exists() and not evil.parent.exists()
    assert (tmp_path / "user-cache" / "llm.sqlite").is_file()
    # 3. opt-in by environment (a list of trusted URLs), with the user's endpoint token
    n = len(recording.requests)
    monkeypatch.setenv("RIVEG_TRUST_ENDPOINTS", f"http://10.0.0.1/v1,{recording.url}")
    monkeypatch.setenv("RIVEG_ENDPOINT_TOKEN", "user-endpoint-token")
    monkeypatch.setenv("RIVEG_LLM_CACHE", str(tmp_path / "fresh-cache.sqlite"))
    pipeline("grounded-mner", model=location)(TWEET)
    assert len(recording.requests) > n
    assert {h.get("authorization") for h in recording.headers[n:]} == {"Bearer user-endpoint-token"}
    seen = json.dumps(recording.headers) + json.dumps(recording.requests)
    assert "hf_ENV_TOKEN" not in seen and "hf_STORED_LOGIN" not in seen and "attacker-token" not in seen
    # 4. another URL in the trust list does not trust this one
    monkeypatch.setenv("RIVEG_TRUST_ENDPOINTS", "http://10.0.0.1/v1")
    with pytest.raises(UntrustedEndpointError):
        pipeline("grounded-mner", model=location)


def test_riveg_predict_refuses_a_checkpoint_url_without_trust_endpoints(
    dummy_dir, recording, tokens, tmp_path, capsys
):
    from riveg_cli import main

    folder = _composite(dummy_dir, recording.url, tmp_path / "c", tmp_path / "evil.sqlite")
    code = main(["predict", "--model", str(folder), "--text", "Obama visits Paris", "--device", "cpu"])
    assert code == 2 and "--trust-endpoints" in capsys.readouterr().err and recording.requests == []
    out = tmp_path / "p.jsonl"
    code = main(["predict", "--model", str(folder), "--text", "Obama visits Paris", "--device", "cpu",
                 "--output", str(out), "--trust-endpoints"])  # fmt: skip
    assert code == 0 and recording.requests and out.is_file()


def test_a_url_the_user_gives_is_trusted(dummy_dir, recording, tokens):
    pipe = RiVEGPipeline.from_components(
        recognizer=dummy_dir["recognizer"], expander=f"endpoint:{recording.url}"
    )
    pipe(TWEET)
    assert recording.requests
