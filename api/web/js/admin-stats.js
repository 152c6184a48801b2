// Renders /api/v1/stats (coverage per model, optional ingest progress) and /api/v1/health.

const pct = (part, whole) => (whole ? Math.round((part / whole) * 1000) / 10 : 0);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function total(label, value) {
  const box = el("div", "total");
  box.append(el("strong", "", String(value)), el("span", "", label));
  return box;
}

function bar(parts, label) {
  const track = el("div", "bar");
  track.setAttribute("role", "img");
  track.setAttribute("aria-label", label);
  for (const [className, width] of parts) {
    const fill = el("span", className);
    fill.style.width = `${width}%`;
    track.append(fill);
  }
  return track;
}

const MODEL_LABELS = { clip: "CLIP (main search)", fallback: "MobileNetV2 (fallback)" };

function modelRow(key, model, products) {
  const row = el("div", "stat");
  row.dataset.model = key;
  const head = el("div", "stat-head");
  const covered = pct(model.embedded, products);
  head.append(el("strong", "", MODEL_LABELS[key] || key), el("span", "coverage", `${covered}%`));
  const legend = el("div", "legend");
  const item = (color, text) => {
    const span = el("span");
    const dot = el("i");
    dot.style.background = color;
    span.append(dot, text);
    return span;
  };
  legend.append(
    item("var(--accent)", `${model.embedded} embedded`),
    item("var(--gold)", `${model.stale} stale`),
    item("#d9d4ca", `${model.missing} missing`),
  );
  row.append(
    head,
    bar(
      [["embedded", covered], ["stale", pct(model.stale, products)]],
      `${model.embedded} of ${products} products embedded with ${model.model}`,
    ),
    legend,
    el("div", "stat-model", model.model || ""),
  );
  return row;
}

export function renderStats(container, stats) {
  const totals = el("div", "totals");
  totals.append(total("products", stats.products ?? 0), total("failed", stats.failed ?? 0));
  if (stats.without_image !== undefined) totals.append(total("without image", stats.without_image));
  const rows = Object.entries(stats.models || {}).map(([key, model]) => modelRow(key, model, stats.products || 0));
  container.replaceChildren(totals, ...rows);
}

const WORKER_STATES = {
  running: "Embedding new and changed photos now.",
  idle: "Up to date: waiting for new or changed photos.",
  error: "Stopped by an error; it retries by itself.",
  stopped: "Not running.",
  off: "Not running in this process (an ingest command or another server embeds instead).",
};

const REASON_WORDS = {
  not_an_image: "not an image",
  truncated_image: "damaged or incomplete image",
  image_too_large: "image too large",
  empty_image: "empty file",
  unsupported_format: "unsupported image format",
  fetch_failed: "download failed",
  not_found: "image not found",
};

const plural = (n, one, many = `${one}s`) => `${n.toLocaleString()} ${n === 1 ? one : many}`;

/** The background worker, in sentences: what it is doing, what it did, and what went wrong. */
export function renderIngest(container, ingest) {
  if (!ingest || typeof ingest !== "object") {
    container.hidden = true;
    return;
  }
  container.replaceChildren(el("h3", "", "Background embedding"));
  container.append(el("p", "worker-state", WORKER_STATES[ingest.state] || `State: ${ingest.state}.`));
  const lines = [];
  if (typeof ingest.pending === "number") {
    lines.push(ingest.pending ? `${plural(ingest.pending, "photo")} waiting to be embedded.` : "Nothing waiting.");
  }
  const did = [];
  if (ingest.embedded) did.push(`${plural(ingest.embedded, "photo")} embedded`);
  if (ingest.unchanged) did.push(`${ingest.unchanged.toLocaleString()} unchanged`);
  if (ingest.skipped) did.push(`${ingest.skipped.toLocaleString()} skipped`);
  if (ingest.failed) did.push(`${ingest.failed.toLocaleString()} failed`);
  if (did.length) {
    const rate = ingest.images_per_s ? ` (${ingest.images_per_s} photos/s)` : "";
    lines.push(`Since the server started: ${did.join(", ")}${rate}.`);
  }
  if (ingest.last_batch_at) lines.push(`Last batch: ${new Date(ingest.last_batch_at).toLocaleString()}.`);
  for (const line of lines) container.append(el("p", "", line));
  const reasons = Object.entries(ingest.failure_reasons || {});
  if (reasons.length) {
    const list = el("ul", "failure-reasons");
    for (const [code, count] of reasons) list.append(el("li", "", `${plural(count, "photo")}: ${REASON_WORDS[code] || code.replaceAll("_", " ")}`));
    container.append(el("p", "", "Why photos failed:"), list);
  }
  if (ingest.last_error) container.append(el("p", "worker-error", `Last error: ${ingest.last_error}`));
  container.hidden = false;
}

const COMPONENT_NAMES = {
  database: "Database",
  clip: "CLIP (main search)",
  fallback_encoder: "MobileNetV2 (fallback search)",
  cache: "Result cache",
  replicas: "Read replicas",
};

/** What a component being down means for shoppers, in words. */
const CONSEQUENCES = {
  clip: "Photo searches use the basic visual match and word searches use keyword matching until CLIP is back.",
  fallback_encoder: "If CLIP also fails, photo searches cannot be served.",
  cache: "Searches are answered without the cache (slower, still correct).",
  database: "Nothing can be searched.",
};

export function renderHealth(container, report) {
  const rows = [];
  const overall = el("div", "health-row");
  overall.append(el("span", "", "Overall"), el("span", `status-${report.status}`, report.status));
  rows.push(overall);
  for (const [name, component] of Object.entries(report.components || {})) {
    const status = component.status || "unknown";
    const row = el("div", "health-row");
    row.dataset.component = name;
    row.append(el("span", "", COMPONENT_NAMES[name] || name.replaceAll("_", " ")), el("span", `status-${status}`, status));
    rows.push(row);
    if (status !== "ok" && (component.reason || CONSEQUENCES[name])) {
      // The technical reason, spelled out on the page (not hidden in a tooltip), and what it means.
      const detail = el("div", "health-reason");
      if (component.reason) detail.append(el("p", "", `Why: ${component.reason}`));
      if (CONSEQUENCES[name]) detail.append(el("p", "", CONSEQUENCES[name]));
      rows.push(detail);
    }
  }
  container.replaceChildren(...rows);
}
