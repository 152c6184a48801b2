// Thin client for the Lookalike HTTP API. Every failure becomes an ApiError with a code.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const UNREACHABLE = "server_unreachable";

/** A SKU as a URL path: "shoes/red 1" -> "shoes/red%201" (the routes take {sku:path}). */
export const skuPath = (sku) => String(sku).split("/").map(encodeURIComponent).join("/");

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch {
    throw new ApiError(0, UNREACHABLE, "The Lookalike server can't be reached.");
  }
  return decode(response.status, await response.text());
}

function decode(status, body) {
  let data = null;
  try {
    data = body ? JSON.parse(body) : null;
  } catch {
    data = null;
  }
  if (status >= 200 && status < 300) return data;
  const error = data && data.error;
  if (error) throw new ApiError(status, error.code, error.message);
  if (status === 502 || status === 503 || status === 504) {
    throw new ApiError(status, UNREACHABLE, "The Lookalike server is not answering.");
  }
  // No error envelope (a proxy's page, or an old server): keep the status, never show it raw.
  throw new ApiError(status, "http_" + status, `HTTP ${status}`);
}

function appendFilters(form, filters) {
  for (const category of filters.categories) form.append("category", category);
  if (filters.priceMin !== null) form.append("price_min", String(filters.priceMin));
  if (filters.priceMax !== null) form.append("price_max", String(filters.priceMax));
  if (Object.keys(filters.attributes).length) form.append("attributes", JSON.stringify(filters.attributes));
}

function jsonFilters(filters) {
  const out = {};
  if (filters.categories.length) out.category = filters.categories;
  if (filters.priceMin !== null) out.price_min = filters.priceMin;
  if (filters.priceMax !== null) out.price_max = filters.priceMax;
  if (Object.keys(filters.attributes).length) out.attributes = filters.attributes;
  return out;
}

/**
 * Search by image file (multipart), text (JSON), or both. `photoSha` instead of `file` names a
 * photo the server has searched with before (a shared link): no bytes are sent.
 */
export function search({ file, photoSha, text, alpha, filters, topK, offset }, signal) {
  if (!file && photoSha) {
    const body = { image_sha256: photoSha, top_k: topK, offset, filters: jsonFilters(filters) };
    if (text) Object.assign(body, { text, alpha });
    return request("/api/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal,
    });
  }
  if (file) {
    const form = new FormData();
    form.append("file", file, file.name || "photo");
    if (text) form.append("text", text);
    form.append("alpha", String(alpha));
    form.append("top_k", String(topK));
    form.append("offset", String(offset));
    appendFilters(form, filters);
    return request("/api/v1/search/image", { method: "POST", body: form, signal });
  }
  const body = { text, top_k: topK, offset, filters: jsonFilters(filters) };
  return request("/api/v1/search", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
}

/** "More like this" for one product (attribute filters are not supported by this endpoint). */
export function similar(sku, { filters, topK, offset }, signal) {
  const params = new URLSearchParams({ top_k: String(topK), offset: String(offset) });
  for (const category of filters.categories) params.append("category", category);
  if (filters.priceMin !== null) params.set("price_min", String(filters.priceMin));
  if (filters.priceMax !== null) params.set("price_max", String(filters.priceMax));
  return request(`/api/v1/products/${skuPath(sku)}/similar?${params}`, { signal });
}

/** Browse the catalog without a query: one page of products under the filters, by `sort`. */
export function browse({ filters, sort, cursor, limit }, signal) {
  const params = new URLSearchParams({ limit: String(limit) });
  for (const category of filters.categories) params.append("category", category);
  if (filters.priceMin !== null) params.set("price_min", String(filters.priceMin));
  if (filters.priceMax !== null) params.set("price_max", String(filters.priceMax));
  if (Object.keys(filters.attributes).length) params.set("attributes", JSON.stringify(filters.attributes));
  if (sort) params.set("sort", sort);
  if (cursor) params.set("cursor", cursor);
  return request(`/api/v1/products?${params}`, { signal });
}

/** One product by SKU (SKUs may hold "/": each path segment is encoded on its own). */
export const product = (sku, signal) => request(`/api/v1/products/${skuPath(sku)}`, { signal });

export const categories = () => request("/api/v1/categories");
export const uiConfig = () => request("/ui/config.json");
export const health = () => request("/api/v1/health").catch((error) => {
  // 503 still carries a report body; anything else means the server is gone.
  if (error.status === 503) return { status: "down", components: {} };
  throw error;
});

const bearer = (token) => ({ Authorization: `Bearer ${token}` });

export const stats = (token) => request("/api/v1/stats", { headers: bearer(token) });

/** Upsert one product with its image; reports upload progress (0..1) through onProgress. */
export function uploadProduct(token, fields, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) {
      if (value !== null && value !== undefined && value !== "") form.append(key, String(value));
    }
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/products");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.upload.onload = () => onProgress(1);
    xhr.onload = () => {
      try {
        const product = decode(xhr.status, xhr.responseText);
        // 201: a new product; 200: an existing SKU replaced ("Updated" on the admin page).
        if (product && typeof product === "object") product.created = xhr.status === 201;
        resolve(product);
      } catch (error) {
        reject(error);
      }
    };
    xhr.onerror = () => reject(new ApiError(0, UNREACHABLE, "The Lookalike server can't be reached."));
    xhr.send(form);
  });
}
