// <lookalike-search>: visual search inside a shop's own pages. Two lines on the shop's page:
//
//   <script type="module" src="https://search.example/ui/widget.js"></script>
//   <lookalike-search></lookalike-search>
//
// A camera button opens a modal: drop, paste, pick or take a photo, crop it to the item you
// mean, add words if you like, and browse result cards that link to the shop's product pages.
// Everything lives in a shadow root, so the shop's CSS cannot break it and it cannot break the
// shop's. No framework and no build step: plain ES modules served by Lookalike.
//
// Attributes: api (Lookalike's base URL; default: where this file came from), page-size (12),
// category (preset filter, comma-separated), lang (en, fr, vi), for (a CSS selector of the shop's
// own search input: photos pasted or dropped there search, its words refine the photo).
// Events (bubbling, composed): lookalike:select (cancelable; detail.product), lookalike:results,
// lookalike:error, lookalike:open, lookalike:close. Theme: --lookalike-* custom properties.

import { CropBox, cropImage } from "./js/crop-box.js";
import { LABELS, pickLanguage } from "./widget/labels.js";
import { CSS } from "./widget/styles.js";

const DEFAULT_API = new URL("../", import.meta.url).href;
const DEFAULT_PAGE_SIZE = 12;
const MAX_SIDE = 1024; // photos are scaled down before upload: the models look at 224 px anyway
const CAMERA =
  '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 8h3l2-3h6l2 3h3v11H4z"/><circle cx="12" cy="13" r="3.5"/></svg>';
const CROSS = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6 6 18"/></svg>';

const TEMPLATE = `
<div class="lk" part="root">
  <button class="trigger" type="button" part="button" aria-haspopup="dialog">${CAMERA}<span data-l="button"></span></button>
  <dialog aria-labelledby="title">
    <div class="panel">
      <div class="head"><h2 id="title" data-l="title"></h2>
        <button class="close" type="button" data-la="close">${CROSS}</button></div>
      <div class="query">
        <div class="drop">
          <p data-l="drop"></p>
          <div class="actions">
            <button class="pick primary" type="button" data-l="pick"></button>
            <button class="camera" type="button">${CAMERA}<span data-l="camera"></span></button>
          </div>
          <input class="file" type="file" accept="image/*" hidden>
          <input class="shoot" type="file" accept="image/*" capture="environment" hidden>
        </div>
        <div class="preview" hidden>
          <div class="crop"></div>
          <p class="hint" data-l="cropHint"></p>
          <button class="remove" type="button" data-l="remove"></button>
        </div>
        <form role="search">
          <label for="words" data-l="words"></label>
          <div class="row"><input id="words" type="search" maxlength="512" enterkeyhint="search" data-lp="wordsPlaceholder">
            <button class="primary" type="submit" data-l="search"></button></div>
        </form>
      </div>
      <section class="results" aria-labelledby="results-title" tabindex="-1">
        <h3 id="results-title" class="sr" data-l="results"></h3>
        <p class="banner" hidden><span></span><button class="back" type="button" data-l="back"></button></p>
        <p class="status" role="status"></p>
        <p class="error" role="alert" hidden><span></span><button class="retry" type="button" data-l="retry"></button></p>
        <ul></ul>
        <button class="more" type="button" data-l="more" hidden></button>
      </section>
    </div>
  </dialog>
</div>`;

// Parsed once, detached: the shadow root's own innerHTML would take the host's context, and a
// host inside the shop's <form> would silently drop the widget's nested <form>.
const PARSED = document.createElement("template");
PARSED.innerHTML = `<style>${CSS}</style>${TEMPLATE}`;

const firstImage = (items) => {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && (!file.type || file.type.startsWith("image/"))) return file;
  }
  return null;
};

const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");

class WidgetError extends Error {
  constructor(code, message = "", status = 0) {
    super(message || code);
    this.code = code;
    this.status = status;
  }
}

