"""Three real shop schemas, written from their public table definitions, with real photos.

Each :class:`Shop` creates its tables the way the shop's own migrations do (the columns
Lookalike maps, plus the neighbours a real table has), fills them with products -- published,
draft and deleted -- and says how to attach Lookalike to it (the settings docs/shops.md shows).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, text

PHOTOS_PER_CLASS = 3
CLASSES = ("dress", "shoes", "t-shirt", "pants")


@dataclass
class Product:
    key: str | int
    sku: str
    title: str
    category: str
    photo: Path
    visible: bool


@dataclass
class Shop:
    name: str
    table: str
    settings: dict[str, str]
    create: Callable[[Connection, list[tuple[str, Path]], Path], list[Product]]
    """(conn, [(class, photo)], media dir) -> the products it wrote."""
    shop_tables: tuple[str, ...] = field(default_factory=tuple)

    def env(self) -> dict[str, str]:
        return {f"LOOKALIKE_{k.upper()}": v for k, v in self.settings.items()}


def photos(dataset: Path) -> list[tuple[str, Path]]:
    chosen = []
    for cls in CLASSES:
        chosen += [(cls, p) for p in sorted((dataset / "train" / cls).glob("*.jpg"))[:PHOTOS_PER_CLASS]]
    return chosen


# --- Medusa v2 -------------------------------------------------------------------------------
# product / product_category / product_category_product and the pricing module's price tables,
# as Medusa's MikroORM migrations create them (text ids with prefixes, soft delete, status).
MEDUSA_DDL = """
CREATE TABLE product (
    id text PRIMARY KEY, title text NOT NULL, handle text NOT NULL, subtitle text, description text,
    is_giftcard boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'proposed', 'published', 'rejected')),
    thumbnail text, weight text, length text, height text, width text, origin_country text,
    hs_code text, mid_code text, material text, collection_id text, type_id text,
    discountable boolean NOT NULL DEFAULT true, external_id text, metadata jsonb,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE UNIQUE INDEX "IDX_product_handle_unique" ON product (handle) WHERE deleted_at IS NULL;
