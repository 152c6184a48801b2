"""Issue 16 item 3, names and SKUs always hit: text queries in CLIP mode (random-weight CLIP, the
real encoder) are fused with the lexical ranking. Exact SKU first, exact name first, then
reciprocal rank fusion; a phrase that matches no words gets CLIP's ranking unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.db.search import Filters, Page, VectorColumn, VectorQuery, search
from api.services import relevance
from api.services.search import hit_to_dict
from api.settings import Settings
from tests.api.conftest import Api, running_api, seed_catalog

SPECIALS = {
    # sku: (name, category, photo class)
    "DR-1187": ("Linen wrap dress", "dress", "dress"),
    "DR-2040": ("Linen wrap dress with belt", "dress", "dress"),
    "RB-7": ("Robe d'été", "dress", "skirt"),
    "SH-55": ("Áo sơ mi", "shirt", "shirt"),
}


@pytest.fixture(scope="module")
def shop(api_settings: Settings, clothing_dataset: Path) -> Iterator[Api]:
    """The shared test catalog (30 real photos) plus products with real-world names and SKUs."""
    with running_api(api_settings) as (client, state):
        products = seed_catalog(state, clothing_dataset)
        for n, (sku, (name, category, photo_class)) in enumerate(SPECIALS.items()):
            photo = sorted((clothing_dataset / "test" / photo_class).glob("*.jpg"))[n]
            fields = {"name": name, "description": "", "category": category, "price": 40 + n}
            state.products.upsert(sku, fields, photo.read_bytes())
            products[sku] = photo
        yield Api(client, state, products)


def ask(shop: Api, text: str, **body: Any) -> dict[str, Any]:
    response = shop.client.post("/api/v1/search", json={"text": text, "top_k": 8, **body})
    assert response.status_code == 200, response.text
    return response.json()


def clip_page(shop: Api, text: str, page: Page, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """The plain CLIP page for a phrase (what text search answered before fusion)."""
    state = shop.state
    model_id = state.hub.clip_model_id
    vector = np.asarray(state.hub.clip().encode_texts([text])[0], dtype=np.float32)
    query = VectorQuery(VectorColumn.CLIP, vector / np.linalg.norm(vector), model_id)

    with state.database.read() as conn:

        def run(p: Page) -> list[dict[str, Any]]:
            return [hit_to_dict(h) for h in search(conn, state.catalog, query, filters, p)]

        return relevance.vector_page(conn, state.catalog, query, page, run)


def clip_rank(shop: Api, text: str, sku: str) -> int:
    every = clip_page(shop, text, Page(top_k=100, score_threshold=-1))
    return [hit["sku"] for hit in every].index(sku)


def test_an_exact_sku_comes_first_in_any_case(shop: Api) -> None:
    for typed in ("DR-1187", "dr-1187", " Dr-1187 "):
        body = ask(shop, typed)
        assert body["mode"] == "clip_text", body
        assert body["results"][0]["sku"] == "DR-1187" and body["results"][0]["match"] == 1.0
        # The raw cosine stays the score (the exact hit is first because of its SKU, not its score).
        assert -1 <= body["results"][0]["score"] <= 1


def test_name_and_sku_in_one_query_find_that_product_even_when_clip_ranks_it_lower(shop: Api) -> None:
    text = "Linen wrap dress DR-2040"
    assert clip_rank(shop, text, "DR-2040") > 0  # CLIP alone would not put it first
    body = ask(shop, text)
    assert body["mode"] == "clip_text" and body["results"][0]["sku"] == "DR-2040"


def test_an_exact_name_comes_first_case_and_accent_insensitive(shop: Api) -> None:
    for typed, sku in (
        ("linen wrap dress", "DR-1187"),
        ("LINEN WRAP DRESS", "DR-1187"),
        ("robe d'ete", "RB-7"),
        ("Robe d'été", "RB-7"),
        ("ao so mi", "SH-55"),
    ):
        body = ask(shop, typed)
        assert body["mode"] == "clip_text", (typed, body)
        assert body["results"][0]["sku"] == sku, (typed, [h["sku"] for h in body["results"]])
        assert body["results"][0]["match"] == 1.0
    # The longer name matches the words too: fused in, but after the exact name.
    skus = [hit["sku"] for hit in ask(shop, "linen wrap dress")["results"]]
    assert "DR-2040" in skus and skus.index("DR-2040") > 0


def test_a_purely_visual_phrase_gets_the_clip_ranking_unchanged(shop: Api) -> None:
    text = "something flowing for a warm evening"
    for page in (Page(top_k=6), Page(top_k=6, offset=6), Page(top_k=40, score_threshold=-1)):
        body = ask(shop, text, top_k=page.top_k, offset=page.offset, score_threshold=page.score_threshold)
        assert body["mode"] == "clip"
        plain = clip_page(shop, text, page)
        assert [{k: v for k, v in hit.items() if k != "similarity"} for hit in body["results"]] == plain
    assert ask(shop, text)["results"], "the phrase must find something for the comparison to mean anything"


def test_filters_still_apply_to_exact_hits(shop: Api) -> None:
    assert ask(shop, "DR-1187", filters={"category": "shirt"})["results"][0]["sku"] != "DR-1187"
    assert "DR-1187" not in [h["sku"] for h in ask(shop, "DR-1187", filters={"price_min": 100})["results"]]
    body = ask(shop, "DR-1187", filters={"category": "dress", "price_max": 45})
    assert body["results"][0]["sku"] == "DR-1187"
    assert all(hit["category"] == "dress" and hit["price"] <= 45 for hit in body["results"])


def test_word_matches_are_not_cut_by_the_match_floor_or_a_threshold(shop: Api) -> None:
    body = ask(shop, "DR-1187 Áo sơ mi", score_threshold=0.99)
    skus = [hit["sku"] for hit in body["results"]]
    assert skus[0] == "DR-1187"
    # Only word matches survive a cosine threshold no hit reaches.
    assert all(hit["score"] < 0.99 for hit in body["results"])
    assert set(skus) <= {"DR-1187", "SH-55"}


def test_pages_continue_without_repeats(shop: Api) -> None:
    text = "linen wrap dress"
    whole = ask(shop, text, top_k=28, score_threshold=-1)["results"]
    assert whole[0]["sku"] == "DR-1187"
    paged: list[dict[str, Any]] = []
    for offset in range(0, 28, 7):
        paged += ask(shop, text, top_k=7, offset=offset, score_threshold=-1)["results"]
    assert [h["sku"] for h in paged] == [h["sku"] for h in whole]
    assert len({h["sku"] for h in paged}) == len(paged) == 28


def test_a_repeated_query_is_cached_with_its_mode(shop: Api) -> None:
    first = ask(shop, "Linen wrap dress DR-1187", top_k=3)
    again = ask(shop, "Linen wrap dress DR-1187", top_k=3)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["mode"] == "clip_text" and again["results"] == first["results"]
