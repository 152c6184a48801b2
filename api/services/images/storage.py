"""Uploaded and ingested photos kept under the media dir by content hash."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

from api.settings import Settings

UPLOAD_DIR = "uploads"
EXTENSIONS = {b"\xff\xd8\xff": "jpg", b"\x89PNG": "png", b"GIF8": "gif", b"RIFF": "webp", b"BM": "bmp"}


def save_image(data: bytes, settings: Settings) -> str:
    """Store image bytes under the media dir by content hash; return the relative path.

    Content addressing makes retries idempotent and lets identical photos share one file.
    """
    extension = next((ext for magic, ext in EXTENSIONS.items() if data.startswith(magic)), "img")
    relative = f"{UPLOAD_DIR}/{hashlib.sha256(data).hexdigest()}.{extension}"
    path = settings.media_dir / relative
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temp name of this writer's own: two writers of the same photo (parallel ingests,
        # concurrent uploads) once shared `<sha>.partial` and replaced each other's half-written file.
        handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(partial, 0o644)
            os.replace(partial, path)  # atomic: a crash never leaves a half-written image behind
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
    return relative
