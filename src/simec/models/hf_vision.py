"""Hugging Face vision models (ViT family): explore the embeddings output or the pixels.

Image classifiers (``*ForImageClassification``) are explored from their logits; vision models
without a classification head (ViT-MAE, CLIP's vision tower) can still be run to their hidden
states (``backbone_outputs``), which is all ``simec structure`` needs for its ``cls`` and
``pooled`` embeddings. Per-architecture knowledge lives in ``architectures.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError, ModelError
from .architectures import architecture, backbone_module, embeddings_module, vision_config
from .base import (
    PreparedInput,
    capture_module_output,
    eval_mode,
    parameter_copies,
    replace_module_output,
    resolve_device,
    resolve_dtype,
)
from .bounds import affine_bounds
from .hf_base import HFAdapter
from .images import coerce_image, load_image

__all__ = ["HFImageClassifierAdapter", "PatchEmbedding", "load_image"]

SPACES = ("embeddings", "pixels")


@dataclass(frozen=True)
class PatchEmbedding:
    """The affine map of a ViT-family embeddings module, in the adapter's dtype and device:
    patch token i is ``weight @ patchify(pixels)[i] + bias + position[special + i]``; the CLS
    row is ``cls + position[0]``."""

    #: (width, C*p*p), columns in ``patchify`` order
    weight: Tensor
    #: (width,) or None
    bias: Tensor | None
    #: (positions, width), special tokens first, or None
    position: Tensor | None
    #: (width,) the classification token, or None
    cls: Tensor | None


class HFImageClassifierAdapter(HFAdapter):
    """Adapter for Hugging Face vision models whose embeddings module takes pixels.

    ``*ForImageClassification`` models are explored from their logits; a model without a
    classification head (``has_head`` is False: ViT-MAE, ``CLIPVisionModel``, ...) has no
    ``labels`` and cannot be explored (``prepare``/``logits`` raise ``ModelError``), but
    ``backbone_outputs`` runs it to its hidden states.

    ``space="embeddings"``: x0 is the embeddings module's output (CLS and other special tokens,
    then one row per patch; position embeddings included), segments = tokens.
    ``space="pixels"``: x0 is the normalised image cut into patches, one row of C*p*p pixels per
    patch, so every explored point is an image; the patch embedding maps it linearly.

    Images are paths, PIL images, arrays or tensors (H, W), (C, H, W) or (H, W, C), uint8 in
    [0, 255] or floats in [0, 1] (``images.coerce_image``); they are normalised with
    ``image_mean``/``image_std`` when given (from the model directory's
    preprocessor_config.json when loaded by ``load_adapter``).

    Public protocol beyond ``HFAdapter``: ``pixel_values``/``image``/``fit_image`` (raw image
    -> model pixels), ``normalize``/``denormalize`` with ``image_mean``/``image_std``,
    ``image_logits`` and ``classify`` (images -> logits / probabilities), patch geometry
    (``patch_size``, ``patch_grid``, ``num_patches``, ``patch_names``, ``patchify``,
    ``unpatchify``), ``with_space`` (the twin adapter in the other space) and
    ``backbone_outputs`` (hidden states, heads or not).
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
        """A raw image -> normalised pixel values (1, C, H, W) in the adapter's dtype/device.

        The image must already have the model's channels and size (``fit_image`` makes it fit).
        """
        x = coerce_image(image, channels=self.num_channels, size=self.image_size)
        return self._model_pixels(x)

    def _model_pixels(self, x: Tensor) -> Tensor:
        # normalised in the coerced precision (float32 for uint8 images), then converted
        return self.normalize(x).unsqueeze(0).to(device=self.device, dtype=self.dtype)

    @property
    def image_mean(self) -> tuple[float, ...]:
        """Per-channel mean subtracted by ``normalize`` (on the [0, 1] pixel scale)."""
        return tuple(float(v) for v in self._mean)

    @property
    def image_std(self) -> tuple[float, ...]:
        """Per-channel standard deviation divided out by ``normalize``."""
        return tuple(float(v) for v in self._std)

    def normalize(self, image: Tensor) -> Tensor:
        """Pixels in [0, 1] (C, H, W) or (B, C, H, W) -> the model's normalised pixel values."""
        return (image - self._mean.to(image).view(-1, 1, 1)) / self._std.to(image).view(-1, 1, 1)

    def denormalize(self, pixels: Tensor) -> Tensor:
        """Normalised pixel values (C, H, W) -> pixels on the [0, 1] scale (not capped)."""
        return pixels * self._std.to(pixels).view(-1, 1, 1) + self._mean.to(pixels).view(-1, 1, 1)

    def image(self, raw: Any) -> Tensor:
        """A raw image, validated, as (C, H, W) pixels in [0, 1] on the CPU."""
        return self.denormalize(self.pixel_values(raw)[0]).cpu()

    def fit_image(self, raw: Any) -> Tensor:
        """A raw image of any size made to fit the model, as (C, H, W) pixels in [0, 1] (CPU).

        Accepts what ``image`` accepts, with 1 or 3 channels and any size: it is resized
        bilinearly (antialiased when shrinking) to the model's image size; when the channel
        counts differ, the image is made gray (the mean of its channels) and that channel is
        repeated as often as the model wants (``images.coerce_image(fit=True)``). An image that
        already fits is returned unchanged (as ``image`` would).
        """
        x = coerce_image(raw, channels=self.num_channels, size=self.image_size, fit=True)
        return self.denormalize(self._model_pixels(x)[0]).cpu()

    def image_logits(self, images: Tensor) -> Tensor:
        """Logits for images in [0, 1]: (C, H, W) -> (q,), (B, C, H, W) -> (B, q)."""
        single = images.ndim == 3
        batch = images.unsqueeze(0) if single else images
        batch = batch.to(device=self.device, dtype=self.dtype)
        logits = self.run({"pixel_values": self.normalize(batch)})  # broadcasts over the batch
        return logits[0] if single else logits

    @torch.no_grad()
    def classify(self, raws: Sequence[Any], *, batch_size: int = 32) -> Tensor:
        """Probabilities (m, q) for m raw images (each as ``pixel_values`` takes it), batched."""
        if isinstance(raws, (str, Path)) or len(raws) == 0:
            raise InputError("classify takes a non-empty list of images")
        if not self.has_head:
            raise self._no_head()
        pixels = torch.cat([self.pixel_values(raw) for raw in raws])
        out = [
            torch.softmax(self.run({"pixel_values": pixels[i : i + batch_size]}), -1)
            for i in range(0, len(pixels), batch_size)
        ]
        return torch.cat(out)

    def with_space(self, space: Literal["embeddings", "pixels"]) -> HFImageClassifierAdapter:
        """The same model, normalisation, device and dtype explored in ``space`` (itself if
        it already is): e.g. the pixel-space twin of an embeddings-space adapter."""
        if space == self.space:
            return self
        return HFImageClassifierAdapter(
            self.model,
            space=space,
            image_mean=self.image_mean,
            image_std=self.image_std,
            device=self.device,
            dtype=self.dtype,
        )

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

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of the patch grid (one patch per pixel without a patch size)."""
        (h, w), p = self.image_size, self.patch_size or 1
        return h // p, w // p

    @property
    def num_patches(self) -> int:
        """How many patch tokens the image makes (rows x columns of ``patch_grid``)."""
        rows, cols = self.patch_grid
        return rows * cols

    def patch_names(self) -> list[str]:
        """Names of the patches, row-major over the patch grid: ``patch (row,col)``."""
        rows, cols = self.patch_grid
        return [f"patch ({r},{c})" for r in range(rows) for c in range(cols)]

    def patch_embedding(self) -> PatchEmbedding:
        """The embeddings module's affine map (``PatchEmbedding``): its patch projection
        (``patch_embeddings.projection``, a Conv2d), position embeddings and CLS token."""
        module = self.embedding_module
        conv = getattr(getattr(module, "patch_embeddings", None), "projection", None)
        if not isinstance(conv, nn.Conv2d):
            raise ModelError(f"{type(module).__name__} has no patch_embeddings.projection Conv2d")
        weight = conv.weight.detach().to(device=self.device, dtype=self.dtype)
        weight = weight.reshape(weight.shape[0], -1)  # (width, C*p*p), columns as in patchify
        bias = conv.bias.detach().to(weight) if conv.bias is not None else None
        pos = getattr(module, "position_embeddings", None)
        position = pos.detach()[0].to(weight) if isinstance(pos, Tensor) else None
        cls = getattr(module, "cls_token", None)
        cls_row = cls.detach().reshape(-1).to(weight) if cls is not None else None
        return PatchEmbedding(weight, bias, position, cls_row)

    # -- capabilities ----------------------------------------------------------------------
    modality = "image"

    @property
    def task(self) -> str:
        """ "classifier" with an image-classification head, else "backbone"."""
        return "classifier" if self.has_head else "backbone"

    def embedding_bounds(self) -> tuple[Tensor, Tensor]:
        """Analytic bounds of the explored rows over every image with pixels in [0, 1].

        ``space="embeddings"``: the patch embedding is affine in the normalised pixels z,
        e = W z + b + q(s); with z in [(0 - mean)/std, (1 - mean)/std] per channel,
        ``affine_bounds`` gives the exact range of W z + b, and max_s q(s) / min_s q(s) over
        the patch positions are added. The paper's formula has no bias b and uses the raw
        [0, 1] pixels (its code 255): here the bias and the model's own normalisation are
        included, which is the exact range of what the layer can output. The CLS row (cls +
        q(0)) is a single point, folded in, so one box holds every row. ``space="pixels"``:
        the normalised pixel range itself.
        """
        dtype, device = self.dtype, self.device
        mean = torch.tensor(self.image_mean, dtype=dtype, device=device)
        std = torch.tensor(self.image_std, dtype=dtype, device=device)
        # the model's normalised pixel values of pixels in [0, 1], per channel
        low_c, high_c = (0 - mean) / std, (1 - mean) / std
        p = self.require_patch_size()
        low, high = low_c.repeat_interleave(p * p), high_c.repeat_interleave(p * p)
        if self.space == "pixels":  # x0 rows are patchified normalised pixels
            return torch.minimum(low, high), torch.maximum(low, high)
        try:
            affine = self.patch_embedding()
        except ModelError as exc:
            raise ModelError(
                f"{exc}: box='embedding-bounds' cannot bound it; pass box=(lower, upper)"
            ) from None
        lower, upper = affine_bounds(affine.weight, low, high, affine.bias)
        special = 1 if affine.cls is not None else 0
        if affine.position is not None:
            patches = affine.position[special:]
            lower, upper = lower + patches.amin(0), upper + patches.amax(0)
        if affine.cls is not None:  # the CLS row: cls + pos(0), one point
            row = affine.cls
            if affine.position is not None:
                row = row + affine.position[0]
            lower, upper = torch.minimum(lower, row), torch.maximum(upper, row)
        return lower, upper

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
            _, module = backbone_module(self.model)
            self._backbone = (module, self.submodule_weights(module))
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
    def run(self, model_inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits (B, q) for ``{"pixel_values": (B, C, H, W)}`` (normalised pixels)."""
        if not self.has_head:
            raise self._no_head()
        return super().run(model_inputs)

    def prepare(self, raw: Any) -> PreparedInput:
        if not self.has_head:
            raise self._no_head()
        pixels = self.pixel_values(raw)
        desc = raw if isinstance(raw, (str, Path)) else f"image {tuple(pixels.shape[1:])}"
        if self.space == "pixels":
            (h, w), p = self.image_size, self.patch_size
            if h % p or w % p:
                raise InputError(f"space='pixels' needs image sides divisible by patch {p}")
            return PreparedInput(self.patchify(pixels[0]), self.patch_names(), {}, str(desc))
        assert self._embeddings is not None
        with torch.no_grad(), capture_module_output(self._embeddings) as seen:
            self.run({"pixel_values": pixels})
        if not seen:
            raise ModelError("the embeddings module was not called by the model's forward")
        x0 = seen[0][0].detach()
        patch_names = self.patch_names()
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
            return self.run({"pixel_values": self.unpatchify(x).unsqueeze(0)})[0]
        assert self._embeddings is not None
        with replace_module_output(self._embeddings, x.unsqueeze(0)):
            return self.run({"pixel_values": prepared.model_inputs["pixel_values"]})[0]

    def logits_many(self, xs: Tensor, prepared: PreparedInput) -> Tensor:
        """One batch of the model (embeddings space; pixels: ``logits`` vmapped)."""
        if self.space == "pixels":
            return super().logits_many(xs, prepared)
        assert self._embeddings is not None
        pixels = prepared.model_inputs["pixel_values"]
        with replace_module_output(self._embeddings, xs):
            return self.run({"pixel_values": pixels.expand(len(xs), *pixels.shape[1:])})

    def model_inputs(self, prepared: PreparedInput) -> dict[str, Tensor]:
        """``{"pixel_values": (1, C, H, W)}`` for the prepared image, in either space."""
        if self.space == "pixels":
            return {"pixel_values": self.unpatchify(prepared.embeddings).unsqueeze(0)}
        return {"pixel_values": prepared.model_inputs["pixel_values"]}

    def describe(self) -> dict[str, Any]:
        return {
            **self.describe_model(
                has_head=self.has_head,
                space=self.space,
                image_size=list(self.image_size),
                num_channels=self.num_channels,
                patch_size=self.patch_size,
            ),
            "image_mean": self._mean.tolist(),
            "image_std": self._std.tolist(),
        }
