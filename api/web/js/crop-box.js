// A crop box over an image, like Lens: drag to draw a box, drag it to move it, drag a corner to
// resize it; or focus it and use the arrow keys (Shift + arrows resize). It reports the crop in the
// image's own pixels, and cropImage() turns that into a small JPEG on a canvas, so a page searches
// on the part of the photo the shopper means without uploading the whole photo.
//
// Self-contained on purpose: no page globals, no ids, its own class prefix (lk-crop) and its own
// styles, injected into the root node it is mounted in (the document, or a shadow root), so the
// storefront widget can embed it inside its shadow DOM. Theme it with --lk-crop-accent.
//
//   const box = new CropBox(container, { src: objectUrl, onChange: (crop) => search(crop) });
//   box.crop      // {x, y, width, height} in image pixels (integers)
//   box.isFull    // true while the box covers the whole image
//   box.reset()   // back to the whole image
//   box.destroy()

const STYLE_ID = "lk-crop-style";
const MIN_FRACTION = 0.04; // the smallest box: 4% of the image side (and at least 8 image pixels)
const KEY_STEP = 0.02; // arrow keys move/resize by 2% of the image side, Shift+Alt by 0.5%

const CSS = `
.lk-crop { position: relative; display: inline-block; max-width: 100%; line-height: 0; user-select: none;
  -webkit-user-select: none; touch-action: none; overflow: hidden; border-radius: inherit; }
.lk-crop-image { display: block; max-width: 100%; max-height: var(--lk-crop-max-height, 320px); width: auto;
  height: auto; pointer-events: none; -webkit-user-drag: none; }
.lk-crop-stage { position: absolute; inset: 0; cursor: crosshair; }
.lk-crop-box { position: absolute; box-sizing: border-box; cursor: move; outline: none;
  border: 2px solid #fff; box-shadow: 0 0 0 1px rgb(0 0 0 / 70%), 0 0 0 9999px rgb(0 0 0 / 45%); }
.lk-crop-box:focus-visible { border-color: var(--lk-crop-accent, #1f3d36);
  box-shadow: 0 0 0 2px #fff, 0 0 0 3px rgb(0 0 0 / 70%), 0 0 0 9999px rgb(0 0 0 / 45%); }
.lk-crop.is-full .lk-crop-box { box-shadow: 0 0 0 1px rgb(0 0 0 / 70%); }
.lk-crop-handle { position: absolute; width: 14px; height: 14px; background: #fff; border: 2px solid #1c1b19;
  border-radius: 3px; box-sizing: border-box; }
.lk-crop-handle::before { content: ""; position: absolute; inset: -10px; }
.lk-crop-handle[data-corner="nw"] { left: -8px; top: -8px; cursor: nwse-resize; }
.lk-crop-handle[data-corner="ne"] { right: -8px; top: -8px; cursor: nesw-resize; }
.lk-crop-handle[data-corner="sw"] { left: -8px; bottom: -8px; cursor: nesw-resize; }
.lk-crop-handle[data-corner="se"] { right: -8px; bottom: -8px; cursor: nwse-resize; }
`;

const clamp = (value, low, high) => Math.min(high, Math.max(low, value));

/** Put the module's styles once into the document head or the shadow root holding `node`. */
function injectStyles(target) {
  const root = target instanceof ShadowRoot || target instanceof Document ? target : target.getRootNode();
  const host = root instanceof Document ? root.head : root;
  if (!host || host.querySelector?.(`style[data-lk="${STYLE_ID}"]`)) return;
  const style = (root instanceof Document ? root : root.ownerDocument || document).createElement("style");
  style.dataset.lk = STYLE_ID;
  style.textContent = CSS;
  host.append(style);
}

