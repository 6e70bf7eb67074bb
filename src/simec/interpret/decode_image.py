"""Decode explored ViT embeddings back into images (Algorithm 5 of the SiMEC paper, ViT branch).

The ViT embeddings module is affine in the pixels: e_i = W vec(patch_i) + b + pos_i for each
patch token i (special tokens such as CLS carry no pixels). Decoding removes the position
embeddings and the special tokens, inverts W by its pseudo-inverse (a least-squares projection:
W is width x C*p*p with width > C*p*p), undoes the pixel normalisation, caps to the [0, 1] pixel
box and pastes back only the explored patches. The part of an exploration step orthogonal to
range(W) cannot survive decoding; ``surviving_fraction`` measures what does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import InputError, ModelError
from ..models.hf_vision import HFImageClassifierAdapter

__all__ = ["ViTDecoder", "classify_pictures"]


class ViTDecoder:
    """Inverse of a ViT-family embeddings module on the patch tokens (see module docstring)."""

    def __init__(self, adapter: HFImageClassifierAdapter, *, clamp: bool = True) -> None:
        if adapter.modality != "image":
            raise ModelError(
                f"ViTDecoder needs an image model's adapter, not {type(adapter).__name__}"
            )
        self.adapter = adapter
        #: cap decoded pixels to [0, 1] (the paper's code does not; an image outside [0, 1] is
        #: not a picture a person can look at, so the default caps)
        self.clamp = clamp
        dtype, device = adapter.dtype, adapter.device
        self.space = adapter.space
        try:
            affine = adapter.patch_embedding()
        except ModelError as exc:
            raise ModelError(f"{exc} to invert") from None
        self.weight = affine.weight  # (width, C*p*p), rows as in patchify
        self.bias = (
            affine.bias
            if affine.bias is not None
            else torch.zeros(affine.weight.shape[0], device=device, dtype=dtype)
        )
        self.pinv = torch.linalg.pinv(self.weight)  # (C*p*p, width)
        self.position = affine.position
        self.num_patches = adapter.num_patches
        # range(W) projector: the part of an embedding change that decoding can keep
        self._range = self.weight @ self.pinv

    def _special(self, x: Tensor) -> int:
        special = x.shape[-2] - self.num_patches
        if special < 0:
            raise InputError(f"expected at least {self.num_patches} rows, got {x.shape[-2]}")
        return special

    def to_normalized_pixels(self, x: Tensor) -> Tensor:
        """Explored point (segments, width) -> normalised pixels (C, H, W), not capped."""
        if self.space == "pixels":
            return self.adapter.unpatchify(x)
        special = self._special(x)
        patches = x[special:]
        if self.position is not None:
            patches = patches - self.position[special:]
        pixels = (patches - self.bias) @ self.pinv.T  # least squares through W
        return self.adapter.unpatchify(pixels)

    def to_image(
        self,
        x: Tensor,
        *,
        original: Tensor | None = None,
        explored_segments: Sequence[int] | None = None,
    ) -> Tensor:
        """Decoded image (C, H, W), in [0, 1] unless the decoder was made with ``clamp=False``.

        With ``original`` (C, H, W in [0, 1]) and ``explored_segments`` (row indices of x, as in
        ExplorationResult.explored_segments), only the explored patches are pasted into it.
        """
        image = self.adapter.denormalize(self.to_normalized_pixels(x))
        if self.clamp:
            image = image.clamp(0.0, 1.0)
        if original is None or explored_segments is None:
            return image
        special = 0 if self.space == "pixels" else self._special(x)
        patches = [s - special for s in explored_segments if s >= special]
        mask = torch.zeros(self.num_patches, dtype=torch.bool, device=x.device)
        mask[patches] = True
        p = self.adapter.require_patch_size()
        c, (h, w) = self.adapter.num_channels, self.adapter.image_size
        pixel_mask = mask.view(h // p, w // p).repeat_interleave(p, 0).repeat_interleave(p, 1)
        return torch.where(pixel_mask.expand(c, h, w), image, original.to(image))

    def decode_trajectory(
        self,
        trajectory: Tensor,
        *,
        original: Tensor | None = None,
        explored_segments: Sequence[int] | None = None,
    ) -> Tensor:
        """Images (m, C, H, W) for a stored trajectory (m, segments, width)."""
        return torch.stack(
            [
                self.to_image(
                    t.to(self.weight), original=original, explored_segments=explored_segments
                )
                for t in trajectory
            ]
        )

    def surviving_fraction(self, trajectory: Tensor) -> Tensor:
        """Per stored step k >= 1: ||P_range(W) (p_k - p_{k-1})|| / ||p_k - p_{k-1}|| on patches.

        1 means the whole step is visible in pixel space (before the [0, 1] cap); pixel-space
        exploration is 1 by construction.
        """
        if self.space == "pixels":
            return torch.ones(max(0, len(trajectory) - 1))
        traj = trajectory.to(self.weight)
        special = self._special(traj[0])
        steps = (traj[1:] - traj[:-1])[:, special:]  # (m-1, patches, width)
        kept = steps @ self._range.T
        num = torch.linalg.vector_norm(kept.flatten(1), dim=1)
        den = torch.linalg.vector_norm(steps.flatten(1), dim=1)
        return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0).cpu()


@torch.no_grad()
def classify_pictures(
    adapter: HFImageClassifierAdapter, images: Tensor, *, batch_size: int = 64
) -> Tensor:
    """The class probabilities the model gives decoded pictures: (m, C, H, W) in [0, 1] ->
    (m, q) float64 on the CPU, through ``adapter.image_logits`` in batches of ``batch_size``
    (a picture is classified as an image, whatever space the walk explored)."""
    if images.ndim != 4 or len(images) == 0:
        raise InputError(
            f"expected a non-empty batch of pictures (m, C, H, W), got {tuple(images.shape)}"
        )
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    out = [
        torch.softmax(adapter.image_logits(images[i : i + batch_size]).double(), -1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)
