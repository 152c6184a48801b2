"""docs/shops.md shows exactly the mappings the attach tests run, so the guide cannot rot."""

from __future__ import annotations

import io
import re

import pytest
from dotenv import dotenv_values

from tests.api.shops.schemas import SHOPS, Shop
from tests.support import REPO_ROOT

HEADINGS = {"medusa": "## Medusa v2", "spree": "## Spree / Solidus", "variants": "## A variants table"}


@pytest.mark.parametrize("shop", SHOPS, ids=[s.name for s in SHOPS])
def test_the_guide_shows_the_tested_mapping(shop: Shop) -> None:
    guide = (REPO_ROOT / "docs/shops.md").read_text()
    section = guide[guide.index(HEADINGS[shop.name]) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    documented = dotenv_values(stream=io.StringIO(block.group(1)))
    assert {k: documented.get(k) for k in shop.env()} == shop.env()
