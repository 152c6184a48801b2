"""GPU mode on the CPU: images resized by tensor ops on the device, CLIP in fp16. Same code as on
a GPU (only the device string differs), held to the bar of every optimised path: each vector
within cosine 0.999 of the fp32 Pillow reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from encoder.clip import ClipEncoder, load_clip_encoder
from encoder.images import decode_image
from encoder.mobilenet import MobileNetEncoder, load_mobilenet_encoder
from encoder.registry import DEFAULT_CLIP_MODEL
from encoder.tensor_transforms import TensorTransform, UnsupportedTransformError, device_transform
from tests.encoder.conftest import MAX_PIXELS

pytestmark = pytest.mark.slow  # fp16 matmuls on a CPU are slow: ~0.3 s an image


@pytest.fixture(scope="module")
def photos(dataset_dir: Path) -> list[Image.Image]:
    """Real photos of every orientation and several sizes, plus two odd shapes."""
    paths = sorted((dataset_dir / "test").glob("*/*.jpg"))[::31]
    images = [decode_image(p.read_bytes(), max_pixels=MAX_PIXELS, target_size=224) for p in paths]
    wide = images[0].resize((900, 230))  # barely taller than the crop
    small = images[1].resize((150, 120))  # upscaled, not downscaled
    return [*images, wide, small]


def test_reads_each_models_own_steps(clip_random: ClipEncoder, mobilenet: MobileNetEncoder) -> None:
    clip = TensorTransform.from_transforms(clip_random._preprocess)
    assert (clip.resize_to, clip.interpolation, clip.crop) == (224, "bicubic", 224)
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    mobile = TensorTransform.from_transforms(mobilenet._transforms)
    assert (mobile.resize_to, mobile.interpolation, mobile.crop) == (256, "bilinear", 224)
    assert mobile.std == pytest.approx((0.229, 0.224, 0.225))


@pytest.mark.parametrize(
    "pipeline",
    [
        transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()]),  # squash, no crop
        transforms.Compose(
            [transforms.Resize(224), transforms.RandomCrop(224), transforms.Normalize((0,) * 3, (1,) * 3)]
        ),
        transforms.Compose(
            [
                transforms.Resize(224, interpolation=transforms.InterpolationMode.NEAREST),
                transforms.CenterCrop(224),
                transforms.Normalize((0,) * 3, (1,) * 3),
            ]
        ),
    ],
)
def test_any_other_pipeline_keeps_pillow(pipeline: transforms.Compose) -> None:
    with pytest.raises(UnsupportedTransformError):
        TensorTransform.from_transforms(pipeline)
    assert device_transform(pipeline) is None


def test_crops_match_pillows_pixels(photos: list[Image.Image], mobilenet: MobileNetEncoder) -> None:
    transform = TensorTransform.from_transforms(mobilenet._transforms)
    mean = torch.tensor(transform.mean).view(3, 1, 1)
    std = torch.tensor(transform.std).view(3, 1, 1)
    got = transform(photos, "cpu") * std + mean
    for image, crop in zip(photos, got, strict=True):
        want = mobilenet._transforms(image) * std + mean
        levels = (crop - want).abs() * 255
        # Pillow's fixed-point filter vs torch's float one: at most a level or two apart.
        assert levels.max() <= 3 and levels.mean() < 0.3, (image.size, levels.max(), levels.mean())


def test_mixed_sizes_keep_their_order(photos: list[Image.Image], mobilenet: MobileNetEncoder) -> None:
    transform = TensorTransform.from_transforms(mobilenet._transforms)
    together = transform(photos, "cpu")
    alone = torch.cat([transform([image], "cpu") for image in photos])
    assert torch.equal(together, alone)


def test_gpu_mode_clip_matches_the_fp32_pillow_reference(
    photos: list[Image.Image], clip_random: ClipEncoder
) -> None:
    gpu = load_clip_encoder(
        DEFAULT_CLIP_MODEL, random_weights=True, device="cpu", batch_size=8, gpu_mode=True
    )
    assert (gpu.runtime, gpu.text_runtime, gpu.preprocess_on) == ("torch-fp16", "torch-fp16", "device")
    images = (clip_random.encode_images(photos) * gpu.encode_images(photos)).sum(axis=1)
    texts = ["red summer dress", "a pair of black leather shoes", "hat", "striped long-sleeve t-shirt"]
    words = (clip_random.encode_texts(texts) * gpu.encode_texts(texts)).sum(axis=1)
    print(f"\nGPU mode on the CPU, min cosine: images {images.min():.6f}, texts {words.min():.6f}")
    assert images.min() >= 0.999 and words.min() >= 0.999


def test_gpu_mode_mobilenet_matches_the_pillow_reference(
    photos: list[Image.Image], mobilenet: MobileNetEncoder
) -> None:
    gpu = load_mobilenet_encoder(device="cpu", gpu_mode=True)
    assert gpu.preprocess_on == "device" and mobilenet.preprocess_on == "pillow"
    cosines = (mobilenet.encode_images(photos) * gpu.encode_images(photos)).sum(axis=1)
    print(f"\nMobileNetV2, images resized by tensor ops: min cosine {cosines.min():.6f}")
    assert np.all(cosines >= 0.999)
