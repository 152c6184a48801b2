"""``lookalike reembed --model NAME``: prepare the catalog for another CLIP model.

The configured model stays a setting (``LOOKALIKE_CLIP_MODEL``) rather than a value stored in
the database: every process reads its settings the same way, and a database-held override
would make the environment lie. So this command validates the name, retypes the vector column
when the width changes (old vectors become NULL, search falls back meanwhile), and says what to
set; the worker of the next ``lookalike serve`` (or ``lookalike ingest --embed-only``) embeds
every row whose ``image_model`` is not the new model.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.db.catalog import Catalog
from api.db.clip_column import change_clip_dim, clip_column_dim
from api.db.engine import Database
from api.db.product_batches import count_products
from api.errors import LookalikeError
from encoder.registry import clip_spec, missing_requirements


@dataclass(frozen=True)
class Reembed:
    model: str
    old_dim: int | None
    new_dim: int
    rows: int

    missing: str | None = None
    """Why this process could not load the model (e.g. its tokenizer needs ``transformers``), or None."""

    @property
    def column_changed(self) -> bool:
        return self.old_dim != self.new_dim

    def instructions(self) -> str:
        change = (
            f"image_embedding changed from vector({self.old_dim}) to vector({self.new_dim}); "
            "old CLIP vectors were cleared and the HNSW index rebuilt"
            if self.column_changed
            else f"image_embedding stays vector({self.new_dim})"
        )
        warning = (
            f"Warning: this machine cannot load {self.model} yet -- {self.missing}. Until it can, "
            "CLIP stays unavailable and search runs in its fallback modes.\n"
            if self.missing
            else ""
        )
        return (
            f"{change}.\n"
            f"{warning}"
            f"Now set LOOKALIKE_CLIP_MODEL={self.model} and restart `lookalike serve` (its worker re-embeds "
            f"{self.rows} products), or run `LOOKALIKE_CLIP_MODEL={self.model} lookalike ingest --embed-only`.\n"
            "Until then search serves those products through the MobileNetV2 and full-text fallbacks."
        )


def reembed(database: Database, model: str) -> Reembed:
    try:
        spec = clip_spec(model)
    except ValueError as exc:
        raise LookalikeError(str(exc)) from exc
    catalog = Catalog.from_settings(database.settings)
    with database.begin() as conn:
        old_dim = clip_column_dim(conn, catalog)
        if old_dim is None:
            raise LookalikeError("the catalog has no image_embedding column yet; run `lookalike db upgrade`")
        if old_dim != spec.dim:
            change_clip_dim(conn, catalog, spec.dim)
        rows = count_products(conn, catalog)
    return Reembed(
        model=spec.name, old_dim=old_dim, new_dim=spec.dim, rows=rows, missing=missing_requirements(spec)
    )
