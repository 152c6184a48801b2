"""Turn an open_clip model's two towers into ONNX files, and each into an int8 copy.

Kept apart from the runtime (:mod:`encoder.clip_onnx`) because only a cold start needs it:
exporting pulls in the TorchScript tracer, ``onnx`` and the quantiser, a warm start only
opens the cached files.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from encoder.errors import EncoderUnavailableError

OPSET = 17
"""Highest opset the TorchScript exporter handles well; every op CLIP uses exists in it."""


class TextTower(torch.nn.Module):
    """open_clip's ``encode_text`` with the context length taken from the input.

    The text transformer is causal, so the EOT token's output depends only on the tokens
    before it: the padding after the longest EOT in a batch can be cut off without changing
    any embedding. Slicing the positional embedding and the causal mask to the input's
    length lets one exported graph serve every trimmed length (3-10 tokens for a typical
    query instead of 77: ~8x less work).

    Attention is spelled out here rather than going through ``nn.MultiheadAttention``,
    whose traced graph bakes the example's sequence length into its reshapes.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        m = self.model
        length = tokens.shape[1]
        x = m.token_embedding(tokens) + m.positional_embedding[:length]
        mask = m.attn_mask[:length, :length]
        for block in m.transformer.resblocks:
            x = x + block.ls_1(_attention(block.attn, block.ln_1(x), mask))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)]
        projection = m.text_projection
        return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def _attention(attn: torch.nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``attn(x, x, x, attn_mask=mask)`` for batch-first input, with shapes kept symbolic."""
    batch, length, width = x.shape
    heads = attn.num_heads
    qkv = torch.nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    qkv = qkv.reshape(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1) + mask
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, width)
    return attn.out_proj(out)


def text_trimmable(model: torch.nn.Module) -> str | None:
    """Why :class:`TextTower` cannot reproduce this model's ``encode_text`` (None: it can)."""
    if getattr(model, "attn_mask", None) is None or not hasattr(model, "token_embedding"):
        return f"{type(model).__name__} has no causal built-in text tower"
    if getattr(model, "text_pool_type", "argmax") != "argmax":
        return f"text pooling {model.text_pool_type!r} is not argmax (EOT) pooling"
    for block in model.transformer.resblocks:
        attn = getattr(block, "attn", None)
        if (
            not isinstance(attn, torch.nn.MultiheadAttention)
            or not attn.batch_first
            or attn.in_proj_weight is None
            or hasattr(block, "ln_1_kv")
        ):
            return f"text block {type(block).__name__} is not plain batch-first self-attention"
    return None


def export_visual(model: torch.nn.Module, image_size: int, target: Path) -> None:
    """Image tower, dynamic batch: pixels (n, 3, s, s) float32 -> (n, dim) unnormalised."""
    example = torch.zeros(1, 3, image_size, image_size)
    _export(model.visual, example, "pixels", {0: "batch"}, target)


def export_text(model: torch.nn.Module, target: Path) -> None:
    """Text tower, dynamic batch and length: tokens (n, L) int64 -> (n, dim) unnormalised."""
    vocab = model.token_embedding.num_embeddings
    example = torch.zeros(2, 8, dtype=torch.long)
    example[:, 0], example[:, 5] = vocab - 2, vocab - 1  # SOT ... EOT, as the tokenizer writes them
    _export(TextTower(model), example, "tokens", {0: "batch", 1: "length"}, target)


def quantize_visual_int8(source: Path, target: Path) -> None:
    """Dynamic int8 (weights per output channel, activations per tensor at run time).

    Dynamic rather than static quantisation: it needs no calibration set, and matmuls are
    where ViT spends its time, so weights-int8 + VNNI is most of the available speed-up.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp: Path) -> None:
        quantize_dynamic(
            source,
            tmp,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )

    _atomic(target, write)


def quantize_text_int8(source: Path, target: Path) -> None:
    """Weight-only int8 in blocks of 32 (MatMulNBits), activations quantised per block at run time.

    A trimmed query is ~3-10 tokens, so the text tower is bound by reading its ~150 MB of
    fp32 weights, not by arithmetic: int8 weights are most of the win (docs/benchmarks.md,
    "the text tower in int8").
    :func:`quantize_visual_int8`'s per-tensor activation scales lose more on the text tower's skewed
    activations (min cosine 0.9991 over 300 queries vs 0.9996 with these per-block scales,
    at the same speed), and per-block scales keep a row's result independent of its batch.
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    def write(tmp: Path) -> None:
        # Without an explicit algo_config the quantiser builds its default config from these.
        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source)), bits=8, block_size=32, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(tmp), use_external_data_format=False)

    _atomic(target, write)


def quantize_blockwise_int8(source: Path, target: Path) -> None:
    """:func:`quantize_text_int8`'s format for any tower: what OpenVINO runs as compressed weights.

    OpenVINO (:mod:`encoder.openvino_clip`) maps ``MatMulNBits`` onto its weight-compressed
    matmuls, while it decomposes :func:`quantize_visual_int8`'s ``MatMulInteger`` graph to fp32.
    """
    quantize_text_int8(source, target)


def _export(
    module: torch.nn.Module, example: torch.Tensor, name: str, axes: dict[int, str], target: Path
) -> None:
    def write(tmp: Path) -> None:
        # Grad mode on: under no_grad nn.MultiheadAttention takes its fused fast path, which
        # has no ONNX export; the traced graph is the same either way.
        with warnings.catch_warnings(), torch.inference_mode(False), torch.enable_grad():
            warnings.simplefilter("ignore")  # tracer chatter about the deprecated exporter
            torch.onnx.export(
                module.eval(),
                (example,),
                str(tmp),
                input_names=[name],
                output_names=["embedding"],
                dynamic_axes={name: axes, "embedding": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )

    try:
        _atomic(target, write)
    except EncoderUnavailableError:
        raise
    except Exception as exc:
        raise EncoderUnavailableError(f"ONNX export of {target.name} failed: {exc}") from exc


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file + rename, so a crash or a second process never sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
