// Bulk product upload: one product per photo, a few at a time, with progress per file.

import { uploadProduct } from "./api.js";
import { friendlyError } from "./format.js";

const CONCURRENCY = 2;

/** A valid SKU (see the API's SKU pattern) from a file name. */
export function skuFromFileName(name) {
  const stem = name.replace(/\.[^.]+$/, "");
  const sku = stem.replace(/[^A-Za-z0-9._:/-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128);
  return sku || `photo-${Date.now()}`;
}

export function nameFromFileName(name, category) {
  const stem = name.replace(/\.[^.]+$/, "");
  if (/^[0-9a-f-]{16,}$/i.test(stem)) {
    const label = category ? category.charAt(0).toUpperCase() + category.slice(1) : "Product";
    return `${label} ${stem.slice(0, 6).toUpperCase()}`;
  }
  const words = stem.replace(/[-_.]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export class UploadQueue {
  constructor({ list, getToken, onSettled, maxBytes }) {
    this.list = list;
    this.getToken = getToken;
    this.onSettled = onSettled;
    this.maxBytes = maxBytes;
    this.pending = [];
    this.active = 0;
  }

  /** Queue files with the category/price to give them; returns how many were queued. */
  add(files, { category, price }) {
    for (const file of files) {
      const item = this.row(file);
      this.pending.push({ file, item, fields: {
        sku: skuFromFileName(file.name),
        name: nameFromFileName(file.name, category),
        category,
        price,
      } });
    }
    this.pump();
    return files.length;
  }

  row(file) {
    const item = document.createElement("li");
    item.className = "upload-item";
    item.dataset.state = "queued";
    item.dataset.file = file.name;
    const thumb = document.createElement("img");
    thumb.alt = "";
    if (file.type.startsWith("image/")) {
      thumb.src = URL.createObjectURL(file);
      thumb.addEventListener("load", () => URL.revokeObjectURL(thumb.src), { once: true });
    }
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const state = document.createElement("span");
    state.className = "upload-state";
    state.textContent = "Queued";
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", `Upload of ${file.name}`);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    const fill = document.createElement("span");
    fill.className = "embedded";
    fill.style.width = "0%";
    bar.append(fill);
    item.append(thumb, name, state, bar);
    this.list.prepend(item);
    return item;
  }

  update(item, state, label, progress) {
    item.dataset.state = state;
    item.querySelector(".upload-state").textContent = label;
    if (progress !== undefined) {
      const value = Math.round(progress * 100);
      item.querySelector(".bar span").style.width = `${value}%`;
      item.querySelector(".bar").setAttribute("aria-valuenow", String(value));
    }
  }

  pump() {
    while (this.active < CONCURRENCY && this.pending.length) {
      const job = this.pending.shift();
      this.active += 1;
      this.send(job).finally(() => {
        this.active -= 1;
        this.pump();
        this.onSettled(this.pending.length + this.active);
      });
    }
  }

  async send({ file, item, fields }) {
    if (this.maxBytes && file.size > this.maxBytes) {
      this.fail(item, friendlyError({ code: "file_too_large" }, this.maxBytes));
      return;
    }
    this.update(item, "uploading", "Uploading 0%", 0);
    try {
      const product = await uploadProduct(this.getToken(), fields, file, (share) => {
        if (share < 1) this.update(item, "uploading", `Uploading ${Math.round(share * 100)}%`, share * 0.8);
        else this.update(item, "embedding", "Embedding…", 0.85);
      });
      const label = product.embed_error ? "Saved, not embedded" : product.created === false ? "Updated" : "Added";
      this.update(item, product.embed_error ? "failed" : "done", label, 1);
      item.dataset.sku = product.sku;
      if (product.embed_error) this.note(item, product.embed_error);
    } catch (error) {
      this.fail(item, friendlyError(error, this.maxBytes));
    }
  }

  fail(item, text) {
    this.update(item, "failed", "Failed", 1);
    this.note(item, text);
  }

  note(item, text) {
    const note = document.createElement("p");
    note.className = "upload-error";
    note.textContent = text;
    item.append(note);
  }
}
