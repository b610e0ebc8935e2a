"""Builder for Twitter-GMNER (Yu et al., ACL 2023): configs ``gmner`` (default), ``mner``, ``mner_llm_knowledge``.

    riveg data build twitter-gmner --raw ../shared/data/twitter-gmner/v2.0 \\
        [--images DIR] [--knowledge ../shared/data/riveg-aux/llm-knowledge] \\
        [--captions ../shared/data/riveg-aux/captions] --out twitter-gmner

or ``python -m datasets_scripts.twitter_gmner --raw ... --out ...``. The output folder loads
with ``load_dataset(out, "gmner")``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from riveg_hf.data import (
    GMNER_SPLITS,
    ConfigSpec,
    Report,
    gmner_features,
    gmner_records,
    knowledge_features,
    knowledge_records,
    mner_features,
)

from . import _card
from ._common import BuildResult, write_build

CONFIGS = ("gmner", "mner", "mner_llm_knowledge")


def _card_body(version: str, counts: dict, have_images: bool) -> str:
    table = "\n".join(
        f"| `{cfg}` | " + " | ".join(str(splits.get(s, "")) for s in ("train", "validation", "test")) + " |"
        for cfg, splits in counts.items()
    )
    return f"""
# Twitter-GMNER

Grounded Multimodal Named Entity Recognition on tweets (Yu et al., ACL 2023): find each named entity of a
tweet, its type (PER, LOC, ORG, OTHER) and the box of its image that shows it, or "not visible".
Built by {_card.BUILT_BY} from the authors' release `{version}`{"" if have_images else " (text and boxes; images not included)"}.

| config | train | validation | test |
|---|---|---|---|
{table}

- `gmner` (default): tweets, BIO tags, image, and entities with their boxes.
- `mner`: text only (tokens, tags, entity spans), for MNER models.
- `mner_llm_knowledge`: `mner` plus the LLM-written auxiliary knowledge that RiVEG/PGIM append to the tweet
  (`knowledge`, a list of words; never labelled, never predicted).

## Usage

{_card.usage("riveg/twitter-gmner", "gmner")}

Score predictions with `riveg_hf.metrics.compute_gmner(predictions, ds["test"]["entities"])`.

## Fields (`gmner`)

{_card.FIELDS_GMNER}

Boxes are pixel `xyxy` in original-image coordinates. Entity offsets are token offsets, end exclusive.

{_card.ALIGNMENT_NOTE}

## Citation

```bibtex
{_card.CITE_GMNER}
{_card.CITE_RIVEG}
{_card.CITE_PGIM}
```

{_card.LICENSE_NOTE}
"""


def build(
    raw: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    knowledge: str | Path | None = None,
    captions: str | Path | None = None,
    configs: tuple[str, ...] | None = None,
    orphan_i: str = "skip",
    rows_per_shard: int | None = None,
    max_image_pixels: int | None = None,
    overwrite: bool = False,
) -> BuildResult:
    """Build the Twitter-GMNER dataset folder (see the module doc)."""
    t0 = time.perf_counter()
    out = Path(out)
    configs = tuple(configs or (CONFIGS if knowledge else CONFIGS[:2]))
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"unknown twitter-gmner configs {sorted(unknown)}; valid: {list(CONFIGS)}")
    if "mner_llm_knowledge" in configs and knowledge is None:
        raise ValueError(
            "config mner_llm_knowledge needs --knowledge DIR (RiVEG's llm-knowledge folder with "
            "train/valid/test.txt, e.g. ../shared/data/riveg-aux/llm-knowledge)."
        )
    report = Report()
    records = {
        split: gmner_records(
            raw,
            split,
            images=images,
            captions=captions,
            orphan_i=orphan_i,
            max_image_pixels=max_image_pixels,
            report=report,
        )
        for split in GMNER_SPLITS
    }
    if images is not None and rows_per_shard is None:
        rows_per_shard = 1000
    specs = []
    if "gmner" in configs:
        specs.append(
            ConfigSpec(
                "gmner",
                gmner_features(),
                {s: (lambda s=s: records[s]) for s in GMNER_SPLITS},
                description="Twitter-GMNER: tweets, images, entities with boxes.",
                default=True,
                rows_per_shard=rows_per_shard,
            )
        )
    if "mner" in configs:
        keep = ("text", "type", "start", "end")

        def mner_rows(split):
            for r in records[split]:
                yield {
                    "id": r["id"],
                    "tokens": r["tokens"],
                    "ner_tags": r["ner_tags"],
                    "entities": [{k: e[k] for k in keep} for e in r["entities"]],
                }

        specs.append(
            ConfigSpec(
                "mner",
                mner_features(),
                {s: (lambda s=s: mner_rows(s)) for s in GMNER_SPLITS},
                description="Twitter-GMNER text only (MNER).",
                default="gmner" not in configs,
            )
        )
    if "mner_llm_knowledge" in configs:
        know = {s: knowledge_records(records[s], knowledge, s, report) for s in GMNER_SPLITS}
        specs.append(
            ConfigSpec(
                "mner_llm_knowledge",
                knowledge_features(),
                {s: (lambda s=s: know[s]) for s in GMNER_SPLITS},
                description="Twitter-GMNER text with RiVEG's LLM-written auxiliary knowledge.",
            )
        )
    version = Path(raw).name
    body_counts = {
        spec.name: {s2: len(records[s]) for s, s2 in zip(GMNER_SPLITS, ("train", "validation", "test"))}
        for spec in specs
    }
    card_data = {
        "pretty_name": "Twitter-GMNER",
        "language": ["en"],
        "license": "other",
        "task_categories": ["token-classification", "object-detection"],
        "tags": [
            "grounded-mner",
            "gmner",
            "multimodal",
            "named-entity-recognition",
            "visual-grounding",
            "twitter",
        ],
        "size_categories": ["1K<n<10K"],
    }
    sources = {
        "raw": str(raw),
        "images": str(images) if images else None,
        "knowledge": str(knowledge) if knowledge else None,
        "captions": str(captions) if captions else None,
    }
    return write_build(
        out,
        specs,
        card_body=_card_body(version, body_counts, images is not None),
        card_data=card_data,
        overwrite=overwrite,
        report=report,
        t0=t0,
        sources=sources,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--images")
    p.add_argument("--knowledge")
    p.add_argument("--captions")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    print(
        build(
            a.raw, a.out, images=a.images, knowledge=a.knowledge, captions=a.captions, overwrite=a.overwrite
        ).summary()
    )


if __name__ == "__main__":
    main()
