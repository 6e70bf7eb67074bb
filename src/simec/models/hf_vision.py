"""Hugging Face vision models (ViT family): explore the embeddings output or the pixels.

Image classifiers (``*ForImageClassification``) are explored from their logits; vision models
without a classification head (ViT-MAE, CLIP's vision tower) can still be run to their hidden
states (``backbone_outputs``), which is all ``simec structure`` needs for its ``cls`` and
``pooled`` embeddings. Per-architecture knowledge lives in ``architectures.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError, ModelError
from .architectures import architecture, backbone_module, embeddings_module, vision_config
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
        with Image.open(path) as opened:
            img: Image.Image = opened
            if channels in (1, 3):
                img = img.convert("L" if channels == 1 else "RGB")
            return np.asarray(img)
    except UnidentifiedImageError as exc:
        raise InputError(f"{str(path)!r} is not an image Pillow can read") from exc


class HFImageClassifierAdapter(ModelAdapter):
    """Adapter for Hugging Face vision models whose embeddings module takes pixels.

    ``*ForImageClassification`` models are explored from their logits; a model without a
    classification head (``has_head`` is False: ViT-MAE, ``CLIPVisionModel``, ...) has no
    ``labels`` and cannot be explored (``prepare``/``logits`` raise ``ModelError``), but
    ``backbone_outputs`` runs it to its hidden states.

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
        config = vision_config(model)
        if getattr(model, "config", None) is None or config is None:
            raise ModelError(f"{type(model).__name__} is not a Hugging Face vision model")
        self.architecture = architecture(model)
        for key, wanted in self.architecture.config_overrides.items():
            if getattr(config, key, wanted) != wanted:
                raise ModelError(
                    f"{type(model).__name__} has config.{key}={getattr(config, key)!r}; simec "
                    f"needs {key}={wanted!r} (e.g. ViT-MAE drops patches at random otherwise). "
                    f"Load it with from_pretrained(..., {key}={wanted!r}), as "
                    "simec.load_adapter does"
                )
        self.model = model
        self.vision_config = config
        #: whether the model ends in an image-classification head (has logits)
        self.has_head = "ForImageClassification" in type(model).__name__
        self.space = space
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        size = config.image_size
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        patch = getattr(config, "patch_size", None)
        self.patch_size: int | None = (
            patch if isinstance(patch, int) else (patch[0] if patch else None)
        )
        self.num_channels = int(getattr(config, "num_channels", 3))
        self._embeddings = embeddings_module(model) if space == "embeddings" else None
        if space == "pixels" and not self.patch_size:
            raise ModelError("space='pixels' needs a config.patch_size")
        self._params = parameter_copies(model, self.device, self.dtype)
        self._backbone: tuple[nn.Module, dict[str, Tensor]] | None = None
        top: Any = model.config
        self.labels = [str(top.id2label[i]) for i in range(top.num_labels)] if self.has_head else []
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

    def fit_image(self, raw: Any) -> Tensor:
        """A raw image of any size made to fit the model, as (C, H, W) pixels in [0, 1] (CPU).

        Accepts (H, W), (C, H, W) or (H, W, C) arrays (uint8 in [0, 255] or floats in [0, 1])
        with 1 or 3 channels. The image is resized bilinearly (antialiased when shrinking) to
        the model's image size; when the channel counts differ, the image is made gray (the
        mean of its channels) and that channel is repeated as often as the model wants.
        An image that already fits is returned unchanged (as ``image`` would).
        """
        arr = raw.detach().cpu().numpy() if isinstance(raw, Tensor) else np.asarray(raw)
        if arr.dtype == object or arr.size == 0 or not np.issubdtype(arr.dtype, np.number):
            raise InputError("the image is empty or not numeric")
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim == 2:
            arr = arr[None]
        elif arr.ndim == 3 and arr.shape[0] not in (1, 3) and arr.shape[-1] in (1, 3):
            arr = np.moveaxis(arr, -1, 0)
        if arr.ndim != 3 or arr.shape[0] not in (1, 3):
            raise InputError(
                f"image has shape {tuple(np.shape(raw))}; expected (H, W), or 1 or 3 channels "
                "as (C, H, W) or (H, W, C)"
            )
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
        check_finite(x, "the image")
        if arr.dtype == np.uint8:
            x = x / 255.0
        elif x.min() < 0 or x.max() > 1:
            raise InputError(
                f"float images must lie in [0, 1]; got values in [{float(x.min()):.3g}, "
                f"{float(x.max()):.3g}] (use uint8 for 0..255)"
            )
        c, (h, w) = self.num_channels, self.image_size
        if x.shape[0] != c:
            gray = x if x.shape[0] == 1 else x.mean(0, keepdim=True)
            x = gray.expand(c, -1, -1)
        if tuple(x.shape[1:]) != (h, w):
            shrink = x.shape[1] > h or x.shape[2] > w
            x = torch.nn.functional.interpolate(
                x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=shrink
            )[0].clamp(0.0, 1.0)
        return self.image(x.contiguous())

    def require_patch_size(self) -> int:
        """The patch side in pixels; a clear error for a model without patches."""
        if not self.patch_size:
            raise ModelError(f"{type(self.model).__name__} has no config.patch_size")
        return int(self.patch_size)

    def patchify(self, pixels: Tensor) -> Tensor:
        """(C, H, W) -> (patches, C*p*p), row-major over the patch grid."""
        c, h, w = pixels.shape
        p = self.require_patch_size()
        x = pixels.reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4)
        return x.reshape((h // p) * (w // p), c * p * p)

    def unpatchify(self, patches: Tensor) -> Tensor:
        """(patches, C*p*p) -> (C, H, W); inverse of ``patchify``."""
        c, (h, w), p = self.num_channels, self.image_size, self.require_patch_size()
        x = patches.reshape(h // p, w // p, c, p, p).permute(2, 0, 3, 1, 4)
        return x.reshape(c, h, w)

    def _patch_names(self) -> list[str]:
        (h, w), p = self.image_size, self.patch_size or 1
        return [f"patch ({r},{col})" for r in range(h // p) for col in range(w // p)]

    # -- running -------------------------------------------------------------------------
    def _no_head(self) -> ModelError:
        return ModelError(
            f"{type(self.model).__name__} has no image-classification head, so it has no logits "
            "to explore; load a *ForImageClassification model (simec structure works on "
            "headless models with --embedding cls or pooled)"
        )

    def backbone_outputs(self, pixel_values: Tensor) -> Any:
        """The vision backbone's output for pixel values (B, C, H, W), with ``hidden_states``.

        The backbone is ``architectures.backbone_module`` (the model without its head); its
        output has ``hidden_states`` (one per layer, embeddings first) and, where the
        architecture has one, ``last_hidden_state`` and ``pooler_output``.
        """
        if self._backbone is None:
            name, module = backbone_module(self.model)
            prefix = f"{name}." if name else ""
            params = {k[len(prefix) :]: v for k, v in self._params.items() if k.startswith(prefix)}
            self._backbone = (module, params)
        module, params = self._backbone
        extra = self.architecture.extra_inputs
        kwargs = extra(self.vision_config, pixel_values) if extra is not None else {}
        with eval_mode(self.model):
            return functional_call(
                module,
                params,
                (),
                {"pixel_values": pixel_values, "output_hidden_states": True, **kwargs},
            )

    # -- protocol ------------------------------------------------------------------------
    def _run(self, pixel_values: Tensor) -> Tensor:
        if not self.has_head:
            raise self._no_head()
        with eval_mode(self.model):
            out = functional_call(self.model, self._params, (), {"pixel_values": pixel_values})
        return out.logits if hasattr(out, "logits") else out[0]

    def prepare(self, raw: Any) -> PreparedInput:
        if not self.has_head:
            raise self._no_head()
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
            "has_head": self.has_head,
            "space": self.space,
            "image_size": list(self.image_size),
            "num_channels": self.num_channels,
            "patch_size": self.patch_size,
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
            "image_mean": self._mean.tolist(),
            "image_std": self._std.tolist(),
        }
