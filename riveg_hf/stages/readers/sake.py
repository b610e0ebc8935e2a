"""SAKE (tangjielong928/SAKE, arXiv 2604.20146; checkpoints ``SYSU-AI/SAKE-7B_gmner`` and ``SYSU-AI/SAKE-7B_fmnerg``,
Qwen2.5-VL-7B-Instruct fine-tuned): an agent that may ask for a text search, then an image search, before it
answers ``<answer>[{"entity", "type", "box2d"}]</answer>``.

Everything here follows SAKE's own inference script, ``tangjielong928/SAKE@71417df:
sake_rl/scripts/inference_twitter_gmner.py`` (cited by line):

* **Prompts**: SAKE's prompt files are not shipped with riveg-hf (its repository carries no license that allows
  copying them): ``prompt_dir=`` names the folder of a SAKE checkout that holds them
  (``sake_rl/prompts/Twitter-GMNER-Prompt`` or ``.../Twitter-FMNERG-Prompt``). Their SHA-256 at that commit are
  pinned here: a file that differs is used, with a warning that it is not the prompt the checkpoints were trained
  with. The round-1 prompt is cut at ``**Input Data:**`` and ended as the script does (L754-758, which doubles the
  ``---`` line); the first user turn is that text, the image, then ``"\\n**Original social media post:**\\n"`` and the
  tweet's words joined by spaces (L501, L528-542). No system turn.
* **Image** (``process_image``, L195-227): above 672*672*2 pixels scaled down, below 512*512 scaled up, sizes
  truncated, NEAREST; ``box2d`` is in the pixels of that image and is scaled back by original / sent (L238-269;
  kept as floats here, SAKE truncates to ints).
* **Agent loop** (L459-675): at most three turns; a ``<text_search>[{"query": ...}]`` in turn 1 gets the search
  results and the after-text-search prompt; an ``<image_search>`` (turn 1 or 2) gets the image results and the
  after-image-search prompt, whose answer is final. The first ``<answer>`` block of the last turn is the answer.
  Search (``search=``): ``"none"`` (default: every query gets SAKE's own "nothing found" text, L151-161 of
  ``text_search.py``) or ``"cache"`` with ``search_cache=DIR`` in SAKE's released layout
  (``{DIR}/{text,image}_search/{id}_{kind}_search.json``, a query matched exactly (case-insensitively), else the
  closest by ``difflib`` ratio, as ``text_search.py`` ``_find_best_match`` does). No query leaves the machine.
* **Types**: the GMNER prompt asks for PER / ORG / LOC / MISC; MISC is Twitter-GMNER's OTHER. The FMNERG prompt
  asks for the 51 fine types (kept as given).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from ...data.fmnerg import FINE_TYPES
from ..reader import FoundEntity, JointReader, Reading, ReadRequest, register
from ..registry import Option
from ..tiny import tiny_qwen2_5_vl
from .qwen_vl import read_entity_objects

#: SHA-256 of SAKE's prompt files at commit 71417dfd3948c66cab4c8fbfb8f3ab095c3e2e81
PROMPT_SHA256 = {
    "round_1_user_prompt_1.txt": "fff631365e025c61ba2af0dabceb44308f859da41836553c52a4445bf3319266",
    "round_1_user_prompt_1_fmnerg.txt": "99b4b88b53463aaabfcf28fe36b2952456076f3c83c6a77dd787dfffb21414a9",
    "gmner/after_text_search_prompt_1.txt": "f9e2e76681326d93b667eb60c708f2f2685797547561597136581dc9b7b062d3",
    "gmner/after_image_search_prompt_1.txt": "c60983393dbca86639c7ca193d44f5accc464a804f9dd5e75139787a83d8d37e",
    "fmnerg/after_text_search_prompt_1.txt": "38046782fbdaaa7e5e9510a1a0204e15ba3b0ed90492240358bd3aa45613e601",
    "fmnerg/after_image_search_prompt_1.txt": "e4dd6aeb7944d671575ab30a4a7a8adb7cc617d28f9f982e50fe4c76ae266b8f",
}
MAX_PIXELS = 672 * 672 * 2
MIN_PIXELS = 512 * 512
MAX_TURNS = 3
GMNER_TYPES = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "MISC": "OTHER"}
SEARCHES = ("none", "cache")
#: the most queries of one search turn that are answered (the rest are dropped, said in the trace's note)
MAX_QUERIES = 16
_HEADER = "Here are the image and original social media post for your task:\n"


def sake_resize(image: Image.Image) -> Image.Image:
    """SAKE's ``process_image``: scaled into [512*512, 672*672*2] pixels, sizes truncated, NEAREST, RGB."""
    if image.width * image.height > MAX_PIXELS:
        f = math.sqrt(MAX_PIXELS / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)), resample=Image.Resampling.NEAREST)
    if image.width * image.height < MIN_PIXELS:
        f = math.sqrt(MIN_PIXELS / (image.width * image.height))
        image = image.resize((int(image.width * f), int(image.height * f)), resample=Image.Resampling.NEAREST)
    return image.convert("RGB") if image.mode != "RGB" else image


