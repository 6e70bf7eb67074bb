"""Spectrum of the pullback metric g = J^T G J (eq. 5 of the SiMEC paper, ``geometry.pullback``).

Two back-ends:

``exact``   forms the n x n matrix g and calls ``torch.linalg.eigh`` (the paper, literally).
            O(n^3) time, O(n^2) memory. In float32 its "zero" eigenvalues are noise of size
            ~1e-6 lambda_max, about half of them negative; a trained model's true spectrum reaches
            1e-14 lambda_max, so use float64 when `exact` is the reference.
``lowrank`` takes the thin SVD of A = L J (q x n, G = L^T L): g = A^T A has the eigenvalues s_i^2
            and eigenvectors the right singular vectors (QR of A^T, then a q x q SVD). O(q^2 n)
            time, never forms n x n.

Zero-eigenvalue tolerance (both back-ends follow ``numpy.linalg.matrix_rank``'s rule on the
matrix they decompose): ``exact`` keeps lambda > rtol * lambda_max with rtol = n * eps(dtype);
``lowrank`` keeps s > max(q, n) * eps * s_max, i.e. lambda > (max(q, n) * eps)^2 * lambda_max.
Eigenvalues below the tolerance, negative round-off included, count as zero: they span the null
space, which is never stored; null directions are drawn by projecting a Gaussian vector off the
non-null eigenvectors. Pass ``rtol`` (relative to lambda_max, on eigenvalues) to override.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..errors import ExactTooLargeError, InputError, RankZeroMetricError
from . import steps
from .metrics import OutputMetric, get_output_metric
from .pullback import pullback_factor, pullback_matrix

__all__ = [
    "METHODS",
    "LowRankSpectra",
    "PullbackSpectrum",
    "lowrank_spectra",
    "pullback_matrix",
    "pullback_spectrum",
]

METHODS = ("lowrank", "exact")
Method = Literal["lowrank", "exact"]


@dataclass
class PullbackSpectrum:
    """The non-null part of the pullback metric's spectrum at one point.

    ``eigenvalues`` (r,) descending and positive; ``eigenvectors`` (n, r) orthonormal columns,
    each with its largest-magnitude entry positive (so both back-ends agree on signs).
    ``all_eigenvalues`` is the raw spectrum from `exact` (None for `lowrank`).
    """

    eigenvalues: Tensor
    eigenvectors: Tensor
    lambda_max: float
    tolerance: float
    method: str
    all_eigenvalues: Tensor | None = None

    @property
    def rank(self) -> int:
        return int(self.eigenvalues.numel())

    @property
    def dim(self) -> int:
        return int(self.eigenvectors.shape[0])

    def step_size(self, scale: float = 1.0) -> float:
        """delta = scale / sqrt(lambda_max): Algorithm 1 line 7 (scale 1), Algorithm 2 (scale 2).

        The explorer's rule, ``simec.geometry.steps.step_size``, without a cap."""
        if self.lambda_max <= 0:
            raise RankZeroMetricError("the pullback metric is zero: lambda_max = 0")
        return steps.step_size(self.lambda_max, scale)

    def project_null(self, v: Tensor) -> Tensor:
        """Orthogonal projection of v (n,) onto the null space of g."""
        basis = self.eigenvectors
        return v - basis @ (basis.T @ v)

    def null_direction(self, generator: torch.Generator | None = None) -> Tensor:
        """A unit vector uniformly distributed in the null space (SiMEC, Algorithm 1 line 6);
        the explorer's draw, ``simec.geometry.steps.null_direction``."""
        if self.rank >= self.dim:
            raise RankZeroMetricError(
                "the pullback metric has full rank: there is no null direction"
            )
        return steps.null_direction(self.eigenvectors, generator)

    def nonnull_direction(self, generator: torch.Generator | None = None) -> Tensor:
        """One non-null eigenvector chosen uniformly, with a random sign (Algorithm 2 line 6);
        the explorer's draw, ``simec.geometry.steps.nonnull_direction``."""
        if self.rank == 0:
            raise RankZeroMetricError("the pullback metric is zero: there is no non-null direction")
        return steps.nonnull_direction(self.eigenvectors, self.rank, generator)


