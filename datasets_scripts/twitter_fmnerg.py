"""Builder for Twitter-FMNERG (Wang et al., ACM MM 2023): configs ``fine`` (default, 51 types) and ``coarse``
(8 types), boxes from Twitter-GMNER v2.0's XML, aligned as for Twitter-GMNER.

    riveg data download twitter-gmner twitter-fmnerg
    riveg data build twitter-fmnerg --out twitter-fmnerg [--images DIR]

``--raw`` is a folder with ``txt_fine/{train,dev,test}.txt`` (default: the download); ``--xml`` the XML folder
(default: the downloaded Twitter-GMNER v2.0's ``xml/``). Every entity carries both levels: ``type`` (the config's
level, a ClassLabel) and ``coarse_type`` / ``fine_type`` (strings).
"""

from __future__ import annotations

import time
from pathlib import Path

from datasets import Features, List, Value

from riveg_hf.data import GMNER_SPLITS, ConfigSpec, Report, gmner_records
from riveg_hf.data.features import gmner_features
from riveg_hf.data.fmnerg import COARSE_TYPES, FINE_TO_COARSE, FINE_TYPES
from riveg_hf.data.gmner import RawRelease

from . import _card
from ._common import BuildResult, write_build

CONFIGS = ("fine", "coarse")
CITE_FMNERG = """@inproceedings{wang2023fine,
  title     = {Fine-Grained Multimodal Named Entity Recognition and Grounding with a Generative Framework},
  author    = {Wang, Jieming and Li, Ziyan and Yu, Jianfei and Yang, Li and Xia, Rui},
  booktitle = {Proceedings of the 31st ACM International Conference on Multimedia},
  year      = {2023}
}"""


def _features(types) -> Features:
    f = gmner_features(types)
    ent = dict(f["entities"].feature)
    ent["coarse_type"] = Value("string")
    ent["fine_type"] = Value("string")
    f["entities"] = List(ent)
    return f


def build(
    raw: str | Path,
    out: str | Path,
    *,
    xml: str | Path | None = None,
    images: str | Path | None = None,
    configs: tuple[str, ...] | None = None,
    rows_per_shard: int | None = None,
    max_image_pixels: int | None = None,
    overwrite: bool = False,
) -> BuildResult:
    t0 = time.perf_counter()
    raw = Path(raw)
    configs = tuple(configs or CONFIGS)
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"unknown twitter-fmnerg configs {sorted(unknown)}; valid: {list(CONFIGS)}")
    xml = Path(xml) if xml is not None else raw / "xml"
    if not xml.is_dir():
        raise FileNotFoundError(
            f"twitter-fmnerg: no XML folder {xml}: the boxes are Twitter-GMNER v2.0's; pass --xml DIR or run "
            "`riveg data download twitter-gmner`."
        )
    release = RawRelease(raw, txt_name="txt_fine", xml=xml)
    report = Report()
    records = {}
    for level in configs:
        types, other, col, other_col, field, other_field = (
            (FINE_TYPES, COARSE_TYPES, 2, 1, "fine_type", "coarse_type") if level == "fine"
            else (COARSE_TYPES, FINE_TYPES, 1, 2, "coarse_type", "fine_type")
        )  # fmt: skip
        rep = report if level == configs[0] else Report()
        per_split = {}
        for split in GMNER_SPLITS:
            rows = gmner_records(raw, split, images=images, types=types, max_image_pixels=max_image_pixels,
                                 report=rep, release=release, tag_columns=(3, col),
                                 extra_tags=(other_col, other, other_field))  # fmt: skip
            for r in rows:
                for e in r["entities"]:
                    e[field] = e["type"]
                    fine, coarse = e.get("fine_type"), e.get("coarse_type")
                    if fine and coarse and FINE_TO_COARSE.get(fine) != coarse:
                        rep.add(
                            "type_tree_mismatch",
                            f"{split} {r['id']}: {e['text']!r} is {coarse!r} but its fine type {fine!r} belongs to "
                            f"{FINE_TO_COARSE.get(fine)!r} in FMNERG's type tree (both kept as written)",
                        )
            per_split[split] = rows
        records[level] = per_split
    if images is not None and rows_per_shard is None:
        rows_per_shard = 1000
    specs = [
        ConfigSpec(level, _features(FINE_TYPES if level == "fine" else COARSE_TYPES),
                   {s: (lambda s=s, lv=level: records[lv][s]) for s in GMNER_SPLITS},
                   description=f"Twitter-FMNERG, {level} types ({51 if level == 'fine' else 8}).",
                   default=level == configs[0], rows_per_shard=rows_per_shard)
        for level in configs
    ]  # fmt: skip
    counts = {lv: {s2: len(records[lv][s]) for s, s2 in zip(GMNER_SPLITS, ("train", "validation", "test"))}
              for lv in configs}  # fmt: skip
    table = "\n".join(
        f"| `{c}` | " + " | ".join(str(v) for v in n.values()) + " |" for c, n in counts.items()
    )
    body = f"""
# Twitter-FMNERG

Fine-grained grounded multimodal NER (Wang et al., ACM MM 2023): the Twitter-GMNER v2 tweets with 8 coarse and
51 fine entity types, and Twitter-GMNER's boxes. Built by {_card.BUILT_BY} from NUSTM/FMNERG's `txt_fine`.

| config | train | validation | test |
|---|---|---|---|
{table}

- `fine` (default): `type` is one of the 51 fine types (`athlete`, `sports_team`, `city` ...);
- `coarse`: `type` is one of the 8 coarse types (person, organization, location, building, event, product, art,
  other). Every entity carries both levels as strings: `coarse_type`, `fine_type`.

Scores: `riveg evaluate --dataset DIR --config fine` (fine GMNER F1), `--level coarse` (a fine model's predictions
scored on the coarse types), `--protocol fmnerg` (the paper's own scoring; docs/guides/metrics.md in riveg-hf).

## Citation

```bibtex
{CITE_FMNERG}
{_card.CITE_GMNER}
```

{_card.LICENSE_NOTE}
"""
    card_data = {"pretty_name": "Twitter-FMNERG", "language": ["en"], "license": "other",
                 "task_categories": ["token-classification", "object-detection"],
                 "tags": ["grounded-mner", "fmnerg", "fine-grained", "multimodal", "twitter"],
                 "size_categories": ["1K<n<10K"]}  # fmt: skip
    sources = {"raw": str(raw), "xml": str(xml), "images": str(images) if images else None}
    return write_build(out, specs, card_body=body, card_data=card_data, overwrite=overwrite, report=report, t0=t0,
                       sources=sources)  # fmt: skip
