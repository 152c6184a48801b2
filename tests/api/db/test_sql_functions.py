"""The analyst functions shipped by the migrations, on planted vectors whose order is known."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from api.db.engine import Database


def plant(database: Database, count: int = 30) -> dict[str, float]:
    """Rows whose embeddings sit at growing angles from e0, so similarity order is sku order."""
    rng = np.random.default_rng(7)
    expected: dict[str, float] = {}
    with database.connect() as conn:
        for i in range(count):
            angle = i * 0.05
            vector = np.zeros(512, dtype=np.float32)
            vector[0] = np.cos(angle)
            vector[1 + i] = np.sin(angle)  # an orthogonal direction per row keeps pairwise order clean
            vector += rng.normal(0, 1e-4, 512).astype(np.float32)
            vector /= np.linalg.norm(vector)
            expected[f"p{i:02d}"] = float(vector[0])
            conn.execute(
                text("INSERT INTO products (sku, name, category, image_embedding) VALUES (:s, :n, 'x', :v)"),
                {"s": f"p{i:02d}", "n": f"planted {i}", "v": str(vector.tolist())},
            )
        conn.execute(text("INSERT INTO products (sku, name) VALUES ('no-vector', 'not embedded yet')"))
        conn.commit()
    return expected


def test_similar_products_returns_nearest_rows_in_order(migrated_database: Database) -> None:
    plant(migrated_database)
    with migrated_database.connect() as conn:
        anchor = conn.execute(text("SELECT id FROM products WHERE sku = 'p00'")).scalar()
        rows = conn.execute(
            text("SELECT sku, similarity FROM similar_products(:id, 5)"), {"id": anchor}
        ).all()
        by_sku = conn.execute(text("SELECT sku FROM similar_products_by_sku('p00', 5)")).scalars().all()
        missing = conn.execute(text("SELECT count(*) FROM similar_products_by_sku('no-vector', 5)")).scalar()

    assert [sku for sku, _ in rows] == ["p01", "p02", "p03", "p04", "p05"]
    similarities = [s for _, s in rows]
    assert similarities == sorted(similarities, reverse=True)
    assert abs(similarities[0] - np.cos(0.05)) < 1e-3
    assert by_sku == ["p01", "p02", "p03", "p04", "p05"]
    assert missing == 0  # a product without an embedding has no neighbours, not an error


def test_large_k_is_filled_in_true_distance_order(migrated_database: Database) -> None:
    plant(migrated_database, count=30)
    with migrated_database.connect() as conn:
        conn.execute(text("SET hnsw.ef_search = 10"))  # smaller than k: the iterative scan must fill the page
        anchor = conn.execute(text("SELECT id FROM products WHERE sku = 'p00'")).scalar()
        skus = conn.execute(text("SELECT sku FROM similar_products(:id, 25)"), {"id": anchor}).scalars().all()
    assert skus == [f"p{i:02d}" for i in range(1, 26)]


def test_products_near_takes_a_query_vector(migrated_database: Database) -> None:
    plant(migrated_database)
    query = np.zeros(512, dtype=np.float32)
    query[0] = 1.0
    with migrated_database.connect() as conn:
        skus = (
            conn.execute(
                text("SELECT sku FROM products_near(CAST(:q AS vector), 3)"), {"q": str(query.tolist())}
            )
            .scalars()
            .all()
        )
    assert skus == ["p00", "p01", "p02"]
