"""Request and response bodies of the public API (what /docs shows)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from api.input_checks import check_value

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"
MAX_PRICE = Decimal("9999999999.99")
"""The largest numeric(12,2): a bigger price filter overflows PostgreSQL's numeric (a 500 before)."""
Price = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE, decimal_places=2),
    # pydantic documents a Decimal's string form as any string; say what is accepted.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_PRICE)},
                {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"},
            ]
        }
    ),
]
"""A price or price bound: finite, 0 <= p <= MAX_PRICE, at most 2 decimals (12-digit numeric)."""


class Checked(BaseModel):
    """Every field of every request body passes :func:`api.input_checks.check_value`: no NUL,
    no unpaired surrogate, no NaN/Infinity anywhere (nested attributes included), so such input is
    a 422 here instead of a 500 in psycopg, a cache key or jsonb."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return check_value(value)


class Strict(Checked):
    """Unknown keys are a 422, not silently ignored: a typo in a filter must not widen results."""

    model_config = ConfigDict(extra="forbid")


class SearchFilters(Strict):
    category: str | list[str] | None = Field(default=None, description="one category or a list of them")
    price_min: Price | None = None
    price_max: Price | None = None
    attributes: dict[str, Any] | None = Field(
        default=None, description='JSON containment, e.g. {"color": "red"}', examples=[{"color": "red"}]
    )

    @model_validator(mode="after")
    def _price_range(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min must not be greater than price_max")
        return self

    def categories(self) -> tuple[str, ...]:
        if self.category is None:
            return ()
        return (self.category,) if isinstance(self.category, str) else tuple(self.category)


class CropBox(Strict):
    """The part of the query photo to search on, in pixels of the photo as displayed (EXIF
    orientation applied), origin top-left. A box reaching outside the photo is a 422."""

    # strict: numbers only (the schema says number); `true` is not a 1-pixel box.
    x: float = Field(ge=0, strict=True)
    y: float = Field(ge=0, strict=True)
    width: float = Field(gt=0, strict=True)
    height: float = Field(gt=0, strict=True)


class SearchRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        # What _one_query enforces, stated where clients (and schemathesis) read it.
        json_schema_extra={
            "anyOf": [{"required": ["image"]}, {"required": ["image_url"]}, {"required": ["text"]}],
            "not": {"required": ["image", "image_url"]},
        },
    )

    image: str | None = Field(default=None, description="base64 image bytes, or a data: URL")
    image_url: str | None = Field(default=None, max_length=2048)
    text: str | None = Field(default=None, max_length=512)
    # strict: the schema says number/integer, so `true` or "0.5" is a 422, not a silent 1.0.
    alpha: float = Field(
        default=0.5, ge=0, le=1, strict=True, description="hybrid weight of the image (text gets 1 - alpha)"
    )
    top_k: int = Field(default=12, ge=1, le=100, strict=True)
    offset: int = Field(default=0, ge=0, le=10_000, strict=True)
    score_threshold: float | None = Field(default=None, ge=-1, le=1, strict=True)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    crop: CropBox | None = Field(default=None, description="search only this part of the image")
    image_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="a photo this server has searched with recently, by the sha256 of its bytes "
        "(shared search links); 404 photo_not_available once the server no longer has it",
    )

    @model_validator(mode="after")
    def _one_query(self) -> Self:
        photos = [p for p in (self.image, self.image_url, self.image_sha256) if p is not None]
        if len(photos) > 1:
            raise ValueError("give one of image, image_url and image_sha256, not several")
        if self.crop is not None and self.image is None and self.image_url is None:
            raise ValueError("crop needs an image or an image_url")
        if not photos and not (self.text and self.text.strip()):
            raise ValueError("give an image, an image_url or a text query")
        return self


class Timing(BaseModel):
    decode: float | None = None
    cache: float | None = None
    encode: float | None = None
    search: float | None = None
    total: float


class ProductView(BaseModel):
    """What every product answer shows: a search hit and a product read share these fields."""

    id: int | str = Field(description="the catalog's own key, as the shop's table stores it")
    sku: str
    name: str | None
    description: str | None
    category: str | None
    price: float | None
    currency: str | None
    attributes: dict[str, Any]
    image_url: str | None
    url: str | None = Field(default=None, description="the product's page in the shop, when known")


class SearchHit(ProductView):
    score: float = Field(description="cosine similarity (vector modes) or normalised text rank")
    similarity: float = Field(description="score as a percentage")
    match: float | None = Field(
        default=None,
        description="0..1: where the hit sits between what this model scores for unrelated products "
        "(0) and the best hit of the search (1); what a match display should show, not the raw score",
    )
    variants: int | None = Field(
        default=None,
        description="with LOOKALIKE_FIELD_GROUP: how many rows of this product's group matched "
        "(the hit is the best of them); absent otherwise",
    )


class SearchResponse(BaseModel):
    mode: str = Field(
        description="clip, clip_text (words in CLIP mode that matched a product's SKU, name or text: "
        "exact SKU, then exact name, then CLIP fused with the text ranking), hybrid, "
        "mobilenet_fallback or fulltext_fallback"
    )
    cached: bool
    fallback_reason: str | None = None
    words_used: str | None = Field(
        default=None, description="how the words of a photo + words search shaped the results"
    )
    timing: Timing
    count: int
    top_k: int
    offset: int
    next_offset: int | None = Field(
        description="offset of the next page, or null when this page was the last"
    )
    results: list[SearchHit]


class ProductIn(Strict):
    sku: str = Field(pattern=SKU_PATTERN)
    name: str = Field(default="", max_length=500)
    description: str = Field(default="", max_length=20_000)
    category: str | None = Field(default=None, max_length=200)
    price: Price | None = None
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    attributes: dict[str, Any] = Field(default_factory=dict)
    image_url: str | None = Field(default=None, max_length=2048)
    url: str | None = Field(default=None, max_length=2048, description="the product's page in the shop")
    image: str | None = Field(
        default=None, description="base64 image bytes or a data: URL (instead of image_url)"
    )


class ProductPatch(Strict):
    # SkipJsonSchema[None]: absent means "unchanged", but null is refused (below: these columns
    # are NOT NULL), so the document must not offer null for them. The constraints sit inside
    # the str branch, where pydantic can apply them.
    name: Annotated[str, Field(max_length=500)] | SkipJsonSchema[None] = None
    description: Annotated[str, Field(max_length=20_000)] | SkipJsonSchema[None] = None
    category: str | None = Field(default=None, max_length=200)
    price: Price | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | SkipJsonSchema[None] = None
    attributes: dict[str, Any] | SkipJsonSchema[None] = None
    image_url: str | None = Field(default=None, max_length=2048)
    url: str | None = Field(default=None, max_length=2048)

    @field_validator("name", "description", "currency", "attributes")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be changed but not set to null")
        return value


class ProductOut(ProductView):
    created_at: datetime | None
    updated_at: datetime | None
    image_model: str | None
    fallback_model: str | None
    image_sha256: str | None
    embedded_at: datetime | None
    embed_error: str | None


class FindSimilarRequest(Checked):
    """The request shape many shop front-ends already send (camelCase)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image: str
    top_k: int = Field(default=12, ge=1, le=100, alias="topK", strict=True)
    score_threshold: float | None = Field(default=None, ge=-1, le=1, alias="scoreThreshold", strict=True)
