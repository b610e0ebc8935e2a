"""Shared text of the dataset cards written by the builders."""

from __future__ import annotations

from model_cards import INSTALL_COMMAND, REPOSITORY

#: "Built by riveg-hf" with the project's link, the same in every dataset card.
BUILT_BY = f"[riveg-hf]({REPOSITORY})"

LICENSE_NOTE = (
    "**License and terms.** The annotations are redistributed from the dataset authors' public release for "
    "research use. The tweets and images remain subject to Twitter's (X's) terms and to the copyrights of "
    "their authors and of the original dataset providers; using this dataset means accepting them. Images are "
    "not redistributed here unless the builder was given an images folder you are entitled to use."
)

CITE_GMNER = """@inproceedings{yu-etal-2023-grounded,
  title     = {Grounded Multimodal Named Entity Recognition on Social Media},
  author    = {Yu, Jianfei and Li, Ziyan and Wang, Jieming and Xia, Rui},
  booktitle = {Proceedings of the 61st Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2023}
}"""

CITE_RIVEG = """@inproceedings{li-etal-2024-llms,
  title     = {{LLMs} as Bridges: Reformulating Grounded Multimodal Named Entity Recognition},
  author    = {Li, Jinyuan and Li, Han and Sun, Di and Wang, Jiahao and Zhang, Wenkun and Wang, Zan and Pan, Gang},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2024},
  year      = {2024}
}"""

CITE_PGIM = """@inproceedings{li-etal-2023-prompting,
  title     = {Prompting {ChatGPT} in {MNER}: Enhanced Multimodal Named Entity Recognition with Auxiliary Refined Knowledge},
  author    = {Li, Jinyuan and Li, Han and Pan, Zhuo and Sun, Di and Wang, Jiahao and Zhang, Wenkun and Pan, Gang},
  booktitle = {Findings of the Association for Computational Linguistics: EMNLP 2023},
  year      = {2023}
}"""

CITE_MNER = """@inproceedings{zhang2018adaptive,
  title     = {Adaptive Co-attention Network for Named Entity Recognition in Tweets},
  author    = {Zhang, Qi and Fu, Jinlan and Liu, Xiaoyu and Huang, Xuanjing},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  year      = {2018}
}
@inproceedings{lu-etal-2018-visual,
  title     = {Visual Attention Model for Name Tagging in Multimodal Social Media},
  author    = {Lu, Di and Neves, Leonardo and Carvalho, Vitor and Zhang, Ning and Ji, Heng},
  booktitle = {Proceedings of the 56th Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2018}
}
@inproceedings{yu-etal-2020-improving,
  title     = {Improving Multimodal Named Entity Recognition via Entity Span Detection with Unified Multimodal Transformer},
  author    = {Yu, Jianfei and Jiang, Jing and Yang, Li and Xia, Rui},
  booktitle = {Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics (ACL)},
  year      = {2020}
}"""

FIELDS_GMNER = """| field | type | meaning |
|---|---|---|
| `id` | string | the tweet's image id (`IMGID`); the image file is `<id>.jpg` |
| `tokens` | list of string | the tweet, tokenised as released |
| `ner_tags` | list of ClassLabel | BIO tags over PER, LOC, ORG, OTHER |
| `image` | Image or None | the tweet's image (None when the builder had no images folder) |
| `width`, `height` | int32 or None | image size in pixels (from the XML, or from the image) |
| `caption` | string or None | mPLUG-Owl caption released with RiVEG (background for the LLM) |
| `entities` | list | one item per entity: `text`, `type` (ClassLabel), `start`/`end` (token offsets, end exclusive), `groundable` (an object of the image names it), `boxes` (pixel `[xmin, ymin, xmax, ymax]` in original-image coordinates; empty = not visible) |"""

ALIGNMENT_NOTE = """**How boxes are attached to entities.** An XML object names an entity when its `<name>` equals the
entity's tokens joined by single spaces (*exact*). Objects left over are matched after case folding and
removing non-alphanumeric characters (*normalised*), then by at most one edit per five characters with a
unique best entity (*fuzzy*). Every entity is kept (`groundable=False` when no object names it) and every
object that names no entity is listed in `build_report.json`, never dropped silently. On v2.0 every object
matches exactly, so the groundable flags equal the test gold that the field publishes."""


def usage(repo: str, config: str) -> str:
    return f"""```bash
{INSTALL_COMMAND}
```

```python
from datasets import load_dataset

ds = load_dataset("{repo}", "{config}")          # or load_dataset("path/to/this/folder", "{config}")
ex = ds["test"][0]
ex["tokens"], ex["entities"]
```"""
