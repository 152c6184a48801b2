// The search page: wires the photo picker, the text box, filters and results to the API.

import * as api from "./api.js";
import { Filters } from "./filters.js";
import { formatBytes, friendlyError } from "./format.js";
import { ResultsView } from "./results.js";
import { PhotoPicker } from "./upload.js";

const PAGE_SIZE = 24;
const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;

const $ = (id) => document.getElementById(id);

const state = {
  file: null,
  similarTo: null, // a product when showing "more like this"
  offset: 0,
  total: 0,
  controller: null,
  maxBytes: DEFAULT_MAX_BYTES,
  categories: [],
};

const message = {
  show(text, kind = "error") {
    const el = $("message");
    el.className = `message message-${kind}`;
    el.textContent = text;
    el.hidden = false;
  },
  hide() {
    $("message").hidden = true;
  },
};

const text = () => $("query-text").value.trim();
const alpha = () => Number($("alpha").value);

const filters = new Filters({ onChange: () => rerun() });
const results = new ResultsView({
  onSimilar: (product) => moreLike(product),
  onSuggestion: (suggestion) => {
    if (suggestion === "Clear filters") {
      filters.clear();
      rerun();
      return;
    }
    $("query-text").value = suggestion;
    state.similarTo = null;
    run();
  },
});
const picker = new PhotoPicker({
  maxBytes: state.maxBytes,
  onChange: (file) => {
    state.file = file;
    state.similarTo = null;
    updateBalance();
    if (file || text()) run();
    else welcome();
  },
  onReject: (error) => {
    message.show(error.message);
  },
});

function hasQuery() {
  return Boolean(state.similarTo || state.file || text());
}

function describe() {
  if (state.similarTo) return `similar to “${state.similarTo.name || state.similarTo.sku}”`;
  if (state.file && text()) return `for your photo + “${text()}”`;
  if (state.file) return "for your photo";
  return `for “${text()}”`;
}

function updateBalance() {
  const balance = document.querySelector(".balance");
  balance.classList.toggle("is-idle", !(state.file && text()));
}

function compactHero(compact) {
  document.querySelector(".hero").classList.toggle("is-compact", compact);
}

function welcome() {
  compactHero(false);
  message.hide();
  state.controller?.abort();
  filters.renderChips([]);
  renderSimilarBanner();
  results.welcome(state.categories.map((c) => c.name));
}

/** Run the current query from the first page. */
function run() {
  if (!hasQuery()) {
    welcome();
    return;
  }
  state.offset = 0;
  state.total = 0;
  compactHero(true);
  fetchPage(false);
}

const rerun = () => (hasQuery() ? run() : undefined);

function moreLike(product) {
  state.similarTo = product;
  renderSimilarBanner();
  run();
  $("results").scrollIntoView({ behavior: "smooth", block: "start" });
}

function renderSimilarBanner() {
  let banner = $("similar-banner");
  if (!state.similarTo) {
    banner?.remove();
    return;
  }
  if (!banner) {
    banner = document.createElement("div");
    banner.id = "similar-banner";
    banner.className = "similar-banner";
    $("results").prepend(banner);
  }
  banner.replaceChildren();
  const label = document.createElement("span");
  label.textContent = `More like “${state.similarTo.name || state.similarTo.sku}”`;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "chip";
  close.textContent = "Back to my search";
  close.addEventListener("click", () => {
    state.similarTo = null;
    renderSimilarBanner();
    if (hasQuery()) run();
    else welcome();
  });
  banner.append(label, close);
}

async function fetchPage(append) {
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  message.hide();
  results.loading(append);
  const query = {
    file: state.file,
    text: text(),
    alpha: alpha(),
    filters: filters.value(),
    topK: PAGE_SIZE,
    offset: state.offset,
  };
  try {
    const response = state.similarTo
      ? await api.similar(state.similarTo.sku, query, controller.signal)
      : await api.search(query, controller.signal);
    if (controller.signal.aborted) return;
    state.total += response.count;
    state.offset = response.next_offset ?? state.offset;
    results.show(response, { append, context: describe(), total: state.total, filtered: filters.isActive() });
    if (!append) filters.renderChips(response.results);
  } catch (error) {
    if (controller.signal.aborted || error.name === "AbortError") return;
    results.clearSkeletons();
    if (!append) results.reset();
    message.show(friendlyError(error, state.maxBytes));
  }
}

function bindForm() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.similarTo = null;
    renderSimilarBanner();
    updateBalance();
    run();
  });
  $("query-text").addEventListener("input", updateBalance);
  $("query-text").addEventListener("search", () => {
    // The native clear (×) of a search input: fall back to the photo alone, or to the start.
    if (!text()) run();
  });
  $("alpha").addEventListener("change", () => {
    if (state.file && text()) run();
  });
  $("load-more").addEventListener("click", () => fetchPage(true));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("upload-panel").hidden && !state.file) picker.setOpen(false);
  });
}

async function init() {
  bindForm();
  updateBalance();
  welcome();
  const [config, categories] = await Promise.allSettled([api.uiConfig(), api.categories()]);
  if (config.status === "fulfilled") state.maxBytes = config.value.max_upload_bytes;
  picker.maxBytes = state.maxBytes;
  $("upload-limit").textContent = `JPEG, PNG or WebP, up to ${formatBytes(state.maxBytes)}.`;
  if (categories.status === "fulfilled") {
    state.categories = categories.value.categories;
    filters.setCategories(state.categories);
    if (!hasQuery()) welcome();
  } else {
    message.show(friendlyError(categories.reason, state.maxBytes));
  }
  document.body.dataset.ready = "true";
}

init();
