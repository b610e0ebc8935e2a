"""An evaluation report: one self-contained HTML page that shows where a GMNER / SMNER system goes wrong.

>>> from riveg_hf.report import write_report
>>> write_report(predictions, references, "report", texts=tokens, images=images)  # doctest: +SKIP

``riveg evaluate --predictions P --dataset D --report DIR`` writes the same page for a predictions file and a
built dataset. ``DIR/index.html`` needs no network: the style is inline, the thumbnails are JPEG files in
``DIR/img/`` referenced by relative paths, and a Content-Security-Policy forbids every script and remote load.
Every text of the input (tweets, entity strings, descriptions, ids) is HTML-escaped.

The page shows:

* the scores (MNER, EEG, GMNER or SMNER precision / recall / F1) under each protocol asked;
* P / R / F1 per type, for groundable vs not-groundable gold, and per number of gold entities in a tweet;
* the error classes (:data:`ERROR_CLASSES`), counted and linked to examples in the gallery;
* a histogram of the IoU of matched regions;
* a gallery of the worst tweets (most errors first, capped): the image with gold (solid green) and predicted
  (dashed magenta) boxes and masks, the text with gold and predicted spans coloured by type, each entity's
  region, scores, description and verdict.

**One matching.** The error classes come from :func:`match_entities`, which reads the inputs with the metric's
own readers (:mod:`riveg_hf.metrics.inputs`) and runs the metric's one-to-one passes of
:mod:`riveg_hf.metrics.core` (for each prediction, in order, the first not-yet-matched gold entity with the same
span -- and type, and right region, as the metric needs); :func:`write_report` checks that its counts of correct
entities, of evaluated regions and their mean IoU equal the metric's before it writes anything. Each false
positive falls in exactly one prediction class, tried in this order:

* ``spurious``: no gold entity's span overlaps the predicted span;
* ``span``: no gold entity has the predicted span, but one overlaps it (span wrong);
* ``type``: gold entities have the predicted span, none with the predicted type (type wrong);
* ``duplicate``: span and type right, but the gold entity was already taken by another prediction (one-to-one);
* ``missing_region``: span and type right, predicted "not visible" where the gold entity has a box;
* ``extra_region``: span and type right, predicted a box (mask) where the gold entity is not visible;
* ``region_other``: span and type right, region wrong (IoU < threshold with the entity's own gold boxes), but
  IoU >= threshold with another gold entity's box in the same tweet (the box of another entity);
* ``region``: span and type right, region wrong otherwise (box wrong, IoU < threshold).

and ``missed`` counts the gold entities left unmatched that no prediction overlaps (a gold entity that a wrong
prediction overlaps is that prediction's error). Spans overlap when they share a token (character), or are equal.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import BoxError, as_xyxy
from .masks import MaskError, decode_rle, mask_iou
from .metrics.core import IOU_THRESHOLD, _mapped, compute_gmner, compute_smner, match_examples
from .metrics.inputs import (
    METRICS,
    _box_iou,
    _check_iou_threshold,
    _check_type_map,
    _pairs,
)
from .types import ENTITY_TYPES
from .visualize import entity_colors, highlight_spans

__all__ = [
    "ERROR_CLASSES",
    "Analysis",
    "match_entities",
    "write_dataset_report",
    "write_report",
]

#: error class -> (label with boxes, label with masks, definition). Prediction classes first, ``missed`` last.
ERROR_CLASSES: dict[str, tuple[str, str, str]] = {
    "span": (
        "span wrong",
        "span wrong",
        "no gold entity has the predicted span, but one overlaps it",
    ),
    "type": (
        "type wrong",
        "type wrong",
        "a gold entity has the same span, none with the predicted type",
    ),
    "region": (
        "box wrong",
        "mask wrong",
        "span and type right; IoU < {thr} with the entity's gold boxes, and with every other gold entity's",
    ),
    "region_other": (
        "box on another entity",
        "mask on another entity",
        "span and type right; IoU < {thr} with the entity's gold boxes but >= {thr} with another gold entity's "
        "box in the tweet",
    ),
    "missing_region": (
        '"not visible" wrong: predicted not visible',
        '"not visible" wrong: predicted not visible',
        "span and type right; predicted not visible where the gold entity has a box",
    ),
    "extra_region": (
        '"not visible" wrong: predicted a box',
        '"not visible" wrong: predicted a mask',
        "span and type right; predicted a region where the gold entity is not visible",
    ),
    "duplicate": (
        "duplicate",
        "duplicate",
        "span and type right, but the gold entity was already matched to an earlier prediction (one-to-one)",
    ),
    "spurious": ("spurious", "spurious", "no gold entity's span overlaps the predicted span"),
    "missed": ("missed", "missed", "a gold entity left unmatched that no prediction overlaps"),
}

GALLERY_CAP = 200
THUMB_SIDE = 480  # thumbnail pixels (max side)
_SHOW_SIDE = 360  # CSS pixels of the shown image (max side)
_GOLD = "#1a7f37"
_PRED = "#d6336c"


# --------------------------------------------------------------------------- matching
@dataclass
class PredMatch:
    """One prediction: its span / type / region as the metric reads them, what it matched, its error class."""

    index: int
    entity: Mapping[str, Any]
    span: tuple[int, int]
    type: str
    region: Any  # xyxy box or RLE mask (None: not visible)
    matched: dict[str, int | None] = field(default_factory=dict)  # metric -> gold index
    error: str | None = None  # an ERROR_CLASSES key; None when right (GMNER / SMNER)
    gold: int | None = None  # the gold entity it is judged against (same span), if any
    iou: float | None = None  # best IoU against that gold entity's regions
    other: int | None = None  # region_other: the other gold entity


@dataclass
class GoldMatch:
    index: int
    entity: Mapping[str, Any]
    span: tuple[int, int]
    type: str
    regions: list[Any]
    groundable: bool
    matched: int | None = None  # the prediction that got it right (GMNER / SMNER)
    error: str | None = None  # "missed", or None
    overlapped_by: list[int] = field(default_factory=list)


@dataclass
class ExampleMatch:
    position: int
    id: str
    preds: list[PredMatch]
    golds: list[GoldMatch]

    @property
    def errors(self) -> Counter:
        out = Counter(p.error for p in self.preds if p.error)
        out.update(g.error for g in self.golds if g.error)
        return out

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())


@dataclass
class Analysis:
    """The per-entity matching of a whole split (see :func:`match_entities`)."""

    examples: list[ExampleMatch]
    regions: str  # "box" or "mask"
    iou_threshold: float
    correct: dict[str, int]  # "mner", "eeg", "gmner" -> number of correct predictions
    ious: list[float]  # the metric's grounding diagnostics: best IoU of each evaluated region
    region_evaluated: int
    n_pred: int
    n_gold: int

    @property
    def counts(self) -> dict[str, int]:
        """Error class -> count (every class, zeros included)."""
        total = Counter()
        for ex in self.examples:
            total.update(ex.errors)
        return {k: total.get(k, 0) for k in ERROR_CLASSES}


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a == b or (a[0] < b[1] and b[0] < a[1])


def match_entities(
    predictions,
    references,
    *,
    ids: Sequence[str] | None = None,
    type_names: Sequence[str] = ENTITY_TYPES,
    span_keys: tuple[str, str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    regions: str = "box",
) -> Analysis:
    """The metric's per-entity matching and each error's class (module doc), for ``compute_gmner``'s inputs
    (``regions="mask"``: ``compute_smner``'s). Raises :class:`MetricInputError` where the metric would."""
    if regions not in ("box", "mask"):
        raise ValueError(f"regions must be 'box' or 'mask', got {regions!r}")
    iou_threshold = _check_iou_threshold(iou_threshold)
    is_mask = regions == "mask"
    iou_fn = mask_iou if is_mask else _box_iou
    correct = dict.fromkeys(METRICS, 0)
    ious: list[float] = []
    evaluated = n_pred = n_gold = 0
    examples: list[ExampleMatch] = []
    # the metric's own reading, validation and one-to-one matching (riveg_hf.metrics.core.match_examples)
    matched = match_examples(predictions, references, regions=regions, ids=ids, type_names=type_names,
                             span_keys=span_keys, iou_threshold=iou_threshold)  # fmt: skip
    for pos, (ex_id, golds, gold, mps) in enumerate(matched):
        gms = [
            GoldMatch(j, g, e.span, e.type, e.regions, e.groundable)
            for j, (g, e) in enumerate(zip(golds, gold))
        ]
        n_gold += len(gold)
        pms: list[PredMatch] = []
        for mp in mps:
            i, span, typ, region, cands, ok_iou = mp.index, mp.span, mp.type, mp.region, mp.cands, mp.ok_iou
            n_pred += 1
            pm = PredMatch(i, mp.entity, span, typ, region, dict(mp.matched))
            pms.append(pm)
            for metric in METRICS:
                correct[metric] += pm.matched[metric] is not None
            same_type = [k for k, j in enumerate(cands) if gold[j].type == typ]
            if same_type:  # the metric's grounding diagnostics: the first gold entity of this span and type
                k = same_type[0]
                if region is not None and gold[cands[k]].groundable:
                    evaluated += 1
                    if ok_iou[k][1] is not None:
                        ious.append(ok_iou[k][1])
            # the judged gold entity: the one MNER matched, else the first of the same span and type, else of the span
            j = pm.matched["mner"]
            if j is None and cands:
                j = cands[same_type[0]] if same_type else cands[0]
            pm.gold = j
            if j is not None:
                pm.iou = ok_iou[cands.index(j)][1]
            if pm.matched["gmner"] is not None:
                gms[pm.matched["gmner"]].matched = i
                continue
            overlapping = [g.index for g in gms if _overlap(g.span, span)]
            if not cands:
                pm.error = "span" if overlapping else "spurious"
            elif not same_type:
                pm.error = "type"
            elif pm.matched["mner"] is None:
                pm.error = "duplicate"
            else:
                g = gold[j]
                ok = ok_iou[cands.index(j)][0]
                if ok:
                    pm.error = (
                        "duplicate"  # right for its gold entity, which GMNER gave to an earlier prediction
                    )
                elif region is None:
                    pm.error = "missing_region"
                elif not g.groundable:
                    pm.error = "extra_region"
                else:
                    pm.error = "region"
                    for o, og in enumerate(gold):
                        try:
                            hit = (
                                o != j
                                and og.regions
                                and max(iou_fn(region, r) for r in og.regions) >= iou_threshold
                            )
                        except MaskError:  # another entity's mask of another size: not this one's
                            hit = False
                        if hit:
                            pm.error, pm.other = "region_other", o
                            break
        for pm in pms:
            for g in gms:
                if _overlap(g.span, pm.span):
                    g.overlapped_by.append(pm.index)
        for g in gms:
            if g.matched is None and not g.overlapped_by:
                g.error = "missed"
        examples.append(ExampleMatch(pos, str(ex_id), pms, gms))
    return Analysis(
        examples=examples,
        regions=regions,
        iou_threshold=iou_threshold,
        correct=correct,
        ious=ious,
        region_evaluated=evaluated,
        n_pred=n_pred,
        n_gold=n_gold,
    )


def _check_same_as_metric(analysis: Analysis, scores: Mapping[str, Any]) -> None:
    """The report's matching must give the metric's numbers; a difference is a bug, never shown silently."""
    region = "smner" if analysis.regions == "mask" else "gmner"
    problems = []
    if (scores["n_predictions"], scores["n_references"]) != (analysis.n_pred, analysis.n_gold):
        problems.append(
            f"counts {scores['n_predictions']}/{scores['n_references']} vs {analysis.n_pred}/{analysis.n_gold}"
        )
    for metric, key in (("mner", "mner"), ("eeg", "eeg"), ("gmner", region)):
        if analysis.n_pred:
            want = round(scores[f"{key}_precision"] * analysis.n_pred)
        else:
            want = round(scores[f"{key}_recall"] * analysis.n_gold)
        if want != analysis.correct[metric]:
            problems.append(f"{key}: {analysis.correct[metric]} correct vs the metric's {want}")
    diag = scores["diagnostics"]
    name = "mask" if analysis.regions == "mask" else "grounding"
    if diag[f"{name}_evaluated"] != analysis.region_evaluated:
        problems.append(f"{name}_evaluated {analysis.region_evaluated} vs {diag[f'{name}_evaluated']}")
    mean = sum(analysis.ious) / len(analysis.ious) if analysis.ious else 0.0
    if not math.isclose(mean, diag[f"{name}_mean_iou"], rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"mean IoU {mean} vs {diag[f'{name}_mean_iou']}")
    if problems:
        raise RuntimeError(
            "riveg_hf.report: the report's matching disagrees with the metric's ("
            + "; ".join(problems)
            + "); "
            "please report this bug."
        )


# --------------------------------------------------------------------------- inputs
def _lookup(source: Any, key: str, pos: int) -> Any:
    """``source[id]`` (a mapping), ``source[pos]`` (a sequence aligned with the examples), ``source(id)``."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        return source.get(key)
    if callable(source):
        return source(key)
    try:
        return source[pos]
    except (IndexError, KeyError, TypeError):
        return None


class _Text:
    """The tweet shown for one example, and the char offsets of a span in the metric's unit (tokens or chars)."""

    def __init__(self, value: Any):
        self.text: str | None = None
        self.starts: list[int] | None = None
        self.tokens: list[str] | None = None
        if isinstance(value, str):
            self.text = value
        elif isinstance(value, Iterable):
            self.tokens = [str(t) for t in value]
            self.starts, pos = [], 0
            for t in self.tokens:
                self.starts.append(pos)
                pos += len(t) + 1
            self.text = " ".join(self.tokens)

    def chars(self, span: tuple[int, int]) -> tuple[int, int] | None:
        s, e = span
        if self.text is None or e <= s:
            return None
        if self.tokens is None:
            return (s, e) if e <= len(self.text) else None
        if e > len(self.tokens):
            return None
        return self.starts[s], self.starts[e - 1] + len(self.tokens[e - 1])

    def surface(self, span: tuple[int, int], entity: Mapping[str, Any]) -> str:
        c = self.chars(span)
        if c is not None:
            return self.text[c[0] : c[1]]
        for key in ("entity", "text"):
            if isinstance(entity.get(key), str):
                return entity[key]
        return f"[{span[0]}:{span[1]}]"


def _drawable_box(value: Any) -> list[float] | None:
    try:
        return as_xyxy(value)
    except (BoxError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- html helpers
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _hex(c: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c)


def _prf_cells(scores: Mapping[str, Any], key: str, protocol: str | None = None) -> str:
    cells = []
    for m in ("precision", "recall", "f1"):
        v = float(scores[f"{key}_{m}"])
        attr = f' data-protocol="{_e(protocol)}"' if protocol else ""
        cells.append(f'<td class="num"{attr} data-metric="{key}_{m}" data-value="{v!r}">{_pct(v)}</td>')
    return "".join(cells)


_CSS = """
:root{--gold:#1a7f37;--pred:#d6336c;--muted:#57606a;--line:#d0d7de}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1320px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:4px 0 6px}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
.meta{color:var(--muted);margin:2px 0}
nav a{margin-right:12px}
.notice{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px;margin:10px 0}
table{border-collapse:collapse;background:#fff;margin:4px 0 10px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start}
.grid>div{flex:none}
.grid p.def{width:0;min-width:100%}
.grid table{font-size:13px}
.grid td,.grid th{white-space:nowrap;padding:2px 6px}
.def{color:var(--muted);font-size:13px}
.ex a{margin-right:6px;white-space:nowrap}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;margin:14px 0;padding:10px 14px}
.card:target{outline:3px solid #0969da}
.card h3{margin:0 0 8px}
.badge{display:inline-block;background:#ffebe9;color:#82071e;border-radius:10px;padding:0 8px;margin:0 4px 2px 0;
font-size:12px;font-weight:500}
.body{display:flex;gap:16px;align-items:flex-start}
.fig{position:relative;flex:none;line-height:0;border:1px solid var(--line);background:#ddd}
.fig img{width:100%;height:100%;display:block}
.fig svg{position:absolute;left:0;top:0;width:100%;height:100%;overflow:visible}
.noimg{flex:none;width:180px;padding:10px;border:1px dashed #8c959f;color:var(--muted);font-size:13px;background:#f6f8fa}
.side{flex:1;min-width:0}
.tw{margin:2px 0 4px;word-wrap:break-word}
.tw b{display:inline-block;width:76px;color:var(--muted);font-weight:500}
mark{background:color-mix(in srgb,var(--c) 30%,#fff);border-bottom:2px solid var(--c);padding:0 1px;border-radius:2px}
mark.p{border-bottom-style:dashed}
mark sub{font-size:10px;color:var(--muted);margin-left:1px}
table.ents{font-size:13px;width:100%}
table.ents td{padding:2px 6px}
td.reg{white-space:nowrap}
tr.g td:first-child{border-left:4px solid var(--gold)}
tr.p td:first-child{border-left:4px dashed var(--pred)}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.desc{color:var(--muted);font-size:12px;max-width:420px}
.legend span{margin-right:14px}
.swatch{display:inline-block;width:22px;height:0;vertical-align:middle;margin-right:4px}
.sw-g{border-top:3px solid var(--gold)}.sw-p{border-top:3px dashed var(--pred)}
.tsw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle;margin:0 3px 0 8px}
"""  # --gold is _GOLD, --pred is _PRED


# --------------------------------------------------------------------------- the page
def _scores_section(by_protocol: Mapping[str, Mapping[str, Any]], region: str) -> str:
    rows = []
    for name, s in by_protocol.items():
        rows.append(
            f'<tr data-protocol-row="{_e(name)}"><td>{_e(name)}</td>'
            + _prf_cells(s, "mner", name)
            + _prf_cells(s, "eeg", name)
            + _prf_cells(s, region, name)
            + f'<td class="num" data-protocol="{_e(name)}" data-count="n_predictions">{int(s["n_predictions"])}</td>'
            + f'<td class="num" data-protocol="{_e(name)}" data-count="n_references">{int(s["n_references"])}</td>'
            + "</tr>"
        )
    R = region.upper()
    head = (
        "<tr><th rowspan=2>protocol</th><th colspan=3>MNER</th><th colspan=3>EEG</th>"
        f"<th colspan=3>{R}</th><th rowspan=2 class=num>#pred</th><th rowspan=2 class=num>#gold</th></tr>"
        "<tr>" + "<th class=num>P</th><th class=num>R</th><th class=num>F1</th>" * 3 + "</tr>"
    )
    return (
        '<section id="scores"><h2>Scores</h2><p class="def">Percent. MNER: span and type; EEG: span and region; '
        f"{R}: span, type and region (docs/guides/metrics.md). Every breakdown below uses the riveg-hf protocol.</p>"
        f"<table>{head}{''.join(rows)}</table></section>"
    )


def _breakdown_section(
    scores: Mapping[str, Any],
    region: str,
    groups: list[tuple[str, int, int, Mapping[str, Any]]],
    by_count: list[tuple[str, int, int, int, Mapping[str, Any]]],
    type_colors: Mapping[str, str],
) -> str:
    R = region.upper()
    out = ['<section id="breakdown"><h2>Breakdown</h2><div class="grid">']
    rows = []
    for t, d in scores.get("per_type", {}).items():
        rows.append(
            f'<tr data-type="{_e(t)}"><td><span class="tsw" style="background:{type_colors.get(t, "#999")}"></span>'
            f'{_e(t)}</td><td class="num" data-count="n_gold">{d["n_gold"]}</td>'
            f'<td class="num" data-count="n_pred">{d["n_pred"]}</td>'
            + _prf_cells(d, "mner")
            + _prf_cells(d, region)
            + "</tr>"
        )
    out.append(
        "<div><h3>Per type</h3><table><tr><th>type</th><th class=num>#gold</th><th class=num>#pred</th>"
        f"<th class=num>MNER P</th><th class=num>R</th><th class=num>F1</th><th class=num>{R} P</th>"
        f"<th class=num>R</th><th class=num>F1</th></tr>{''.join(rows)}</table>"
        '<p class="def">Precision over the predictions of the type, recall over its gold entities.</p></div>'
    )
    rows = []
    for name, n_gold, n_pred, s in groups:
        rows.append(
            f'<tr data-group="{_e(name)}"><td>{_e(name)}</td><td class="num" data-count="n_gold">{n_gold}</td>'
            f'<td class="num" data-count="n_pred">{n_pred}</td>'
            + _prf_cells(s, "eeg")
            + _prf_cells(s, region)
            + "</tr>"
        )
    what = "mask" if region == "smner" else "box"
    out.append(
        "<div><h3>Groundable vs not-groundable gold</h3><table><tr><th>gold</th><th class=num>#gold</th>"
        f"<th class=num>#pred</th><th class=num>EEG P</th><th class=num>R</th><th class=num>F1</th>"
        f"<th class=num>{R} P</th><th class=num>R</th><th class=num>F1</th></tr>{''.join(rows)}</table>"
        f'<p class="def">The metric on each part: gold entities with / without a box; predictions with / without a '
        f"{what}.</p></div>"
    )
    rows = []
    for name, n_tweets, n_gold, n_pred, s in by_count:
        rows.append(
            f'<tr data-entities="{_e(name)}"><td>{_e(name)}</td><td class="num" data-count="n_tweets">{n_tweets}</td>'
            f'<td class="num" data-count="n_gold">{n_gold}</td><td class="num" data-count="n_pred">{n_pred}</td>'
            + _prf_cells(s, "mner")
            + _prf_cells(s, region)
            + "</tr>"
        )
    out.append(
        "<div><h3>Per number of gold entities in the tweet</h3><table><tr><th>entities</th><th class=num>#tweets</th>"
        "<th class=num>#gold</th><th class=num>#pred</th><th class=num>MNER P</th><th class=num>R</th>"
        f"<th class=num>F1</th><th class=num>{R} P</th><th class=num>R</th><th class=num>F1</th></tr>"
        f"{''.join(rows)}</table></div>"
    )
    out.append("</div></section>")
    return "".join(out)


def _label(key: str, regions: str) -> str:
    return ERROR_CLASSES[key][1 if regions == "mask" else 0]


def _errors_section(analysis: Analysis, in_gallery: Mapping[int, int], thr: float) -> str:
    counts = analysis.counts
    n_fp = analysis.n_pred - analysis.correct["gmner"]
    n_fn = analysis.n_gold - analysis.correct["gmner"]
    region = "SMNER" if analysis.regions == "mask" else "GMNER"
    examples: dict[str, list[ExampleMatch]] = {k: [] for k in ERROR_CLASSES}
    for ex in sorted(
        (e for e in analysis.examples if e.position in in_gallery), key=lambda e: in_gallery[e.position]
    ):
        for k in ex.errors:
            examples[k].append(ex)
    rows = []
    for k, (lab_box, lab_mask, definition) in ERROR_CLASSES.items():
        lab = lab_mask if analysis.regions == "mask" else lab_box
        exs = examples[k]
        links = " ".join(
            f'<a href="#t{ex.position}" title="{_e(ex.id)}">{_e(_short(ex.id, 18))}</a>' for ex in exs[:12]
        )
        more = f" (+{len(exs) - 12} more in the gallery)" if len(exs) > 12 else ""
        if counts[k] and not exs:
            links = '<span class="def">none in the gallery</span>'
        rows.append(
            f'<tr data-error-class="{k}"><td>{_e(lab)}</td><td class="def">{_e(definition.format(thr=thr))}</td>'
            f'<td class="num" data-count="{counts[k]}">{counts[k]}</td><td class="ex">{links}{more}</td></tr>'
        )
    return (
        '<section id="errors"><h2>Errors</h2>'
        f'<p>{region}: <span data-count-name="correct" data-count="{analysis.correct["gmner"]}">'
        f"{analysis.correct['gmner']}</span> right of {analysis.n_pred} predictions and {analysis.n_gold} gold "
        f'entities; <span data-count-name="false_positives" data-count="{n_fp}">{n_fp}</span> false positives '
        f'(each in one prediction class), <span data-count-name="false_negatives" data-count="{n_fn}">{n_fn}</span> '
        "false negatives. The classes come from the metric's own one-to-one matching, tried in the order "
        "spurious, span, type, duplicate, not visible, region; <i>missed</i> counts the unmatched gold entities no "
        "prediction overlaps.</p>"
        "<table><tr><th>class</th><th>definition</th><th class=num>count</th><th>examples (gallery)</th></tr>"
        f"{''.join(rows)}</table></section>"
    )


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _iou_section(analysis: Analysis, region_name: str) -> str:
    bins = [0] * 10
    for v in analysis.ious:
        bins[min(9, max(0, int(v * 10)))] += 1
    w, h, left, bottom, top = 560, 210, 40, 28, 16
    bw = (w - left - 10) / 10
    peak = max(bins) or 1
    parts = [
        f'<svg id="iou-hist" role="img" aria-label="IoU histogram" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'xmlns="http://www.w3.org/2000/svg" style="background:#fff;border:1px solid #d0d7de">'
    ]
    for k, n in enumerate(bins):
        bh = (h - bottom - top) * n / peak
        x = left + k * bw
        y = h - bottom - bh
        lo = k / 10
        color = (
            _GOLD
            if lo >= analysis.iou_threshold
            else ("#bf8700" if lo + 0.1 > analysis.iou_threshold else _PRED)
        )
        parts.append(
            f'<rect data-bin="{k}" data-count="{n}" x="{x + 2:.1f}" y="{y:.1f}" width="{bw - 4:.1f}" '
            f'height="{bh:.1f}" fill="{color}"><title>IoU {lo:.1f}-{lo + 0.1:.1f}: {n}</title></rect>'
        )
        if n:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" font-size="11" text-anchor="middle">{n}</text>'
            )
        parts.append(
            f'<text x="{x:.1f}" y="{h - bottom + 14:.1f}" font-size="11" text-anchor="middle">{lo:.1f}</text>'
        )
    parts.append(
        f'<text x="{left + 10 * bw:.1f}" y="{h - bottom + 14:.1f}" font-size="11" text-anchor="middle">1.0</text>'
    )
    tx = left + analysis.iou_threshold * 10 * bw
    parts.append(
        f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{h - bottom}" stroke="#24292f" stroke-dasharray="4 3"/>'
        f'<text x="{tx + 4:.1f}" y="{top}" font-size="11">threshold {analysis.iou_threshold:g}</text>'
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - 10}" y2="{h - bottom}" stroke="#57606a"/></svg>'
    )
    n = len(analysis.ious)
    mean = sum(analysis.ious) / n if n else 0.0
    return (
        '<section id="iou"><h2>IoU of matched regions</h2>'
        f'<p class="def">The best {region_name} IoU of each prediction whose span and type are right, against its gold '
        f'entity, where both have a {region_name}: <span data-count-name="iou_n" data-count="{n}">{n}</span> regions, '
        f'mean IoU <span data-value="{mean!r}">{mean:.3f}</span> (the metric\'s grounding diagnostics).</p>'
        + "".join(parts)
        + "</section>"
    )