def tag_content(text: str, tag: str) -> str | None:
    """The first ``<tag>...</tag>`` of ``text``, stripped (SAKE's ``extract_tag_content``), or None."""
    m = re.search(f"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return m.group(1).strip() if m else None


def parse_queries(content: str | None) -> list[str]:
    """SAKE's ``parse_queries_json``: a JSON list (or one value) of ``{"query": ...}`` or strings; [] if not JSON."""
    try:
        value = json.loads(content or "")
    except (ValueError, RecursionError):
        return []
    out = []
    for q in value if isinstance(value, list) else [value]:
        if isinstance(q, str):
            out.append(q)
        elif isinstance(q, dict):
            s = q.get("query")
            if not isinstance(s, str):
                s = next((v for v in q.values() if isinstance(v, str) and v), None)
            if s:
                out.append(s)
    return out


class SearchCache:
    """SAKE's offline search cache (``{root}/{text,image}_search/{id}_{kind}_search.json``), read as its
    ``text_search.py`` / ``image_search.py`` read it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"search_cache {root} is not a folder (SAKE's layout: text_search/, image_search/)"
            )

    def _entries(self, item_id: str, kind: str) -> list[dict]:
        name = (
            f"{Path(str(item_id)).name}_{kind}_search.json"  # an id never becomes a path outside the folder
        )
        path = self.root / f"{kind}_search" / name
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return []
        return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []

    @staticmethod
    def best(query: str, entries: list[dict]) -> dict | None:
        """``_find_best_match``: exact (stripped, lower-cased), else the highest difflib ratio (> 0)."""
        q = query.strip().lower()
        for e in entries:
            if str(e.get("query", "")).strip().lower() == q:
                return e
        best, ratio = None, 0.0
        for e in entries:
            r = difflib.SequenceMatcher(None, q, str(e.get("query", "")).strip().lower()).ratio()
            if r > ratio:
                best, ratio = e, r
        return best

    def text(self, item_id: str, query: str) -> tuple[str, str]:
        e = self.best(query, self._entries(item_id, "text"))
        if e is None:
            return query, no_text_result(query)
        summary = (e.get("result") or {}).get("summary") if isinstance(e.get("result"), dict) else None
        cached = str(e.get("query", query))
        return cached, summary if isinstance(summary, str) else f"No information found for '{cached}'."

    def images(self, item_id: str, query: str, load) -> tuple[str, list[Any]]:
        e = self.best(query, self._entries(item_id, "image"))
        if e is None:
            return query, []
        result = e.get("result") if isinstance(e.get("result"), dict) else {}
        found = []
        for ref in (result.get("images") or [])[:1]:  # top_k = 1, SAKE's default
            rel = ref.get("path") if isinstance(ref, dict) else None
            if not isinstance(rel, str):
                continue
            for cand in (self.root / rel, self.root / "images" / Path(str(item_id)).name / Path(rel).name):
                try:
                    if cand.resolve().is_relative_to(self.root.resolve()) and cand.is_file():
                        found.append(load(cand))
                        break
                except (OSError, ValueError):
                    continue
        return str(e.get("query", query)), found


def no_text_result(query: str) -> str:
    """SAKE's summary when a text search finds nothing (``text_search.py`` L151-161)."""
    return f"[No Cache] No search information found for '{query}'. Please reason with your own knowledge."


@register
class SakeReader(JointReader):
    family = "sake"
    model_types = ("qwen2_5_vl",)
    tiny_builders = {"qwen2_5_vl": tiny_qwen2_5_vl}
    family_options = (
        Option("prompt_dir", None, "path", "SAKE's prompt folder (<SAKE>/sake_rl/prompts/Twitter-GMNER-Prompt)",
               nullable=True),
        Option("search", "none", "choice", "SAKE's searches: none, or answered from search_cache",
               choices=SEARCHES),
        Option("search_cache", None, "path", "SAKE's offline search cache folder (search='cache')", nullable=True),
        Option("return_trace", False, "bool", "keep the agent's turns in the reading"),
    )  # fmt: skip
    default_max_new_tokens = (
        2048  # the script's default (its run script passes 8192; bounded by MAX_NEW_TOKENS)
    )

    def _options_changed(self, names: set[str]) -> None:
        super()._options_changed(names)
        if self.search == "cache":
            if not self.search_cache:
                raise ValueError(
                    "sake reader: search='cache' needs search_cache=DIR (SAKE's cached search folder)"
                )
            self._cache = SearchCache(self.search_cache)
        if not self.prompt_dir:
            raise ValueError(
                "sake reader: SAKE's prompt files are not shipped with riveg-hf (SAKE's repository has no license "
                "that allows copying them). Pass prompt_dir=<SAKE checkout>/sake_rl/prompts/Twitter-GMNER-Prompt "
                "(or Twitter-FMNERG-Prompt for SAKE-7B_fmnerg); git clone https://github.com/tangjielong928/SAKE"
            )
        self.level, self.prompts = load_prompts(self.prompt_dir)

    # ------------------------------------------------------------------ the hooks
    def sent_image(self, image):
        return sake_resize(image)

    def first_turn(self, request: ReadRequest, has_image: bool) -> dict[str, Any]:
        head = self.prompts["round_1"].split("**Input Data:**")[0] + (
            "---\n\n**Input Data:** Here are the image and original social media post for your task:\n"
        )
        content = [{"type": "text", "text": head}]
        if has_image:
            content.append({"type": "image"})
        content.append({"type": "text", "text": "\n**Original social media post:**\n" + words(request.text)})
        return {"role": "user", "content": content}

    def messages(self, request, image):
        return [self.first_turn(request, image is not None)]

    def parse(self, answer, request, sent_size, input_size):
        block = tag_content(answer, "answer")
        if block is None:
            return [], ["SAKE's answer has no <answer> block: no entity read"]
        found, notes = [], []
        for name, type_, value in read_entity_objects(block):
            t = GMNER_TYPES.get(type_) if self.level == "gmner" else (type_ if type_ in FINE_TYPES else None)
            if t is None:
                notes.append(
                    f"{name!r} has the type {type_!r}, not one of SAKE's {self.level} types: left out"
                )
                continue
            box = None
            if value not in (None, [], "") and request.image is not None:
                box = _unscale(value, request.image.size, sent_size)
                if box is None:
                    notes.append(f"{name!r}: box2d {value!r} is not a box inside the image: not visible")
            found.append(FoundEntity(name, t, box))
        return found, notes

    # ------------------------------------------------------------------ the agent loop
    def _read(self, chunk: list[ReadRequest]) -> list[Reading]:
        """Up to three turns per tweet, the tweets still searching generated together at each turn."""
        images = [self.sent_image(r.image) if r.image is not None else None for r in chunk]
        chats = [[self.first_turn(r, im is not None)] for r, im in zip(chunk, images)]
        chat_images: list[list[Any]] = [[im] if im is not None else [] for im in images]
        done: dict[int, tuple[str, list[str]]] = {}
        searched = [set() for _ in chunk]
        active = list(range(len(chunk)))
        for turn in range(1, MAX_TURNS + 1):
            answers = self._generate([chats[i] for i in active], [chat_images[i] for i in active])
            still = []
            for i, (answer, cut, _) in zip(active, answers):
                if answer is None:  # the server failed: no answer at all, the tweet's entities are unknown
                    done[i] = (None, [cut])
                    continue
                notes = [cut] if cut else []
                chats[i].append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
                kind = None
                if tag_content(answer, "answer") is None and turn < MAX_TURNS:
                    if (
                        "text" not in searched[i]
                        and "image" not in searched[i]
                        and tag_content(answer, "text_search") is not None
                    ):
                        kind = "text"
                    elif "image" not in searched[i] and tag_content(answer, "image_search") is not None:
                        kind = "image"
                queries = parse_queries(tag_content(answer, f"{kind}_search")) if kind else []
                if not kind or not queries:
                    done[i] = (answer, notes)
                    continue
                searched[i].add(kind)
                turn_text, turn_images = self._search_turn(kind, queries[:MAX_QUERIES], chunk[i])
                content = _interleave(turn_text, len(turn_images) + (1 if images[i] is not None else 0))
                chats[i].append({"role": "user", "content": content})
                chat_images[i].extend(turn_images + ([images[i]] if images[i] is not None else []))
                still.append(i)
            active = still
            if not active:
                break
        readings = []
        for i, r in enumerate(chunk):
            answer, notes = done[i]
            if answer is None:
                readings.append(Reading([], [], None, error=notes[0]))
                continue
            sent = images[i].size if images[i] is not None else None
            reading = self.reading(answer, r, sent, None, notes)
            if self.return_trace:
                reading.notes.append("trace: " + json.dumps(_trace(chats[i]), ensure_ascii=False))
            readings.append(reading)
        return readings

    def _search_turn(self, kind: str, queries: list[str], request: ReadRequest) -> tuple[str, list[Any]]:
        """The user turn answering a search (inference script L413-456, L584-597, L653-668), with ``<image>``
        where each image goes, and the images found."""
        found_images: list[Any] = []
        if kind == "text":
            body = "[Text Search Results] Below are the search results for each query:\n"
            for q in queries:
                shown, summary = (
                    self._cache.text(request.id, q) if self.search == "cache" else (q, no_text_result(q))
                )
                body += f"\nQuery: {shown}\nSummary: {summary}\n"
            after = self.prompts["after_text"]
        else:
            body = "[Image Search Results] Below are the visual references for each query:\n"
            for q in queries:
                shown, imgs = (
                    self._cache.images(request.id, q, _load_reference) if self.search == "cache" else (q, [])
                )
                if imgs:
                    body += f"\nQuery: {shown}\nFound {len(imgs)} reference image(s):\n"
                    body += "".join(f"  Image {k}: <image>\n" for k in range(1, len(imgs) + 1))
                    found_images += [sake_resize(im) for im in imgs]
                else:
                    body += f"\nQuery: {shown}\nNo images found.\n"
            after = self.prompts["after_image"]
        image = "<image>\n" if request.image is not None else ""
        return (
            f"<information>{body}</information>\n{_HEADER}{image}{words(request.text)}\n{after}",
            found_images,
        )

    def served_image(self, image):
        """SAKE sends its resized image as it is, JPEG in a data URL (L230-235, L360-363)."""
        import base64
        import io

        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG")
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), image.size


