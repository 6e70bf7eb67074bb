"""Hugging Face image classifiers (ViT family): explore the embeddings output or the pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError, ModelError
from .architectures import embeddings_module
from .base import (
    ModelAdapter,
    PreparedInput,
    capture_module_output,
    check_finite,
    eval_mode,
    parameter_copies,
    replace_module_output,
    resolve_device,
    resolve_dtype,
)

__all__ = ["HFImageClassifierAdapter", "load_image"]

SPACES = ("embeddings", "pixels")


def load_image(path: str | Path, *, channels: int | None = None) -> np.ndarray:
    """Read a PNG/JPEG (via Pillow) or a .npy array.

    With ``channels`` (1 or 3), image files are converted to grayscale or RGB, so an RGB(A)
    PNG of a digit works with a one-channel model; .npy arrays are returned as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if channels in (1, 3):
                img = img.convert("L" if channels == 1 else "RGB")
            return np.asarray(img)
    except UnidentifiedImageError as exc:
        raise InputError(f"{str(path)!r} is not an image Pillow can read") from exc


class HFImageClassifierAdapter(ModelAdapter):
    """Adapter for ``*ForImageClassification`` models whose embeddings module takes pixels.

    ``space="embeddings"``: x0 is the embeddings module's output (CLS and other special tokens,
    then one row per patch; position embeddings included), segments = tokens.
    ``space="pixels"``: x0 is the normalised image cut into patches, one row of C*p*p pixels per
    patch, so every explored point is an image; the patch embedding maps it linearly.

    Images are arrays (H, W), (C, H, W) or (H, W, C), uint8 in [0, 255] or floats in [0, 1];
    they are normalised with ``image_mean``/``image_std`` when given (from the model directory's
    preprocessor_config.json when loaded by ``load_adapter``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        space: Literal["embeddings", "pixels"] = "embeddings",
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype = "float32",
    ) -> None:
        if space not in SPACES:
            raise InputError(f"unknown space {space!r}; choose one of {list(SPACES)}")
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "image_size"):
            raise ModelError(f"{type(model).__name__} is not a Hugging Face vision model")
        self.model = model
        self.space = space
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        size = config.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        patch = getattr(config, "patch_size", None)
        self.patch_size = patch if isinstance(patch, int) else (patch[0] if patch else None)
        self.num_channels = int(getattr(config, "num_channels", 3))
        self._embeddings = embeddings_module(model) if space == "embeddings" else None
        if space == "pixels" and not self.patch_size:
            raise ModelError("space='pixels' needs a config.patch_size")
        self._params = parameter_copies(model, self.device, self.dtype)
        self.labels = [str(config.id2label[i]) for i in range(config.num_labels)]
        c = self.num_channels
        self._mean = torch.tensor(image_mean if image_mean is not None else [0.0] * c)
        self._std = torch.tensor(image_std if image_std is not None else [1.0] * c)

    # -- images ---------------------------------------------------------------------------
    def pixel_values(self, image: Any) -> Tensor:
        """A raw image -> normalised pixel values (1, C, H, W) in the adapter's dtype/device."""
        if isinstance(image, (str, Path)):
            image = load_image(image, channels=self.num_channels)
        if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
            image = np.asarray(image)
        arr = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
        if arr.dtype == object or arr.size == 0:
            raise InputError("the image is empty or not numeric")
        c, (h, w) = self.num_channels, self.image_size
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 2:
            if c != 1:
                raise InputError(
                    f"got a single-channel {arr.shape} image; the model wants {c} channels"
                )
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[0] != c and arr.shape[-1] == c:
            arr = np.moveaxis(arr, -1, 0)
        if arr.ndim != 3 or arr.shape != (c, h, w):
            raise InputError(
                f"image has shape {tuple(np.shape(image))}; the model wants {c} channel(s) of "
                f"{h}x{w} pixels: (H, W) for one channel, (C, H, W) or (H, W, C)"
            )
        if arr.dtype == np.uint8:
            x = torch.from_numpy(arr.astype(np.float32) / 255.0)
        elif np.issubdtype(arr.dtype, np.number):
            x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
            check_finite(x, "the image")
            if x.min() < 0 or x.max() > 1:
                raise InputError(
                    f"float images must lie in [0, 1]; got values in [{float(x.min()):.3g}, "
                    f"{float(x.max()):.3g}] (use uint8 for 0..255)"
                )
        else:
            raise InputError(f"unsupported image dtype {arr.dtype}")
        return self.normalize(x).unsqueeze(0).to(device=self.device, dtype=self.dtype)

    def normalize(self, image: Tensor) -> Tensor:
        """Pixels in [0, 1] (C, H, W) -> the model's normalised pixel values."""
        return (image - self._mean.to(image).view(-1, 1, 1)) / self._std.to(image).view(-1, 1, 1)

    def denormalize(self, pixels: Tensor) -> Tensor:
        """Normalised pixel values (C, H, W) -> pixels on the [0, 1] scale (not capped)."""
        return pixels * self._std.to(pixels).view(-1, 1, 1) + self._mean.to(pixels).view(-1, 1, 1)

    def image(self, raw: Any) -> Tensor:
        """A raw image, validated, as (C, H, W) pixels in [0, 1] on the CPU."""
        return self.denormalize(self.pixel_values(raw)[0]).cpu()

    def patchify(self, pixels: Tensor) -> Tensor:
        """(C, H, W) -> (patches, C*p*p), row-major over the patch grid."""
        c, h, w = pixels.shape
        p = self.patch_size
        x = pixels.reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4)
        return x.reshape((h // p) * (w // p), c * p * p)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """(patches, C*p*p) -> (C, H, W); inverse of ``patchify``."""
        c, (h, w), p = self.num_channels, self.image_size, self.patch_size
        x = patches.reshape(h // p, w // p, c, p, p).permute(2, 0, 3, 1, 4)
        return x.reshape(c, h, w)

    def _patch_names(self) -> list[str]:
        (h, w), p = self.image_size, self.patch_size or 1
        return [f"patch ({r},{col})" for r in range(h // p) for col in range(w // p)]

    # -- protocol ------------------------------------------------------------------------
    def _run(self, pixel_values: Tensor) -> Tensor:
        with eval_mode(self.model):
            out = functional_call(self.model, self._params, (), {"pixel_values": pixel_values})
        return out.logits if hasattr(out, "logits") else out[0]

    def prepare(self, raw: Any) -> PreparedInput:
        pixels = self.pixel_values(raw)
        desc = raw if isinstance(raw, (str, Path)) else f"image {tuple(pixels.shape[1:])}"
        if self.space == "pixels":
            (h, w), p = self.image_size, self.patch_size
            if h % p or w % p:
                raise InputError(f"space='pixels' needs image sides divisible by patch {p}")
            return PreparedInput(self.patchify(pixels[0]), self._patch_names(), {}, str(desc))
        assert self._embeddings is not None
        with torch.no_grad(), capture_module_output(self._embeddings) as seen:
            self._run(pixels)
        if not seen:
            raise ModelError("the embeddings module was not called by the model's forward")
        x0 = seen[0][0].detach()
        patch_names = self._patch_names()
        n_special = x0.shape[0] - len(patch_names)
        specials = ["[CLS]"] + [f"[special {i}]" for i in range(1, n_special)]
        names = (
            specials[:n_special] + patch_names
            if n_special >= 0
            else [f"token {i}" for i in range(x0.shape[0])]
        )
        return PreparedInput(x0, names, {"pixel_values": pixels}, str(desc))

    def logits(self, x: Tensor, prepared: PreparedInput) -> Tensor:
        if self.space == "pixels":
            return self._run(self.unpatchify(x).unsqueeze(0))[0]
        assert self._embeddings is not None
        with replace_module_output(self._embeddings, x.unsqueeze(0)):
            return self._run(prepared.model_inputs["pixel_values"])[0]

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {
            "adapter": type(self).__name__,
            "model_class": type(self.model).__name__,
            "model_type": getattr(cfg, "model_type", None),
            "space": self.space,
            "image_size": list(self.image_size),
            "num_channels": self.num_channels,
            "patch_size": self.patch_size,
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
            "image_mean": self._mean.tolist(),
            "image_std": self._std.tolist(),
        }
