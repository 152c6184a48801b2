"""What the request-edge checks of issue 14 cost per request (api/input_checks.py, api/schemas.py).

    .venv/bin/python bench/edge_checks.py [--rounds 6] [--n 20000]

Every JSON body now walks its strings and numbers (no NUL, no unpaired surrogate, no NaN), and
every request path is scanned before routing. Measured per request, A/B alternated in one process:

- ``checks``: ``SearchRequest.model_validate_json`` of a typical hybrid body with filters, as served;
- ``no-checks``: the same, with the per-field check swapped for the identity (the validator hook
  stays, so the difference is the work of the checks themselves);
- ``path``: :func:`api.input_checks.path_problem` on a typical product path with a query string.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import api.schemas as schemas
from api.input_checks import check_value, path_problem

BODY = (
    b'{"text": "red linen summer dress", "image_url": "uploads/3f9a.jpg", "alpha": 0.6, "top_k": 24,'
    b' "offset": 24, "filters": {"category": ["dress", "skirt"], "price_min": "10", "price_max": 89.9,'
    b' "attributes": {"color": "red", "size": ["M", "L"], "material": {"linen": true}}}}'
)
PATH = "/api/v1/products/DR-1187/similar"
QUERY = b"top_k=12&offset=0&category=dress&price_max=80"


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()

    def validate() -> None:
        schemas.SearchRequest.model_validate_json(BODY)

    results: dict[str, list[float]] = {"checks": [], "no-checks": [], "path": []}
    for _ in range(args.rounds):
        schemas.check_value = check_value
        results["checks"].append(per_call_us(validate, args.n))
        schemas.check_value = lambda value, depth=0: value
        results["no-checks"].append(per_call_us(validate, args.n))
        schemas.check_value = check_value
        results["path"].append(per_call_us(lambda: path_problem(PATH, QUERY), args.n))
    for name, values in results.items():
        raw = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"{name:10s} median {statistics.median(values):6.2f} us  range {min(values):.2f}-{max(values):.2f}  [{raw}]"
        )


if __name__ == "__main__":
    main()
