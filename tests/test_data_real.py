"""Measured facts of the real releases in ../shared/data (the counts the issue lists)."""

import pytest
from datasets import load_dataset

from datasets_scripts import twitter_gmner, twitter_mner
from riveg_hf.data import Report, gmner_records

from .helpers import skip_or_fail


def need(path, what):
    """``path`` when present; else skip (user machine) / fail (CI) naming where it comes from."""
    if not path.exists():
        skip_or_fail(f"{path} is missing: {what}")
    return path


V1_HOW = "Twitter-GMNER v1 (the 2023 release before the 07-21 corrections; NUSTM/GMNER's history), as in shared/data"
AUX_HOW = "RiVEG's llm-knowledge and captions (JinYuanLi0012/RiVEG), laid out as shared/data/riveg-aux"
MNER_HOW = "get it with `riveg data download twitter-mner`"

V2 = {
    "tweets": (7000, 1500, 1500),
    "entities": (11779, 2450, 2543),
    "boxes": (5652, 1164, 1242),
    "groundable": (4733, 991, 1046),
}
SPLITS = ("train", "dev", "test")


@pytest.fixture(scope="module")
def v2_records(shared_data):
    out = {}
    for split in SPLITS:
        rep = Report()
        out[split] = (gmner_records(shared_data / "twitter-gmner" / "v2.0", split, report=rep), rep)
    return out


def test_v2_counts(v2_records):
    for i, split in enumerate(SPLITS):
        recs, rep = v2_records[split]
        assert len(recs) == V2["tweets"][i]
        assert sum(len(r["entities"]) for r in recs) == V2["entities"][i]
        assert rep["xml_objects"] == V2["boxes"][i]
        n_groundable = sum(e["groundable"] for r in recs for e in r["entities"])
        assert n_groundable == V2["groundable"][i]
        # every v2.0 object names an entity exactly: nothing normalised, fuzzy or unmatched
        assert rep["aligned_exact"] == V2["boxes"][i]
        assert rep["aligned_normalized"] == rep["aligned_fuzzy"] == rep["unmatched_object"] == 0


def test_v2_exact_alignment_equals_full_alignment(shared_data, v2_records):
    """Whatever the extra passes do for v1 must not change a single v2.0 result."""
    for split in SPLITS:
        exact = gmner_records(shared_data / "twitter-gmner" / "v2.0", split, align_passes=("exact",))
        full, _ = v2_records[split]
        assert [r["entities"] for r in exact] == [r["entities"] for r in full]


def test_v1_counts_and_reported_objects(shared_data):
    expected_entities = (11778, 2450, 2542)
    not_exact = (45, 5, 10)
    for i, split in enumerate(SPLITS):
        rep = Report()
        recs = gmner_records(need(shared_data / "twitter-gmner" / "v1", V1_HOW), split, report=rep)
        assert sum(len(r["entities"]) for r in recs) == expected_entities[i]
        recovered = rep["aligned_normalized"] + rep["aligned_fuzzy"]
        assert recovered + rep["unmatched_object"] == not_exact[i]
        assert rep["unmatched_object"] == len(rep.messages.get("unmatched_object", []))
    # the clear cases the issue names are recovered
    rep = Report()
    recs = gmner_records(shared_data / "twitter-gmner" / "v1", "train", report=rep)
    details = "\n".join(rep.messages["aligned_fuzzy_detail"] + rep.messages["aligned_normalized_detail"])
    assert "'Westbroo' -> entity 'Westbrook'" in details
    rep = Report()
    gmner_records(shared_data / "twitter-gmner" / "v1", "test", report=rep)
    assert "'Lionel Messi' -> entity 'LionelMessi'" in "\n".join(rep.messages["aligned_normalized_detail"])
    # ... and an unrelated name is reported, not attached
    assert "'Nike SNKRS'" in "\n".join(rep.messages["unmatched_object"])


def test_twitter_mner_counts(shared_data, tmp_path):
    res = twitter_mner.build(need(shared_data / "twitter-mner", MNER_HOW), tmp_path / "mner")
    assert res.counts == {
        "twitter2015": {"train": 4000, "validation": 1000, "test": 3257},
        "twitter2017": {"train": 3373, "validation": 723, "test": 723},
    }
    ds = load_dataset(str(tmp_path / "mner"), "twitter2017")
    assert ds["train"].features["entities"].feature["type"].names == ["PER", "LOC", "ORG", "OTHER"]
    assert res.report["renamed_type_tag"] > 0  # MISC -> OTHER, counted


def test_build_round_trip(shared_data, tmp_path):
    """build -> load_dataset(DIR) -> the entities and boxes equal what the readers produced."""
    root = shared_data / "twitter-gmner" / "v2.0"
    res = twitter_gmner.build(
        root,
        tmp_path / "gm",
        knowledge=need(shared_data / "riveg-aux" / "llm-knowledge", AUX_HOW),
        captions=need(shared_data / "riveg-aux" / "captions", AUX_HOW),
    )
    assert res.counts["gmner"] == {"train": 7000, "validation": 1500, "test": 1500}
    ds = load_dataset(str(tmp_path / "gm"), "gmner")
    names = ds["test"].features["entities"].feature["type"].names
    recs = gmner_records(root, "test")
    assert ds["test"]["id"] == [r["id"] for r in recs]
    for row, rec in zip(ds["test"], recs):
        got = [{**e, "type": names[e["type"]]} for e in row["entities"]]
        assert got == rec["entities"]
        assert row["image"] is None
    know = load_dataset(str(tmp_path / "gm"), "mner_llm_knowledge")
    assert len(know["train"]) == 7000 and all(len(k) > 0 for k in know["validation"]["knowledge"][:50])
    assert sum(c is not None for c in ds["train"]["caption"]) == 6999  # one caption is missing upstream
