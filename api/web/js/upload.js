// The photo picker: drag and drop (panel or whole page), paste, file picker, phone camera,
// a preview with a remove button. Files are checked here before anything is sent.

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

export class PhotoPicker {
  /** onChange(file | null) on every pick or removal; onReject(ImageRejected) for bad files. */
  constructor({ onChange, onReject, maxBytes = 0 }) {
    this.onChange = onChange;
    this.onReject = onReject;
    this.maxBytes = maxBytes;
    this.file = null;
    this.objectUrl = null;
    this.el = {
      toggle: document.getElementById("camera-button"),
      panel: document.getElementById("upload-panel"),
      dropzone: document.getElementById("dropzone"),
      fileInput: document.getElementById("file-input"),
      cameraInput: document.getElementById("camera-input"),
      preview: document.getElementById("preview"),
      previewImage: document.getElementById("preview-image"),
      previewName: document.getElementById("preview-name"),
      remove: document.getElementById("remove-image"),
      thumb: document.getElementById("query-thumb"),
      overlay: document.getElementById("drop-overlay"),
    };
    this.bind();
  }

  bind() {
    const { toggle, dropzone, fileInput, cameraInput, remove } = this.el;
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

  pick(file) {
    try {
      checkFile(file, this.maxBytes);
    } catch (error) {
      this.setOpen(true);
      this.onReject(error);
      return;
    }
    this.show(file);
    this.onChange(file);
  }

  show(file) {
    this.file = file;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = URL.createObjectURL(file);
    const { preview, previewImage, previewName, dropzone, thumb } = this.el;
    previewImage.src = this.objectUrl;
    previewName.textContent = file.name && file.name !== "image.png" ? file.name : "Pasted photo";
    preview.hidden = false;
    dropzone.hidden = true;
    thumb.hidden = false;
    thumb.style.backgroundImage = `url("${this.objectUrl}")`;
    this.setOpen(true);
  }

  clear() {
    this.file = null;
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
    const { preview, previewImage, dropzone, thumb } = this.el;
    previewImage.removeAttribute("src");
    preview.hidden = true;
    dropzone.hidden = false;
    thumb.hidden = true;
    thumb.style.backgroundImage = "";
    this.el.toggle.classList.remove("is-active");
    dropzone.focus();
    this.onChange(null);
  }
}