export class CropBox {
  /**
   * @param {HTMLElement} container where the image and box are drawn (its content is replaced)
   * @param {{src: string, alt?: string, label?: string, onChange?: (crop) => void,
   *          onInput?: (crop) => void, styleTarget?: Document | ShadowRoot | HTMLElement}} options
   *   onChange fires when a drag or key press is finished; onInput on every move.
   */
  constructor(container, { src, alt = "", label, onChange, onInput, styleTarget } = {}) {
    this.container = container;
    this.onChange = onChange || (() => {});
    this.onInput = onInput || (() => {});
    // The box in fractions of the image (0..1), so layout changes never move it.
    this.box = { x: 0, y: 0, w: 1, h: 1 };
    this.drag = null;
    const doc = container.ownerDocument || document;
    injectStyles(styleTarget || container);

    this.root = doc.createElement("div");
    this.root.className = "lk-crop is-full";
    this.image = doc.createElement("img");
    this.image.className = "lk-crop-image";
    this.image.alt = alt;
    this.image.draggable = false;
    this.stage = doc.createElement("div");
    this.stage.className = "lk-crop-stage";
    this.boxEl = doc.createElement("div");
    this.boxEl.className = "lk-crop-box";
    this.boxEl.tabIndex = 0;
    this.boxEl.setAttribute("role", "group");
    this.boxEl.setAttribute("aria-roledescription", "crop box");
    this.boxEl.setAttribute(
      "aria-label",
      label || "Crop box. Drag it, or use the arrow keys to move it and Shift + arrow keys to resize it.",
    );
    for (const corner of ["nw", "ne", "sw", "se"]) {
      const handle = doc.createElement("span");
      handle.className = "lk-crop-handle";
      handle.dataset.corner = corner;
      handle.setAttribute("aria-hidden", "true");
      this.boxEl.append(handle);
    }
    this.stage.append(this.boxEl);
    this.root.append(this.image, this.stage);
    container.replaceChildren(this.root);

    this.listeners = [];
    this.listen(this.stage, "pointerdown", (event) => this.onPointerDown(event));
    this.listen(this.stage, "pointermove", (event) => this.onPointerMove(event));
    this.listen(this.stage, "pointerup", (event) => this.onPointerUp(event));
    this.listen(this.stage, "pointercancel", (event) => this.onPointerUp(event));
    this.listen(this.boxEl, "keydown", (event) => this.onKeyDown(event));
    this.ready = this.setSource(src);
  }

  listen(target, type, handler) {
    target.addEventListener(type, handler);
    this.listeners.push([target, type, handler]);
  }

  /** Show another image (the box resets to the whole image); resolves once it is decoded. */
  async setSource(src) {
    this.box = { x: 0, y: 0, w: 1, h: 1 };
    this.render();
    if (!src) return;
    this.image.src = src;
    try {
      await this.image.decode();
    } catch {
      // A broken image: the page reports it; the box simply stays at "whole image".
    }
    this.render();
  }

  get naturalSize() {
    return { width: this.image.naturalWidth || 0, height: this.image.naturalHeight || 0 };
  }

  /** The crop in image pixels, rounded to whole pixels and kept inside the image. */
  get crop() {
    const { width, height } = this.naturalSize;
    const x = Math.round(this.box.x * width);
    const y = Math.round(this.box.y * height);
    return {
      x,
      y,
      width: clamp(Math.round(this.box.w * width), 1, Math.max(1, width - x)),
      height: clamp(Math.round(this.box.h * height), 1, Math.max(1, height - y)),
    };
  }

  /** Set the crop in image pixels (e.g. restored from a URL); fires no callback. */
  set crop(value) {
    const { width, height } = this.naturalSize;
    if (!value || !width || !height) return;
    const w = clamp(value.width / width, this.minW(), 1);
    const h = clamp(value.height / height, this.minH(), 1);
    this.box = { x: clamp(value.x / width, 0, 1 - w), y: clamp(value.y / height, 0, 1 - h), w, h };
    this.render();
  }

  get isFull() {
    const { x, y, w, h } = this.box;
    return x <= 0.001 && y <= 0.001 && w >= 0.999 && h >= 0.999;
  }

  reset() {
    this.box = { x: 0, y: 0, w: 1, h: 1 };
    this.render();
  }

  destroy() {
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    this.listeners = [];
    this.root.remove();
  }

  minW() {
    const { width } = this.naturalSize;
    return Math.min(1, Math.max(MIN_FRACTION, width ? 8 / width : 0));
  }

  minH() {
    const { height } = this.naturalSize;
    return Math.min(1, Math.max(MIN_FRACTION, height ? 8 / height : 0));
  }

  render() {
    const { x, y, w, h } = this.box;
    Object.assign(this.boxEl.style, {
      left: `${x * 100}%`,
      top: `${y * 100}%`,
      width: `${w * 100}%`,
      height: `${h * 100}%`,
    });
    this.root.classList.toggle("is-full", this.isFull);
    const crop = this.crop;
    this.boxEl.setAttribute(
      "aria-description", // aria-valuetext is not allowed on role=group (axe: aria-allowed-attr)
      this.isFull ? "whole photo" : `${crop.width} by ${crop.height} pixels at ${crop.x}, ${crop.y}`,
    );
  }

  /** Pointer position as fractions of the displayed image. */
  point(event) {
    const rect = this.stage.getBoundingClientRect();
    return {
      x: clamp((event.clientX - rect.left) / (rect.width || 1), 0, 1),
      y: clamp((event.clientY - rect.top) / (rect.height || 1), 0, 1),
    };
  }

