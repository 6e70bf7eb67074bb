"""Interpretation: per-segment importance (Algorithm 3), decoding back to images (Algorithm 5)."""

from .decode_image import ViTDecoder, classify_pictures
from .importance import SegmentImportance, importance_from_jacobian, segment_importance

__all__ = [
    "SegmentImportance",
    "ViTDecoder",
    "classify_pictures",
    "importance_from_jacobian",
    "segment_importance",
]
