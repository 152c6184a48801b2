// The photo picker: drag and drop (panel or whole page), paste, file picker, phone camera,
// a preview with a crop box and a remove button. Files are checked, and decoded, here before
// anything is sent, so a bad file is refused without touching the current photo or results.

import { CropBox, cropImage } from "./crop-box.js";
import { formatBytes } from "./format.js";

export class ImageRejected extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Reject what the server would reject anyway, without the round trip. */
export function checkFile(file, maxBytes) {
  if (file.type && !file.type.startsWith("image/")) {
    throw new ImageRejected("not_an_image", "That file isn't an image. Try a JPEG, PNG or WebP photo.");
  }
  if (maxBytes && file.size > maxBytes) {
    throw new ImageRejected(
      "file_too_large",
      `That photo is ${formatBytes(file.size)}; please use one under ${formatBytes(maxBytes)}.`,
    );
  }
  if (file.size === 0) throw new ImageRejected("empty_image", "That file is empty. Please choose another photo.");
}

const firstImage = (items) => {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file) return file;
  }
  return null;
};

/** Decode a file in the browser: a damaged photo is refused before the server ever sees it. */
async function decodable(url) {
  const probe = new Image();
  probe.src = url;
  try {
    await probe.decode();
    return probe.naturalWidth > 0;
  } catch {
    return false;
  }
}

export class PhotoPicker {
  /**
   * onChange(photo | null) on every pick or removal (photo: {file, name}); onCrop() when the crop
   * box changed; onReject(ImageRejected) for bad files, which leave the current photo as it was.
   */
  constructor({ onChange, onReject, onCrop, maxBytes = 0 }) {
    this.onChange = onChange;
    this.onReject = onReject;
    this.onCrop = onCrop || (() => {});
    this.maxBytes = maxBytes;
    this.file = null;
    this.objectUrl = null;
    this.cropBox = null;
    this.el = {
      toggle: document.getElementById("camera-button"),
      panel: document.getElementById("upload-panel"),
      dropzone: document.getElementById("dropzone"),
      fileInput: document.getElementById("file-input"),
      cameraInput: document.getElementById("camera-input"),
      preview: document.getElementById("preview"),
      cropArea: document.getElementById("crop-area"),
      previewName: document.getElementById("preview-name"),
      cropHelp: document.getElementById("crop-help"),
      resetCrop: document.getElementById("reset-crop"),
      remove: document.getElementById("remove-image"),
      thumb: document.getElementById("query-thumb"),
      overlay: document.getElementById("drop-overlay"),
    };
    this.bind();
  }

