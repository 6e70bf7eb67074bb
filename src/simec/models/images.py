"""Image coercion, in one place: any raw image -> (C, H, W) pixels in [0, 1].

Every layer that takes an image (the vision adapter, ``simec structure``'s data sets, dataset
runs, the demo, the perturbation baseline) goes through ``coerce_image``; nothing else converts
layouts, value ranges or channels.

Accepted raw images: a path (PNG/JPEG via Pillow, or .npy), a PIL image, a numpy array or a
tensor, laid out (H, W), (C, H, W), (H, W, C) or with a leading batch axis of one; uint8 in
[0, 255] or any other numeric type with values in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .base import check_finite

__all__ = ["coerce_image", "load_image"]


def load_image(path: str | Path, *, channels: int | None = None) -> np.ndarray:
    """Read a PNG/JPEG (via Pillow) or a .npy array.

    With ``channels`` (1 or 3), image files are converted to grayscale or RGB, so an RGB(A)
    PNG of a digit works with a one-channel model; .npy arrays are returned as stored.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a folder: give an image file (.png, .jpg or .npy)")
    if not path.is_file():
        raise InputError(f"image file {str(path)!r} does not exist")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            reason = "it holds Python objects" if "allow_pickle" in str(exc) else str(exc)
            raise InputError(
                f"{str(path)!r} is not a .npy array of numbers simec can read ({reason}): save "
                "the image with numpy.save as uint8 or float in [0, 1]"
            ) from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img: Image.Image = opened
            if channels in (1, 3):
                img = img.convert("L" if channels == 1 else "RGB")
            return np.asarray(img)
    except UnidentifiedImageError:
        raise InputError(
            f"{str(path)!r} is not an image Pillow can read: give a PNG, JPEG or .npy file"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged image data
        raise InputError(
            f"{str(path)!r} cannot be read as an image ({exc}): the file is damaged or cut "
            "short; save it again"
        ) from None


def _as_array(raw: Any, channels: int | None) -> np.ndarray:
    if isinstance(raw, (str, Path)):
        raw = load_image(raw, channels=channels)
    if hasattr(raw, "convert") and hasattr(raw, "size"):  # a PIL image
        raw = np.asarray(raw)
    arr = raw.detach().cpu().numpy() if isinstance(raw, Tensor) else np.asarray(raw)
    if np.iscomplexobj(arr):
        raise InputError(
            "the image is complex-valued: give real pixel values (uint8, or float in [0, 1])"
        )
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise InputError(
            f"the image holds {arr.dtype} values, which are not numeric: give numbers (uint8, "
            "or float in [0, 1])"
        )
    if arr.size == 0:
        raise InputError(f"the image is empty (shape {tuple(arr.shape)})")
    return arr


def _channels_first(arr: np.ndarray, channels: int | None, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) -> (C, H, W); C is the model's count, 1 or 3."""
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        return arr[None]
    counts = {1, 3} | ({channels} if channels else set())
    if arr.ndim == 3 and arr.shape[0] != channels and arr.shape[-1] == channels:
        return np.moveaxis(arr, -1, 0)
    if arr.ndim == 3 and arr.shape[0] not in counts and arr.shape[-1] in counts:
        return np.moveaxis(arr, -1, 0)
    if arr.ndim == 3 and arr.shape[0] in counts:
        return arr
    *few, last = sorted(counts)
    wanted = f"{', '.join(map(str, few))} or {last} channels"
    raise InputError(
        f"image has shape {shape}; expected (H, W), or {wanted} as (C, H, W) or (H, W, C)"
    )


def _unit_range(arr: np.ndarray) -> Tensor:
    """uint8 -> k/255 in float32 (exactly k/255 rounded once: more than 8 bits need); other
    numbers must lie in [0, 1] and are kept exactly, as float64."""
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    check_finite(x, "the image")
    if x.min() < 0 or x.max() > 1:
        raise InputError(
            f"float images must lie in [0, 1]; got values in [{float(x.min()):.3g}, "
            f"{float(x.max()):.3g}] (use uint8 for 0..255)"
        )
    return x


def coerce_image(
    raw: Any,
    *,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    fit: bool = False,
) -> Tensor:
    """A raw image (see module docstring) as (C, H, W) pixels in [0, 1] on the CPU.

    The result is float32 for uint8 images (k/255) and float64 otherwise. Without ``fit``, an
    image whose channel count differs from ``channels`` or whose sides differ from ``size``
    (height, width) is an ``InputError``. With ``fit=True`` it is made to fit, in float64:
    when the channel counts differ the image is made gray (the mean of its channels) and that
    channel is repeated ``channels`` times; then it is resized bilinearly to ``size``
    (antialiased when shrinking) and capped to [0, 1]. An image that already fits is returned
    unchanged. Values out of range, NaN/Inf and other layouts are always an ``InputError``.
    """
    arr = _as_array(raw, channels)
    shape = tuple(arr.shape)
    x = _unit_range(_channels_first(arr, channels, shape))
    c, h, w = x.shape
    fits_channels = channels is None or c == channels
    fits_size = size is None or (h, w) == tuple(size)
    if not fit and not (fits_channels and fits_size):
        want_c = channels if channels is not None else c
        want_h, want_w = size if size is not None else (h, w)
        raise InputError(
            f"image has shape {shape}; the model wants {want_c} channel(s) of {want_h}x{want_w} "
            "pixels: (H, W) for one channel, (C, H, W) or (H, W, C)"
        )
    if not fits_channels:
        gray = x.double() if c == 1 else x.double().mean(0, keepdim=True)
        x = gray.expand(int(channels or 1), -1, -1)
    if not fits_size:
        assert size is not None
        shrink = h > size[0] or w > size[1]
        x = torch.nn.functional.interpolate(
            x.double()[None],
            size=tuple(size),
            mode="bilinear",
            align_corners=False,
            antialias=shrink,
        )[0].clamp(0.0, 1.0)
    return x.contiguous()
