"""A model's resize, centre-crop and normalise as batched tensor ops on its device (for GPUs).

On a GPU the forward passes of both models cost far less per image than Pillow's antialiased
resize and crop for the two of them on one CPU core (docs/benchmarks.md, "Ingest lanes and GPU
mode"). Ingestion is then bound by the CPU, not the GPU. This moves everything but
decoding onto the device: the uint8 pixels go over as they are and are resized there, photos of
one size together (a catalog comes in a handful of sizes, so it is a few kernels per batch).

torch's antialiased bicubic and bilinear kernels follow Pillow's filters, and the resized pixels
are rounded to uint8 levels as Pillow's are, so the vectors match the Pillow path to cosine >=
0.999 (tests/encoder/test_tensor_transforms.py), the bar every optimised path here must clear.
The steps are read from the model's own transforms; a pipeline with any other step is refused
(:class:`UnsupportedTransformError`) and the encoder keeps Pillow, rather than approximating it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize

log = logging.getLogger(__name__)

_MODES = {InterpolationMode.BICUBIC: "bicubic", InterpolationMode.BILINEAR: "bilinear"}
_NO_OPS = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb"}
"""Steps that only convert an RGB image to a [0, 1] tensor: done here by dividing by 255."""


class UnsupportedTransformError(ValueError):
    pass


@dataclass(frozen=True)
class TensorTransform:
    resize_to: int
    """Shortest side after resizing (the long side keeps the aspect ratio, as torchvision's)."""
    interpolation: str
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_transforms(cls, transforms: Any) -> TensorTransform:
        """Read the steps out of open_clip's ``Compose`` or torchvision's ``ImageClassification``."""
        if type(transforms).__name__ == "ImageClassification":
            return cls._checked(
                list(transforms.resize_size),
                transforms.interpolation,
                bool(transforms.antialias),
                list(transforms.crop_size),
                transforms.mean,
                transforms.std,
            )
        resize: Resize | None = None
        crop: CenterCrop | None = None
        normalize: Normalize | None = None
        for step in getattr(transforms, "transforms", None) or [transforms]:
            if isinstance(step, Resize) and resize is None and crop is None and step.max_size is None:
                resize = step
            elif isinstance(step, CenterCrop) and resize is not None and crop is None:
                crop = step
            elif isinstance(step, Normalize) and crop is not None:
                normalize = step
            elif getattr(step, "__name__", type(step).__name__) not in _NO_OPS:
                raise UnsupportedTransformError(f"no tensor version of the preprocessing step {step!r}")
        if resize is None or crop is None or normalize is None:
            raise UnsupportedTransformError("preprocessing is not resize -> centre crop -> normalise")
        size = [resize.size] if isinstance(resize.size, int) else list(resize.size)
        return cls._checked(
            size,
            resize.interpolation,
            resize.antialias is not False,
            list(crop.size),
            normalize.mean,
            normalize.std,
        )

    @classmethod
    def _checked(
        cls,
        size: list[int],
        interpolation: InterpolationMode,
        antialias: bool,
        crop: list[int],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> TensorTransform:
        if len(size) != 1 or len(set(crop)) != 1 or crop[0] > size[0]:
            raise UnsupportedTransformError(f"resize {size} / crop {crop} is not shortest-side + square crop")
        if interpolation not in _MODES or not antialias:
            raise UnsupportedTransformError(f"no antialiased tensor resize for {interpolation}")
        return cls(
            size[0],
            _MODES[interpolation],
            crop[0],
            (float(mean[0]), float(mean[1]), float(mean[2])),
            (float(std[0]), float(std[1]), float(std[2])),
        )

    def __call__(self, images: Sequence[Image.Image], device: str) -> torch.Tensor:
        """Normalised float32 NCHW crops of RGB ``images``, computed on ``device``."""
        out = torch.empty((len(images), 3, self.crop, self.crop), dtype=torch.float32, device=device)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            by_size.setdefault(image.size, []).append(index)
        for (width, height), indices in by_size.items():
            pixels = stack_pixels([images[i] for i in indices])
            batch = pixels.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
            size = self.resized(height, width)
            batch = torch.nn.functional.interpolate(
                batch, size=size, mode=self.interpolation, antialias=True, align_corners=False
            )
            top = round((size[0] - self.crop) / 2.0)  # torchvision's CenterCrop offsets
            left = round((size[1] - self.crop) / 2.0)
            crops = batch[:, :, top : top + self.crop, left : left + self.crop]
            out[torch.tensor(indices, device=device)] = crops.round_().clamp_(0, 255)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return out.div_(255).sub_(mean).div_(std)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """torchvision's output size for ``Resize(int)``: short side exact, long side truncated."""
        if height <= width:
            return self.resize_to, int(self.resize_to * width / height)
        return int(self.resize_to * height / width), self.resize_to


def stack_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    """Same-size images as one uint8 NHWC tensor: all the host does for them in GPU mode."""
    return torch.from_numpy(
        np.stack([np.asarray(i if i.mode == "RGB" else i.convert("RGB")) for i in images])
    )


class ImageBatches:
    """A model's images -> one normalised float batch: its Pillow transforms image by image on the
    CPU, or (``on_device``, where they have a tensor version) :class:`TensorTransform` on ``device``."""

    def __init__(
        self, transforms: Callable[[Image.Image], torch.Tensor], device: str, *, on_device: bool
    ) -> None:
        self._pillow = transforms
        self._device = device
        self._tensor = device_transform(transforms) if on_device else None
        self.where = "device" if self._tensor is not None else "pillow"

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if self._tensor is not None:
            return self._tensor(images, self._device)
        return torch.stack([self._pillow(image.convert("RGB")) for image in images])


def device_transform(transforms: Any) -> TensorTransform | None:
    """The tensor version of ``transforms``, or None (logged) where it has none: Pillow it is."""
    try:
        return TensorTransform.from_transforms(transforms)
    except UnsupportedTransformError as exc:
        log.warning("images are resized with Pillow on the CPU: %s", exc)
        return None