  onPointerDown(event) {
    if (event.button !== undefined && event.button !== 0) return;
    event.preventDefault();
    const start = this.point(event);
    const corner = event.target.closest?.(".lk-crop-handle")?.dataset.corner;
    let kind = "draw";
    if (corner) kind = corner;
    else if (event.target === this.boxEl && !this.isFull) kind = "move";
    this.drag = { kind, start, box: { ...this.box }, moved: false, id: event.pointerId };
    this.stage.setPointerCapture?.(event.pointerId);
    this.boxEl.focus({ preventScroll: true });
  }

  onPointerMove(event) {
    if (!this.drag || event.pointerId !== this.drag.id) return;
    const p = this.point(event);
    const { start, box, kind } = this.drag;
    const dx = p.x - start.x;
    const dy = p.y - start.y;
    if (!this.drag.moved && Math.hypot(dx, dy) < 0.01) return;
    this.drag.moved = true;
    if (kind === "move") {
      this.box = { ...box, x: clamp(box.x + dx, 0, 1 - box.w), y: clamp(box.y + dy, 0, 1 - box.h) };
    } else if (kind === "draw") {
      this.box = this.fromCorners(start, p);
    } else {
      // Resize: the opposite corner stays where it is.
      const left = kind.includes("w") ? box.x + dx : box.x;
      const right = kind.includes("e") ? box.x + box.w + dx : box.x + box.w;
      const top = kind.includes("n") ? box.y + dy : box.y;
      const bottom = kind.includes("s") ? box.y + box.h + dy : box.y + box.h;
      this.box = this.fromCorners({ x: left, y: top }, { x: right, y: bottom });
    }
    this.render();
    this.onInput(this.crop);
  }

  onPointerUp(event) {
    if (!this.drag || event.pointerId !== this.drag.id) return;
    const { moved } = this.drag;
    this.drag = null;
    this.stage.releasePointerCapture?.(event.pointerId);
    if (moved) this.onChange(this.crop);
  }

  /** A box from two opposite corners, at least the minimum size, inside the image. */
  fromCorners(a, b) {
    let x0 = clamp(Math.min(a.x, b.x), 0, 1);
    let y0 = clamp(Math.min(a.y, b.y), 0, 1);
    let x1 = clamp(Math.max(a.x, b.x), 0, 1);
    let y1 = clamp(Math.max(a.y, b.y), 0, 1);
    if (x1 - x0 < this.minW()) {
      x1 = Math.min(1, x0 + this.minW());
      x0 = x1 - this.minW();
    }
    if (y1 - y0 < this.minH()) {
      y1 = Math.min(1, y0 + this.minH());
      y0 = y1 - this.minH();
    }
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  onKeyDown(event) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (event.key === "Escape" || event.key === "Home") {
      if (this.isFull) return;
      event.preventDefault();
      event.stopPropagation();
      this.reset();
      this.onChange(this.crop);
      return;
    }
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const step = event.altKey ? KEY_STEP / 4 : KEY_STEP;
    const [dx, dy] = move;
    const { x, y, w, h } = this.box;
    if (event.shiftKey) {
      // Shift + arrows resize from the bottom-right corner (left/up shrink, right/down grow).
      const nw = clamp(w + dx * step, this.minW(), 1 - x);
      const nh = clamp(h + dy * step, this.minH(), 1 - y);
      this.box = { x, y, w: nw, h: nh };
    } else if (this.isFull) {
      // From the whole photo, the first arrow key shrinks the box so there is something to move.
      this.box = { x: 0.1, y: 0.1, w: 0.8, h: 0.8 };
    } else {
      this.box = { x: clamp(x + dx * step, 0, 1 - w), y: clamp(y + dy * step, 0, 1 - h), w, h };
    }
    this.render();
    this.onInput(this.crop);
    this.onChange(this.crop);
  }
}

/**
 * Cut `crop` (image pixels) out of an image element or bitmap on a canvas and return a JPEG Blob,
 * scaled down so its longest side is at most `maxSide` (the models look at 224 px anyway).
 */
export async function cropImage(source, crop, { maxSide = 1024, type = "image/jpeg", quality = 0.92 } = {}) {
  const scale = Math.min(1, maxSide / Math.max(crop.width, crop.height));
  const width = Math.max(1, Math.round(crop.width * scale));
  const height = Math.max(1, Math.round(crop.height * scale));
  const doc = source.ownerDocument || document;
  const canvas = doc.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.imageSmoothingQuality = "high";
  context.drawImage(source, crop.x, crop.y, crop.width, crop.height, 0, 0, width, height);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the crop could not be encoded"))), type, quality);
  });
}