def words(text: str) -> str:
    """The tweet as SAKE gives it: its words joined by single spaces (``" ".join(tokens)``, L501)."""
    return " ".join(text.split())


def load_prompts(folder: str | Path) -> tuple[str, dict[str, str]]:
    """(level, prompts) from a SAKE prompt folder; a file that differs from SAKE's is used with a warning."""
    root = Path(folder)
    if (root / "round_1_user_prompt_1_fmnerg.txt").is_file():
        level, first = "fmnerg", "round_1_user_prompt_1_fmnerg.txt"
    elif (root / "round_1_user_prompt_1.txt").is_file():
        level, first = "gmner", "round_1_user_prompt_1.txt"
    else:
        raise FileNotFoundError(
            f"prompt_dir {folder} holds no round_1_user_prompt_1.txt (nor _fmnerg.txt): point it at "
            "sake_rl/prompts/Twitter-GMNER-Prompt (or Twitter-FMNERG-Prompt) of a SAKE checkout"
        )
    files = {"round_1": (first, first), "after_text": ("after_text_search_prompt_1.txt", None),
             "after_image": ("after_image_search_prompt_1.txt", None)}  # fmt: skip
    prompts = {}
    for key, (name, pin) in files.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"prompt_dir {folder} lacks {name} (SAKE's prompt folder has it)")
        data = path.read_bytes()
        want = PROMPT_SHA256[pin or f"{level}/{name}"]
        if hashlib.sha256(data).hexdigest() != want:
            warnings.warn(
                f"{path} is not SAKE's file at commit 71417df (SHA-256 differs): the checkpoints were trained with "
                "that one; scores may not be comparable",
                stacklevel=3,
            )
        prompts[key] = data.decode("utf-8")
    return level, prompts


