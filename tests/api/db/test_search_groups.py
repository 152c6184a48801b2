"""One card per product (``LOOKALIKE_FIELD_GROUP``) on a variants table: products in 3 colours,
one row per colour. Grouped pages show each product once (its best colour) with the number of
its variants that matched, stay full and ordered, and page 2 continues page 1 without repeats;
vector and full-text search alike, through the API's "more like this" too."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from api.db import migrate
from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.search import Filters, Page, TextQuery, VectorColumn, VectorQuery, search
from api.settings import Settings
from encoder.registry import MOBILENET_MODEL_ID
from tests.api.conftest import running_api
from tests.api.db.seeding import copy_products, vector_text

GROUP = "attributes->>'parent'"
COLOURS = ("red", "green", "blue")
PRODUCTS = 40
BIG = 5
"""Products with 30 variants each, nearest the query: a first window of rows holds only two of them."""


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass
class Variants:
    database: Database
    catalog: Catalog
    settings: Settings
    query: np.ndarray
    """Near product P00 (the nearest product), then the others by their index."""


@pytest.fixture(scope="module")
def variants(
    create_database: Callable[[], str], make_settings: Callable[..., Settings]
) -> Iterator[Variants]:
    rng = np.random.default_rng(7)
    query = unit(rng.normal(size=1280)).astype(np.float32)
    rows = []
    for p in range(PRODUCTS):
        # Product p's centre lies farther from the query as p grows; its colours around it.
        centre = unit(query + (0.05 + 0.02 * p) * unit(rng.normal(size=1280)))
        for c, colour in enumerate(COLOURS):
            vector = unit(centre + 0.01 * unit(rng.normal(size=1280)))
            attributes = {"parent": f"P{p:02d}", "color": colour}
            name = f"Linen shirt {p} in {colour}" if p % 2 == 0 else f"Wool coat {p} in {colour}"
            rows.append((f"P{p:02d}-{c}", name, "tops", json.dumps(attributes), vector))
    for b in range(BIG):  # far away from the first query; the second query lands among them
        centre = unit(-query + 0.05 * b * unit(rng.normal(size=1280)))
        for v in range(30):
            vector = unit(centre + 0.01 * unit(rng.normal(size=1280)))
            rows.append(
                (f"B{b}-{v}", f"Big {b} variant {v}", "tops", json.dumps({"parent": f"B{b}"}), vector)
            )
    for n in range(3):  # no parent: each row is its own product
        vector = unit(query + 0.3 * unit(rng.normal(size=1280)))
        rows.append((f"LONE-{n}", f"Linen scarf {n}", "tops", json.dumps({}), vector))
    settings = make_settings(database_url=create_database(), field_group=GROUP)
    database = Database(settings)
    migrate.upgrade(database)
    copy_products(
        database,
        "sku, name, category, attributes, fallback_embedding, fallback_model",
        ((sku, name, cat, attrs, vector_text(v), MOBILENET_MODEL_ID) for sku, name, cat, attrs, v in rows),
    )
    yield Variants(database, Catalog.from_settings(settings), settings, query)
    database.dispose()


def run(v: Variants, vector: np.ndarray, page: Page, filters: Filters | None = None) -> list:
    query = VectorQuery(VectorColumn.FALLBACK, vector, MOBILENET_MODEL_ID)
    with v.database.engine.begin() as conn:
        return search(conn, v.catalog, query, filters or Filters(), page)


def parent(sku: str) -> str:
    return sku.split("-")[0] if not sku.startswith("LONE") else sku


def test_ungrouped_a_product_fills_the_page_with_its_colours(variants: Variants) -> None:
    hits = run(variants, variants.query, Page(top_k=5))
    assert [parent(h.sku) for h in hits[:3]] == ["P00"] * 3
    assert all(h.variants is None for h in hits)


def test_grouped_one_card_per_product_best_colour_first(variants: Variants) -> None:
    hits = run(variants, variants.query, Page(top_k=5, group=GROUP))
    parents = [parent(h.sku) for h in hits]
    assert len(hits) == 5 and len(set(parents)) == 5 and parents[0] == "P00"
    assert hits[0].variants == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    best_of_p00 = max(run(variants, variants.query, Page(top_k=3)), key=lambda h: h.score)
    assert hits[0].sku == best_of_p00.sku  # the card is the product's best-scoring row


def test_pages_continue_without_repeating_a_product(variants: Variants) -> None:
    first = run(variants, variants.query, Page(top_k=6, group=GROUP))
    second = run(variants, variants.query, Page(top_k=6, offset=6, group=GROUP))
    both = run(variants, variants.query, Page(top_k=12, group=GROUP))
    assert len(first) == len(second) == 6
    assert not {parent(h.sku) for h in first} & {parent(h.sku) for h in second}
    assert [h.sku for h in first + second] == [h.sku for h in both]


def test_rows_without_a_group_stand_alone(variants: Variants) -> None:
    hits = run(variants, variants.query, Page(top_k=60, group=GROUP))
    lone = [h for h in hits if h.sku.startswith("LONE")]
    assert len(lone) == 3 and all(h.variants == 1 for h in lone)
    assert len(hits) == PRODUCTS + BIG + 3  # every product once: the page reached the end


def test_pages_stay_full_when_products_have_many_variants(variants: Variants) -> None:
    # Near the big products, the first window (4 x 10 rows) holds only two products: the
    # search widens it until ten distinct products fill the page.
    hits = run(variants, -variants.query, Page(top_k=10, group=GROUP))
    parents = [parent(h.sku) for h in hits]
    assert len(hits) == 10 and len(set(parents)) == 10
    assert set(parents[:BIG]) == {f"B{b}" for b in range(BIG)}
    assert all(h.variants == 30 for h in hits[:BIG])


def test_filters_apply_before_grouping(variants: Variants) -> None:
    red = run(variants, variants.query, Page(top_k=5, group=GROUP), Filters(attributes={"color": "red"}))
    assert len(red) == 5 and all(h.attributes["color"] == "red" and h.variants == 1 for h in red)


def test_full_text_groups_too(variants: Variants) -> None:
    with variants.database.engine.begin() as conn:
        hits = search(conn, variants.catalog, TextQuery("linen"), Filters(), Page(top_k=50, group=GROUP))
    shirts = [h for h in hits if not h.sku.startswith("LONE")]
    assert len(shirts) == PRODUCTS // 2 and all(h.variants == 3 for h in shirts)
    assert len({parent(h.sku) for h in hits}) == len(hits)


def test_more_like_this_over_http_shows_one_card_per_product(variants: Variants) -> None:
    with running_api(variants.settings) as (client, _state):
        body = client.get("/api/v1/products/P00-0/similar", params={"top_k": 5}).json()
    assert body["mode"] == "mobilenet_fallback" and body["count"] == 5
    parents = [parent(r["sku"]) for r in body["results"]]
    assert len(set(parents)) == 5
    # P00-0 itself is left out; its two other colours are one card that says so.
    assert parents[0] == "P00" and body["results"][0]["variants"] == 2
