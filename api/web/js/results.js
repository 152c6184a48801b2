// The results area: status line (count, time, mode badge), skeletons, cards, empty state.

import { MODE_LABELS, SHOPPER_MODE_NOTES, formatMs, formatPrice, imageSrc, isFallback } from "./format.js";

const SKELETONS = 8;

export class ResultsView {
  constructor({ onSimilar, onSuggestion, onCategory }) {
    this.onSimilar = onSimilar;
    this.onSuggestion = onSuggestion;
    this.onCategory = onCategory;
    this.best = null; // the best score of this search: matches are shown relative to it
    this.el = {
      section: document.getElementById("results"),
      title: document.getElementById("results-title"),
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
      // The current results stay visible (dimmed) until the new ones arrive: an error then
      // leaves the shopper with what they had, not an empty page.
      this.el.grid.classList.add("is-stale");
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
    this.el.grid.classList.remove("is-stale");
    for (const node of this.el.grid.querySelectorAll(".skeleton")) node.remove();
  }

  reset() {
    this.clearSkeletons();
    this.el.grid.replaceChildren();
    this.el.status.hidden = true;
    this.el.title.hidden = true;
    this.el.more.hidden = true;
    this.best = null;
  }

  /**
   * Render one response page. `title` heads the results ("Results for your photo"), `loaded` is
   * how many products are shown in all, `hasMore` whether the server offers another page.
   */
  show(response, { append, title, loaded, hasMore, filtered, browse = false, note = null }) {
    this.clearSkeletons();
    if (!append) {
      this.el.grid.replaceChildren();
      this.best = null;
    }
    const results = response.results || [];
    if (this.best === null && results.length) this.best = results[0].score ?? null;
    const fragment = document.createDocumentFragment();
    for (const product of results) fragment.append(this.card(product, browse));
    this.el.grid.append(fragment);
    this.el.title.textContent = title;
    this.el.title.hidden = false;
    this.renderStatus(response, { loaded, hasMore, browse, note });
    this.el.more.hidden = !hasMore;
    if (!loaded) this.renderEmpty(filtered);
    else this.el.empty.hidden = true;
  }

  /**
   * The match shown on a card. The server's `match` (0..1: the hit's place between what the
   * model in use calls unrelated and the best hit) when present; else the score relative to the
   * best hit. Never the raw cosine: 0.29 from one model means what 0.8 means from another.
   */
  matchPercent(product) {
    if (typeof product.match === "number") return Math.round(Math.max(0, Math.min(1, product.match)) * 100);
    const best = this.best;
    if (!best || best <= 0 || typeof product.score !== "number") return Math.round(product.similarity ?? 0);
    return Math.round(Math.max(0, Math.min(1, product.score / best)) * 100);
  }

  card(product, browse = false) {
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
    if (browse || typeof product.score !== "number") {
      match.remove();
    } else {
      const percent = this.matchPercent(product);
      match.textContent = `${percent}% match`;
      match.dataset.score = String(product.score);
      match.title = "How close this is to the best match of your search";
    }
    const category = node.querySelector(".category-link");
    if (product.category) {
      category.textContent = product.category;
      category.setAttribute("aria-label", `Browse ${product.category}`);
      category.addEventListener("click", () => this.onCategory(product.category));
    } else {
      category.remove();
    }
    node.querySelector(".card-name").textContent = product.name || product.sku;
    node.querySelector(".card-price").textContent = formatPrice(product.price, product.currency);
    const button = node.querySelector(".similar-button");
    button.setAttribute("aria-label", `More like ${product.name || product.sku}`);
    button.addEventListener("click", () => this.onSimilar(product));
    return node;
  }

  /** "N results" only when N is all there is; otherwise what is shown, and of how many if known. */
  static countText(loaded, total, hasMore) {
    const noun = (n) => (n === 1 ? "result" : "results");
    if (typeof total === "number" && total >= loaded) return hasMore ? `${loaded} of ${total} ${noun(total)}` : `${total} ${noun(total)}`;
    if (!hasMore) return `${loaded} ${noun(loaded)}`;
    return `Top ${loaded} ${noun(loaded)}`;
  }

  renderStatus(response, { loaded, hasMore, browse, note }) {
    const status = this.el.status;
    status.replaceChildren();
    const summary = document.createElement("p");
    summary.className = "status-summary";
    const count = document.createElement("strong");
    count.className = "status-count";
    count.textContent = ResultsView.countText(loaded, response.total, hasMore);
    summary.append(count);
    if (response.words_used) {
      const words = document.createElement("span");
      words.className = "status-words";
      words.textContent = ` · ${response.words_used}`;
      summary.append(words);
    }
    if (note) {
      const small = document.createElement("span");
      small.className = "status-note";
      small.textContent = ` · ${note}`;
      summary.append(small);
    }
    if (browse || !response.timing) {
      status.append(summary);
      status.hidden = false;
      return;
    }
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
      // Shoppers read what they are seeing; why the main model is down is for the admin page.
      badge.classList.add("is-fallback");
      badge.textContent = SHOPPER_MODE_NOTES[response.mode];
      badge.title = "Our best visual search is resting, so these results may be a little less precise.";
    } else {
      badge.title = {
        hybrid: "Hybrid: photo and words together",
        clip_text: "CLIP visual search, with products whose SKU, name or text match your words ranked in",
      }[response.mode] || "CLIP visual search";
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
