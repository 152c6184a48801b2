"""Product CRUD. Writes need the admin token and embed the image before answering."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.db.products import Product
from api.errors import RequestError
from api.routes.auth import require_admin
from api.schemas import ProductIn, ProductOut, ProductPatch
from api.services.images.decode import decode_base64_image, read_upload
from api.services.images.download import image_from_url
from api.state import AppState, app_state

router = APIRouter(tags=["products"])

PRODUCT_FORM_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProductIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["sku"],
                    "properties": {
                        "sku": {"type": "string"},
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "category": {"type": "string"},
                        "price": {"type": "string"},
                        "currency": {"type": "string"},
                        "attributes": {"type": "string", "description": "JSON object"},
                        "image_url": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
        "required": True,
    }
}


def product_out(product: Product) -> dict[str, Any]:
    return ProductOut.model_validate(product, from_attributes=True).model_dump(mode="json")


async def _parse_product(request: Request, state: AppState) -> tuple[ProductIn, bytes | None]:
    """JSON (image as base64 or image_url) or multipart (image as a file), validated the same way."""
    content_type = request.headers.get("content-type", "")
    upload: bytes | None = None
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        fields: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, UploadFile) and v != ""}
        if "attributes" in fields:
            try:
                fields["attributes"] = json.loads(str(fields["attributes"]))
            except json.JSONDecodeError as exc:
                raise RequestError(422, "invalid_request", f"attributes: not valid JSON ({exc.msg})") from exc
        file = form.get("file")
        if isinstance(file, UploadFile):
            upload = await read_upload(file, state.settings.max_upload_bytes)
    elif content_type.startswith("application/json"):
        try:
            fields = await request.json()
        except ValueError as exc:
            raise RequestError(400, "invalid_json", "the request body is not valid JSON") from exc
        if not isinstance(fields, dict):
            raise RequestError(422, "invalid_request", "the body must be a JSON object")
    else:
        raise RequestError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    body = ProductIn.model_validate(fields)  # a ValidationError is a 422 (api/http_errors.py)
    if sum(x is not None for x in (upload, body.image, body.image_url)) > 1:
        raise RequestError(422, "invalid_request", "give one image: a file, base64 image, or image_url")
    return body, upload


def _image_bytes(
    body_image: str | None, image_url: str | None, upload: bytes | None, state: AppState
) -> bytes | None:
    if upload is not None:
        return upload
    if body_image is not None:
        return decode_base64_image(body_image, state.settings.max_upload_bytes)
    if image_url is not None:
        return image_from_url(image_url, state.settings)
    return None


@router.post(
    "/api/v1/products",
    dependencies=[Depends(require_admin)],
    openapi_extra=PRODUCT_FORM_DOC,
    responses={200: {"model": ProductOut}, 201: {"model": ProductOut}},
)
async def upsert_product(
    request: Request, response: Response, state: AppState = Depends(app_state)
) -> dict[str, Any]:
    """Create or replace a product by sku; its image is embedded before the row is written."""
    state.products.check_writable()
    body, upload = await _parse_product(request, state)

    def work() -> tuple[Product, bool]:
        image = _image_bytes(body.image, body.image_url, upload, state)
        fields = body.model_dump(exclude={"sku", "image"})
        # Uploaded bytes are kept (content-addressed) so the UI can show the product's picture,
        # stored by the service only once they embedded.
        store = image is not None and body.image_url is None
        if body.image_url is None:
            fields.pop("image_url")
        return state.products.upsert(body.sku, fields, image, store_image=store)

    product, created = await run_in_threadpool(work)
    response.status_code = 201 if created else 200
    return product_out(product)


@router.get("/api/v1/products/{sku:path}", response_model=ProductOut)
def get_product(sku: str, state: AppState = Depends(app_state)) -> dict[str, Any]:
    return product_out(state.products.get(sku))


@router.patch("/api/v1/products/{sku:path}", response_model=ProductOut, dependencies=[Depends(require_admin)])
def patch_product(sku: str, body: ProductPatch, state: AppState = Depends(app_state)) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    image = image_from_url(body.image_url, state.settings) if body.image_url else None
    return product_out(state.products.patch(sku, fields, image))


@router.delete("/api/v1/products/{sku:path}", status_code=204, dependencies=[Depends(require_admin)])
def delete_product(sku: str, state: AppState = Depends(app_state)) -> Response:
    state.products.delete(sku)
    return Response(status_code=204)
