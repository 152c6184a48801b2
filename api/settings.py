"""The one settings object. Every knob is an environment variable (``LOOKALIKE_*``), plus the
conventional ``DATABASE_URL`` and ``REDIS_URL`` that hosting platforms set for you."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.cors import parse_origins
from encoder.registry import DEFAULT_CLIP_MODEL, MOBILENET_DIM, clip_spec

MAX_EMBED_LANES = 32
CATALOG_FIELDS = (
    "sku",
    "name",
    "description",
    "category",
    "price",
    "currency",
    "attributes",
    "image_url",
    "url",
)
"""Every field Lookalike reads from a product row; each can be mapped with ``LOOKALIKE_FIELD_<FIELD>``."""
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOOKALIKE_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- database -------------------------------------------------------------------------
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "LOOKALIKE_DATABASE_URL")
    )
    """A PostgreSQL URL. Unset: Lookalike runs its own embedded PostgreSQL in ``data_dir``."""
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("lookalike")))
    """Where the embedded database (and other local state) lives; kept across restarts."""
    products_table: str = "products"
    """The catalog table. Point it at a shop's existing table to attach to it."""
    key_column: str = "id"
    """The catalog table's key (primary key or unique): integer, text or uuid, returned as it is."""
    field_sku: str | None = None
    """``LOOKALIKE_FIELD_<FIELD>``: a column of the shop's table or an SQL expression over its row
    (e.g. a scalar subquery into the shop's category or media table). Setting any of them attaches
    to a shop-owned table: Lookalike reads these fields and never writes them (api.db.catalog)."""
    field_name: str | None = None
    field_description: str | None = None
    field_category: str | None = None
    field_price: str | None = None
    field_currency: str | None = None
    field_attributes: str | None = None
    field_image_url: str | None = None
    field_url: str | None = None
    field_group: str | None = None
    """``LOOKALIKE_FIELD_GROUP``: a column or SQL expression over the row that names the product a
    row is a variant of (a parent id, ``attributes->>'model'``). Set, results show one card per
    group -- its best-scoring row -- with the number of its variants that matched (api.db.search)."""
    visible_where: str | None = None
    """An SQL predicate over the row that every shopper-facing read applies (drafts, soft deletes)."""
    text_language: str = "english"
    """The PostgreSQL text-search configuration for full-text matching (``english``, ``french``,
    ``simple``, ...); accents are ignored where the server has ``unaccent``."""
    db_schema: str = "public"
    db_pool_size: int = 10
    prewarm: bool = True
    """Pull the HNSW graphs into memory when the server starts (see ``api.db.prewarm``)."""
    category_indexes: bool = True
    """Give large categories their own partial HNSW index (see ``api.db.category_indexes``);
    kept in step by the background worker after each round of embedding."""
    category_index_min_rows: int = 1_000
    """Smaller categories are ranked exactly when filtered on (``api.db.search``), which reads
    every row's TOASTed vector: far dearer per row than a walk of their own small index."""
    category_index_max_share: float = 0.3
    """Categories above this share of the catalog stay on the main index, which serves them well."""
    category_index_max: int = 64
    hnsw_m: int = Field(default=16, ge=2, le=100)
    """Links per node in every HNSW graph Lookalike builds (main, fallback, per-category); pgvector's
    default. More links: better recall at the same ef_search, bigger graphs, slower builds."""
    hnsw_ef_construction: int | None = Field(default=None, ge=4, le=1000)
    """Candidate list while building each graph (at least 2 x ``hnsw_m``): a wider one builds a
    better graph for more build time (docs/benchmarks.md, issue 20 at 1M). Unset: by the graph's
    size, pgvector's 64 below 200,000 rows and 128 from there (``api.db.catalog.hnsw_graph``), so
    a catalog that grows past it gets wider graphs without anyone setting this.
    Changing either rebuilds the existing graphs, ``CONCURRENTLY``, in the background worker's
    index upkeep or at once with ``lookalike db rebuild-graphs`` (:mod:`api.db.hnsw_graphs`)."""
    vector_storage: Literal["vector", "halfvec"] = "vector"
    """``halfvec`` stores the CLIP column and its HNSW indexes in 16-bit floats: half the memory
    for a small loss of recall (docs/benchmarks.md, "Issue 17: halfvec storage"). Changing it
    converts the column in place on the next ``lookalike db upgrade`` or start (no re-embed)."""

    # --- models ---------------------------------------------------------------------------
    clip_model: str = DEFAULT_CLIP_MODEL
    """A name from ``encoder.registry.CLIP_MODELS``."""
    clip_weights_path: Path | None = None
    """A local open_clip checkpoint; when set it replaces the pretrained tag's download."""
    clip_random_weights: bool = False
    """Tests and benchmarks only: build the architecture with random weights (same compute)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    clip_runtime: Literal[
        "auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"
    ] = "auto"
    """CPU only: run CLIP on ONNX Runtime or OpenVINO, exported on first start into the user cache
    dir (``$XDG_CACHE_HOME/lookalike/onnx``). ``auto`` times ONNX Runtime int8 against OpenVINO
    (bf16 image, int8 text) at start and serves each tower on the faster of those whose vectors
    match torch fp32 (cosine >= 0.999) on this CPU, else torch (``encoder.clip_auto``): which one
    wins depends on the CPU (docs/benchmarks.md)."""
    batch_size: int = 32
    embed_lanes: int | None = Field(default=None, ge=1, le=MAX_EMBED_LANES)
    """Batches ``lookalike ingest`` embeds at once, each decoded, encoded and written on its own
    thread and connection (``api.services.ingest.lanes``). Unset: 2 on a CPU, every core but
    one on a GPU. The server's background worker keeps to one, leaving the cores to searches."""
    encoder_url: str | None = None
    """Base URL of a ``lookalike encoder serve`` process; unset means encode in-process."""
    encoder_timeout_s: float = 5.0
    encoder_circuit_failures: int = 3
    """Consecutive encoder-service failures before the circuit opens (calls then fail instantly)."""
    encoder_circuit_reset_s: float = 30.0
    """How long an open circuit waits before letting one probe through."""

    # --- cache ----------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "LOOKALIKE_REDIS_URL")
    )
    cache_ttl_s: int = 3600

    # --- http -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    image_root: Path | None = None
    """Folder that relative ``image_url`` paths resolve against (default ``<data_dir>/media``)."""
    image_base_url: str | None = None
    """When set, relative ``image_url`` paths are fetched from this URL prefix instead of
    ``image_root`` (shops whose media are served over HTTP)."""
    fetch_timeout_s: float = 10.0
    """Read timeout for one image download (connect timeout is a third of it, at most 3 s)."""
    fetch_retries: int = 2
    """Retries (with exponential back-off) for 5xx answers and timeouts."""
    allow_private_urls: bool = False
    """Let ``image_url`` fetches reach loopback/private addresses (tests, trusted LANs)."""
    fetch_deadline_s: float = Field(default=20.0, gt=0)
    """Total time for one image download, redirects, retries and back-off included."""
    fetch_concurrency: int = Field(default=8, ge=1)
    """Image downloads the API runs at once (search and product ``image_url``); more get a fast 503
    ``overloaded``, so slow servers can never take every worker thread from other routes."""
    max_inflight: int | None = Field(default=None, ge=1)
    """Searches and product writes (encode + vector search or write) served at once. Unset: as
    many encodes as fit side by side on the cores (one when an encode uses every core, as it does
    unless ``OMP_NUM_THREADS`` is set), divided among ``workers``; with remote encoders
    (``encoder_url``) two per core. Set it on a GPU."""
    admission_queue: int | None = Field(default=None, ge=0)
    """Searches that may wait for a slot (unset: as many as ``max_inflight``); beyond them, a fast
    503 ``overloaded`` with ``Retry-After``."""
    admission_wait_ms: int = Field(default=1000, ge=0)
    """The longest a queued search waits for a slot: a caller predicted to wait longer (queue
    position x recent slot time / limit) is refused at once, one that still waits past it gets
    its 503 then."""
    max_request_bytes: int | None = Field(default=None, ge=1024)
    """Largest request body, counted while it is read. Unset: room for ``max_upload_bytes`` as
    base64 in JSON (4/3) plus 1 MiB of other fields."""
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    """``LOOKALIKE_CORS_ORIGINS``: comma-separated exact origins (``https://shop.example``) whose
    pages may call the public read endpoints from the browser (the storefront widget); none by
    default. Admin and write endpoints never answer cross-origin (api.cors)."""

    # --- operations (issue 17) ----------------------------------------------------------------
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, with the request id (also sent back in the
    ``X-Request-ID`` response header) on every line a request causes (api.observability.logs)."""
    workers: int = Field(default=1, ge=1, le=64)
    """API processes ``lookalike serve`` runs on one port (``--workers``); they share the database,
    Redis, the embedding queue and, through ``PROMETHEUS_MULTIPROC_DIR``, the metrics."""
    database_replica_urls: Annotated[tuple[str, ...], NoDecode] = ()
    """``LOOKALIKE_DATABASE_REPLICA_URLS``: comma-separated read replicas (streaming standbys of
    the primary). Shopper reads (search, similar, product reads, categories) go to them in turn;
    everything else stays on the primary (api.db.replicas)."""
    replica_max_lag_s: float = Field(default=10.0, gt=0)
    """A replica further behind than this is skipped until it catches up."""
    replica_circuit_reset_s: float = Field(default=5.0, gt=0)
    """How long a replica that failed is skipped before one read probes it again."""

    @field_validator("database_replica_urls", mode="before")
    @classmethod
    def _comma_separated_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: object) -> tuple[str, ...]:
        # Exact origins, normalised to what browsers send in ``Origin``; "*" and paths are refused.
        return parse_origins(value)

    @field_validator(
        "database_url",
        "redis_url",
        "clip_weights_path",
        "encoder_url",
        "admin_token",
        "image_root",
        "image_base_url",
        "visible_where",
        "field_sku",
        "field_name",
        "field_description",
        "field_category",
        "field_price",
        "field_currency",
        "field_attributes",
        "field_image_url",
        "field_url",
        "field_group",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # Compose files and .env templates write `VAR=` for "not set"; treat that as unset, not as "".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("products_table", "db_schema", "key_column", "text_language")
    @classmethod
    def _sql_identifier(cls, value: str) -> str:
        # The table name is spliced into DDL and queries, so only plain identifiers pass.
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, underscore)")
        return value

    @field_validator("clip_model")
    @classmethod
    def _known_clip_model(cls, value: str) -> str:
        clip_spec(value)
        return value

    @model_validator(mode="after")
    def _buildable_graphs(self) -> Settings:
        # pgvector refuses the index otherwise; say so at start, not at the first build.
        if self.hnsw_ef_construction is not None and self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                f"LOOKALIKE_HNSW_EF_CONSTRUCTION ({self.hnsw_ef_construction}) must be at least "
                f"2 x LOOKALIKE_HNSW_M ({2 * self.hnsw_m})"
            )
        return self

    @property
    def field_mapping(self) -> dict[str, str]:
        """The catalog fields the shop mapped (``LOOKALIKE_FIELD_*``), by field name."""
        return {
            name: value for name in CATALOG_FIELDS if (value := getattr(self, f"field_{name}")) is not None
        }

    @property
    def media_dir(self) -> Path:
        """Where relative image paths live, and where uploaded images are stored."""
        return self.image_root or self.data_dir / "media"

    @property
    def clip_dim(self) -> int:
        return clip_spec(self.clip_model).dim

    @property
    def fallback_dim(self) -> int:
        return MOBILENET_DIM


def describe_errors(error: ValidationError) -> list[str]:
    """One line per bad setting, named as the operator set it (``LOOKALIKE_<NAME>``), for the CLI:
    a typo in the environment is a usage error, not a traceback."""
    lines = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        name = f"LOOKALIKE_{field.upper()}" if field else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        value = f" (got {item['input']!r})" if field and isinstance(item.get("input"), str) else ""
        lines.append(f"{name}: {message}{value}" if field else message)
    return lines


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
