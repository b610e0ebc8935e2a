"""Readers for the CoNLL files of Twitter-GMNER / Twitter-2015 / Twitter-2017 and RiVEG's
LLM-knowledge files, and BIO <-> span conversion.

Format (all three releases): a line ``IMGID:<id>`` starts a tweet, then one
``token<TAB>tag`` per line, a blank line between tweets. Tags are BIO over the entity
types. RiVEG's LLM-knowledge files have no ``IMGID`` lines; after the tweet's tokens comes
a token ``<EOS>`` and then the LLM-written knowledge, one word per line, tagged ``X``.

Spans are ``(start, end, type)`` in **token offsets, end exclusive**.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ids import InvalidIdError, validate_id
from .report import Report

__all__ = [
    "CoNLLFormatError",
    "Sentence",
    "bio_tags",
    "read_captions",
    "read_conll",
    "read_llm_knowledge",
    "spans_to_tags",
    "tags_to_spans",
]

ORPHAN_POLICIES = ("skip", "begin", "error")


class CoNLLFormatError(ValueError):
    """A malformed CoNLL line; the message names the file, the line number and the fix."""


@dataclass
class Sentence:
    """One tweet: its id (``None`` in files without ``IMGID`` lines), tokens and BIO tags."""

    id: str | None
    tokens: list[str]
    tags: list[str]
    line: int = 0
    knowledge: list[str] | None = None
    extra: dict = field(default_factory=dict)


def bio_tags(types: Sequence[str]) -> list[str]:
    """``["PER", "LOC"]`` -> ``["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]``."""
    out = ["O"]
    for t in types:
        out += [f"B-{t}", f"I-{t}"]
    return out


def tags_to_spans(
    tags: Sequence[str], *, orphan_i: str = "skip", where: str = "", report: Report | None = None
) -> list[tuple[int, int, str]]:
    """BIO tags -> ``[(start, end, type)]`` (end exclusive).

    An ``I-X`` that does not continue a ``B-X``/``I-X`` (an "orphan") is handled by
    ``orphan_i``: ``"skip"`` (default) reads it as ``O`` and reports it -- this is how the
    published Twitter-GMNER counts were made (v1: 11778 train entities); ``"begin"`` starts
    a new entity, as conlleval does; ``"error"`` raises.

    >>> tags_to_spans(["B-PER", "I-PER", "O", "B-LOC"])
    [(0, 2, 'PER'), (3, 4, 'LOC')]
    >>> tags_to_spans(["O", "I-ORG"], orphan_i="begin")
    [(1, 2, 'ORG')]
    """
    if orphan_i not in ORPHAN_POLICIES:
        raise ValueError(f"orphan_i must be one of {ORPHAN_POLICIES}, got {orphan_i!r}")
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    cur: str | None = None
    for i, tag in enumerate(tags):
        if tag == "O" or tag == "X":
            if start is not None:
                spans.append((start, i, cur))
            start, cur = None, None
            continue
        prefix, _, typ = tag.partition("-")
        if prefix == "B":
            if start is not None:
                spans.append((start, i, cur))
            start, cur = i, typ
        elif prefix == "I":
            if start is not None and cur == typ:
                continue
            if start is not None:
                spans.append((start, i, cur))
                start, cur = None, None
            if orphan_i == "error":
                raise CoNLLFormatError(
                    f"{where}: token {i} has tag {tag} without a preceding B-{typ} or I-{typ}."
                )
            if report is not None:
                report.add("orphan_i_tag", f"{where}: token {i} tagged {tag} without B-{typ} ({orphan_i})")
            if orphan_i == "begin":
                start, cur = i, typ
        else:
            raise CoNLLFormatError(
                f"{where}: token {i} has tag {tag!r}, which is not O, B-<type> or I-<type>."
            )
    if start is not None:
        spans.append((start, len(tags), cur))
    return spans


def spans_to_tags(n_tokens: int, spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """``[(start, end, type)]`` -> BIO tags of length ``n_tokens``."""
    tags = ["O"] * n_tokens
    for s, e, t in spans:
        if not 0 <= s < e <= n_tokens:
            raise ValueError(f"span ({s}, {e}) is outside a sentence of {n_tokens} tokens")
        tags[s] = f"B-{t}"
        for i in range(s + 1, e):
            tags[i] = f"I-{t}"
    return tags


_ASCII_SPACE = " \t\r\n\f\v"


def _text_lines(path: str):
    """``(line number, line without its newline)``; a UTF-8 BOM is skipped, an undecodable byte names its line."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise CoNLLFormatError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1}); "
                    "re-save the file as UTF-8."
                ) from None
            yield lineno, line.rstrip("\r\n")


def _split_columns(
    line: str, path: str, lineno: int, columns: int = 2, tag_column: int = 1
) -> tuple[str, str]:
    parts = [p.strip(_ASCII_SPACE) for p in line.split("\t")]
    if len(parts) != columns:
        parts = line.split()
    if len(parts) != columns:
        want = "'token<TAB>tag'" if columns == 2 else "'token<TAB>coarse tag<TAB>fine tag'"
        raise CoNLLFormatError(
            f"{path}:{lineno}: expected {columns} columns {want}, got {len(parts)} in {line!r}. "
            "Each token line must hold exactly one token and its BIO tag(s), separated by tabs."
        )
    return parts[0], parts[tag_column]


def read_conll(
    path: str | Path,
    *,
    allowed_tags: Sequence[str] | None = None,
    type_map: Mapping[str, str] | None = None,
    has_ids: bool = True,
    report: Report | None = None,
    columns: int = 2,
    tag_column: int = 1,
) -> list[Sentence]:
    """Read a CoNLL file with ``IMGID:`` lines into :class:`Sentence` objects.

    ``columns`` / ``tag_column``: Twitter-FMNERG's files have three (token, coarse tag, fine tag).

    * ``allowed_tags`` -- the tag set (e.g. :func:`bio_tags` of the types, plus ``X`` for
      knowledge words); a tag outside it raises :class:`CoNLLFormatError` listing the set.
    * ``type_map`` -- rename entity types while reading (``{"MISC": "OTHER"}``); renamed
      tags are counted in ``report``.
    * ids are validated (:func:`~riveg_hf.data.ids.validate_id`): a tweet with an id such as
      ``../../etc/passwd`` is skipped and reported, and so is a duplicate id (the first wins).
    """
    path = str(path)
    report = report if report is not None else Report()
    allowed = set(allowed_tags) if allowed_tags is not None else None
    sentences: list[Sentence] = []
    seen: set[str] = set()
    cur: Sentence | None = None
    skip_current = False

    def close():
        nonlocal cur
        if cur is not None and not skip_current:
            if cur.tokens:
                sentences.append(cur)
            elif has_ids:
                report.add("empty_tweet", f"{path}:{cur.line}: tweet {cur.id} has no tokens (skipped)")
        cur = None

    for lineno, line in _text_lines(path):
        if has_ids and line.startswith("IMGID:"):
            close()
            example_id = line[len("IMGID:") :].strip()
            skip_current = False
            try:
                validate_id(example_id, f"{path}:{lineno}")
            except InvalidIdError as err:
                report.add("rejected_id", str(err))
                skip_current = True
            else:
                if example_id in seen:
                    report.add("duplicate_id", f"{path}:{lineno}: id {example_id} seen before (skipped)")
                    skip_current = True
                seen.add(example_id)
            cur = Sentence(id=example_id, tokens=[], tags=[], line=lineno)
            continue
        if not line.strip():
            if not has_ids:
                close()
            continue
        if cur is None:
            if has_ids:
                raise CoNLLFormatError(
                    f"{path}:{lineno}: token line before any 'IMGID:<id>' line: {line!r}. "
                    "Each tweet must start with a line IMGID:<id>."
                )
            cur = Sentence(id=None, tokens=[], tags=[], line=lineno)
        token, tag = _split_columns(line, path, lineno, columns, tag_column)
        if token == "" or (tag == "X" and not token.strip()):
            if tag == "X":  # an empty knowledge word (RiVEG's files have a few): nothing to keep
                report.count("empty_knowledge_word")
                continue
            raise CoNLLFormatError(
                f"{path}:{lineno}: empty token with tag {tag!r} in {line!r}; every token line needs a token."
            )
        if type_map and tag[:2] in ("B-", "I-") and tag[2:] in type_map:
            report.count("renamed_type_tag")
            tag = tag[:2] + type_map[tag[2:]]
        if allowed is not None and tag not in allowed:
            raise CoNLLFormatError(
                f"{path}:{lineno}: unknown tag {tag!r} for token {token!r}; expected one of {sorted(allowed)}."
            )
        cur.tokens.append(token)
        cur.tags.append(tag)
    close()
    return sentences


def read_llm_knowledge(
    path: str | Path, *, allowed_tags: Sequence[str] | None = None, report: Report | None = None
) -> list[Sentence]:
    """Read RiVEG/PGIM's LLM-knowledge CoNLL: tweet tokens, ``<EOS>``, then ``X``-tagged knowledge.

    Returns one :class:`Sentence` per tweet (in file order, ``id=None``) with ``tokens`` /
    ``tags`` of the tweet and ``knowledge`` the list of knowledge words.
    """
    path = str(path)
    allowed = set(allowed_tags) | {"X"} if allowed_tags is not None else None
    raw = read_conll(path, allowed_tags=allowed, has_ids=False, report=report)
    out = []
    for s in raw:
        try:
            eos = s.tokens.index("<EOS>")
        except ValueError:
            if report is not None:
                report.add("knowledge_without_eos", f"{path}:{s.line}: tweet without an <EOS> token")
            eos = len(s.tokens)
        tokens, tags = s.tokens[:eos], s.tags[:eos]
        bad = [t for t in tags if t == "X"]
        if bad:
            raise CoNLLFormatError(f"{path}:{s.line}: tweet tokens before <EOS> must not be tagged X.")
        knowledge = s.tokens[eos + 1 :]
        labelled = [t for t in s.tags[eos + 1 :] if t != "X"]
        if labelled:
            raise CoNLLFormatError(
                f"{path}:{s.line}: knowledge words after <EOS> must be tagged X (never predicted), got {labelled[:3]}."
            )
        out.append(Sentence(id=None, tokens=tokens, tags=tags, line=s.line, knowledge=knowledge))
    return out


def read_captions(path: str | Path, report: Report | None = None) -> dict[str, str]:
    """Read RiVEG's mPLUG-Owl caption file: records ``imgid:<id>###<caption>`` (caption may span lines)."""
    path = str(path)
    captions: dict[str, str] = {}
    cur_id: str | None = None
    buf: list[str] = []

    def close():
        if cur_id is not None:
            captions[cur_id] = "\n".join(buf).strip()

    for lineno, line in _text_lines(path):
        if line.startswith("imgid:") and "###" in line:
            close()
            head, _, rest = line.partition("###")
            cur_id = head[len("imgid:") :].strip()
            try:
                validate_id(cur_id, f"{path}:{lineno}")
            except InvalidIdError as err:
                if report is not None:
                    report.add("rejected_id", str(err))
                cur_id = None
                buf = []
                continue
            if cur_id in captions and report is not None:
                report.add("duplicate_caption", f"{path}:{lineno}: second caption for {cur_id} (last wins)")
            buf = [rest]
        elif cur_id is not None:
            buf.append(line)
        elif line.strip() and report is not None:
            report.add("caption_text_without_id", f"{path}:{lineno}: text before any imgid: record")
    close()
    return captions
