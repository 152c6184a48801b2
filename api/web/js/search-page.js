// The search page: wires the photo picker (with its crop box), the text box, filters and results
// to the API, and keeps every search in the address bar (url-state.js) so Back, Forward, reload
// and shared links all work.

import * as api from "./api.js";
import { Filters } from "./filters.js";
import { formatBytes, friendlyError, isPhotoError, isTransient } from "./format.js";
import { ResultsView } from "./results.js";
import { PhotoPicker } from "./upload.js";
import { PhotoStore, emptySearch, readSearch, sha256Hex, writeSearch } from "./url-state.js";

const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;

const $ = (id) => document.getElementById(id);

const state = {
  query: emptySearch(), // the search on screen, as in the URL
  photoBlob: null, // the bytes searched with (the photo, or its crop); null for a shared link's photo
  sharedPhoto: false, // the photo is known by hash only (a link from elsewhere)
  likeName: null, // the name of the "more like this" product, for the heading
  shownPhoto: null, // {file, crop} of the last photo that searched fine: a rejected photo goes back to it
  cursor: null, // where "Load more" continues (an offset, or a browse cursor)
  loaded: 0,
  controller: null,
  token: 0,
  cropTimer: null,
  maxBytes: DEFAULT_MAX_BYTES,
  categories: [],
};

const photos = new PhotoStore();

const message = {
  show(text, { kind = "error", retry = null } = {}) {
    const el = $("message");
    el.className = `message message-${kind}`;
    $("message-text").textContent = text;
    const button = $("message-retry");
    button.hidden = !retry;
    button.onclick = retry
      ? () => {
          message.hide();
          retry();
        }
      : null;
    el.hidden = false;
  },
  hide() {
    $("message").hidden = true;
  },
};

const text = () => $("query-text").value.trim();
const alpha = () => Number($("alpha").value);

const filters = new Filters({ onChange: () => onFiltersChanged() });
const results = new ResultsView({
  onSimilar: (product) => moreLike(product),
  onCategory: (category) => browseCategory(category),
  onSuggestion: (suggestion) => {
    if (suggestion === "Clear filters") {
      filters.clear();
      onFiltersChanged();
      return;
    }
    if (state.categories.some((c) => c.name === suggestion)) {
      browseCategory(suggestion);
      return;
    }
    $("query-text").value = suggestion;
    newSearch({ focus: true, fresh: true });
  },
});
const picker = new PhotoPicker({
  maxBytes: state.maxBytes,
  onChange: (photo) => {
    state.sharedPhoto = false;
    updateBalance();
    if (photo || text()) newSearch({ focus: true, fresh: true });
    else goHome();
  },
  onCrop: () => {
    // Arrow keys move the box a step at a time: search once they stop, not on every step.
    clearTimeout(state.cropTimer);
    state.cropTimer = setTimeout(() => newSearch({ focus: false }), 250);
  },
  onReject: (error) => {
    // The photo, crop and results on screen stay exactly as they were.
    message.show(error.message);
  },
});

// --- what is being searched -------------------------------------------------------------

const hasQuery = (q) => Boolean(q.like || q.photo || q.text || q.browse || state.photoBlob);

function filtersOf(q) {
  return {
    categories: q.category ? [q.category] : [],
    priceMin: q.priceMin,
    priceMax: q.priceMax,
    attributes: q.attributes,
  };
}

function title(q) {
  if (q.like) return `More like “${state.likeName || q.like}”`;
  if (q.browse) return `Browsing ${q.category}`;
  const photo = state.photoBlob || q.photo;
  const whose = state.sharedPhoto ? "the shared photo" : "your photo";
  if (photo && q.text) return `Results for ${whose} + “${q.text}”`;
  if (photo) return `Results for ${whose}`;
  return `Results for “${q.text}”`;
}

const phone = matchMedia("(max-width: 560px)");

/** A placeholder that fits the box: shorter on a phone, and about words once a photo is in. */
function updatePlaceholder() {
  const withPhoto = Boolean(picker.file || state.sharedPhoto);
  const [wide, narrow] = withPhoto
    ? ["Add words to refine the photo, e.g. “in green”", "Add words"]
    : ["Describe what you're looking for, or use a photo", "Words or a photo"];
  $("query-text").placeholder = phone.matches ? narrow : wide;
}

function updateBalance() {
  document.querySelector(".balance").classList.toggle("is-idle", !(picker.file && text()));
  updatePlaceholder();
}

function compactHero(compact) {
  document.querySelector(".hero").classList.toggle("is-compact", compact);
}

function showSortFilter(browse) {
  $("sort-filter").hidden = !browse;
}

function goHome({ history = "push" } = {}) {
  state.controller?.abort();
  state.token += 1;
  state.query = { ...emptySearch(), size: state.query.size };
  state.photoBlob = null;
  state.likeName = null;
  compactHero(false);
  message.hide();
  showSortFilter(false);
  filters.renderChips([]);
  results.welcome(state.categories.map((c) => c.name));
  writeUrl(history);
}

