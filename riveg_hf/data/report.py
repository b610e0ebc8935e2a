"""A build report: everything repaired, skipped or unmatched is counted and listed, never lost."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report"]


@dataclass
class Report:
    """Counts and messages per category (``missing_image``, ``unmatched_object`` ...).

    >>> r = Report()
    >>> r.add("missing_image", "123: no 123.jpg")
    >>> r.counts["missing_image"]
    1
    """

    counts: Counter = field(default_factory=Counter)
    messages: dict[str, list[str]] = field(default_factory=dict)

    def add(self, category: str, message: str, n: int = 1) -> None:
        self.counts[category] += n
        self.messages.setdefault(category, []).append(message)

    def count(self, category: str, n: int = 1) -> None:
        """Count without a message (for large, uninteresting tallies such as boxes read)."""
        self.counts[category] += n

    def extend(self, other: Report, prefix: str = "") -> None:
        for k, v in other.counts.items():
            self.counts[prefix + k] += v
        for k, msgs in other.messages.items():
            self.messages.setdefault(prefix + k, []).extend(msgs)

    def __getitem__(self, category: str) -> int:
        return self.counts[category]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "messages": self.messages}

    def to_json(self, path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2, ensure_ascii=False)

    def summary(self, max_messages: int = 5) -> str:
        lines = []
        for k, v in sorted(self.counts.items()):
            lines.append(f"  {k}: {v}")
            for msg in self.messages.get(k, [])[:max_messages]:
                lines.append(f"      - {msg}")
            extra = len(self.messages.get(k, [])) - max_messages
            if extra > 0:
                lines.append(f"      ... and {extra} more (see the JSON report)")
        return "\n".join(lines) if lines else "  (nothing to report)"
