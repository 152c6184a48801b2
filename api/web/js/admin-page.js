// The admin page: token sign-in (sessionStorage), coverage polling, bulk upload.

import * as api from "./api.js";
import { renderHealth, renderIngest, renderStats } from "./admin-stats.js";
import { UploadQueue } from "./admin-upload.js";
import { friendlyError } from "./format.js";

const TOKEN_KEY = "lookalike.adminToken";
const POLL_MS = 3000;
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let pollTimer = null;
let chosen = [];
let maxBytes = 0;

const queue = new UploadQueue({
  list: $("upload-list"),
  getToken: () => token,
  maxBytes: 0,
  onSettled: (remaining) => {
    $("upload-summary").textContent = remaining ? `${remaining} left…` : "All uploads finished.";
    if (!remaining) refresh();
  },
});

function showLogin(text) {
  clearTimeout(pollTimer);
  $("workspace").hidden = true;
  $("login").hidden = false;
  const message = $("login-message");
  message.hidden = !text;
  message.textContent = text || "";
  $("token").focus();
}

async function refresh() {
  clearTimeout(pollTimer);
  try {
    const stats = await api.stats(token);
    renderStats($("stats"), stats);
    renderIngest($("ingest"), stats.ingest);
    // A shop-owned table is read-only here: say where products are edited instead of offering uploads.
    const shopManaged = stats.catalog?.managed_by === "shop";
    $("shop-managed").hidden = !shopManaged;
    $("upload-panel").hidden = shopManaged;
    if (shopManaged) $("shop-table").textContent = stats.catalog.table;
    $("stats-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (error.status === 401 || error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = "";
      showLogin("That token was not accepted. Check LOOKALIKE_ADMIN_TOKEN and try again.");
      return;
    }
    $("stats-updated").textContent = friendlyError(error);
  }
  api.health().then((report) => renderHealth($("health"), report)).catch(() => {});
  if (!document.hidden) pollTimer = setTimeout(refresh, POLL_MS);
}

async function signIn(candidate) {
  token = candidate;
  try {
    await api.stats(token);
  } catch (error) {
    token = "";
    const denied = error.status === 401 || error.status === 403;
    showLogin(denied ? "That token was not accepted. Check LOOKALIKE_ADMIN_TOKEN and try again." : friendlyError(error));
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("workspace").hidden = false;
  loadCategories();
  refresh();
}

async function loadCategories() {
  try {
    const { categories } = await api.categories();
    const list = $("category-list");
    list.replaceChildren(...categories.map(({ name }) => Object.assign(document.createElement("option"), { value: name })));
  } catch {
    /* suggestions only */
  }
}

function choose(files) {
  chosen = [...files].filter((file) => !file.type || file.type.startsWith("image/"));
  const skipped = files.length - chosen.length;
  const summary = `${chosen.length} photo${chosen.length === 1 ? "" : "s"} selected` + (skipped ? ` (${skipped} non-image skipped)` : "");
  $("upload-summary").textContent = summary;
  $("upload-start").disabled = chosen.length === 0;
}

function bindUpload() {
  const input = $("upload-files");
  const zone = $("admin-dropzone");
  input.addEventListener("change", () => choose(input.files));
  zone.addEventListener("click", (event) => {
    if (!event.target.closest("label, input")) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("is-over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("is-over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("is-over");
    choose(event.dataTransfer.files);
  });
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const category = $("upload-category").value.trim();
    if (!chosen.length || !category) return;
    const price = $("upload-price").value;
    queue.maxBytes = maxBytes;
    const count = queue.add(chosen, { category, price });
    $("upload-summary").textContent = `${count} queued…`;
    chosen = [];
    input.value = "";
    $("upload-start").disabled = true;
  });
}

function init() {
  bindUpload();
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) signIn(value);
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = "";
    $("token").value = "";
    showLogin("");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && token && !$("workspace").hidden) refresh();
  });
  api.uiConfig().then((config) => { maxBytes = config.max_upload_bytes; }).catch(() => {});
  if (token) signIn(token);
  else showLogin("");
  document.body.dataset.ready = "true";
}

init();
