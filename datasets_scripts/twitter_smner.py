"""Builder for Twitter-SMNER (Li et al., IEEE TMM 2025): config ``smner`` = the GMNER fields + one mask per box.

    riveg data build twitter-smner --raw ../shared/data/twitter-gmner/v2.0 --masks DIR [--images DIR] --out DIR

``--masks`` is the folder of the authors' per-image JSON mask files (``<IMGID>.json``),
LabelMe- or COCO-style (see :mod:`riveg_hf.data.smner_masks`). Masks are paired with the
boxes of the entity they are labelled with (best box IoU); a box without a mask gets
``None`` and every unpaired mask is reported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from riveg_hf.data import (
    GMNER_SPLITS,
    ConfigSpec,
    Report,
    gmner_records,
    smner_features,
)

from . import _card
from ._common import BuildResult, write_build


def _card_body(version: str, counts: dict) -> str:
    rows = " | ".join(str(counts.get(s, "")) for s in ("train", "validation", "test"))
    return f"""
# Twitter-SMNER

Segmented Multimodal Named Entity Recognition on tweets: Twitter-GMNER's entities, types and boxes, plus a
segmentation mask for each box. Built by {_card.BUILT_BY} from the GMNER release `{version}` and the SMNER mask files.

| config | train | validation | test |
|---|---|---|---|
| `smner` | {rows} |

## Usage

{_card.usage("riveg/twitter-smner", "smner")}

Score predictions with `riveg_hf.metrics.compute_smner(predictions, ds["test"]["entities"])`.

## Fields

{_card.FIELDS_GMNER}

Each entity also has `masks`: one COCO RLE `{{"size": [height, width], "counts": str}}` per box, in the same
order as `boxes` (None where the mask files have no mask for that box). Decode with
`riveg_hf.masks.decode_rle` or `pycocotools.mask.decode`.

{_card.ALIGNMENT_NOTE}

## Citation

```bibtex
{_card.CITE_GMNER}
{_card.CITE_RIVEG}
```

The SMNER task and masks come from the journal extension of RiVEG (Li et al., IEEE Transactions on
Multimedia, 2025).

{_card.LICENSE_NOTE}
"""


def build(
    raw: str | Path,
    out: str | Path,
    *,
    masks: str | Path,
    images: str | Path | None = None,
    captions: str | Path | None = None,
    orphan_i: str = "skip",
    rows_per_shard: int | None = None,
    max_image_pixels: int | None = None,
    overwrite: bool = False,
) -> BuildResult:
    """Build the Twitter-SMNER dataset folder (see the module doc)."""
    if masks is None:
        raise ValueError("twitter-smner needs --masks DIR: the folder of per-image <IMGID>.json mask files.")
    t0 = time.perf_counter()
    out = Path(out)
    report = Report()
    records = {
        split: gmner_records(
            raw,
            split,
            images=images,
            captions=captions,
            masks=masks,
            orphan_i=orphan_i,
            max_image_pixels=max_image_pixels,
            report=report,
        )
        for split in GMNER_SPLITS
    }
    if images is not None and rows_per_shard is None:
        rows_per_shard = 1000
    spec = ConfigSpec(
        "smner",
        smner_features(),
        {s: (lambda s=s: records[s]) for s in GMNER_SPLITS},
        description="Twitter-SMNER: Twitter-GMNER with a segmentation mask per box.",
        default=True,
        rows_per_shard=rows_per_shard,
    )
    body_counts = dict(zip(("train", "validation", "test"), (len(records[s]) for s in GMNER_SPLITS)))
    card_data = {
        "pretty_name": "Twitter-SMNER",
        "language": ["en"],
        "license": "other",
        "task_categories": ["token-classification", "image-segmentation"],
        "tags": [
            "segmented-mner",
            "smner",
            "grounded-mner",
            "multimodal",
            "named-entity-recognition",
            "twitter",
        ],
    }
    sources = {"raw": str(raw), "masks": str(masks), "images": str(images) if images else None}
    return write_build(
        out,
        [spec],
        card_body=_card_body(Path(raw).name, body_counts),
        card_data=card_data,
        overwrite=overwrite,
        report=report,
        t0=t0,
        sources=sources,
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--images")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    print(build(a.raw, a.out, masks=a.masks, images=a.images, overwrite=a.overwrite).summary())


if __name__ == "__main__":
    main()