def _spans_html(text: _Text, ents: list[tuple[str, str, tuple[int, int]]], colors, cls: str) -> str:
    """``ents`` = [(tag, type, span)] -> the tweet with the spans marked (visualize.highlight_spans)."""
    spans = []
    for tag, typ, span in ents:
        c = text.chars(span)
        if c is not None:
            spans.append({"entity": tag, "type": typ, "start": c[0], "end": c[1]})
    out = []
    for piece, label in highlight_spans(text.text, spans):
        if label is None:
            out.append(_e(piece))
            continue
        tag, _, typ = label.rpartition(" (")
        typ = typ[:-1]
        out.append(
            f'<mark class="{cls}" style="--c:{colors.get(typ, "#999")}" title="{_e(tag)} {_e(typ)}">'
            f"{_e(piece)}<sub>{_e(tag)}</sub></mark>"
        )
    return "".join(out)


def _region_text(region: Any, boxes: list[list[float]], regions: str) -> str:
    if regions == "mask":
        if region is None:
            return "not visible"
        return "mask" + (f" · box {_fmt_box(boxes[0])}" if boxes else "")
    return _fmt_box(region) if region is not None else "not visible"


def _fmt_box(b: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in b) + "]"


def _scores_text(e: Mapping[str, Any]) -> str:
    out = []
    for key, name in (("score", "score"), ("groundable_score", "groundable"), ("box_score", "box")):
        v = e.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out.append(f"{name} {v:.2f}")
    return " · ".join(out)


