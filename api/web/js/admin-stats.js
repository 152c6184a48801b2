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

const DONE_KEYS = ["done", "processed", "embedded", "completed", "ok"];
const TOTAL_KEYS = ["total", "queued_total", "expected"];

/** The ingest/precompute progress block, whatever its exact shape: a bar when it has done/total. */
export function renderIngest(container, ingest) {
  if (!ingest || typeof ingest !== "object") {
    container.hidden = true;
    return;
  }
  container.replaceChildren(el("h3", "", "Ingest / precompute"));
  const done = DONE_KEYS.map((k) => ingest[k]).find((v) => typeof v === "number");
  const whole = TOTAL_KEYS.map((k) => ingest[k]).find((v) => typeof v === "number");
  if (done !== undefined && whole) {
    const share = pct(done, whole);
    container.append(bar([["embedded", share]], `${done} of ${whole} done`), el("div", "legend", `${done} / ${whole} (${share}%)`));
  }
  const list = el("dl");
  for (const [key, value] of Object.entries(ingest)) {
    list.append(el("dt", "", key.replaceAll("_", " ")));
    list.append(el("dd", "", typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)));
  }
  container.append(list);
  container.hidden = false;
}

export function renderHealth(container, report) {
  const rows = [["Overall", report.status]];
  for (const [name, component] of Object.entries(report.components || {})) {
    rows.push([name.replaceAll("_", " "), component.status || "unknown", component.reason]);
  }
  container.replaceChildren(
    ...rows.map(([name, status, reason]) => {
      const row = el("div", "health-row");
      const value = el("span", `status-${status}`, status);
      if (reason) value.title = reason;
      row.append(el("span", "", name), value);
      return row;
    }),
  );
}
