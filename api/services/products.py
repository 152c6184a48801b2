"""Product writes that embed the image first: a bad image means nothing is written."""

from __future__ import annotations

from typing import Any

from api.db.catalog import Catalog
from api.db.embedding_queue import Embedded, WantedModels, current_embeddings, write_embedded
from api.db.engine import Database
from api.db.products import (
    Embeddings,
    Product,
    clear_embeddings,
    delete_product,
    get_product,
    update_product,
    upsert_product,
)
from api.errors import CatalogManagedByShopError, ProductNotFoundError
from api.services.embedding import embed_images, sha256_hex
from api.services.encoders import EncoderHub
from api.services.images.storage import save_image
from api.settings import Settings
from encoder.errors import InvalidImageError


class ProductService:
    def __init__(self, settings: Settings, database: Database, catalog: Catalog, hub: EncoderHub) -> None:
        self.settings = settings
        self.database = database
        self.catalog = catalog
        self.hub = hub

    def get(self, sku: str) -> Product:
        with self.database.read() as conn:  # a shopper read: a replica when there are some
            product = get_product(conn, self.catalog, sku)
        if product is None:
            raise ProductNotFoundError(sku)
        return product

    def check_writable(self) -> None:
        """An attached shop table is read-only to Lookalike: its rows belong to the shop's backend."""
        if self.catalog.attached:
            raise CatalogManagedByShopError()

    def upsert(
        self, sku: str, fields: dict[str, Any], image: bytes | None, *, store_image: bool = False
    ) -> tuple[Product, bool]:
        """Create or replace by sku. The image (if any) is embedded before the transaction opens.

        ``store_image``: keep the uploaded bytes under the media dir and point ``image_url`` at
        them -- only once they embedded, so a bad upload leaves no file behind.
        """
        self.check_writable()
        embeddings = self._embed(sku, image) if image is not None else None
        if store_image and image is not None:
            fields = {**fields, "image_url": save_image(image, self.settings)}
        with self.database.begin() as conn:
            product_id, created = upsert_product(conn, self.catalog, sku, fields)
            if embeddings is not None:
                write_embedded(conn, self.catalog, [Embedded(product_id, None, embeddings)])
            elif "image_url" in fields and not created:
                clear_embeddings(conn, self.catalog, product_id)  # the old vectors describe the old image
            product = get_product(conn, self.catalog, sku, shopper=False)
        assert product is not None
        return product, created

    def patch(self, sku: str, fields: dict[str, Any], image: bytes | None) -> Product:
        self.check_writable()
        embeddings = self._embed(sku, image) if image is not None else None
        with self.database.begin() as conn:
            product_id = update_product(conn, self.catalog, sku, fields)
            if product_id is None:
                raise ProductNotFoundError(sku)
            if embeddings is not None:
                write_embedded(conn, self.catalog, [Embedded(product_id, None, embeddings)])
            elif "image_url" in fields:
                # The image went away (image_url null): its vectors would keep finding the product
                # by a photo it no longer has. (A new image_url arrives fetched, as ``image``.)
                clear_embeddings(conn, self.catalog, product_id)
            product = get_product(conn, self.catalog, sku, shopper=False)
        assert product is not None
        return product

    def delete(self, sku: str) -> None:
        self.check_writable()
        with self.database.begin() as conn:
            if not delete_product(conn, self.catalog, sku):
                raise ProductNotFoundError(sku)

    def _embed(self, sku: str, image: bytes) -> Embeddings:
        current = self._current_embeddings(sku, image)
        if current is not None:
            return current
        (result,) = embed_images(self.hub, [image], self.settings.max_image_pixels)
        if isinstance(result, InvalidImageError):
            raise result
        return result

    def _current_embeddings(self, sku: str, image: bytes) -> Embeddings | None:
        """A retried upsert of the same image by the same models needs no second forward pass."""
        models = WantedModels(self.hub.clip_model_id, self.hub.mobilenet_model_id)
        with self.database.connect() as conn:
            return current_embeddings(conn, self.catalog, sku, sha256_hex(image), models)