def _thumbnail(image: Any, ex: ExampleMatch, regions: str, path: Path) -> tuple[int, int, int, int]:
    """Save the thumbnail (masks blended in) as JPEG; -> (width, height) of the original, then of the thumbnail."""
    from PIL import Image

    from .images import load_image

    img = load_image(image, what=f"image of {ex.id!r}")
    w, h = img.size
    thumb = img.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    if regions == "mask":
        layers = [(m, _GOLD) for g in ex.golds for m in g.regions] + [
            (p.region, _PRED) for p in ex.preds if p.region is not None
        ]
        for rle, color in layers:
            try:
                arr = decode_rle(rle)
            except (MaskError, TypeError, ValueError):
                continue
            if arr.shape != (h, w):
                continue
            m = Image.fromarray(arr.astype(np.uint8) * 110).resize(thumb.size, Image.BILINEAR)
            thumb = Image.composite(Image.new("RGB", thumb.size, color), thumb, m)
    path.parent.mkdir(parents=True, exist_ok=True)
    thumb.save(path, "JPEG", quality=82, optimize=True)
    return w, h, thumb.size[0], thumb.size[1]


def _overlay(ex: ExampleMatch, w: int, h: int, regions: str) -> str:
    fs = max(w, h) / 24
    parts = [f'<svg viewBox="0 0 {w} {h}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">']

    def rect(b, color, dash, tag, tip):
        x0, y0, x1, y1 = b
        parts.append(
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(0.0, x1 - x0):.1f}" height="{max(0.0, y1 - y0):.1f}" '
            f'fill="none" stroke="{color}" stroke-width="3" vector-effect="non-scaling-stroke"'
            + (' stroke-dasharray="7 4"' if dash else "")
            + f"><title>{_e(tip)}</title></rect>"
        )
        ty = min(h, y0 + fs) if dash else max(fs, y0 - 2)  # gold tags above the box, predicted ones inside
        tx = min(max(0.0, x1 - fs * 1.5 if dash else x0 + 2), max(0.0, w - fs * 1.5))
        parts.append(
            f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="{fs:.1f}" font-weight="700" fill="{color}" stroke="#fff" '
            f'stroke-width="{fs / 6:.1f}" paint-order="stroke">{_e(tag)}</text>'
        )

    for g in ex.golds:
        for b in _gold_draw_boxes(g, regions):
            rect(b, _GOLD, False, f"G{g.index + 1}", f"gold G{g.index + 1} {g.type}")
    for p in ex.preds:
        b = p.region if regions == "box" else _drawable_box(p.entity.get("box"))
        if b is not None:
            rect(b, _PRED, True, f"P{p.index + 1}", f"prediction P{p.index + 1} {p.type}")
    parts.append("</svg>")
    return "".join(parts)