export class LookalikeSearch extends HTMLElement {
  static observedAttributes = ["lang", "for"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.append(PARSED.content.cloneNode(true));
    const $ = (selector) => root.querySelector(selector);
    this.el = {
      root: $(".lk"), trigger: $(".trigger"), triggerText: $(".trigger span"), dialog: $("dialog"),
      panel: $(".panel"), drop: $(".drop"), pick: $(".pick"), camera: $(".camera"), file: $(".file"),
      shoot: $(".shoot"), preview: $(".preview"), crop: $(".crop"), remove: $(".remove"), form: $("form"),
      words: $("#words"), results: $(".results"), banner: $(".banner"), status: $(".status"),
      error: $(".error"), grid: $("ul"), more: $(".more"), retry: $(".retry"), back: $(".back"),
    };
    this.photo = null; // {file, url} of the shopper's photo
    this.cropBox = null;
    this.query = null; // the running search: {kind: "search" | "similar", ...}
    this.saved = null; // the search to go back to from "more like this"
    this.next = null; // next page offset
    this.controller = null;
    this.status = null; // [label key, ...args] of the status line, re-rendered on a lang change
    this.maxBytes = 0;
    this.bind();
  }

  connectedCallback() {
    this.applyLabels();
    this.attachInput();
  }

  disconnectedCallback() {
    this.detachInput?.();
    this.controller?.abort();
  }

  attributeChangedCallback(name) {
    if (!this.isConnected) return;
    if (name === "lang") this.applyLabels();
    if (name === "for") this.attachInput();
  }

  // --- attributes ------------------------------------------------------------------------------

  get api() {
    const base = new URL(this.getAttribute("api") || DEFAULT_API, document.baseURI).href;
    return base.endsWith("/") ? base : `${base}/`;
  }

  get pageSize() {
    const size = Number.parseInt(this.getAttribute("page-size") || "", 10);
    return Number.isFinite(size) ? Math.min(100, Math.max(1, size)) : DEFAULT_PAGE_SIZE;
  }

  get categories() {
    return (this.getAttribute("category") || "").split(",").map((c) => c.trim()).filter(Boolean);
  }

  get language() {
    const page = this.parentElement?.closest("[lang]")?.getAttribute("lang");
    return pickLanguage(this.getAttribute("lang"), page, document.documentElement.lang, navigator.language);
  }

  get t() {
    return LABELS[this.language];
  }

  // --- public methods --------------------------------------------------------------------------

  open() {
    if (this.el.dialog.open) return;
    this.el.dialog.showModal();
    this.loadConfig();
    this.emit("lookalike:open");
    (this.photo ? this.el.crop.querySelector(".lk-crop-box") : this.el.pick)?.focus();
  }

  close() {
    if (this.el.dialog.open) this.el.dialog.close();
  }

  /** Search with a photo (a File or Blob), optionally refined by words. */
  searchPhoto(file, words) {
    if (words !== undefined) this.el.words.value = words;
    this.open();
    this.pickPhoto(file);
  }

  /** Search by words alone. */
  searchWords(words) {
    this.el.words.value = words;
    this.open();
    this.removePhoto(false);
    this.run({ kind: "search", started: performance.now() });
  }

  // --- wiring ----------------------------------------------------------------------------------

