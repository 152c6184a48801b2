// The search as an address: every search the page runs is written into the URL, so Back and
// Forward step through searches, a reload restores the last one and a copied link repeats it.
//
//   q       the words                      photo  sha256 of the photo bytes searched with
//   w       photo/words balance (0..1)     like   SKU of a "more like this" search
//   cat     category                       min, max  price range
//   a       attributes, a JSON object      n      pages loaded ("Load more" depth)
//   browse  1: browsing a category         sort   browse order
//   size    results per page (1-100; 24 unless a link asks for another)

const DEFAULT_ALPHA = 0.5;
export const DEFAULT_PAGE_SIZE = 24;

/** The empty search: the start page. */
export const emptySearch = () => ({
  text: "",
  photo: null, // sha256 hex
  alpha: DEFAULT_ALPHA,
  like: null,
  category: "",
  priceMin: null,
  priceMax: null,
  attributes: {},
  pages: 1,
  browse: false,
  sort: "",
  size: DEFAULT_PAGE_SIZE,
});

const number = (value) => {
  if (value === null || value === "") return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
};

/** Read a search from a query string; anything malformed is dropped, never fatal. */
export function readSearch(search) {
  const params = new URLSearchParams(search);
  const state = emptySearch();
  state.text = (params.get("q") || "").slice(0, 512);
  const photo = params.get("photo");
  state.photo = photo && /^[0-9a-f]{64}$/.test(photo) ? photo : null;
  const alpha = number(params.get("w"));
  state.alpha = alpha !== null && alpha >= 0 && alpha <= 1 ? alpha : DEFAULT_ALPHA;
  state.like = params.get("like") || null;
  state.category = params.get("cat") || "";
  state.priceMin = number(params.get("min"));
  state.priceMax = number(params.get("max"));
  try {
    const attributes = JSON.parse(params.get("a") || "{}");
    if (attributes && typeof attributes === "object" && !Array.isArray(attributes)) state.attributes = attributes;
  } catch {
    state.attributes = {};
  }
  const pages = number(params.get("n"));
  state.pages = pages && pages >= 1 ? Math.min(Math.floor(pages), 20) : 1;
  state.browse = params.get("browse") === "1" && Boolean(state.category);
  state.sort = params.get("sort") || "";
  const size = number(params.get("size"));
  state.size = size && size >= 1 && size <= 100 ? Math.floor(size) : DEFAULT_PAGE_SIZE;
  return state;
}

/** The query string for a search ("" for the start page); keys in a stable order. */
export function writeSearch(state) {
  const params = new URLSearchParams();
  if (state.like) params.set("like", state.like);
  if (state.text) params.set("q", state.text);
  if (state.photo) params.set("photo", state.photo);
  if (state.photo && state.text && state.alpha !== DEFAULT_ALPHA) params.set("w", String(state.alpha));
  if (state.browse) params.set("browse", "1");
  if (state.category) params.set("cat", state.category);
  if (state.priceMin !== null) params.set("min", String(state.priceMin));
  if (state.priceMax !== null) params.set("max", String(state.priceMax));
  if (Object.keys(state.attributes).length) params.set("a", JSON.stringify(state.attributes));
  if (state.browse && state.sort) params.set("sort", state.sort);
  if (state.pages > 1) params.set("n", String(state.pages));
  if (state.size && state.size !== DEFAULT_PAGE_SIZE) params.set("size", String(state.size));
  const query = params.toString();
  return query ? `?${query}` : "";
}

/** A search differs from another one in what it asks (the page depth aside). */
export const sameQuery = (a, b) => writeSearch({ ...a, pages: 1 }) === writeSearch({ ...b, pages: 1 });

/** sha256 of a Blob as hex, or null where the browser has no WebCrypto (plain-http origins). */
export async function sha256Hex(blob) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The photos this tab has searched with, by hash: in memory (the original photo and its crop, for
 * Back/Forward) and in sessionStorage (the bytes searched with, for a reload). Never sent anywhere.
 */
export class PhotoStore {
  constructor(storage = globalThis.sessionStorage) {
    this.memory = new Map();
    this.storage = storage;
  }

  /** Remember a photo search: `blob` is what was sent, `file`/`crop` what the picker showed. */
  async remember(sha, { blob, file, crop, name }) {
    this.memory.set(sha, { blob, file, crop, name });
    if (!this.storage || blob.size > 1_500_000) return;
    try {
      const dataUrl = await new Promise((resolve, reject) => {
        const reader = new FileReader();
        reader.onload = () => resolve(reader.result);
        reader.onerror = () => reject(reader.error);
        reader.readAsDataURL(blob);
      });
      this.storage.setItem(`lookalike:photo:${sha}`, JSON.stringify({ dataUrl, name }));
    } catch {
      // Storage full or disabled: a reload then asks the server by hash instead.
    }
  }

  /** {blob, file?, crop?, name} for a hash this tab knows, else null. */
  async recall(sha) {
    const known = this.memory.get(sha);
    if (known) return known;
    try {
      const stored = JSON.parse(this.storage?.getItem(`lookalike:photo:${sha}`) || "null");
      if (!stored) return null;
      const blob = await (await fetch(stored.dataUrl)).blob();
      const file = new File([blob], stored.name || "photo.jpg", { type: blob.type });
      const entry = { blob, file, crop: null, name: stored.name };
      this.memory.set(sha, entry);
      return entry;
    } catch {
      return null;
    }
  }
}
