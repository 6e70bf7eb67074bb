"""Embedding-space structure: Jacobian spectra, directional Lipschitz constants, matching."""

from .core import *  # noqa: F403  (the public names are listed once, in core.__all__)
from .core import __all__  # noqa: F401
