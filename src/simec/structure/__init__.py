"""Embedding-space structure: Jacobian spectra, directional Lipschitz constants, matching."""

from .analyses import *  # noqa: F403  (the public names are listed once, in analyses.__all__)
from .analyses import __all__  # noqa: F401