def _gold_draw_boxes(g: GoldMatch, regions: str) -> list[list[float]]:
    if regions == "box":
        return list(g.regions)
    out = []
    for b in g.entity.get("boxes") or []:
        d = _drawable_box(b)
        if d is not None:
            out.append(d)
    return out


def _card(ex: ExampleMatch, rank: int, text: _Text, colors, regions: str, figure: str, thr: float) -> str:
    badges = "".join(
        f'<span class="badge" data-error-class="{k}" data-count="{n}">{_e(_label(k, regions))} ×{n}</span>'
        for k, n in sorted(ex.errors.items(), key=lambda kv: list(ERROR_CLASSES).index(kv[0]))
    )
    rows = []
    for g in ex.golds:
        surface = text.surface(g.span, g.entity)
        if g.matched is not None:
            verdict = f'<span class="ok">right (P{g.matched + 1})</span>'
        elif g.error:
            verdict = f'<span class="bad">{_e(_label(g.error, regions))}</span>'
        else:
            verdict = "unmatched: see " + ", ".join(f"P{i + 1}" for i in g.overlapped_by)
        if regions == "mask":
            reg = (
                f"{len(g.regions)} mask(s)"
                if g.regions
                else ("box, no mask" if g.groundable else "not visible")
            )
        else:
            reg = ", ".join(_fmt_box(b) for b in g.regions) if g.regions else "not visible"
        rows.append(
            f'<tr class="g"><td>G{g.index + 1}</td><td>{_e(surface)}</td><td>{_e(g.type)}</td><td class="reg">{_e(reg)}</td>'
            f"<td></td><td></td><td>{verdict}</td></tr>"
        )
    for p in ex.preds:
        surface = text.surface(p.span, p.entity)
        if p.error is None:
            verdict = f'<span class="ok">right (G{p.gold + 1})</span>'
        else:
            extra = (
                f" (G{p.other + 1})"
                if p.other is not None
                else (f" (G{p.gold + 1})" if p.gold is not None else "")
            )
            verdict = (
                f'<span class="bad" data-error-class="{p.error}">{_e(_label(p.error, regions))}{extra}</span>'
            )
        boxes = [b for b in [_drawable_box(p.entity.get("box"))] if b is not None]
        iou = f"{p.iou:.2f}" if p.iou is not None else ""
        desc = p.entity.get("description")
        desc_html = (
            f'<div class="desc">{_e(_short(desc, 400))}</div>' if isinstance(desc, str) and desc else ""
        )
        rows.append(
            f'<tr class="p"><td>P{p.index + 1}</td><td>{_e(surface)}{desc_html}</td><td>{_e(p.type)}</td>'
            f'<td class="reg">{_e(_region_text(p.region, boxes, regions))}</td><td class=num>{iou}</td>'
            f"<td>{_e(_scores_text(p.entity))}</td><td>{verdict}</td></tr>"
        )
    lines = ""
    if text.text is not None:
        gold = [(f"G{g.index + 1}", g.type, g.span) for g in ex.golds]
        pred = [(f"P{p.index + 1}", p.type, p.span) for p in ex.preds]
        lines = (
            f'<div class="tw" data-side="gold"><b>gold</b>{_spans_html(text, gold, colors, "g")}</div>'
            f'<div class="tw" data-side="pred"><b>predicted</b>{_spans_html(text, pred, colors, "p")}</div>'
        )
    else:
        lines = '<div class="def">(no text given for this example)</div>'
    return (
        f'<article class="card" id="t{ex.position}" data-id="{_e(ex.id)}" data-errors="{ex.n_errors}">'
        f"<h3>#{rank} · tweet {_e(ex.id)} · {ex.n_errors} error{'s' if ex.n_errors != 1 else ''}</h3>"
        f"<div>{badges}</div>"
        f'<div class="body">{figure}<div class="side">{lines}'
        '<table class="ents"><tr><th></th><th>entity</th><th>type</th><th>region</th><th class=num>IoU</th>'
        f"<th>scores</th><th>verdict</th></tr>{''.join(rows)}</table></div></div></article>"
    )


