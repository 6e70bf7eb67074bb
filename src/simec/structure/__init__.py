"""Embedding-space structure: Jacobian spectra, directional Lipschitz constants, matching."""

from .core import (
    JacobianSpectrum,
    LipschitzResult,
    MatchResult,
    directional_lipschitz,
    jacobian_spectrum,
    match_embedding,
    vision_embedding_fn,
)

__all__ = [
    "JacobianSpectrum",
    "LipschitzResult",
    "MatchResult",
    "directional_lipschitz",
    "jacobian_spectrum",
    "match_embedding",
    "vision_embedding_fn",
]
