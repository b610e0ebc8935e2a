"""Entity expansion: template, LLM path, garbage fallback, cache, knowledge; the captioner."""

import pytest

from riveg_hf.stages import Captioner, Expander, ExpansionRequest, clean_description, template_description
from riveg_hf.testing import tiny_blip_captioner, tiny_llm

REQ = ExpansionRequest("Golden Gate Bridge", "LOC", "Sunset over the Golden Gate Bridge", "a red bridge")


def test_template_only():
    exp = Expander()
    assert exp.describe([REQ]) == [("Golden Gate Bridge, a location", "template")]
    assert template_description("Obama", "PER") == "Obama, a person"
    assert template_description("NASA", "ORG") == "NASA, an organization"  # the article by sound
    assert template_description("X", "OTHER", "{entity} ({type_word})") == "X (named entity)"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('Description: "an iconic red suspension bridge."\nPost: more', "an iconic red suspension bridge"),
        ("  a coffee chain with a green logo  ", "a coffee chain with a green logo"),
        ("", None),
        ("   \n ", None),
        ("!!!! ???", None),
        ("upauranM7", None),
        ("bridge bridge bridge bridge bridge", None),
        ("Post: Entity: Image:", None),
        ("x" * 400, None),
        ("an \ufffd thing", None),
    ],
)
def test_clean_description(raw, expected):
    assert clean_description(raw) == expected


def test_llm_answers_are_used_cached_and_garbage_falls_back(monkeypatch):
    model, tok = tiny_llm()
    exp = Expander(model, tok, max_new_tokens=4)
    answers = iter([["an iconic red suspension bridge", "!!!"]])
    calls = []

    def fake_generate(prompts, max_new_tokens=None):
        calls.append(list(prompts))
        return next(answers)

    monkeypatch.setattr(exp, "generate", fake_generate)
    other = ExpansionRequest("Obama", "PER", "Obama speaks", None)
    out = exp.describe([REQ, other, REQ])  # the duplicate request is generated once
    assert out == [
        ("an iconic red suspension bridge", "llm"),
        ("Obama, a person", "fallback"),
        ("an iconic red suspension bridge", "llm"),
    ]
    assert len(calls) == 1 and len(calls[0]) == 2
    assert "Golden Gate Bridge (LOC)" in calls[0][0] and "Image: a red bridge" in calls[0][0]
    assert "Image: not available" in calls[0][1]
    # second call: the good answer comes from the cache, the fallback is asked again
    monkeypatch.setattr(exp, "generate", lambda prompts, max_new_tokens=None: [""] * len(prompts))
    assert exp.describe([REQ, other]) == [
        ("an iconic red suspension bridge", "cache"),
        ("Obama, a person", "fallback"),
    ]


def test_real_generation_with_a_tiny_llm_is_batched_and_capped():
    model, tok = tiny_llm()
    exp = Expander(model, tok, max_new_tokens=3, batch_size=2)
    reqs = [ExpansionRequest(f"Entity{i}", "ORG", f"tweet {i}", None) for i in range(3)]
    raw = exp.generate(
        [
            exp.prompt.format(text=r.text, caption="x", entity=r.entity, type=r.type, type_word="")
            for r in reqs
        ]
    )
    assert len(raw) == 3 and all(len(tok(r, add_special_tokens=False)["input_ids"]) <= 3 for r in raw)
    out = exp.describe(reqs)
    assert [src in ("llm", "fallback") for _, src in out] == [True] * 3
    assert tok.padding_side == "left"


def test_prompt_must_keep_placeholders():
    with pytest.raises(ValueError, match=r"must contain \['\{caption\}'\]"):
        Expander(prompt="Describe {entity} from {text}")


def test_knowledge_without_llm_is_empty(monkeypatch):
    assert Expander().knowledge(["a", "b"], [None, None]) == ["", ""]
    model, tok = tiny_llm()
    exp = Expander(model, tok)
    monkeypatch.setattr(
        exp, "generate", lambda prompts, max_new_tokens=None: [" Obama (person) is a politician "]
    )
    assert exp.knowledge(["Obama speaks"], [None]) == ["Obama (person) is a politician"]


def test_captioner_captions_a_batch(photo):
    model, proc = tiny_blip_captioner()
    cap = Captioner(model, proc, max_new_tokens=5)
    out = cap.caption([photo, photo.resize((64, 32))])
    assert len(out) == 2 and all(isinstance(c, str) for c in out)