def _select_gallery(analysis: Analysis, cap: int) -> list[ExampleMatch]:
    worst = sorted((e for e in analysis.examples if e.n_errors), key=lambda e: (-e.n_errors, e.position))
    chosen: dict[int, ExampleMatch] = {}
    for k in ERROR_CLASSES:  # a few examples of every class first, so each class links to the gallery
        for ex in [e for e in worst if k in e.errors][:3]:
            if len(chosen) < cap:
                chosen[ex.position] = ex
    for ex in worst:
        if len(chosen) >= cap:
            break
        chosen.setdefault(ex.position, ex)
    return sorted(chosen.values(), key=lambda e: (-e.n_errors, e.position))


# --------------------------------------------------------------------------- atomic folder
_MARK = '<meta name="generator" content="riveg-hf report">'


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder; give a new folder for the report")
        index = out / "index.html"
        previous = index.is_file() and _MARK in index.read_text(encoding="utf-8", errors="replace")[:2000]
        if any(out.iterdir()) and not previous:
            raise FileExistsError(
                f"{out} exists and does not hold a riveg-hf report; give a new (or empty) folder, it is replaced"
            )
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# --------------------------------------------------------------------------- entry points
def write_report(
    predictions,
    references,
    out_dir: str | os.PathLike,
    *,
    images: Any = None,
    texts: Any = None,
    ids: Sequence[str] | None = None,
    protocols: Sequence[str] = ("riveg-hf",),
    smner: bool | None = None,
    type_names: Sequence[str] = ENTITY_TYPES,
    span_keys: tuple[str, str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    type_map: Mapping[str, str] | None = None,
    max_gallery: int = GALLERY_CAP,
    title: str = "riveg-hf evaluation report",
    notes: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/index.html`` (and ``out_dir/img/``) for ``compute_gmner``'s inputs; returns the page's path.

    Args:
        predictions, references, ids, type_names, span_keys, iou_threshold, type_map: as
            :func:`riveg_hf.metrics.compute_gmner` takes them (lists per example, or dicts keyed by id).
        images: per example, anything :func:`riveg_hf.images.load_image` reads (a path, a PIL image, bytes, a
            ``datasets`` image dict) or None: a dict keyed by id, a list in example order, or a function
            ``id -> image``. Only the gallery's images are read. None: a report of text and numbers, which says so.
        texts: per example (same forms): the tweet's tokens (a list: spans are token offsets, as in the
            riveg-hf datasets) or its text (a string: spans are character offsets).
        protocols: the scoring protocols to show (``"all"`` for every one); the breakdowns and errors use riveg-hf.
        smner: score masks (``compute_smner``); default: when the references have ``masks``.
        max_gallery: how many tweets the gallery shows at most (the worst first; the page states the cap).
        notes: lines shown at the top (e.g. how many inputs failed).

    The folder is built next to ``out_dir`` and then replaces it; an existing ``out_dir`` must be empty or an
    earlier report.
    """
    t0 = time.perf_counter()
    from .metrics.protocols import PROTOCOLS

    protocols = list(PROTOCOLS) if protocols == "all" or list(protocols) == ["all"] else list(protocols)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)} or 'all'")
    if "riveg-hf" not in protocols:
        protocols.insert(0, "riveg-hf")
    iou_threshold = _check_iou_threshold(iou_threshold)
    if not isinstance(predictions, Mapping):
        predictions = list(
            predictions
        )  # read several times below: a generator would be spent after the first
    if not isinstance(references, Mapping):
        references = list(references)
    pairs = _pairs(predictions, references, ids)
    if smner is None:
        smner = any(isinstance(g, Mapping) and "masks" in g for _, _, golds in pairs for g in (golds or []))
    if smner and protocols != ["riveg-hf"]:
        raise ValueError(
            "the published protocols score boxes (GMNER); SMNER masks have only the riveg-hf protocol"
        )
    region = "smner" if smner else "gmner"
    regions = "mask" if smner else "box"
    fn = compute_smner if smner else compute_gmner
    common = {"type_names": type_names, "span_keys": span_keys, "iou_threshold": iou_threshold}

    # scores: the metric itself, on the inputs as given
    tm = {"type_map": type_map} if type_map else {}
    scores = fn(predictions, references, ids=ids, **common, **tm)
    by_protocol = {"riveg-hf": scores}
    for name in protocols:
        if name != "riveg-hf":
            by_protocol[name] = compute_gmner(predictions, references, ids=ids, protocol=name, **common, **tm)

    # the same inputs, renamed as the metric renames them, keyed by position for the breakdowns
    names = list(type_names)
    m_preds = [p for _, p, _ in pairs]
    m_refs = [g for _, _, g in pairs]
    if type_map:
        checked = _check_type_map(type_map, type_names)
        m_preds, m_refs, names = _mapped(m_preds, m_refs, type_names, checked)
    ex_ids = [ex_id for ex_id, _, _ in pairs]
    analysis = match_entities(
        m_preds, m_refs, ids=ex_ids, type_names=names, span_keys=span_keys, iou_threshold=iou_threshold,
        regions=regions,
    )  # fmt: skip
    _check_same_as_metric(analysis, scores)
    sub = {**common, "type_names": names}

    def subset(keep_ex, keep_gold, keep_pred):
        ps, gs = {}, {}
        for ex in analysis.examples:
            if keep_ex(ex):
                k = str(ex.position)
                ps[k] = [p.entity for p in ex.preds if keep_pred(p)]
                gs[k] = [g.entity for g in ex.golds if keep_gold(g)]
        n_gold = sum(map(len, gs.values()))
        n_pred = sum(map(len, ps.values()))
        return n_gold, n_pred, fn(ps, gs, **sub), len(gs)

    groups = []
    for name, want in (("groundable", True), ("not groundable", False)):
        n_g, n_p, s, _ = subset(lambda ex: True, lambda g, w=want: g.groundable == w,
                                lambda p, w=want: (p.region is not None) == w)  # fmt: skip
        groups.append((name, n_g, n_p, s))
    by_count = []
    sizes = Counter(min(len(ex.golds), 4) for ex in analysis.examples)
    for n in sorted(sizes):
        n_g, n_p, s, n_t = subset(lambda ex, n=n: min(len(ex.golds), 4) == n, lambda g: True, lambda p: True)
        by_count.append(("4+" if n == 4 else str(n), n_t, n_g, n_p, s))

    type_colors = {t: _hex(c) for t, c in zip(names, entity_colors(len(names)))}
    gallery = _select_gallery(analysis, max_gallery)
    in_gallery = {ex.position: r for r, ex in enumerate(gallery, 1)}

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        cards, n_img, missing = [], 0, []
        for rank, ex in enumerate(gallery, 1):
            text = _Text(_lookup(texts, ex.id, ex.position))
            figure = ""
            image = _lookup(images, ex.id, ex.position) if images is not None else None
            if images is not None and image is None:
                missing.append(ex.id)
                figure = '<div class="noimg" data-noimage="1">image not available for this tweet</div>'
            elif image is not None:
                try:
                    w, h, tw, th = _thumbnail(image, ex, regions, tmp / "img" / f"t{ex.position}.jpg")
                except (OSError, ValueError) as err:  # ImageLoadError is a ValueError
                    missing.append(ex.id)
                    figure = (
                        '<div class="noimg" data-noimage="1">image not available for this tweet: '
                        f"{_e(_short(str(err), 200))}</div>"
                    )
                else:
                    n_img += 1
                    scale = _SHOW_SIDE / max(w, h)
                    figure = (
                        f'<div class="fig" style="width:{w * scale:.0f}px;height:{h * scale:.0f}px">'
                        f'<img src="img/t{ex.position}.jpg" alt="image of tweet {_e(ex.id)}" width="{tw}" '
                        f'height="{th}">{_overlay(ex, w, h, regions)}</div>'
                    )
            cards.append(_card(ex, rank, text, type_colors, regions, figure, iou_threshold))

        n_err_tweets = sum(1 for e in analysis.examples if e.n_errors)
        notices = [_e(n) for n in notes]
        if images is None:
            notices.insert(0, "No images were given: this report shows text and numbers only (Twitter images are "
                              "often no longer available).")  # fmt: skip
        elif gallery and n_img == 0:
            notices.insert(0, "No image could be read for any tweet of the gallery: this report shows text and "
                              "numbers only (Twitter images are often no longer available).")  # fmt: skip
        elif missing:
            notices.insert(
                0, f"{len(missing)} of the gallery's {len(gallery)} tweets have no image; each says so."
            )
        notice_html = "".join(f'<div class="notice" data-notice="1">{n}</div>' for n in notices)
        legend = (
            '<p class="legend"><span><span class="swatch sw-g"></span>gold (solid)</span>'
            '<span><span class="swatch sw-p"></span>prediction (dashed)</span> types:'
            + "".join(
                f'<span class="tsw" style="background:{c}"></span>{_e(t)}' for t, c in type_colors.items()
            )
            + "</p>"
        )
        capped = len(gallery) < n_err_tweets
        gallery_html = (
            '<section id="gallery"><h2>Gallery: the worst tweets</h2>'
            f'<p data-gallery-size="{len(gallery)}" data-gallery-cap="{max_gallery}">'
            f"{len(gallery)} of the {n_err_tweets} tweets with an error, most errors first"
            + (f" (capped at {max_gallery}; at most 3 per error class are taken first)" if capped else "")
            + ". G<i>n</i>: gold entity, P<i>n</i>: prediction.</p>"
            + legend
            + "".join(cards)
            + "</section>"
        )
        region_name = "mask" if smner else "box"
        page = "".join(
            [
                '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
                _MARK,
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; "
                "style-src 'unsafe-inline'\">",
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
                f"<h1>{_e(title)}</h1>",
                f'<p class="meta"><span data-count-name="n_examples" data-count="{len(analysis.examples)}">'
                f"{len(analysis.examples)}</span> tweets · "
                f'<span data-count-name="n_gold" data-count="{analysis.n_gold}">{analysis.n_gold}</span> gold entities · '
                f'<span data-count-name="n_pred" data-count="{analysis.n_pred}">{analysis.n_pred}</span> predicted · '
                f"{region.upper()}, region right at IoU &gt;= {iou_threshold:g} · protocols: "
                f"{_e(', '.join(by_protocol))}</p>",
                notice_html,
                '<nav><a href="#scores">scores</a><a href="#breakdown">breakdown</a><a href="#errors">errors</a>'
                '<a href="#iou">IoU</a><a href="#gallery">gallery</a></nav>',
                _scores_section(by_protocol, region),
                _breakdown_section(scores, region, groups, by_count, type_colors),
                _errors_section(analysis, in_gallery, iou_threshold),
                _iou_section(analysis, region_name),
                gallery_html,
                f'<p class="meta">riveg-hf report, built in {time.perf_counter() - t0:.1f} s.</p>',
                "</main></body></html>",
            ]
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def write_dataset_report(
    predictions: Mapping[str, Any],
    dataset,
    out_dir: str | os.PathLike,
    *,
    prediction_images: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """:func:`write_report` for ``{id: entities}`` against a built dataset split (``riveg evaluate --report``):
    the references, types, tokens and (lazily, for the gallery only) images come from ``dataset``; an image the
    dataset lacks is taken from ``prediction_images`` (``{id: path}``, the predictions file's ``image``) when that
    file exists."""
    cols = dataset.column_names
    entity_feature = dataset.features["entities"].feature
    type_names = entity_feature["type"].names
    ds_ids = [str(i) for i in dataset["id"]]
    refs = dict(zip(ds_ids, dataset["entities"]))
    position = {k: n for n, k in enumerate(ds_ids)}
    if "tokens" in cols:
        texts = dict(zip(ds_ids, dataset["tokens"]))
    elif "text" in cols:
        texts = dict(zip(ds_ids, dataset["text"]))
    else:
        texts = None
    images_ds = dataset.select_columns(["image"]) if "image" in cols else None
    fallback = {
        k: v
        for k, v in (prediction_images or {}).items()
        if isinstance(v, (str, os.PathLike)) and os.path.isfile(v)
    }
    images = None
    if images_ds is not None or fallback:

        def images(key: str):
            img = images_ds[position[key]]["image"] if images_ds is not None and key in position else None
            return img if img is not None else fallback.get(key)

    kwargs.setdefault("smner", "masks" in entity_feature)
    return write_report(
        predictions, refs, out_dir, images=images, texts=texts, type_names=type_names, **kwargs
    )
