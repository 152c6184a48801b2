"""Where bulk products come from: a folder of images, or a CSV / JSON Lines product file.

Each source yields :class:`SourceItem` (a product to upsert, and where its image is) or
:class:`BadRow` (a line that cannot become a product, reported in the summary). Nothing here
touches the database or decodes images.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
TEXT_FIELDS = ("name", "description", "category", "currency")


@dataclass(frozen=True)
class SourceItem:
    sku: str
    fields: dict[str, Any] = field(default_factory=dict)
    """Catalog fields other than ``image_url`` (which ingest decides once it knows the image)."""
    image_url: str | None = None
    """An http(s) URL or a path relative to the media dir, stored as given."""
    image_path: Path | None = None
    """A local file to import (folder ingest, ``image_path`` column)."""


@dataclass(frozen=True)
class BadRow:
    where: str
    message: str


def folder_items(folder: Path, *, category_from_folder: bool = False) -> Iterator[SourceItem]:
    """Every image under ``folder``, in a stable order. The sku is the path relative to the folder
    (``dress/0a1b.jpg``), so re-running the same folder addresses the same products."""
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        relative = path.relative_to(folder)
        fields: dict[str, Any] = {"name": path.stem}
        if category_from_folder and len(relative.parts) > 1:
            fields["category"] = relative.parts[0]
        yield SourceItem(sku=relative.as_posix(), fields=fields, image_path=path)


def file_items(path: Path) -> Iterator[SourceItem | BadRow]:
    """Products from ``.csv`` (header row) or ``.jsonl``/``.ndjson`` (one object per line)."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            for number, record in enumerate(csv.DictReader(handle), start=2):
                yield _item(record, f"{path.name}:{number}", path.parent)
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path.name}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield BadRow(where, f"not valid JSON: {exc}")
                    continue
                if not isinstance(record, dict):
                    yield BadRow(where, "each line must be a JSON object")
                    continue
                yield _item(record, where, path.parent)
    else:
        raise ValueError(f"{path} is neither .csv nor .jsonl; which products file format is it?")


def _item(record: dict[str, Any], where: str, base: Path) -> SourceItem | BadRow:
    sku = str(record.get("sku") or "").strip()
    if not sku:
        return BadRow(where, "missing sku")
    fields: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        value = record.get(name)
        if value not in (None, ""):
            fields[name] = str(value)
    price = record.get("price")
    if price not in (None, ""):
        try:
            fields["price"] = Decimal(str(price))
        except InvalidOperation:
            return BadRow(where, f"price {price!r} is not a number")
        if fields["price"] < 0:
            return BadRow(where, f"price {price!r} is negative")
    attributes = record.get("attributes")
    if isinstance(attributes, str) and attributes.strip():
        try:
            attributes = json.loads(attributes)
        except json.JSONDecodeError:
            return BadRow(where, "attributes is not a JSON object")
    if attributes not in (None, ""):
        if not isinstance(attributes, dict):
            return BadRow(where, "attributes must be a JSON object")
        fields["attributes"] = attributes
    image_url = str(record.get("image_url") or "").strip() or None
    image_path = str(record.get("image_path") or "").strip() or None
    return SourceItem(
        sku=sku,
        fields=fields,
        image_url=image_url,
        image_path=(base / image_path) if image_path else None,  # relative to the products file
    )