function writeUrl(history) {
  if (history === "none") return;
  const url = `${location.pathname}${writeSearch(state.query)}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (history === "push") window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

/**
 * Start a search from what the page shows now (words, photo and crop, filters). The URL gets it
 * once its first page has arrived, so a search that fails leaves the address (and results) alone.
 * `fresh` starts over from a plain search (drops "more like this" and browsing).
 */
async function newSearch({ focus = false, fresh = false, history = "push" } = {}) {
  if (!filters.checkPrices()) return;
  const token = ++state.token;
  const f = filters.value();
  const q = {
    ...emptySearch(),
    text: text(),
    alpha: alpha(),
    category: f.categories[0] || "",
    priceMin: f.priceMin,
    priceMax: f.priceMax,
    attributes: f.attributes,
    size: state.query.size,
    like: fresh ? null : state.query.like,
    browse: fresh ? false : state.query.browse,
    sort: $("sort").value,
  };
  if (q.browse && (q.text || picker.file)) q.browse = false;
  let blob = null;
  if (picker.file) {
    blob = await picker.queryBlob();
    const sha = await sha256Hex(blob);
    if (token !== state.token) return;
    q.photo = sha;
    if (sha) photos.remember(sha, { blob, file: picker.file, crop: picker.crop, name: picker.file.name });
  } else if (state.sharedPhoto) {
    q.photo = state.query.photo;
  }
  if (q.browse && !q.category) q.browse = false;
  state.photoBlob = blob;
  if (!hasQuery(q)) {
    goHome({ history });
    return;
  }
  await load(q, { pages: 1, focus, history });
}

/** Load the first `pages` pages of a search (a restored URL may ask for several). */
async function load(q, { pages, focus, history }) {
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const token = state.token;
  message.hide();
  compactHero(true);
  showSortFilter(q.browse);
  results.loading(false);
  let cursor = null;
  let loaded = 0;
  for (let page = 0; page < pages; page += 1) {
    let response;
    try {
      response = await fetchPage(q, cursor, controller.signal);
    } catch (error) {
      if (controller.signal.aborted || error.name === "AbortError" || token !== state.token) return;
      results.clearSkeletons();
      if (page === 0) {
        onSearchError(error, q, { pages, focus, history });
        return;
      }
      break; // later pages failed: show what came, "Load more" can try again
    }
    if (token !== state.token) return;
    const list = response.results || [];
    loaded += list.length;
    cursor = nextCursor(q, response);
    if (page === 0) {
      state.query = { ...q, pages: 1 };
      state.shownPhoto = picker.file ? { file: picker.file, crop: picker.crop } : null;
      writeUrl(history);
      results.show(response, showOptions(q, loaded, cursor, false));
      filters.renderChips(list);
      if (focus) focusResults();
    } else {
      state.query.pages = page + 1;
      results.show(response, showOptions(q, loaded, cursor, true));
    }
    state.cursor = cursor;
    state.loaded = loaded;
    if (cursor === null) break;
    if (page + 1 < pages) results.loading(true);
  }
  if (history !== "none") writeUrl("replace");
}

function showOptions(q, loaded, cursor, append) {
  return {
    append,
    title: title(q),
    loaded,
    hasMore: cursor !== null,
    filtered: Boolean(q.category || q.priceMin !== null || q.priceMax !== null || Object.keys(q.attributes).length),
    browse: q.browse && !q.like,
    note: state.photoBlob && !q.photo ? "This photo search can't be shared by link." : null,
  };
}

function nextCursor(q, response) {
  const next = q.browse && !q.like ? response.next_cursor : response.next_offset;
  return next === undefined ? null : next;
}

function fetchPage(q, cursor, signal) {
  const f = filtersOf(q);
  if (q.like) return api.similar(q.like, { filters: f, topK: q.size, offset: cursor || 0 }, signal);
  if (q.browse) return api.browse({ filters: f, sort: q.sort, cursor, limit: q.size }, signal);
  return api.search(
    {
      file: state.photoBlob,
      photoSha: state.photoBlob ? null : q.photo,
      text: q.text,
      alpha: q.alpha,
      filters: f,
      topK: q.size,
      offset: cursor || 0,
    },
    signal,
  );
}

function onSearchError(error, q, options) {
  if (error.code === "photo_not_available") {
    // A shared link's photo the server no longer has: say so, and keep the rest of the search.
    state.sharedPhoto = false;
    message.show(friendlyError(error, state.maxBytes), { kind: "info" });
    const rest = { ...q, photo: null };
    if (rest.text) {
      load(rest, { ...options, focus: false, history: "replace" }).then(() => message.show(friendlyError(error, state.maxBytes), { kind: "info" }));
    } else {
      state.query = rest;
      writeUrl("replace");
    }
    return;
  }
  if (isPhotoError(error) && picker.file && state.shownPhoto?.file !== picker.file) {
    // The server refused a new photo: the previous photo (or none) comes back with its results.
    const previous = state.shownPhoto;
    if (previous) picker.show(previous.file, { crop: previous.crop });
    else picker.reset();
  }
  const retry = isTransient(error) ? () => load(q, options) : null;
  message.show(friendlyError(error, state.maxBytes), { retry });
}

function focusResults() {
  const heading = $("results-title");
  heading.focus({ preventScroll: true });
  const top = heading.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.4) {
    heading.scrollIntoView({ block: "start", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth" });
  }
}

async function loadMore() {
  if (state.cursor === null) return;
  const controller = new AbortController();
  state.controller?.abort();
  state.controller = controller;
  const token = state.token;
  const q = state.query;
  message.hide();
  results.loading(true);
  try {
    const response = await fetchPage(q, state.cursor, controller.signal);
    if (token !== state.token) return;
    state.loaded += (response.results || []).length;
    state.cursor = nextCursor(q, response);
    state.query.pages += 1;
    results.show(response, showOptions(q, state.loaded, state.cursor, true));
    writeUrl("replace");
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    results.clearSkeletons();
    $("load-more").hidden = false;
    message.show(friendlyError(error, state.maxBytes), { retry: isTransient(error) ? loadMore : null });
  }
}

// --- the shopper's moves ----------------------------------------------------------------

function moreLike(product) {
  state.likeName = product.name || product.sku;
  state.query = { ...state.query, like: product.sku, browse: false };
  newSearch({ focus: true });
}

function browseCategory(category) {
  $("query-text").value = "";
  picker.reset();
  state.sharedPhoto = false;
  state.likeName = null;
  filters.set({ category });
  state.query = { ...emptySearch(), size: state.query.size, category, browse: true };
  newSearch({ focus: true });
}

function onFiltersChanged() {
  if (!filters.checkPrices()) return;
  const category = filters.value().categories[0] || "";
  const q = state.query;
  if (!hasQuery(q) || q.browse) {
    // No query: choosing a category browses it; clearing it goes back to the start.
    if (category) {
      state.query = { ...emptySearch(), size: q.size, category, browse: true };
      newSearch({ focus: false });
    } else if (q.browse) {
      goHome();
    }
    return;
  }
  newSearch({ focus: false });
}

/** Show the search a URL describes (reload, Back/Forward, a shared link) without a new entry. */
async function applyUrl(search) {
  const q = readSearch(search);
  const token = ++state.token;
  state.query = { ...state.query, size: q.size }; // a link's page size holds for the searches after it
  $("query-text").value = q.text;
  $("alpha").value = String(q.alpha);
  $("sort").value = q.sort;
  filters.set(q);
  state.likeName = null;
  state.sharedPhoto = false;
  state.photoBlob = null;
  if (q.photo) {
    const known = await photos.recall(q.photo);
    if (token !== state.token) return;
    if (known) {
      if (picker.file !== known.file) await picker.show(known.file, { crop: known.crop, name: known.name });
      state.photoBlob = known.blob;
    } else {
      picker.reset();
      state.sharedPhoto = true;
    }
  } else if (picker.file) {
    picker.reset();
  }
  updateBalance();
  if (!hasQuery(q)) {
    goHome({ history: "none" });
    return;
  }
  if (q.like) {
    api.product(q.like).then(
      (product) => {
        if (token !== state.token || !product?.name) return;
        state.likeName = product.name;
        if (!$("results-title").hidden) $("results-title").textContent = title({ ...q, like: q.like });
      },
      () => {},
    );
  }
  await load(q, { pages: q.pages, focus: false, history: "none" });
}

function bindForm() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    updateBalance();
    if (!text() && !picker.file && !state.sharedPhoto) {
      $("query-text").focus();
      return;
    }
    newSearch({ focus: true, fresh: true });
  });
  $("query-text").addEventListener("input", updateBalance);
  $("query-text").addEventListener("search", () => {
    // The native clear (×) of a search input: fall back to the photo alone, or to the start.
    if (!text()) newSearch({ focus: false, fresh: true });
  });
  $("alpha").addEventListener("change", () => {
    if ((picker.file || state.sharedPhoto) && text()) newSearch({ focus: false });
  });
  $("sort").addEventListener("change", () => {
    if (state.query.browse) newSearch({ focus: false });
  });
  $("load-more").addEventListener("click", loadMore);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("upload-panel").hidden && !picker.file) picker.setOpen(false);
  });
  window.addEventListener("popstate", () => applyUrl(location.search));
  phone.addEventListener("change", updatePlaceholder);
  updatePlaceholder();
}

async function init() {
  bindForm();
  updateBalance();
  const [config, categories] = await Promise.allSettled([api.uiConfig(), api.categories()]);
  if (config.status === "fulfilled") state.maxBytes = config.value.max_upload_bytes;
  picker.maxBytes = state.maxBytes;
  $("upload-limit").textContent = `JPEG, PNG or WebP, up to ${formatBytes(state.maxBytes)}.`;
  if (categories.status === "fulfilled") {
    state.categories = categories.value.categories;
    filters.setCategories(state.categories);
  } else {
    message.show(friendlyError(categories.reason, state.maxBytes), { retry: () => location.reload() });
  }
  await applyUrl(location.search);
  document.body.dataset.ready = "true";
}

init();
