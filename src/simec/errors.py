"""Exceptions with messages meant for the person running simec, not for a debugger."""

from __future__ import annotations


class SimecError(Exception):
    """Base class: every error simec raises on purpose derives from it."""


class InputError(SimecError, ValueError):
    """The input (image, text, tensor, option value) cannot be used as given."""


class ModelError(SimecError, ValueError):
    """The model cannot be loaded or cannot be driven from its embeddings."""


class RankZeroMetricError(SimecError, ArithmeticError):
    """The pullback metric vanishes: the output does not depend on the explored input here."""


class ExactTooLargeError(SimecError, MemoryError):
    """The `exact` back-end would need more memory than is available."""


class OutputError(SimecError, OSError):
    """The output location cannot be used: a file where a folder should be, not writable,
    already holding a result, locked by another run, or a write failed."""
