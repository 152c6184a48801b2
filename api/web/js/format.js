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
  hybrid: "Photo + words",
  mobilenet_fallback: "Basic visual match",
  fulltext_fallback: "Keyword match",
};

export const isFallback = (mode) => mode === "mobilenet_fallback" || mode === "fulltext_fallback";

/** What a shopper should read for an API error (codes from the API's error envelope). */
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
      return "That image looks damaged or incomplete. Try saving it again, or use another photo.";
    case "unsupported_format":
      return "That image format isn't supported. Try a JPEG, PNG or WebP photo.";
    case "server_unreachable":
      return "Can't reach the Lookalike server. Check your connection and try again.";
    case "search_unavailable":
    case "encoder_unavailable":
    case "database_unavailable":
      return "Search is temporarily unavailable. Please try again in a moment.";
    default:
      if (error.status === 503) return "Search is temporarily unavailable. Please try again in a moment.";
      return error.message || "Something went wrong. Please try again.";
  }
}
