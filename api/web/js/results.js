// The results area: status line (count, time, mode badge), skeletons, cards, empty state.

import { MODE_LABELS, formatMs, formatPrice, imageSrc, isFallback } from "./format.js";

const SKELETONS = 8;

export class ResultsView {
  constructor({ onSimilar, onSuggestion }) {
    this.onSimilar = onSimilar;
    this.onSuggestion = onSuggestion;
    this.el = {
      section: document.getElementById("results"),
      status: document.getElementById("status"),
      grid: document.getElementById("grid"),
      empty: document.getElementById("empty"),
      more: document.getElementById("load-more"),
      template: document.getElementById("card-template"),
    };
  }

  loading(append) {
    this.el.section.setAttribute("aria-busy", "true");
    this.el.empty.hidden = true;
    this.el.more.hidden = true;
    if (!append) {
      this.el.grid.replaceChildren();
      this.el.status.hidden = true;
    }
    for (let i = 0; i < SKELETONS; i += 1) {
      const skeleton = document.createElement("div");
      skeleton.className = "card skeleton";
      skeleton.setAttribute("aria-hidden", "true");
      skeleton.innerHTML = '<div class="card-media"></div><div class="card-body"><span></span><span></span><span></span></div>';
      this.el.grid.append(skeleton);
    }
  }

  clearSkeletons() {
    this.el.section.setAttribute("aria-busy", "false");
    for (const node of this.el.grid.querySelectorAll(".skeleton")) node.remove();
  }

  reset() {
    this.clearSkeletons();
    this.el.grid.replaceChildren();
    this.el.status.hidden = true;
    this.el.more.hidden = true;
  }

  /** Render one response page; `context` describes the query for the status line. */
  show(response, { append, context, total, filtered }) {
    this.clearSkeletons();
    if (!append) this.el.grid.replaceChildren();
    const fragment = document.createDocumentFragment();
    for (const product of response.results) fragment.append(this.card(product));
    this.el.grid.append(fragment);
    this.renderStatus(response, context, total);
    this.el.more.hidden = response.next_offset === null || response.next_offset === undefined;
    if (!total) this.renderEmpty(filtered);
    else this.el.empty.hidden = true;
  }

  card(product) {
    const node = this.el.template.content.firstElementChild.cloneNode(true);
    node.dataset.sku = product.sku;
    node.dataset.category = product.category || "";
    const img = node.querySelector("img");
    const src = imageSrc(product.image_url);
    if (src) img.src = src;
    else node.querySelector(".card-media").classList.add("no-image");
    img.alt = product.name || product.sku;
    img.addEventListener("error", () => node.querySelector(".card-media").classList.add("no-image"), { once: true });
    const match = node.querySelector(".match");
    const similarity = Math.max(0, Math.min(100, product.similarity));
    match.textContent = `${Math.round(similarity)}% match`;
    match.title = `Similarity ${similarity.toFixed(1)}%`;
    node.querySelector(".card-category").textContent = product.category || "";
    node.querySelector(".card-name").textContent = product.name || product.sku;
    node.querySelector(".card-price").textContent = formatPrice(product.price, product.currency);
    const button = node.querySelector(".similar-button");
    button.setAttribute("aria-label", `More like ${product.name || product.sku}`);
    button.addEventListener("click", () => this.onSimilar(product));
    return node;
  }

  renderStatus(response, context, total) {
    const status = this.el.status;
    status.replaceChildren();
    const summary = document.createElement("p");
    summary.className = "status-summary";
    const count = document.createElement("strong");
    count.textContent = `${total} ${total === 1 ? "result" : "results"}`;
    summary.append(count);
    if (context) summary.append(` ${context}`);
    const time = document.createElement("span");
    time.className = "status-time";
    time.dataset.ms = String(response.timing.total);
    time.textContent = `in ${formatMs(response.timing.total)}${response.cached ? " (cached)" : ""}`;
    summary.append(" ", time);
    const badge = document.createElement("span");
    badge.className = `mode-badge mode-${response.mode}`;
    badge.dataset.mode = response.mode;
    badge.textContent = MODE_LABELS[response.mode] || response.mode;
    if (isFallback(response.mode)) {
      badge.classList.add("is-fallback");
      badge.textContent = `Fallback · ${badge.textContent}`;
      badge.title = response.fallback_reason || "The main model is unavailable; results may be less precise.";
      badge.tabIndex = 0;
      badge.setAttribute("aria-label", `Fallback mode: ${badge.textContent}. ${badge.title}`);
    } else {
      badge.title = response.mode === "hybrid" ? "Hybrid: photo and words together" : "CLIP visual search";
    }
    status.append(summary, badge);
    status.hidden = false;
  }

  renderEmpty(filtered) {
    const empty = this.el.empty;
    empty.replaceChildren();
    const title = document.createElement("h2");
    title.textContent = "No matches yet";
    const text = document.createElement("p");
    text.textContent = filtered
      ? "Nothing fits these filters. Try a wider price range, another category, or clear the filters."
      : "Try a clearer photo of a single item, or fewer words.";
    empty.append(title, text, this.suggestions(["Clear filters", "white sneakers", "summer dress", "denim jacket"]));
    empty.hidden = false;
  }

  /** Clickable suggestions; the first one of a list that starts with "Clear filters" resets filters. */
  suggestions(items) {
    const list = document.createElement("div");
    list.className = "suggestions";
    for (const item of items) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chip";
      button.textContent = item;
      button.addEventListener("click", () => this.onSuggestion(item));
      list.append(button);
    }
    return list;
  }

  /** The page before any search: a gentle invitation with a few things to try. */
  welcome(categories) {
    this.reset();
    const empty = this.el.empty;
    empty.replaceChildren();
    const title = document.createElement("h2");
    title.textContent = "Start with a photo or a few words";
    const text = document.createElement("p");
    text.textContent = "Drop a photo anywhere on this page, paste one, or try one of these:";
    const picks = ["summer dress", "white sneakers", "denim jacket", ...categories.slice(0, 4)];
    empty.append(title, text, this.suggestions([...new Set(picks)]));
    empty.hidden = false;
  }
}