  bind() {
    const { toggle, dropzone, fileInput, cameraInput, remove, resetCrop } = this.el;
    toggle.addEventListener("click", () => this.setOpen(this.el.panel.hidden));
    for (const input of [fileInput, cameraInput]) {
      input.addEventListener("change", () => {
        if (input.files && input.files[0]) this.pick(input.files[0]);
        input.value = "";
      });
    }
    dropzone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        fileInput.click();
      }
    });
    dropzone.addEventListener("click", (event) => {
      if (!event.target.closest("label, input")) fileInput.click();
    });
    for (const type of ["dragenter", "dragover"]) {
      dropzone.addEventListener(type, (event) => {
        event.preventDefault();
        dropzone.classList.add("is-over");
      });
    }
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("is-over"));
    dropzone.addEventListener("drop", (event) => this.onDrop(event));
    remove.addEventListener("click", () => this.clear());
    resetCrop.addEventListener("click", () => {
      this.cropBox?.reset();
      this.cropChanged();
    });
    this.bindPage();
  }

  bindPage() {
    let depth = 0;
    const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    window.addEventListener("dragenter", (event) => {
      if (!hasFiles(event)) return;
      depth += 1;
      this.el.overlay.hidden = false;
    });
    window.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) this.el.overlay.hidden = true;
    });
    window.addEventListener("dragover", (event) => {
      if (hasFiles(event)) event.preventDefault();
    });
    window.addEventListener("drop", (event) => {
      depth = 0;
      this.el.overlay.hidden = true;
      if (event.defaultPrevented) return;
      this.onDrop(event);
    });
    document.addEventListener("paste", (event) => {
      const file = firstImage(event.clipboardData?.items);
      if (!file) return;
      event.preventDefault();
      this.pick(file);
    });
  }

  onDrop(event) {
    event.preventDefault();
    this.el.dropzone.classList.remove("is-over");
    this.el.overlay.hidden = true;
    const file = firstImage(event.dataTransfer?.files) || firstImage(event.dataTransfer?.items);
    if (file) this.pick(file);
  }

  setOpen(open) {
    this.el.panel.hidden = !open;
    this.el.toggle.setAttribute("aria-expanded", String(open));
    this.el.toggle.classList.toggle("is-active", open || Boolean(this.file));
    if (open && !this.file) this.el.dropzone.focus();
  }

  async pick(file) {
    try {
      checkFile(file, this.maxBytes);
    } catch (error) {
      this.onReject(error);
      return;
    }
    const url = URL.createObjectURL(file);
    if (!(await decodable(url))) {
      URL.revokeObjectURL(url);
      this.onReject(
        new ImageRejected("truncated_image", "That image looks damaged or incomplete. Try saving it again, or use another photo."),
      );
      return;
    }
    await this.show(file, { url });
    this.onChange({ file, name: this.el.previewName.textContent });
  }

  /** Show a photo (a pick, or one restored from the address bar) with the crop box over it. */
  async show(file, { url = null, crop = null, name = null } = {}) {
    this.file = file;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = url || URL.createObjectURL(file);
    const { preview, previewName, dropzone, thumb, cropArea } = this.el;
    previewName.textContent = name || (file.name && file.name !== "image.png" ? file.name : "Pasted photo");
    preview.hidden = false;
    dropzone.hidden = true;
    thumb.hidden = false;
    thumb.style.backgroundImage = `url("${this.objectUrl}")`;
    this.cropBox?.destroy();
    this.cropBox = new CropBox(cropArea, {
      src: this.objectUrl,
      alt: "Your search photo",
      label: "Crop box: drag over the item you mean, or use the arrow keys to move it and Shift + arrow keys to resize it",
      onChange: () => this.cropChanged(),
      onInput: () => this.renderCropState(),
    });
    this.cropBox.image.id = "preview-image";
    this.setOpen(true);
    await this.cropBox.ready;
    if (crop) this.cropBox.crop = crop;
    this.renderCropState();
  }

  renderCropState() {
    const full = !this.cropBox || this.cropBox.isFull;
    this.el.resetCrop.hidden = full;
    this.el.cropHelp.textContent = full
      ? "Searching the whole photo. Drag a box over one item to search just that."
      : "Searching the part inside the box.";
  }

  cropChanged() {
    this.renderCropState();
    this.onCrop(this.crop);
  }

  /** The crop in image pixels, or null for the whole photo. */
  get crop() {
    return this.cropBox && !this.cropBox.isFull ? this.cropBox.crop : null;
  }

  /** The bytes a search sends: the file itself, or its crop cut out on a canvas. */
  async queryBlob() {
    if (!this.file) return null;
    if (!this.crop) return this.file;
    return cropImage(this.cropBox.image, this.cropBox.crop);
  }

  /** Forget the photo without a search (the page restores another state). */
  reset() {
    this.file = null;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    this.cropBox?.destroy();
    this.cropBox = null;
    const { preview, dropzone, thumb } = this.el;
    preview.hidden = true;
    dropzone.hidden = false;
    thumb.hidden = true;
    thumb.style.backgroundImage = "";
    this.el.toggle.classList.remove("is-active");
  }

  clear() {
    this.reset();
    this.el.dropzone.focus();
    this.onChange(null);
  }
}