def _unscale(value: Any, original: tuple[int, int], sent: tuple[int, int] | None) -> list[float] | None:
    """``box2d`` in the sent image's pixels -> pixel xyxy of the original (SAKE's ``unscale_box2d``)."""
    from ...boxes import box_in_image

    try:
        x0, y0, x1, y1 = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    sx, sy = (original[0] / sent[0], original[1] / sent[1]) if sent else (1.0, 1.0)
    return box_in_image([x0 * sx, y0 * sy, x1 * sx, y1 * sy], *original)


def _interleave(text: str, n_images: int) -> list[dict[str, Any]]:
    """``text`` with ``<image>`` placeholders -> chat content (SAKE's ``build_interleaved_content``); the
    placeholders must be as many as the images."""
    parts = re.split(r"(<image>)", text)
    if sum(p == "<image>" for p in parts) != n_images:
        raise RuntimeError("sake reader: image placeholders and images disagree")  # a bug here, not an input
    return [{"type": "image"} if p == "<image>" else {"type": "text", "text": p} for p in parts if p]


def _load_reference(path: Path) -> Image.Image:
    from ...images import load_image

    return load_image(str(path))


def _trace(chat: list[dict]) -> list[dict]:
    return [
        {"role": m["role"], "text": "".join(c.get("text", "<image>") if c["type"] == "text" else "<image>"
                                              for c in m["content"])}
        for m in chat
    ]  # fmt: skip
