"""Counting what embedding did, for the ingest summary, the worker's logs and ``/api/v1/stats``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    product_id: int | None
    label: str
    """The sku or row the failure belongs to (a product id when that is all there is)."""
    code: str
    message: str


@dataclass(frozen=True)
class BatchResult:
    """One claimed batch: which rows got vectors, which only turned out unchanged, which failed."""

    embedded_ids: list[int]
    unchanged_ids: list[int]
    failures: list[Failure]

    @property
    def size(self) -> int:
        return len(self.embedded_ids) + len(self.unchanged_ids) + len(self.failures)


@dataclass
class Tally:
    embedded: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, Failure] = field(default_factory=dict)

    def add_batch(self, batch: BatchResult) -> None:
        self.embedded += len(batch.embedded_ids)
        self.unchanged += len(batch.unchanged_ids)
        for failure in batch.failures:
            self.add_failure(failure)

    def add_failure(self, failure: Failure) -> None:
        self.failed += 1
        self.reasons[failure.code] += 1
        self.examples.setdefault(failure.code, failure)

    def merge(self, other: Tally) -> None:
        self.embedded += other.embedded
        self.unchanged += other.unchanged
        self.skipped += other.skipped
        self.failed += other.failed
        self.reasons.update(other.reasons)
        for code, example in other.examples.items():
            self.examples.setdefault(code, example)

    def as_dict(self) -> dict[str, object]:
        return {
            "embedded": self.embedded,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "failure_reasons": dict(self.reasons.most_common()),
        }

    def render(self, elapsed_s: float) -> str:
        rate = self.embedded / elapsed_s if elapsed_s > 0 else 0.0
        lines = [
            f"ingest finished in {elapsed_s:.1f}s: {self.embedded} embedded ({rate:.2f} images/s), "
            f"{self.unchanged} unchanged, {self.skipped} skipped, {self.failed} failed"
        ]
        for code, count in self.reasons.most_common():
            example = self.examples[code]
            lines.append(f"  {code}: {count}  (e.g. {example.label}: {example.message})")
        return "\n".join(lines)