  bind() {
    const { trigger, dialog, panel, pick, camera, file, shoot, remove, form, more, retry, back } = this.el;
    trigger.addEventListener("click", () => this.open());
    this.el.root.querySelector(".close").addEventListener("click", () => this.close());
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.close(); // a click on the backdrop
    });
    dialog.addEventListener("close", () => {
      this.controller?.abort();
      this.emit("lookalike:close");
      this.el.trigger.focus();
    });
    pick.addEventListener("click", () => file.click());
    camera.addEventListener("click", () => shoot.click());
    for (const input of [file, shoot]) {
      input.addEventListener("change", () => {
        if (input.files?.[0]) this.pickPhoto(input.files[0]);
        input.value = "";
      });
    }
    remove.addEventListener("click", () => this.removePhoto(true));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.photo || this.el.words.value.trim()) this.run({ kind: "search", started: performance.now() });
    });
    more.addEventListener("click", () => this.run({ ...this.query, started: performance.now() }, this.next));
    retry.addEventListener("click", () => this.query && this.run({ ...this.query, started: performance.now() }));
    back.addEventListener("click", () => {
      const saved = this.saved;
      this.saved = null;
      this.run({ ...saved, started: performance.now() });
      this.el.results.focus();
    });
    // Drop a photo on the modal, or on the camera button to open it with that photo.
    for (const zone of [panel, trigger]) {
      zone.addEventListener("dragover", (event) => {
        if (!hasFiles(event)) return;
        event.preventDefault();
        zone.classList.add("is-over");
      });
      zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
      zone.addEventListener("drop", (event) => {
        zone.classList.remove("is-over");
        const photo = firstImage(event.dataTransfer?.files) || firstImage(event.dataTransfer?.items);
        if (!photo) return;
        event.preventDefault();
        this.searchPhoto(photo);
      });
    }
    dialog.addEventListener("paste", (event) => this.onPaste(event));
  }

  onPaste(event) {
    const photo = firstImage(event.clipboardData?.items);
    if (!photo) return;
    event.preventDefault();
    this.searchPhoto(photo);
  }

  /** `for="#shop-search"`: a photo pasted or dropped into the shop's search box searches. */
  attachInput() {
    this.detachInput?.();
    this.detachInput = null;
    const selector = this.getAttribute("for");
    this.el.trigger.classList.toggle("compact", Boolean(selector));
    this.el.triggerText.classList.toggle("sr", Boolean(selector));
    if (!selector) return;
    const input = document.querySelector(selector);
    if (!input) return;
    this.input = input;
    const onPaste = (event) => this.onPaste(event);
    const onDragOver = (event) => hasFiles(event) && event.preventDefault();
    const onDrop = (event) => {
      const photo = firstImage(event.dataTransfer?.files);
      if (!photo) return;
      event.preventDefault();
      this.searchPhoto(photo);
    };
    input.addEventListener("paste", onPaste);
    input.addEventListener("dragover", onDragOver);
    input.addEventListener("drop", onDrop);
    this.detachInput = () => {
      input.removeEventListener("paste", onPaste);
      input.removeEventListener("dragover", onDragOver);
      input.removeEventListener("drop", onDrop);
      this.input = null;
    };
  }

  emit(type, detail = {}, cancelable = false) {
    const event = new CustomEvent(type, { detail, bubbles: true, composed: true, cancelable });
    return this.dispatchEvent(event);
  }

  applyLabels() {
    const t = this.t;
    const root = this.shadowRoot;
    this.el.root.setAttribute("lang", this.language);
    for (const node of root.querySelectorAll("[data-l]")) node.textContent = t[node.dataset.l];
    for (const node of root.querySelectorAll("[data-la]")) node.setAttribute("aria-label", t[node.dataset.la]);
    for (const node of root.querySelectorAll("[data-lp]")) node.placeholder = t[node.dataset.lp];
    this.el.trigger.title = t.button;
    for (const button of root.querySelectorAll(".like")) {
      button.setAttribute("aria-label", t.similarLabel(button.dataset.name));
    }
    if (this.query?.kind === "similar") this.renderBanner(this.query.product);
    this.renderStatus();
    const box = this.el.crop.querySelector(".lk-crop-box");
    box?.setAttribute("aria-label", t.cropLabel);
  }

  async loadConfig() {
    if (this.maxBytes) return;
    try {
      const response = await fetch(`${this.api}ui/config.json`);
      if (response.ok) this.maxBytes = (await response.json()).max_upload_bytes || 0;
    } catch {
      // The size check then happens on the server.
    }
  }

  // --- the photo -------------------------------------------------------------------------------

  pickPhoto(file) {
    this.hideError();
    if (file.type && !file.type.startsWith("image/")) return this.showError(new WidgetError("not_an_image"));
    if (!file.size) return this.showError(new WidgetError("empty_image"));
    if (!this.el.words.value && this.input?.value) this.el.words.value = this.input.value;
    if (this.photo) URL.revokeObjectURL(this.photo.url);
    this.photo = { file, url: URL.createObjectURL(file) };
    this.el.drop.hidden = true;
    this.el.preview.hidden = false;
    this.cropBox?.destroy();
    const started = performance.now();
    this.cropBox = new CropBox(this.el.crop, {
      src: this.photo.url,
      alt: this.t.photo,
      label: this.t.cropLabel,
      styleTarget: this.shadowRoot,
      onChange: () => this.run({ kind: "search", started: performance.now() }),
    });
    this.cropBox.ready.then(() => {
      this.cropBox?.boxEl.focus({ preventScroll: true });
      this.run({ kind: "search", started });
    });
  }

  removePhoto(focus) {
    if (this.photo) URL.revokeObjectURL(this.photo.url);
    this.photo = null;
    this.cropBox?.destroy();
    this.cropBox = null;
    this.el.preview.hidden = true;
    this.el.drop.hidden = false;
    if (focus) this.el.pick.focus();
  }

  /** What to upload: the crop (or a big photo scaled down) as a JPEG, else the file as it is. */
  async uploadFile() {
    const { file } = this.photo;
    const box = this.cropBox;
    const { width, height } = box?.naturalSize || {};
    if (!box || !width || !height) return file; // not decodable here: let the server say why
    if (box.isFull && Math.max(width, height) <= MAX_SIDE && file.size < 1_500_000) return file;
    return cropImage(box.image, box.crop, { maxSide: MAX_SIDE });
  }

  // --- searching -------------------------------------------------------------------------------

  async request(path, options) {
    let response;
    try {
      response = await fetch(`${this.api}${path}`, options);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      // A network failure, or the browser refusing an origin the server does not list.
      throw new WidgetError("server_unreachable");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (response.ok && body) return body;
    const error = body?.error || {};
    throw new WidgetError(error.code || `http_${response.status}`, error.message, response.status);
  }

  async send(query, offset, signal) {
    const top_k = this.pageSize;
    const categories = this.categories;
    const words = query.words;
    if (query.kind === "similar") {
      const params = new URLSearchParams({ top_k, offset });
      for (const category of categories) params.append("category", category);
      return this.request(`api/v1/products/${encodeURIComponent(query.product.sku)}/similar?${params}`, { signal });
    }
    if (query.photo) {
      const form = new FormData();
      form.append("file", query.upload, query.photo.file.name || "photo.jpg");
      if (words) form.append("text", words);
      form.append("top_k", String(top_k));
      form.append("offset", String(offset));
      for (const category of categories) form.append("category", category);
      return this.request("api/v1/search/image", { method: "POST", body: form, signal });
    }
    const filters = categories.length ? { category: categories } : {};
    return this.request("api/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: words, top_k, offset, filters }),
      signal,
    });
  }

  /** Run a query (a new one, or its next page when `offset` > 0) and render it. */
  async run(query, offset = 0) {
    if (query.kind === "search" && offset === 0) {
      query.words = this.el.words.value.trim();
      query.photo = this.photo;
      if (!query.photo && !query.words) return;
      if (query.photo) {
        try {
          query.upload = await this.uploadFile();
        } catch {
          query.upload = query.photo.file;
        }
      }
    }
    if (query.photo && this.maxBytes && query.upload.size > this.maxBytes) {
      return this.showError(new WidgetError("file_too_large"));
    }
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.query = query;
    this.hideError();
    this.el.results.setAttribute("aria-busy", "true");
    this.el.more.hidden = true;
    if (!offset) this.setStatus("searching");
    let response;
    try {
      response = await this.send(query, offset, controller.signal);
    } catch (error) {
      if (error.name === "AbortError" || controller.signal.aborted) return;
      this.el.results.setAttribute("aria-busy", "false");
      this.showError(error);
      return;
    }
    if (controller.signal.aborted) return;
    this.render(response, offset);
    const ms = Math.round(performance.now() - query.started);
    this.emit("lookalike:results", { response, query: { kind: query.kind, words: query.words || "" }, ms });
  }

  render(response, offset) {
    const grid = this.el.grid;
    const firstNew = offset ? grid.children.length : 0;
    if (!offset) grid.replaceChildren();
    const fragment = document.createDocumentFragment();
    for (const product of response.results) fragment.append(this.card(product));
    grid.append(fragment);
    this.next = response.next_offset ?? null;
    this.el.more.hidden = this.next === null;
    this.el.results.setAttribute("aria-busy", "false");
    const total = grid.children.length;
    const fallback = response.mode === "mobilenet_fallback" ? "fallbackImage" : response.mode === "fulltext_fallback" ? "fallbackText" : null;
    this.setStatus(total ? "count" : "none", total, fallback);
    if (offset) grid.children[firstNew]?.querySelector(".card")?.focus();
  }

  card(product) {
    const t = this.t;
    const name = product.name || product.sku;
    const item = document.createElement("li");
    item.dataset.sku = product.sku;
    const card = document.createElement(product.url ? "a" : "button");
    card.className = "card";
    if (product.url) card.href = product.url;
    else {
      card.type = "button";
      card.classList.add("static");
    }
    const media = document.createElement("span");
    media.className = "media";
    const src = this.imageSrc(product.image_url);
    if (src) {
      const img = document.createElement("img");
      img.src = src;
      img.alt = "";
      img.loading = "lazy";
      img.addEventListener("error", () => img.remove(), { once: true });
      media.append(img);
    }
    const title = document.createElement("span");
    title.className = "name";
    title.textContent = name;
    const price = document.createElement("span");
    price.className = "price";
    price.textContent = this.formatPrice(product.price, product.currency);
    card.append(media, title, price);
    card.addEventListener("click", (event) => {
      // The shop may handle the choice itself (a quick view, its router): it cancels the event.
      if (!this.emit("lookalike:select", { product }, true)) event.preventDefault();
    });
    const like = document.createElement("button");
    like.type = "button";
    like.className = "like";
    like.dataset.l = "similar";
    like.dataset.name = name;
    like.textContent = t.similar;
    like.setAttribute("aria-label", t.similarLabel(name));
    like.addEventListener("click", () => this.similar(product));
    item.append(card, like);
    return item;
  }

  similar(product) {
    if (this.query?.kind === "search") this.saved = this.query;
    this.renderBanner(product);
    this.run({ kind: "similar", product, started: performance.now() });
    this.el.results.focus();
  }

  renderBanner(product) {
    this.el.banner.hidden = false;
    this.el.banner.firstElementChild.textContent = this.t.similarTo(product.name || product.sku);
    this.el.back.hidden = !this.saved;
  }

  imageSrc(imageUrl) {
    if (!imageUrl) return "";
    if (/^(https?:)?\/\//i.test(imageUrl) || imageUrl.startsWith("data:")) return imageUrl;
    const path = imageUrl.replace(/^\/+/, "").split("/").map(encodeURIComponent).join("/");
    return `${this.api}api/v1/images/${path}`;
  }

  formatPrice(price, currency) {
    if (price === null || price === undefined) return "";
    try {
      return new Intl.NumberFormat(this.language, { style: "currency", currency: currency || "USD" }).format(price);
    } catch {
      return `${Number(price).toFixed(2)} ${currency || ""}`.trim();
    }
  }

  setStatus(key, ...args) {
    this.status = [key, ...args];
    if (this.el.banner && this.query?.kind !== "similar") this.el.banner.hidden = true;
    this.renderStatus();
  }

  renderStatus() {
    const status = this.el.status;
    status.replaceChildren();
    if (!this.status) return;
    const [key, count, fallback] = this.status;
    const t = this.t;
    if (key === "count") {
      const strong = document.createElement("strong");
      strong.textContent = t.count(count);
      status.append(strong);
      if (fallback) status.append(` · ${t[fallback]}`);
    } else {
      status.textContent = t[key];
    }
  }

  showError(error) {
    const t = this.t;
    const limit = this.maxBytes ? `${Math.round(this.maxBytes / 1024 / 1024)} MB` : "10 MB";
    const messages = {
      not_an_image: t.notImage,
      unsupported_format: t.notImage,
      empty_image: t.badImage,
      truncated_image: t.badImage,
      image_too_large: t.tooLarge(limit),
      file_too_large: t.tooLarge(limit),
      server_unreachable: t.unreachable,
    };
    const retryable = error.code === "server_unreachable" || error.status >= 500;
    const text = messages[error.code] || (error.status >= 500 ? t.unavailable : t.failed);
    this.el.error.firstElementChild.textContent = text;
    this.el.retry.hidden = !retryable || !this.query;
    this.el.error.hidden = false;
    this.status = null;
    this.renderStatus();
    this.emit("lookalike:error", { code: error.code, message: error.message, status: error.status });
  }

  hideError() {
    this.el.error.hidden = true;
  }
}

if (!customElements.get("lookalike-search")) customElements.define("lookalike-search", LookalikeSearch);
