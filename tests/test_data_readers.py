"""Readers and alignment on small files the tests write: every bad input named in the issue."""

import json

import pytest

from riveg_hf.data import (
    AnnotationError,
    CoNLLFormatError,
    InvalidIdError,
    MaskFileError,
    Report,
    VOCObject,
    align_objects,
    bio_tags,
    read_captions,
    read_conll,
    read_llm_knowledge,
    read_mask_file,
    read_voc,
    safe_child,
    tags_to_spans,
)
from riveg_hf.masks import decode_rle

from .helpers import voc_xml, write_labelme

TAGS = bio_tags(["PER", "LOC", "ORG", "OTHER"])


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_conll_reads_tweets(tmp_path):
    p = write(tmp_path, "a.txt", "IMGID:1\nObama\tB-PER\nin\tO\nParis\tB-LOC\n\nIMGID:O_2\nhi\tO\n")
    sents = read_conll(p, allowed_tags=TAGS)
    assert [(s.id, s.tokens, s.tags) for s in sents] == [
        ("1", ["Obama", "in", "Paris"], ["B-PER", "O", "B-LOC"]),
        ("O_2", ["hi"], ["O"]),
    ]
    assert tags_to_spans(sents[0].tags) == [(0, 1, "PER"), (2, 3, "LOC")]


def test_conll_wrong_columns_names_file_and_line(tmp_path):
    p = write(tmp_path, "a.txt", "IMGID:1\nObama\tB-PER\textra\tcol\n")
    with pytest.raises(CoNLLFormatError, match=r"a.txt:2: expected 2 columns"):
        read_conll(p, allowed_tags=TAGS)


def test_conll_unknown_tag_lists_valid_tags(tmp_path):
    p = write(tmp_path, "a.txt", "IMGID:1\nObama\tB-PERSON\n")
    with pytest.raises(CoNLLFormatError, match=r"a.txt:2: unknown tag 'B-PERSON'.*B-PER"):
        read_conll(p, allowed_tags=TAGS)


def test_orphan_i_policies():
    tags = ["O", "I-PER", "I-PER", "O", "B-LOC", "I-ORG"]
    rep = Report()
    assert tags_to_spans(tags, report=rep) == [(4, 5, "LOC")]
    assert rep["orphan_i_tag"] == 3  # both I-PER tokens (read as O) and the I-ORG after B-LOC
    assert tags_to_spans(tags, orphan_i="begin") == [(1, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]
    with pytest.raises(CoNLLFormatError, match="without a preceding B-PER"):
        tags_to_spans(tags, orphan_i="error", where="x")


def test_path_traversal_id_is_rejected_and_others_kept(tmp_path):
    p = write(tmp_path, "a.txt", "IMGID:../../etc/passwd\nx\tO\n\nIMGID:2\ny\tB-ORG\n")
    rep = Report()
    sents = read_conll(p, allowed_tags=TAGS, report=rep)
    assert [s.id for s in sents] == ["2"]
    assert rep["rejected_id"] == 1 and "../../etc/passwd" in rep.messages["rejected_id"][0]
    with pytest.raises(InvalidIdError):
        safe_child(tmp_path, "../../etc/passwd", ".xml")
    with pytest.raises(InvalidIdError):
        safe_child(tmp_path, "a/b", ".xml")
    assert safe_child(tmp_path, "O_12", ".xml") == tmp_path / "O_12.xml"


def test_duplicate_ids_reported_first_kept(tmp_path):
    p = write(tmp_path, "a.txt", "IMGID:7\nx\tO\n\nIMGID:7\ny\tO\n")
    rep = Report()
    sents = read_conll(p, allowed_tags=TAGS, report=rep)
    assert [s.tokens for s in sents] == [["x"]]
    assert rep["duplicate_id"] == 1


def test_token_before_imgid_is_an_error(tmp_path):
    p = write(tmp_path, "a.txt", "x\tO\n")
    with pytest.raises(CoNLLFormatError, match="before any 'IMGID:<id>'"):
        read_conll(p)


def test_llm_knowledge_reader(tmp_path):
    p = write(
        tmp_path,
        "k.txt",
        "Obama\tB-PER\nspeaks\tO\n<EOS>\tX\nBarack\tX\n\tX\nObama\tX\n\nhi\tO\n<EOS>\tX\nnone\tX\n",
    )
    sents = read_llm_knowledge(p, allowed_tags=TAGS)
    assert sents[0].tokens == ["Obama", "speaks"] and sents[0].knowledge == ["Barack", "Obama"]
    assert sents[1].knowledge == ["none"]
    bad = write(tmp_path, "k2.txt", "Obama\tB-PER\n<EOS>\tX\nBarack\tB-PER\n")
    with pytest.raises(CoNLLFormatError, match="must be tagged X"):
        read_llm_knowledge(bad)


def test_captions_multiline(tmp_path):
    p = write(tmp_path, "c.txt", "imgid:1###A dog.\n\nOn grass.\nimgid:O_2###A cat.\n")
    assert read_captions(p) == {"1": "A dog.\n\nOn grass.", "O_2": "A cat."}


def test_voc_reads_and_repairs_boxes(tmp_path):
    p = write(tmp_path, "1.xml", voc_xml(100, 50, [("Obama", [10, 5, 40, 30]), ("Paris", [90, 40, 80, 120])]))
    rep = Report()
    ann = read_voc(p, rep)
    assert (ann.width, ann.height) == (100, 50)
    assert ann.objects[0].box == [10, 5, 40, 30]
    assert ann.objects[1].box == [80, 40, 90, 50]  # xmax < xmin swapped, ymax clipped to the height
    assert rep["box_repaired"] == 1


def test_voc_not_well_formed(tmp_path):
    p = write(tmp_path, "1.xml", "<annotation><object><name>x</name></annotation")
    with pytest.raises(AnnotationError, match="1.xml: not well-formed XML"):
        read_voc(p)


def test_voc_refuses_entity_declarations(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        "<annotation><object><name>&lol2;</name></object></annotation>"
    )
    p = write(tmp_path, "1.xml", bomb)
    with pytest.raises(AnnotationError, match="DOCTYPE or entities"):
        read_voc(p)
    ext = (
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<annotation><object><name>&x;</name></object></annotation>"
    )
    with pytest.raises(AnnotationError, match="refused"):
        read_voc(write(tmp_path, "2.xml", ext))


def test_voc_object_without_coordinates_is_reported(tmp_path):
    p = write(
        tmp_path,
        "1.xml",
        "<annotation><object><name>A</name><bndbox><xmin>x</xmin></bndbox></object>"
        "<object><name>B</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>"
        "</bndbox></object></annotation>",
    )
    rep = Report()
    ann = read_voc(p, rep)
    assert [o.name for o in ann.objects] == ["B"] and rep["object_bad_box"] == 1


def test_alignment_passes():
    tokens = ["LionelMessi", "and", "Westbrook", "met", "Trump", "and", "Trump", "at", "Nike"]
    spans = [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "PER"), (6, 7, "PER"), (8, 9, "ORG")]
    objs = [
        VOCObject("Lionel Messi", [0, 0, 1, 1]),
        VOCObject("Westbroo", [1, 1, 2, 2]),
        VOCObject("Trump", [2, 2, 3, 3]),
        VOCObject("JJ Abrams", [3, 3, 4, 4]),
    ]
    res = align_objects(tokens, spans, objs)
    assert res.boxes == [[[0, 0, 1, 1]], [[1, 1, 2, 2]], [[2, 2, 3, 3]], [[2, 2, 3, 3]], []]
    assert res.how[0] == ["normalized"] and res.how[1] == ["fuzzy"] and res.how[2] == ["exact"]
    assert [o.name for o in res.unmatched] == ["JJ Abrams"]
    exact_only = align_objects(tokens, spans, objs, passes=("exact",))
    assert [o.name for o in exact_only.unmatched] == ["Lionel Messi", "Westbroo", "JJ Abrams"]


