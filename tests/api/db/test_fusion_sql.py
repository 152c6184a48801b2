"""The fused text statement (issue 16 item 3) on a 20,000-row catalog with known CLIP distances:
index use, exact hits first even from CLIP's last place, CLIP's order kept when no word
matches, filters, grouping and pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import text

from api.db import migrate
from api.db.catalog import Catalog
from api.db.engine import Database
from api.db.search import (
    FUSION_POOL,
    Filters,
    FusedQuery,
    Page,
    VectorColumn,
    VectorQuery,
    explain_fused,
    fused_search,
    search,
    sku_tokens,
)
from api.settings import Settings
from tests.api.db.seeding import clustered_unit_vectors, copy_products, vector_text

pytestmark = pytest.mark.slow  # seeds a 20k-row catalog for plan tests: not in `make test-fast`

ROWS = 20_000
MODEL = "test-model"
GROUP = "attributes->>'parent'"
LINEN_EVERY = 40
"""Every 40th row is a "Linen shirt": 500 word matches, more than the fusion pool."""


@dataclass
class Shop:
    database: Database
    catalog: Catalog
    query: np.ndarray
    order: list[str]
    """Every sku by CLIP distance to ``query``, nearest first."""


@pytest.fixture(scope="module")
def shop(create_database: Callable[[], str], make_settings: Callable[..., Settings]) -> Iterator[Shop]:
    rng = np.random.default_rng(16)
    vectors = clustered_unit_vectors(rng, ROWS)
    query = vectors[0] + 0.05 * rng.normal(size=512).astype(np.float32)
    query = (query / np.linalg.norm(query)).astype(np.float32)
    vectors[ROWS - 1] = -query  # the exact-name/SKU product: CLIP's very last place

    def row(i: int) -> tuple[object, ...]:
        if i == ROWS - 1:
            sku, name = "DR-1187", "Linen wrap dress"
        else:
            sku, name = f"sku-{i}", f"Linen shirt {i}" if i % LINEN_EVERY == 0 else f"Cotton tee {i}"
        category = "dresses" if i % 2 else "tops"
        attributes = json.dumps({"parent": f"G{i // 3}"})  # 3 variants per product
        return (sku, name, category, i % 200, attributes, vector_text(vectors[i]), MODEL)

    settings = make_settings(database_url=create_database())
    database = Database(settings)
    migrate.upgrade(database)
    columns = "sku, name, category, price, attributes, image_embedding, image_model"
    # The HNSW index built once over the rows is ~10x faster than 20,000 inserts into it.
    index = Catalog.from_settings(settings).image_index
    with database.engine.begin() as conn:
        definition = conn.execute(text("SELECT pg_get_indexdef(CAST(:i AS regclass))"), {"i": index}).scalar()
        conn.execute(text(f'DROP INDEX "{index}"'))
    copy_products(database, columns, (row(i) for i in range(ROWS)))
    with database.engine.begin() as conn:
        conn.execute(text(definition))
        conn.execute(text("ANALYZE products"))
    skus = [row(i)[0] for i in range(ROWS)]
    order = [str(skus[i]) for i in np.argsort(-(vectors @ query), kind="stable")]
    yield Shop(database, Catalog.from_settings(settings), query, order)
    database.dispose()


def fused(shop: Shop, text: str, page: Page, filters: Filters = Filters()) -> list:  # type: ignore[type-arg]
    query = FusedQuery(VectorQuery(VectorColumn.CLIP, shop.query, MODEL), text)
    with shop.database.engine.begin() as conn:
        return fused_search(conn, shop.catalog, query, filters, page)


@pytest.mark.parametrize("filters", [Filters(), Filters(categories=("dresses",))], ids=["plain", "category"])
def test_clip_part_walks_the_hnsw_index_and_words_the_fulltext_index(shop: Shop, filters: Filters) -> None:
    query = FusedQuery(VectorQuery(VectorColumn.CLIP, shop.query, MODEL), "linen DR-1187")
    with shop.database.engine.begin() as conn:
        plan = explain_fused(conn, shop.catalog, query, filters, Page(top_k=12))
    assert "Index Scan using products_image_embedding_hnsw" in plan, plan
    assert "Bitmap Index Scan on products_search_tsv_idx" in plan, plan
    assert "products_sku_key" in plan, plan  # the SKU branch probes the unique index


def test_an_exact_sku_comes_first_from_clips_last_place(shop: Shop) -> None:
    assert shop.order[-1] == "DR-1187"
    hits = fused(shop, "dr-1187", Page(top_k=5))
    assert hits[0].sku == "DR-1187" and hits[0].exact == "sku" and hits[0].words
    # Its score is still its (very low) cosine; the rest is CLIP's own order.
    assert hits[0].score == pytest.approx(-1, abs=1e-4)
    assert [h.sku for h in hits[1:]] == shop.order[:4]
    assert hits[0].word_matches == 1 and hits[0].best == pytest.approx(hits[1].score)


def test_an_exact_name_comes_first_then_the_fused_order(shop: Shop) -> None:
    hits = fused(shop, "LINEN wrap dress", Page(top_k=10))
    assert hits[0].sku == "DR-1187" and hits[0].exact == "name"
    hits = fused(shop, "linen", Page(top_k=30, score_threshold=-1))
    # Word matches get both rankings' votes: the linen rows CLIP ranks high come first.
    linen = [h for h in hits if h.words]
    assert linen and hits[0].words
    assert all(h.exact is None for h in hits)
    assert hits[0].word_matches == FUSION_POOL  # the best of the 500 matches take part


def test_no_word_match_returns_the_clip_ranking_unchanged(shop: Shop) -> None:
    vector = VectorQuery(VectorColumn.CLIP, shop.query, MODEL)
    for page in (
        Page(top_k=12),
        Page(top_k=12, offset=12),
        Page(top_k=50, offset=90),
        Page(top_k=7, offset=200),
    ):
        hits = fused(shop, "velvet gown", page)
        with shop.database.engine.begin() as conn:
            plain = search(conn, shop.catalog, vector, Filters(), page)
        assert [(h.sku, h.score) for h in hits] == [(h.sku, h.score) for h in plain]
        assert all(h.word_matches == 0 and not h.words for h in hits)


def test_filters_apply_to_every_branch(shop: Shop) -> None:
    hits = fused(shop, "DR-1187 linen", Page(top_k=20), Filters(categories=("tops",), price_max=50))
    assert hits and all(h.category == "tops" and h.price is not None and h.price <= 50 for h in hits)
    assert "DR-1187" not in [h.sku for h in hits]  # a dress: filtered out, SKU or not
    assert fused(shop, "DR-1187", Page(top_k=3), Filters(categories=("dresses",)))[0].sku == "DR-1187"


def test_pages_continue_without_repeats(shop: Shop) -> None:
    whole = fused(shop, "linen", Page(top_k=150, score_threshold=-1))
    paged = []
    for offset in range(0, 150, 25):
        paged += fused(shop, "linen", Page(top_k=25, offset=offset, score_threshold=-1))
    assert [h.sku for h in paged] == [h.sku for h in whole]
    assert len({h.sku for h in paged}) == 150


def test_grouped_pages_show_one_card_per_product(shop: Shop) -> None:
    page = Page(top_k=10, group=GROUP)
    first = fused(shop, "DR-1187 linen", page)
    assert first[0].sku == "DR-1187" and first[0].exact == "sku"
    paged = first + fused(shop, "DR-1187 linen", Page(top_k=10, offset=10, group=GROUP))
    groups = [h.attributes["parent"] for h in paged]
    assert len(paged) == 20 and len(set(groups)) == 20
    assert all(h.variants is not None and h.variants >= 1 for h in paged)
    whole = fused(shop, "DR-1187 linen", Page(top_k=20, group=GROUP))
    assert [h.sku for h in whole] == [h.sku for h in paged]


def test_sku_tokens_try_each_word_as_typed_and_in_both_cases() -> None:
    tokens = sku_tokens('Linen wrap dress "dr-1187",')
    assert {"DR-1187", "dr-1187", "Linen", "LINEN", "linen"} <= set(tokens)
    assert len(tokens) == len(set(tokens))
