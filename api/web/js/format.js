// Small pure helpers shared by the pages: prices, image URLs, durations, friendly errors.

const priceFormats = new Map();

export function formatPrice(price, currency) {
  if (price === null || price === undefined) return "";
  const code = currency || "USD";
  if (!priceFormats.has(code)) {
    try {
      priceFormats.set(code, new Intl.NumberFormat(undefined, { style: "currency", currency: code }));
    } catch {
      priceFormats.set(code, { format: (n) => `${n.toFixed(2)} ${code}` });
    }
  }
  return priceFormats.get(code).format(price);
}

/** A product's image_url is an absolute http(s) URL or a path under the API's media dir. */
export function imageSrc(imageUrl) {
  if (!imageUrl) return "";
  if (/^(https?:)?\/\//i.test(imageUrl) || imageUrl.startsWith("data:")) return imageUrl;
  const path = imageUrl.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
  return `/api/v1/images/${path}`;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${Math.max(1, Math.round(ms))} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function formatBytes(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(bytes % (1024 * 1024) ? 1 : 0)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} B`;
}

export const MODE_LABELS = {
  clip: "Visual match",
  clip_text: "Visual + name match",
  hybrid: "Photo + words",
  mobilenet_fallback: "Basic visual match",
  fulltext_fallback: "Keyword match",
};

/** What a shopper reads about a fallback mode: what they are seeing, never why the model is down. */
export const SHOPPER_MODE_NOTES = {
  mobilenet_fallback: "Showing visually similar items",
  fulltext_fallback: "Showing items that mention your words",
};

export const isFallback = (mode) => mode === "mobilenet_fallback" || mode === "fulltext_fallback";

/** Errors worth a "Try again" button: the same request may well work a moment later. */
export const isTransient = (error) =>
  error.status === 0 || error.status >= 500 || error.status === 429 || error.code === "server_unreachable";

/** Errors about the photo itself: the previous photo and results stay. */
export const isPhotoError = (error) =>
  [
    "file_too_large",
    "not_an_image",
    "image_too_large",
    "empty_image",
    "truncated_image",
    "unsupported_format",
    "invalid_base64",
    "crop_outside_image",
  ].includes(error.code);

/**
 * What a shopper should read for an API error (codes from the API's error envelope), in plain
 * words. Server messages and status numbers are for developers: they never reach this text.
 */
export function friendlyError(error, maxBytes) {
  const limit = maxBytes ? formatBytes(maxBytes) : "the size limit";
  switch (error.code) {
    case "file_too_large":
      return `That photo is too large. Please use one under ${limit}.`;
    case "not_an_image":
      return "That file isn't an image. Try a JPEG, PNG or WebP photo.";
    case "image_too_large":
      return "That photo has too many pixels. Please use a smaller one.";
    case "empty_image":
      return "That file is empty. Please choose another photo.";
    case "truncated_image":
    case "invalid_base64":
      return "That image looks damaged or incomplete. Try saving it again, or use another photo.";
    case "unsupported_format":
      return "That image format isn't supported. Try a JPEG, PNG or WebP photo.";
    case "crop_outside_image":
      return "That part of the photo couldn't be used. Try drawing the box again.";
    case "photo_not_available":
      return "This link was for a photo search, and photos aren't kept, so it can't be repeated. Add the photo again to search with it.";
    case "server_unreachable":
      return "Can't reach the shop's search right now. Check your connection and try again.";
    case "overloaded":
    case "rate_limited":
      return "Search is busy right now. Please try again in a moment.";
    case "search_unavailable":
    case "encoder_unavailable":
    case "database_unavailable":
      return "Search is temporarily unavailable. Please try again in a moment.";
    case "not_found":
    case "product_not_found":
      return "That product isn't in the catalog any more.";
    case "not_embedded":
      return "We can't find similar items for that product yet. Please try again later.";
    default:
      if (error.status === 0 || error.status >= 500) return "Something went wrong on our side. Please try again.";
      if (error.status === 404) return "We couldn't find that. It may have been removed.";
      return "We couldn't run that search. Please change it a little and try again.";
  }
}

/** The technical line for the admin page: code and the server's own message. */
export function technicalError(error) {
  return `${error.message || "error"} (${error.code || "unknown"}${error.status ? `, HTTP ${error.status}` : ""})`;
}