def test_alignment_fuzzy_ties_are_not_guessed():
    tokens = ["Jensen", "and", "Jenset"]  # "Jense" is one edit from both
    res = align_objects(tokens, [(0, 1, "PER"), (2, 3, "PER")], [VOCObject("Jense", [0, 0, 1, 1])])
    assert res.boxes == [[], []] and len(res.unmatched) == 1


def test_labelme_and_coco_mask_files(tmp_path):
    lm = tmp_path / "1.json"
    write_labelme(
        lm, 10, 8, [("Obama", "rectangle", [[2, 1], [6, 5]]), ("Paris", "polygon", [[0, 0], [4, 0], [0, 4]])]
    )
    h, w, objs = read_mask_file(lm)
    assert (h, w) == (8, 10) and [o.label for o in objs] == ["Obama", "Paris"]
    m = decode_rle(objs[0].rle)
    assert m.shape == (8, 10) and m[2, 3] and not m[7, 9]
    coco = tmp_path / "2.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "height": 8, "width": 10}],
                "categories": [{"id": 3, "name": "Obama"}],
                "annotations": [
                    {"category_id": 3, "segmentation": [[2, 1, 6, 1, 6, 5, 2, 5]]},
                    {"label": "Paris", "segmentation": objs[1].rle},
                ],
            }
        )
    )
    h2, w2, objs2 = read_mask_file(coco)
    assert (h2, w2) == (8, 10) and [o.label for o in objs2] == ["Obama", "Paris"]
    assert (decode_rle(objs2[1].rle) == decode_rle(objs[1].rle)).all()


def test_unknown_mask_file_names_the_file(tmp_path):
    p = tmp_path / "3.json"
    p.write_text(json.dumps({"objects": []}))
    with pytest.raises(MaskFileError, match=r"3.json: unrecognised mask file.*LabelMe.*COCO"):
        read_mask_file(p)
    q = tmp_path / "4.json"
    q.write_text("{not json")
    with pytest.raises(MaskFileError, match="4.json: not valid JSON"):
        read_mask_file(q)
