"""Builder for Twitter-2015 (Zhang et al., AAAI 2018) and Twitter-2017 (Lu et al., ACL 2018) MNER text.

    riveg data build twitter-mner --raw ../shared/data/twitter-mner --out twitter-mner

``--raw`` holds ``twitter2015/`` and ``twitter2017/`` with ``{train,valid,test}.txt`` (the
UMT release). Configs ``twitter2015`` and ``twitter2017``. Twitter-2017's ``MISC`` type is
renamed ``OTHER`` so that every riveg-hf dataset shares the label set PER, LOC, ORG, OTHER
(Twitter-2015 already uses OTHER); the count of renamed tags is in the report.

An ``I-X`` tag without a preceding ``B-X`` (Twitter-2015 has 501) starts a new entity, as in
conlleval and the MNER literature's scorers (``orphan_i="begin"``); each one is reported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from riveg_hf.data import (
    ConfigSpec,
    Report,
    bio_tags,
    mner_features,
    read_conll,
    spans_to_tags,
    tags_to_spans,
)
from riveg_hf.types import ENTITY_TYPES

from . import _card
from ._common import BuildResult, write_build

CONFIGS = ("twitter2015", "twitter2017")
SPLIT_FILES = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}


def mner_rows(path: Path, report: Report, orphan_i: str = "begin"):
    # MISC is renamed OTHER while reading, so the allowed set is the GMNER one.
    sents = read_conll(path, allowed_tags=bio_tags(ENTITY_TYPES), type_map={"MISC": "OTHER"}, report=report)
    rows = []
    for s in sents:
        spans = tags_to_spans(s.tags, orphan_i=orphan_i, where=f"{path.name} {s.id}", report=report)
        rows.append(
            {
                "id": s.id,
                "tokens": s.tokens,
                "ner_tags": spans_to_tags(len(s.tokens), spans),
                "entities": [
                    {"text": " ".join(s.tokens[a:b]), "type": t, "start": a, "end": b} for a, b, t in spans
                ],
            }
        )
        report.count("entities", len(spans))
    return rows


def build(
    raw: str | Path,
    out: str | Path,
    *,
    configs: tuple[str, ...] = CONFIGS,
    orphan_i: str = "begin",
    overwrite: bool = False,
) -> BuildResult:
    t0 = time.perf_counter()
    raw, out = Path(raw), Path(out)
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"unknown twitter-mner configs {sorted(unknown)}; valid: {list(CONFIGS)}")
    report = Report()
    specs = []
    for cfg in configs:
        folder = raw / cfg
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} not found: a twitter-mner release folder holds twitter2015/ and twitter2017/, each with "
                "train.txt, valid.txt, test.txt (CoNLL with IMGID: lines). Get it with `riveg data download "
                "twitter-mner` (then leave out --raw), or point --raw at such a folder."
            )
        rows = {split: mner_rows(folder / f, report, orphan_i) for split, f in SPLIT_FILES.items()}
        specs.append(
            ConfigSpec(
                cfg,
                mner_features(),
                {s: (lambda r=r: r) for s, r in rows.items()},
                description=f"{cfg} MNER text",
                default=cfg == configs[0],
            )
        )
    body = f"""
# Twitter-2015 and Twitter-2017 (MNER)

Multimodal NER benchmarks on tweets, text part (the images are not included). Types PER, LOC, ORG, OTHER
(Twitter-2017's MISC is renamed OTHER). Entity offsets are token offsets, end exclusive.

## Usage

{_card.usage("riveg/twitter-mner", "twitter2015")}

## Citation

```bibtex
{_card.CITE_MNER}
```

{_card.LICENSE_NOTE}
"""
    card_data = {
        "pretty_name": "Twitter-2015 / Twitter-2017 MNER",
        "language": ["en"],
        "license": "other",
        "task_categories": ["token-classification"],
        "tags": ["mner", "multimodal", "twitter"],
    }
    return write_build(
        out,
        specs,
        card_body=body,
        card_data=card_data,
        overwrite=overwrite,
        report=report,
        t0=t0,
        sources={"raw": str(raw)},
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    print(build(a.raw, a.out, overwrite=a.overwrite).summary())


if __name__ == "__main__":
    main()
