"""The final (NeurIPS 2025) version's measures of decoded inputs, as pure functions.

Names M1-M9 are those of reference 003 (``shared/reference/003_final_version_notes.md``,
section 4). Every k̂-th point of a walk (k̂ = ``record_every``, 10 in the paper) is classified
twice: "from embeddings" (the model run from the explored point x(k)) and "from
interpretations" (the point decoded back to an input, Algorithm 5, and re-classified). A series
of m such snapshots is an array ``probs`` (m, q) with its iterations ``steps`` (m,).

Where the paper's text and its code disagree, the text's definition is the default and the
code's is offered beside it:

* M2 ranking changes: text = pairwise inversions between consecutive class rankings
  (``ranking_inversions``, Kendall's discordant pairs); code = positions whose entry of
  ``argsort(p)`` changed (``ranking_position_changes``).
* M6 interpretation diversity: the main text and the code compare consecutive snapshots
  (``pixel_diversity`` / ``token_diversity`` with ``reference="previous"``); supp. Fig. 5 says
  the difference from the original (``reference="original"``).
* M7 embedding-vs-interpretation distance: text = Wasserstein-1 (``wasserstein1``; the ground
  metric is not stated: we put the classes on the index line 0, 1, ..., q-1 with unit spacing);
  code = L1 (``l1_distance``) between probability vectors *averaged over runs* at each
  iteration (``code_l1_over_runs``). Both are reported.
* M4 volume: the PCA's fit set is not stated. ``patch_volume_ratios`` fits it, per patch/token,
  on the stored points of *both* walks being compared (SiMExp and SiMEC at that patch), so the
  two cuboids are measured in the same coordinates; pass ``fit`` to use another set.

Functions take numpy arrays or tensors and return floats / numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "CatchUp",
    "catch_up",
    "catch_up_summary",
    "change_iterations",
    "class_rankings",
    "code_l1_over_runs",
    "cuboid_sides",
    "cuboid_volume",
    "first_change",
    "l1_distance",
    "one_sample_t_test",
    "original_vs_top",
    "per_1000",
    "pca_coordinates",
    "patch_volume_ratios",
    "patch_pixel_mask",
    "patch_log_volumes",
    "per_input_means",
    "pixel_diversity",
    "pixel_diversity_whole_image",
    "predictions",
    "ranking_changes",
    "ranking_inversions",
    "ranking_position_changes",
    "spearman",
    "spearman_consecutive",
    "token_diversity",
    "top1_changes",
    "top_class_correlation",
    "volume_ratio",
    "wasserstein1",
    "welch_t_test",
]


def _array(values: Any, name: str, ndim: int | None = None) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


def _probs(probs: Any, name: str = "probs") -> np.ndarray:
    arr = _array(probs, name, 2)
    if arr.shape[1] < 2:
        raise InputError(f"{name} must have at least 2 classes, got shape {arr.shape}")
    return arr


# ---- M1: original vs top class probability ----------------------------------------------------


def original_vs_top(probs: Any, original: int) -> tuple[np.ndarray, np.ndarray]:
    """M1: p(original class) and max_c p(c) at each snapshot, (m,) each (the paper plots their
    mean and sd over runs against the iteration)."""
    p = _probs(probs)
    if not 0 <= original < p.shape[1]:
        raise InputError(f"original class {original} out of range 0..{p.shape[1] - 1}")
    return p[:, original].copy(), p.max(axis=1)


# ---- M2 / M3: predictions and rankings ---------------------------------------------------------


def predictions(probs: Any) -> np.ndarray:
    """The predicted class (top-1) of each snapshot: argmax over classes, (m,)."""
    return _probs(probs).argmax(axis=1)


def class_rankings(probs: Any) -> np.ndarray:
    """The class ranking of each snapshot, (m, q): row k lists the classes from the most to the
    least probable (ties keep the lower class index first)."""
    p = _probs(probs)
    return np.argsort(-p, axis=1, kind="stable")


def top1_changes(probs: Any) -> int:
    """M3 "prediction changes": snapshots whose top-1 class differs from the previous one."""
    pred = predictions(probs)
    return int((pred[1:] != pred[:-1]).sum())


def ranking_inversions(before: Any, after: Any, *, min_probability: float = 0.0) -> int:
    """M2, the text's definition: the pairwise inversions between the class rankings of two
    probability vectors (q,): pairs of classes whose order differs (Kendall's discordant pairs,
    0 .. q(q-1)/2). ``min_probability`` > 0 counts only the pairs in which some class reaches
    it before or after (not a definition of the paper: it separates swaps among near-zero
    classes from changes a reader would see)."""
    a, b = _array(before, "before", 1), _array(after, "after", 1)
    if a.shape != b.shape:
        raise InputError("the two probability vectors have different numbers of classes")
    rank_a = np.argsort(class_rankings(a[None])[0], kind="stable")
    rank_b = np.argsort(class_rankings(b[None])[0], kind="stable")
    da = rank_a[:, None] - rank_a[None, :]
    db = rank_b[:, None] - rank_b[None, :]
    discordant = (da * db) < 0
    if min_probability > 0:
        high = np.maximum(a, b) >= min_probability
        discordant &= high[:, None] | high[None, :]
    return int(discordant.sum() // 2)


def ranking_position_changes(before: Any, after: Any) -> int:
    """M2, the paper's code: sum(argsort(p_after) != argsort(p_before)), the positions of the
    ascending argsort that hold another class (0 or 2 .. q), not inversions."""
    a = np.argsort(_array(before, "before", 1), kind="stable")
    b = np.argsort(_array(after, "after", 1), kind="stable")
    if a.shape != b.shape:
        raise InputError("the two probability vectors have different numbers of classes")
    return int((a != b).sum())


def ranking_changes(probs: Any, *, method: str = "inversions", min_probability: float = 0.0) -> int:
    """M2 summed over consecutive snapshots of a run: ``method="inversions"`` (the text) or
    ``"positions"`` (the code); ``min_probability`` as in ``ranking_inversions`` (inversions
    only)."""
    p = _probs(probs)
    if method == "inversions":
        return int(
            sum(
                ranking_inversions(p[k - 1], p[k], min_probability=min_probability)
                for k in range(1, len(p))
            )
        )
    if method != "positions":
        raise InputError(f"method must be 'inversions' or 'positions', got {method!r}")
    if min_probability > 0:
        raise InputError("min_probability applies to method='inversions' only")
    return int(sum(ranking_position_changes(p[k - 1], p[k]) for k in range(1, len(p))))


def per_1000(count: float, iterations: int) -> float:
    """A count over a run of ``iterations`` iterations, per 1000 iterations (Table 1's unit)."""
    if iterations <= 0:
        raise InputError(f"iterations must be positive, got {iterations}")
    return float(count) * 1000.0 / iterations


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else math.nan


def spearman(a: Any, b: Any) -> float:
    """Spearman's rank correlation of two vectors (Pearson's of their average ranks); nan when
    either is constant."""
    x, y = _array(a, "a", 1), _array(b, "b", 1)
    if x.shape != y.shape or len(x) < 2:
        raise InputError("spearman needs two vectors of the same length >= 2")
    return _pearson(_average_ranks(x), _average_ranks(y))


def spearman_consecutive(probs: Any) -> np.ndarray:
    """M3: Spearman's correlation between the class probabilities (so the class rankings) of
    each pair of consecutive snapshots, (m - 1,); the paper reports their mean per run."""
    p = _probs(probs)
    return np.array([spearman(p[k - 1], p[k]) for k in range(1, len(p))])


# ---- M7: distance between the two predicted distributions --------------------------------------


def l1_distance(p: Any, r: Any) -> np.ndarray:
    """M7, the paper's code (``cityblock``): sum_c |p_c - r_c| per row; (q,) -> scalar array,
    (m, q) -> (m,)."""
    a, b = _array(p, "p"), _array(r, "r")
    if a.shape != b.shape:
        raise InputError(f"p and r differ in shape: {a.shape} vs {b.shape}")
    return np.abs(a - b).sum(axis=-1)


def wasserstein1(p: Any, r: Any) -> np.ndarray:
    """M7, the paper's text: Wasserstein-1 between two distributions over classes placed at
    0, 1, ..., q-1 on a line (unit ground distance between neighbouring class indices; the paper
    does not state its ground metric): sum_c |CDF_p(c) - CDF_r(c)|. Rows as ``l1_distance``."""
    a, b = _array(p, "p"), _array(r, "r")
    if a.shape != b.shape:
        raise InputError(f"p and r differ in shape: {a.shape} vs {b.shape}")
    return np.abs(np.cumsum(a - b, axis=-1)[..., :-1]).sum(axis=-1)


def code_l1_over_runs(embedding_runs: Any, interpretation_runs: Any) -> dict[str, float]:
    """M7 as the paper's code aggregates it: the probability vectors are averaged over runs
    (inputs x repetitions) at each evaluated iteration, the L1 distance of the two averages is
    taken per iteration, then its mean, median and sd over iterations. Inputs (runs, m, q)."""
    e = _array(embedding_runs, "embedding_runs", 3)
    i = _array(interpretation_runs, "interpretation_runs", 3)
    if e.shape != i.shape:
        raise InputError(f"the two sets of runs differ in shape: {e.shape} vs {i.shape}")
    d = l1_distance(e.mean(axis=0), i.mean(axis=0))
    return {"mean": float(d.mean()), "median": float(np.median(d)), "sd": float(d.std(ddof=1))}


# ---- M6: interpretation diversity ----------------------------------------------------------------


def _reference_pairs(x: np.ndarray, reference: str) -> tuple[np.ndarray, np.ndarray]:
    if reference == "previous":
        return x[:-1], x[1:]
    if reference == "original":
        return np.broadcast_to(x[:1], x[1:].shape), x[1:]
    raise InputError(f"reference must be 'previous' or 'original', got {reference!r}")


def pixel_diversity(
    images: Any, explored: Any = None, *, reference: str = "previous"
) -> np.ndarray:
    """M6 for images (m, ...): the mean absolute pixel difference between each decoded image and
    the previous one (``reference="previous"``, the main text and the code) or the first one
    (``"original"``, supp. Fig. 5), (m - 1,).

    ``explored``: a boolean mask of an image's shape (or broadcastable to it, e.g. (H, W) for
    (m, C, H, W) images) marking the pixels of the explored patches; the mean is then over those
    pixels only, as the paper's code computes it. None (``pixel_diversity_whole_image``): over
    every pixel; pixels outside the explored patches do not change, so this mean is the explored
    one scaled by the explored fraction."""
    x = _array(images, "images")
    if x.ndim < 2 or len(x) < 2:
        raise InputError("pixel_diversity needs at least two images")
    a, b = _reference_pairs(x, reference)
    diff = np.abs(b - a)
    if explored is None:
        return diff.reshape(len(b), -1).mean(axis=1)
    mask = np.asarray(explored.detach().cpu().numpy() if hasattr(explored, "detach") else explored)
    if mask.dtype != np.bool_:
        raise InputError(f"explored must be a boolean mask, got dtype {mask.dtype}")
    try:
        mask = np.broadcast_to(mask, x.shape[1:])
    except ValueError:
        raise InputError(
            f"explored mask of shape {mask.shape} does not fit images of shape {x.shape[1:]}"
        ) from None
    if not mask.any():
        raise InputError("the explored mask marks no pixel")
    return diff[:, mask].mean(axis=1)


def pixel_diversity_whole_image(images: Any, *, reference: str = "previous") -> np.ndarray:
    """M6 over every pixel of the image (the mean the main text's wording suggests), whatever
    patches were explored; see ``pixel_diversity``."""
    return pixel_diversity(images, None, reference=reference)


def patch_pixel_mask(
    image_shape: Sequence[int], patch_size: int, patches: Sequence[int]
) -> np.ndarray:
    """The (H, W) boolean mask of the pixels of ``patches`` (row-major patch indices, 0 the top
    left patch, without the CLS token) on an image of ``image_shape`` (..., H, W)."""
    h, w = int(image_shape[-2]), int(image_shape[-1])
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise InputError(f"patch size {patch_size} does not tile an image of {h}x{w}")
    per_row, count = w // patch_size, (h // patch_size) * (w // patch_size)
    mask = np.zeros((h, w), dtype=bool)
    for p in patches:
        if not 0 <= int(p) < count:
            raise InputError(f"patch {p} is outside the {count} patches of the image")
        r, c = divmod(int(p), per_row)
        mask[r * patch_size : (r + 1) * patch_size, c * patch_size : (c + 1) * patch_size] = True
    return mask


def token_diversity(
    ids: Any, positions: Sequence[int] | None = None, *, reference: str = "previous"
) -> np.ndarray:
    """M6 for text, the paper's code: the number of explored tokens (``positions``; all if None)
    that differ from the previous decoded sequence (or the first, ``reference="original"``),
    (m - 1,). ``ids`` (m, n) decoded token ids."""
    x = np.asarray(ids.detach().cpu().numpy() if hasattr(ids, "detach") else ids)
    if x.ndim != 2 or len(x) < 2:
        raise InputError(f"token_diversity needs ids of shape (m >= 2, n), got {x.shape}")
    if positions is not None:
        x = x[:, list(positions)]
    a, b = _reference_pairs(x, reference)
    return (a != b).sum(axis=1).astype(np.float64)


# ---- M8 / M9: when predictions change, and whether interpretations follow ----------------------


def _steps(steps: Any, m: int) -> np.ndarray:
    s = np.asarray(steps, dtype=np.int64)
    if s.shape != (m,):
        raise InputError(f"steps must have one iteration per snapshot ({m}), got {s.shape}")
    return s


def change_iterations(predicted: Any, steps: Any) -> list[int]:
    """M8: the iterations at which the top-1 prediction differs from the previous snapshot's
    (the paper's counts are over all such changes, not one per run)."""
    pred = np.asarray(predicted)
    s = _steps(steps, len(pred))
    return [int(s[k]) for k in range(1, len(pred)) if pred[k] != pred[k - 1]]


def first_change(predicted: Any, steps: Any) -> int | None:
    """M8: the first iteration whose prediction differs from the previous snapshot's (None if
    the prediction never changes)."""
    changes = change_iterations(predicted, steps)
    return changes[0] if changes else None


@dataclass(frozen=True)
class CatchUp:
    """One change of the embedding-side prediction, ``source`` -> ``target`` at ``iteration``,
    and ``delay``: iterations until the interpretation-side prediction makes the same change
    (0: at the same snapshot), None if it never does within the run."""

    iteration: int
    source: int
    target: int
    delay: int | None


def catch_up(embedding_predicted: Any, interpretation_predicted: Any, steps: Any) -> list[CatchUp]:
    """M9 catch-up: for every change C_A -> C_B of the embedding-side prediction at snapshot t,
    the first snapshot u >= t at which the interpretation-side prediction changes C_A -> C_B
    (its prediction at u - 1 is C_A and at u is C_B); delay = steps[u] - steps[t]."""
    e, i = np.asarray(embedding_predicted), np.asarray(interpretation_predicted)
    if e.shape != i.shape:
        raise InputError("the two prediction series differ in length")
    s = _steps(steps, len(e))
    out = []
    for t in range(1, len(e)):
        if e[t] == e[t - 1]:
            continue
        a, b = int(e[t - 1]), int(e[t])
        u = next((u for u in range(t, len(i)) if i[u - 1] == a and i[u] == b), None)
        out.append(CatchUp(int(s[t]), a, b, None if u is None else int(s[u] - s[t])))
    return out


def catch_up_summary(events: Sequence[CatchUp]) -> dict[str, float]:
    """Share of embedding-side changes the interpretations caught up with, and the mean delay of
    those that were (nan when none)."""
    caught = [e.delay for e in events if e.delay is not None]
    return {
        "changes": float(len(events)),
        "caught_up": float(len(caught)),
        "fraction": len(caught) / len(events) if events else math.nan,
        "mean_delay": float(np.mean(caught)) if caught else math.nan,
    }


def top_class_correlation(embedding_probs: Any, interpretation_probs: Any) -> dict[str, float]:
    """M9: Pearson's correlation between the top-class probability (max_c p(c), each side its
    own top class, as M1's "top class probability") from embeddings and from interpretations
    over a run's snapshots; with its two-sided p-value when scipy is installed (nan otherwise).
    ``r`` is nan when either series is constant."""
    e, i = _probs(embedding_probs).max(axis=1), _probs(interpretation_probs).max(axis=1)
    if e.shape != i.shape:
        raise InputError("the two probability series differ in length")
    r = _pearson(e, i) if len(e) >= 2 else math.nan
    p = math.nan
    if not math.isnan(r) and len(e) > 2:
        try:
            from scipy import stats

            p = float(stats.pearsonr(e, i).pvalue)
        except ImportError:  # pragma: no cover - scipy is optional
            pass
    return {"r": r, "p": p}


# ---- M4: explored hyper-volume ------------------------------------------------------------------


def pca_coordinates(points: Any, fit: Any, *, variance: float = 0.9) -> tuple[np.ndarray, int]:
    """Coordinates of ``points`` (t, d) on the first n principal components of ``fit`` (f, d),
    n the fewest reaching ``variance`` of its total variance; returns (z (t, n), n)."""
    x, f = _array(points, "points", 2), _array(fit, "fit", 2)
    if not 0 < variance <= 1:
        raise InputError(f"variance must lie in (0, 1], got {variance}")
    if f.shape[1] != x.shape[1] or len(f) < 2:
        raise InputError("the PCA needs a fit set of at least 2 points of the points' width")
    mean = f.mean(axis=0)
    _, s, vt = np.linalg.svd(f - mean, full_matrices=False)
    var = s**2
    if var.sum() <= 0:
        raise InputError("the PCA fit set does not vary")
    share = np.cumsum(var) / var.sum()
    n = int(np.searchsorted(share, variance - 1e-12) + 1)
    return (x - mean) @ vt[:n].T, n


def cuboid_sides(z: Any) -> np.ndarray:
    """M4 side lengths Delta_i = (max_t z_i(t) - min_t z_i(t))^(1/n), i = 1..n, of the bounding
    cuboid of points z (t, n); their product is the n-th root of the cuboid's volume."""
    x = _array(z, "z", 2)
    return (x.max(axis=0) - x.min(axis=0)) ** (1.0 / x.shape[1])


def cuboid_volume(z: Any) -> float:
    """The bounding cuboid's volume, prod_i (max z_i - min z_i) = (prod_i Delta_i)^n."""
    x = _array(z, "z", 2)
    return float(np.prod(x.max(axis=0) - x.min(axis=0)))


def volume_ratio(z_explore: Any, z_reference: Any) -> float:
    """M4: rho_V = (prod Delta(explore) / prod Delta(reference))^n, the ratio of the bounding
    cuboids' volumes (SiMExp over SiMEC in the paper); inf when only the reference is flat, nan
    when both are."""
    a, b = _array(z_explore, "z_explore", 2), _array(z_reference, "z_reference", 2)
    if a.shape[1] != b.shape[1]:
        raise InputError("the two point sets have different numbers of coordinates")
    n = a.shape[1]
    top, bottom = float(np.prod(cuboid_sides(a))), float(np.prod(cuboid_sides(b)))
    if bottom == 0:
        return math.nan if top == 0 else math.inf
    return (top / bottom) ** n


def _patch_coordinates(
    explore_points: Any, reference_points: Any, fit: Any | None, variance: float
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per patch/token: both walks' points (t, patches, width) on the PCA to ``variance`` fitted
    on ``fit[:, patch]`` (default: both walks' points at that patch, stacked)."""
    a = _array(explore_points, "explore_points", 3)
    b = _array(reference_points, "reference_points", 3)
    if a.shape[1:] != b.shape[1:]:
        raise InputError(f"the two walks differ in shape: {a.shape[1:]} vs {b.shape[1:]}")
    f = np.concatenate([a, b]) if fit is None else _array(fit, "fit", 3)
    for patch in range(a.shape[1]):
        za, _ = pca_coordinates(a[:, patch], f[:, patch], variance=variance)
        zb, _ = pca_coordinates(b[:, patch], f[:, patch], variance=variance)
        yield za, zb


def patch_volume_ratios(
    explore_points: Any,
    reference_points: Any,
    *,
    fit: Any | None = None,
    variance: float = 0.9,
) -> np.ndarray:
    """M4 per patch/token: ``explore_points`` and ``reference_points`` (t, patches, width) are
    the stored points of two walks (SiMExp, SiMEC) at the same patches. For each patch, a PCA to
    ``variance`` (90%) is fitted on ``fit[:, patch]`` (default: both walks' points at that
    patch, stacked), both walks are projected on it and ``volume_ratio`` is taken, (patches,)."""
    pairs = _patch_coordinates(explore_points, reference_points, fit, variance)
    return np.array([volume_ratio(za, zb) for za, zb in pairs])


def patch_log_volumes(
    explore_points: Any,
    reference_points: Any,
    *,
    fit: Any | None = None,
    variance: float = 0.9,
) -> np.ndarray:
    """Both walks' log10 cuboid volumes per patch/token, (2, patches): row 0 ``explore_points``
    (SiMExp), row 1 ``reference_points`` (SiMEC), in the same PCA coordinates as
    ``patch_volume_ratios``, so that row 0 - row 1 = log10 rho_V. -inf for a flat walk. The
    samples of the final version's Welch test (SiMExp's volumes against SiMEC's)."""
    pairs = _patch_coordinates(explore_points, reference_points, fit, variance)
    with np.errstate(divide="ignore"):
        logs = [
            [float(np.log10(z.max(axis=0) - z.min(axis=0)).sum()) for z in pair] for pair in pairs
        ]
    return np.array(logs, dtype=float).reshape(-1, 2).T


# ---- M4's test ----------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def per_input_means(values: Any, inputs: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Repetitions of one input are pseudo-replicates: average ``values`` per input (in the
    order each input first appears) before a test, so that n is the number of inputs.
    Non-finite values are left out of their input's mean (an input with none left is dropped)."""
    x = _array(values, "values", 1)
    keys = list(inputs)
    if len(keys) != len(x):
        raise InputError(f"one input per value: {len(x)} values, {len(keys)} inputs")
    groups: dict[Any, list[float]] = {}
    for key, value in zip(keys, x.tolist()):
        groups.setdefault(key, [])
        if math.isfinite(value):
            groups[key].append(value)
    kept = [(k, v) for k, v in groups.items() if v]
    return np.array([float(np.mean(v)) for _, v in kept]), [k for k, _ in kept]


def welch_t_test(a: Any, b: Any) -> dict[str, float]:
    """Welch's two-sample t-test of mean(a) = mean(b) (unequal variances), two-sided:
    {"t", "df", "p", "n_a", "n_b"}, df by Welch-Satterthwaite. The final version's M4 test
    ("Welch t-tests are run on rho_V"), here on SiMExp's against SiMEC's log volumes. nan when
    either sample has fewer than two finite values or neither varies."""
    x, y = _array(a, "a", 1), _array(b, "b", 1)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    na, nb = len(x), len(y)
    out = {"t": math.nan, "df": math.nan, "p": math.nan, "n_a": float(na), "n_b": float(nb)}
    if na < 2 or nb < 2:
        return out
    va, vb = float(x.var(ddof=1)) / na, float(y.var(ddof=1)) / nb
    diff = float(x.mean() - y.mean())
    if va + vb == 0:
        if diff != 0:
            out.update(t=math.copysign(math.inf, diff), p=0.0)
        return out
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    p = _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    out.update(t=t, df=df, p=min(max(p, 0.0), 1.0))
    return out


def one_sample_t_test(values: Any, mu: float = 0.0) -> dict[str, float]:
    """Student's one-sample t-test of mean(values) = mu, two-sided: {"t", "df", "p", "n"}.

    For M4 on log10 rho_V against 0 it is the paired t-test of SiMExp's against SiMEC's log
    volumes (both walks share the input, seed, eta and patches). The p-value is
    I_{df/(df+t^2)}(df/2, 1/2), computed here (no scipy needed). nan when n < 2 or the values
    do not vary (t = +-inf, p = 0, when they do not vary and differ from mu)."""
    x = _array(values, "values", 1)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan, "n": float(n)}
    df = n - 1
    mean = float(x.mean())
    sd = float(x.std(ddof=1))
    if sd == 0:
        if mean == mu:
            return {"t": math.nan, "df": float(df), "p": math.nan, "n": float(n)}
        return {"t": math.copysign(math.inf, mean - mu), "df": float(df), "p": 0.0, "n": float(n)}
    t = (mean - mu) / (sd / math.sqrt(n))
    p = _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return {"t": t, "df": float(df), "p": min(max(p, 0.0), 1.0), "n": float(n)}