def _thin_svd(a: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values (descending) and right singular vectors (n, q) of a wide q x n matrix.

    Householder QR of A^T (n x q) first, then the SVD of the small q x q factor: backward
    stable like a direct SVD (unlike eigh of A A^T, which squares the condition number), and
    about twice as fast for q << n on CPU.
    """
    q, n = a.shape
    if q >= n:
        _, s, vh = torch.linalg.svd(a, full_matrices=False)
        return s, vh.T
    basis, r = torch.linalg.qr(a.T)  # A^T = Q R, so A = R^T Q^T
    _, s, wh = torch.linalg.svd(r.T)
    return s, basis @ wh.T


def _canonical_signs(vectors: Tensor) -> Tensor:
    idx = vectors.abs().argmax(dim=0, keepdim=True)
    signs = torch.sign(torch.gather(vectors, 0, idx))
    signs[signs == 0] = 1
    return vectors * signs


def exact_bytes(n: int, dtype: torch.dtype) -> int:
    """Memory the `exact` back-end needs for an n-dimensional input: g, its eigenvectors and the
    LAPACK workspace, three n x n matrices."""
    return 3 * n * n * torch.empty((), dtype=dtype).element_size()


def _size(count: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} bytes"


def _too_large(n: int, dtype: torch.dtype, device: torch.device, available: float | None) -> str:
    free = f"only {_size(available)} is free" if available is not None else "allocating it failed"
    return (
        f"method='exact' needs about {_size(exact_bytes(n, dtype))} for an n={n} "
        f"eigendecomposition ({dtype}), but {free} on {device}. Use method='lowrank' (same "
        "eigenvalues, O(q^2 n)), or explore fewer segments."
    )


def _check_exact_fits(n: int, dtype: torch.dtype, device: torch.device) -> None:
    needed = exact_bytes(n, dtype)
    if device.type == "cuda":
        available = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return
    if needed > available:
        raise ExactTooLargeError(_too_large(n, dtype, device, available))


_Eigenpairs = tuple[Tensor, Tensor, float, float, Tensor | None]


def _lowrank_eigenpairs(a: Tensor, rtol: float | None) -> _Eigenpairs:
    """(eigenvalues kept, their eigenvectors, lambda_max, tolerance, None) from the SVD of A."""
    q, n = a.shape
    s, vectors_all = _thin_svd(a)
    s_max = float(s[0]) if s.numel() else 0.0
    lam_max = s_max**2
    rel = rtol if rtol is not None else (max(q, n) * torch.finfo(a.dtype).eps) ** 2
    tol = rel * lam_max
    keep = s**2 > tol
    return s[keep] ** 2, vectors_all[:, keep], lam_max, tol, None


def _exact_eigenpairs(a: Tensor, rtol: float | None) -> _Eigenpairs:
    """(eigenvalues kept, their eigenvectors, lambda_max, tolerance, the raw spectrum) from eigh
    of g = A^T A (eq. 5), formed as an n x n matrix."""
    n = a.shape[1]
    _check_exact_fits(n, a.dtype, a.device)
    try:
        g = pullback_matrix(a)
        g = 0.5 * (g + g.T)
        w, v = torch.linalg.eigh(g)
    except (MemoryError, RuntimeError) as exc:
        # the estimate above passed but the allocator still ran out (memory taken meanwhile,
        # fragmentation, a CUDA out-of-memory): the same advice, not a bare allocator error
        if isinstance(exc, MemoryError) or "memory" in str(exc).lower():
            raise ExactTooLargeError(_too_large(n, a.dtype, a.device, None)) from exc
        raise
    w, v = w.flip(0), v.flip(1)
    lam_max = float(w[0]) if w.numel() else 0.0
    rel = rtol if rtol is not None else n * torch.finfo(a.dtype).eps
    tol = rel * lam_max
    keep = w > tol
    return w[keep], v[:, keep], lam_max, tol, w


def pullback_spectrum(
    jacobian: Tensor,
    y: Tensor | None = None,
    *,
    metric: str | OutputMetric = "euclidean-logits",
    method: Method = "lowrank",
    rtol: float | None = None,
) -> PullbackSpectrum:
    """Non-zero eigenpairs of g = J^T G(y) J for a Jacobian of shape (q, ...) at output y.

    ``metric`` is applied as G(y) to the Jacobian as given (J must be the Jacobian of the
    metric's output coordinates, e.g. of probabilities for "euclidean-probs"); the default
    "euclidean-logits" means G = I.
    """
    if method not in METHODS:
        raise InputError(f"unknown spectral method {method!r}; choose one of {list(METHODS)}")
    output_metric = get_output_metric(metric)
    jac = jacobian.reshape(jacobian.shape[0], -1)
    if output_metric.factor is not None and y is None:
        raise InputError(f"metric {output_metric.name!r} depends on the output: pass y")
    a = pullback_factor(jac, y, output_metric)
    if not torch.isfinite(a).all():
        raise InputError("the Jacobian contains NaN or Inf")

    eigenpairs = _lowrank_eigenpairs if method == "lowrank" else _exact_eigenpairs
    values, vectors, lam_max, tol, raw = eigenpairs(a, rtol)
    if lam_max <= 0 or values.numel() == 0:
        values = values[:0]
        vectors = vectors[:, :0]
        lam_max = 0.0
    return PullbackSpectrum(
        eigenvalues=values,
        eigenvectors=_canonical_signs(vectors),
        lambda_max=lam_max,
        tolerance=tol,
        method=method,
        all_eigenvalues=raw,
    )


@dataclass
class LowRankSpectra:
    """The `lowrank` spectra of B pullback metrics at once, in fixed shapes on the device.

    Nothing here has been read back to the host: ``rank`` and ``lambda_max`` are tensors, and the
    kept eigenpairs are marked by ``keep`` instead of being cut out (which would need their count
    on the host). Singular values ``singular_values`` (B, k) descending, k = min(q, n);
    ``vectors`` (B, n, k) the right singular vectors with canonical signs (largest-magnitude
    entry positive), i.e. the eigenvectors of g; ``keep`` (B, k) the non-zero eigenvalues (a
    prefix of each row); ``finite`` (B,) False where the input held NaN/Inf, in which case that
    spectrum is the one of a zero matrix (rank 0). Row b equals ``pullback_spectrum`` of input b
    with ``method="lowrank"`` (same decompositions, same tolerance rule).
    """

    singular_values: Tensor
    vectors: Tensor
    keep: Tensor
    finite: Tensor

    @property
    def rank(self) -> Tensor:
        return self.keep.sum(dim=-1)

    @property
    def lambda_max(self) -> Tensor:
        return self.singular_values[:, 0] ** 2


def lowrank_spectra(a: Tensor, *, rtol: float | None = None) -> LowRankSpectra:
    """Batched `lowrank` back-end for A = G^{1/2} J of shape (B, q, n) (see ``pullback_spectrum``).

    Householder QR of each A^T, then the SVD of the small R^T, as in the single-input path;
    never reads a value back to the host, so it can run ahead of the device.
    """
    if a.ndim != 3:
        raise InputError(f"expected a batch of matrices (B, q, n), got shape {tuple(a.shape)}")
    count, q, n = a.shape
    finite = torch.isfinite(a).flatten(1).all(dim=1)
    a = torch.where(finite[:, None, None], a, torch.zeros((), dtype=a.dtype, device=a.device))
    if q >= n:
        _, s, vh = torch.linalg.svd(a, full_matrices=False)
        vectors = vh.mT
    else:
        basis, r = torch.linalg.qr(a.mT)
        _, s, wh = torch.linalg.svd(r.mT)
        vectors = basis @ wh.mT
    rel = rtol if rtol is not None else (max(q, n) * torch.finfo(a.dtype).eps) ** 2
    # the single-input rule: tol = rel * s_max^2 formed in float64, compared in the working dtype
    tol = (s[:, :1].to(torch.float64) ** 2 * rel).to(s.dtype)
    keep = s**2 > tol
    index = vectors.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(torch.gather(vectors, 1, index))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return LowRankSpectra(singular_values=s, vectors=vectors * signs, keep=keep, finite=finite)