CREATE TABLE product_category (
    id text PRIMARY KEY, name text NOT NULL, description text NOT NULL DEFAULT '', handle text NOT NULL,
    mpath text NOT NULL, is_active boolean NOT NULL DEFAULT false, is_internal boolean NOT NULL DEFAULT false,
    rank integer NOT NULL DEFAULT 0, parent_category_id text REFERENCES product_category(id),
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz, metadata jsonb
);
CREATE TABLE product_category_product (
    product_id text NOT NULL REFERENCES product(id) ON DELETE CASCADE,
    product_category_id text NOT NULL REFERENCES product_category(id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, product_category_id)
);
CREATE TABLE product_variant (
    id text PRIMARY KEY, title text NOT NULL, sku text, product_id text REFERENCES product(id),
    variant_rank integer DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(), deleted_at timestamptz
);
CREATE TABLE product_variant_price_set (
    id text PRIMARY KEY, variant_id text NOT NULL, price_set_id text NOT NULL, deleted_at timestamptz
);
CREATE TABLE price (
    id text PRIMARY KEY, price_set_id text NOT NULL, currency_code text NOT NULL, amount numeric NOT NULL,
    min_quantity numeric, max_quantity numeric, deleted_at timestamptz
);
"""

MEDUSA_CATEGORY = (
    "(select c.handle from product_category_product pc join product_category c "
    "on c.id = pc.product_category_id where pc.product_id = product.id and c.deleted_at is null "
    "order by c.rank limit 1)"
)
MEDUSA_PRICE = (
    "(select min(pr.amount) from product_variant v join product_variant_price_set vps "
    "on vps.variant_id = v.id and vps.deleted_at is null join price pr on pr.price_set_id = vps.price_set_id "
    "and pr.deleted_at is null where v.product_id = product.id and v.deleted_at is null "
    "and pr.currency_code = 'eur')"
)


def _ulid() -> str:
    return uuid.uuid4().hex[:26].upper()


def create_medusa(conn: Connection, chosen: list[tuple[str, Path]], media: Path) -> list[Product]:
    conn.execute(text(MEDUSA_DDL))
    for rank, cls in enumerate(CLASSES):
        conn.execute(
            text(
                "INSERT INTO product_category (id, name, handle, mpath, is_active, rank) "
                "VALUES (:id, :name, :handle, :id, true, :rank)"
            ),
            {"id": f"pcat_{cls}", "name": cls.title(), "handle": cls, "rank": rank},
        )
    products = []
    for i, (cls, photo) in enumerate(chosen):
        key = f"prod_01J{_ulid()}"
        status = "draft" if i % 6 == 1 else "published"
        deleted = i % 6 == 4
        handle = f"{cls}-{i}"
        title = f"{cls.replace('-', ' ').title()} {i}"
        relative = f"uploads/{photo.name}"
        target = media / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
        conn.execute(
            text(
                "INSERT INTO product (id, title, handle, description, status, thumbnail, metadata, deleted_at) "
                "VALUES (:id, :title, :handle, :d, :status, :thumb, CAST(:meta AS jsonb), "
                "CASE WHEN :deleted THEN now() END)"
            ),
            {
                "id": key,
                "title": title,
                "handle": handle,
                "d": f"A {cls} from our spring line",
                "status": status,
                "thumb": relative,
                "meta": '{"color": "%s"}' % ("red" if i % 2 else "blue"),
                "deleted": deleted,
            },
        )
        conn.execute(
            text("INSERT INTO product_category_product VALUES (:p, :c)"), {"p": key, "c": f"pcat_{cls}"}
        )
        variant, price_set = f"variant_{_ulid()}", f"pset_{_ulid()}"
        conn.execute(
            text("INSERT INTO product_variant (id, title, sku, product_id) VALUES (:v, 'Default', :s, :p)"),
            {"v": variant, "s": handle.upper(), "p": key},
        )
        conn.execute(
            text("INSERT INTO product_variant_price_set VALUES (:id, :v, :ps, NULL)"),
            {"id": f"pvps_{_ulid()}", "v": variant, "ps": price_set},
        )
        conn.execute(
            text("INSERT INTO price (id, price_set_id, currency_code, amount) VALUES (:id, :ps, 'eur', :a)"),
            {"id": f"price_{_ulid()}", "ps": price_set, "a": 20 + i},
        )
        products.append(Product(key, handle, title, cls, photo, status == "published" and not deleted))
    return products


MEDUSA = Shop(
    name="medusa",
    table="product",
    settings={
        "products_table": "product",
        "key_column": "id",
        "field_sku": "handle",
        "field_name": "title",
        "field_description": "description",
        "field_category": MEDUSA_CATEGORY,
        "field_price": MEDUSA_PRICE,
        "field_currency": "'EUR'",
        "field_attributes": "metadata",
        "field_image_url": "thumbnail",
        "field_url": "'/products/' || handle",
        "visible_where": "deleted_at is null and status = 'published'",
    },
    create=create_medusa,
    shop_tables=("product", "product_category", "product_category_product", "product_variant", "price"),
)


# --- Spree / Solidus ---------------------------------------------------------------------------
# spree_products with its master variant, prices, taxons and (paperclip-era) assets whose files
# sit in a media folder: the "images in another table, paths relative to a folder" shop.
SPREE_DDL = """
CREATE TABLE spree_products (
    id bigserial PRIMARY KEY, name varchar NOT NULL DEFAULT '', description text,
    available_on timestamp, discontinue_on timestamp, deleted_at timestamp, slug varchar,
    meta_description text, meta_keywords varchar, tax_category_id bigint, shipping_category_id bigint,
    created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now(),
    promotionable boolean DEFAULT true, meta_title varchar, status varchar NOT NULL DEFAULT 'draft'
);
CREATE UNIQUE INDEX index_spree_products_on_slug ON spree_products (slug);
CREATE TABLE spree_variants (
    id bigserial PRIMARY KEY, sku varchar NOT NULL DEFAULT '', weight numeric(8, 2) DEFAULT 0.0,
    deleted_at timestamp, is_master boolean DEFAULT false, product_id bigint REFERENCES spree_products(id),
    cost_price numeric(10, 2), position integer, cost_currency varchar, track_inventory boolean DEFAULT true,
    updated_at timestamp NOT NULL DEFAULT now(), created_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE spree_prices (
    id bigserial PRIMARY KEY, variant_id bigint NOT NULL, amount numeric(10, 2), currency varchar,
    deleted_at timestamp, created_at timestamp NOT NULL DEFAULT now(), updated_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE spree_taxons (
    id bigserial PRIMARY KEY, parent_id bigint, position integer DEFAULT 0, name varchar NOT NULL,
    permalink varchar, taxonomy_id bigint, lft integer, rgt integer, depth integer
);
CREATE TABLE spree_products_taxons (
    id bigserial PRIMARY KEY, product_id bigint, taxon_id bigint, position integer
);
CREATE TABLE spree_assets (
    id bigserial PRIMARY KEY, viewable_type varchar, viewable_id bigint, attachment_width integer,
    attachment_height integer, attachment_file_size integer, position integer,
    attachment_content_type varchar, attachment_file_name varchar, type varchar(75),
    attachment_updated_at timestamp, alt text, created_at timestamp, updated_at timestamp
);
"""

SPREE_SKU = (
    "(select v.sku from spree_variants v where v.product_id = spree_products.id and v.is_master "
    "and v.deleted_at is null limit 1)"
)
SPREE_CATEGORY = (
    "(select t.permalink from spree_products_taxons pt join spree_taxons t on t.id = pt.taxon_id "
    "where pt.product_id = spree_products.id order by pt.position limit 1)"
)
SPREE_PRICE = (
    "(select p.amount from spree_prices p join spree_variants v on v.id = p.variant_id "
    "where v.product_id = spree_products.id and v.is_master and p.currency = 'USD' "
    "and p.deleted_at is null limit 1)"
)
SPREE_IMAGE = (
    "(select 'spree/products/' || a.id || '/original/' || a.attachment_file_name from spree_assets a "
    "join spree_variants v on v.id = a.viewable_id where a.viewable_type = 'Spree::Variant' "
    "and v.product_id = spree_products.id order by v.is_master desc, a.position limit 1)"
)


def create_spree(conn: Connection, chosen: list[tuple[str, Path]], media: Path) -> list[Product]:
    conn.execute(text(SPREE_DDL))
    taxon_ids = {}
    for cls in CLASSES:
        taxon_ids[cls] = conn.execute(
            text("INSERT INTO spree_taxons (name, permalink) VALUES (:n, :p) RETURNING id"),
            {"n": cls.title(), "p": f"categories/{cls}"},
        ).scalar_one()
    products = []
    for i, (cls, photo) in enumerate(chosen):
        status = "draft" if i % 6 == 1 else "active"
        deleted = i % 6 == 4
        name = f"{cls.replace('-', ' ').title()} {i}"
        key = conn.execute(
            text(
                "INSERT INTO spree_products (name, description, slug, status, available_on, deleted_at) "
                "VALUES (:n, :d, :slug, :s, now() - interval '1 day', CASE WHEN :deleted THEN now() END) "
                "RETURNING id"
            ),
            {"n": name, "d": f"A {cls}", "slug": f"{cls}-{i}", "s": status, "deleted": deleted},
        ).scalar_one()
        sku = f"SP/{cls.upper()}/{i}"  # a '/' in the SKU: every route must still take it
        variant = conn.execute(
            text(
                "INSERT INTO spree_variants (sku, is_master, product_id) VALUES (:sku, true, :p) RETURNING id"
            ),
            {"sku": sku, "p": key},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO spree_prices (variant_id, amount, currency) VALUES (:v, :a, 'USD')"),
            {"v": variant, "a": 15 + i},
        )
        conn.execute(
            text("INSERT INTO spree_products_taxons (product_id, taxon_id, position) VALUES (:p, :t, 0)"),
            {"p": key, "t": taxon_ids[cls]},
        )
        asset = conn.execute(
            text(
                "INSERT INTO spree_assets (viewable_type, viewable_id, position, attachment_file_name, type) "
                "VALUES ('Spree::Variant', :v, 1, :f, 'Spree::Image') RETURNING id"
            ),
            {"v": variant, "f": photo.name},
        ).scalar_one()
        target = media / "spree" / "products" / str(asset) / "original" / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
        products.append(
            Product(int(key), sku, name, f"categories/{cls}", photo, status == "active" and not deleted)
        )
    return products


SPREE = Shop(
    name="spree",
    table="spree_products",
    settings={
        "products_table": "spree_products",
        "key_column": "id",
        "field_sku": SPREE_SKU,
        "field_name": "name",
        "field_description": "description",
        "field_category": SPREE_CATEGORY,
        "field_price": SPREE_PRICE,
        "field_currency": "'USD'",
        "field_image_url": SPREE_IMAGE,
        "field_url": "'/products/' || slug",
        "visible_where": (
            "deleted_at is null and status = 'active' and (available_on is null or available_on <= now()) "
            "and (discontinue_on is null or discontinue_on > now())"
        ),
    },
    create=create_spree,
    shop_tables=("spree_products", "spree_variants", "spree_prices", "spree_taxons", "spree_assets"),
)


# --- a generic variants table with a main image -------------------------------------------------
VARIANTS_DDL = """
CREATE TABLE category (id serial PRIMARY KEY, slug text NOT NULL UNIQUE);
CREATE TABLE catalog_product (id serial PRIMARY KEY, title text NOT NULL, category_id int REFERENCES category(id));
CREATE TABLE catalog_variant (
    id uuid PRIMARY KEY, product_id int NOT NULL REFERENCES catalog_product(id), sku text NOT NULL UNIQUE,
    color text, size text, price_cents integer NOT NULL, main_image text, published boolean NOT NULL DEFAULT false
);
"""

VARIANTS_CATEGORY = (
    "(select c.slug from catalog_product p join category c on c.id = p.category_id "
    "where p.id = catalog_variant.product_id)"
)


def create_variants(conn: Connection, chosen: list[tuple[str, Path]], media: Path) -> list[Product]:
    conn.execute(text(VARIANTS_DDL))
    for cls in CLASSES:
        conn.execute(text("INSERT INTO category (slug) VALUES (:s)"), {"s": cls})
    products = []
    for i, (cls, photo) in enumerate(chosen):
        product_id = conn.execute(
            text(
                "INSERT INTO catalog_product (title, category_id) "
                "VALUES (:t, (select id from category where slug = :c)) RETURNING id"
            ),
            {"t": f"{cls.title()} {i}", "c": cls},
        ).scalar_one()
        key = uuid.uuid4()
        color = ("red", "blue")[i % 2]
        sku = f"{cls.upper()}/{color.upper()}/M"
        relative = f"variants/{cls}/{photo.name}"
        target = media / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
        published = i % 6 not in (1, 4)
        conn.execute(
            text(
                "INSERT INTO catalog_variant (id, product_id, sku, color, size, price_cents, main_image, published) "
                "VALUES (:id, :p, :sku, :color, 'M', :cents, :img, :pub)"
            ),
            {"id": key, "p": product_id, "sku": f"{sku}-{i}", "color": color, "cents": 1999 + i * 100,
             "img": relative, "pub": published},
        )  # fmt: skip
        products.append(
            Product(str(key), f"{sku}-{i}", f"{cls.title()} {i} ({color})", cls, photo, published)
        )
    return products


VARIANTS = Shop(
    name="variants",
    table="catalog_variant",
    settings={
        "products_table": "catalog_variant",
        "key_column": "id",
        "field_sku": "sku",
        "field_name": (
            "(select p.title from catalog_product p where p.id = catalog_variant.product_id) || ' (' || color || ')'"
        ),
        "field_category": VARIANTS_CATEGORY,
        "field_price": "price_cents / 100.0",
        "field_currency": "'EUR'",
        "field_attributes": "jsonb_build_object('color', color, 'size', size)",
        "field_image_url": "main_image",
        "visible_where": "published",
    },
    create=create_variants,
    shop_tables=("catalog_variant", "catalog_product", "category"),
)

SHOPS = (MEDUSA, SPREE, VARIANTS)
