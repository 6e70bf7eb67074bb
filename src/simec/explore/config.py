"""Configuration of an exploration run (SiMEC / SiMExp), shared by the API and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..checks import check_seed
from ..errors import InputError
from ..fields import option
from ..geometry.jacobian import compile_from_environment, parse_memory
from ..geometry.metrics import output_metric_names
from ..geometry.restriction import restrictable
from ..geometry.spectrum import METHODS
from ..geometry.steps import DIRECTION_SIGNS, STEP_RULES
from ..registry import Registry
from .blocks import METRIC_BLOCKS
from .box import BOXES
from .proposal import StepRule
from .restriction import LEAKAGE
from .simec import SIMEC
from .simexp import SIMEXP

__all__ = [
    "ALGORITHMS",
    "PROJECTIONS",
    "RULES",
    "ExploreConfig",
    "parse_reuse",
    "parse_segments",
]

#: algorithm name -> its step rule: Algorithm 1 (stay in the equivalence class), Algorithm 2
#: (move across classes)
RULES: Registry[StepRule] = Registry("algorithm", {rule.name: rule for rule in (SIMEC, SIMEXP)})
#: algorithm name -> (which eigenvectors it walks along, the paper's step scale c in c/sqrt(lmax))
ALGORITHMS: Registry[tuple[str, float]] = Registry(
    "algorithm", {name: (rule.directions, rule.c) for name, rule in RULES.items()}
)
PROJECTIONS = ("end", "step", "none")
#: jacobian_reuse="auto": one Jacobian serves at most this many steps
REUSE_AUTO_MAX_AGE = 50
#: with jacobian_reuse, the corrector runs at least this many iterations per step
REUSE_MIN_ITERATIONS = 8
#: runs at least this long compile the Jacobian when ``compile`` is None (auto)
AUTO_COMPILE_STEPS = 2000


def parse_reuse(value: Any) -> str:
    """'off' / 'auto' / a positive whole number N (also given as an int) -> 'off', 'auto' or
    'N'; ValueError (with the reason) otherwise. The command line's type for --jacobian-reuse."""
    if isinstance(value, bool):
        raise ValueError(f"expected off, auto or a positive whole number, got {value!r}")
    text = str(value).strip().lower()
    if text in ("off", "auto"):
        return text
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"expected off, auto or a positive whole number, got {value!r}") from None
    if number < 1:
        raise ValueError(f"expected off, auto or a positive whole number, got {value!r}")
    return str(number)


@dataclass
class ExploreConfig:
    """Every option of a run; recorded in full next to its results.

    Step size (``step_rule="paper-v1"``, the default): delta_k = step_multiplier * c /
    sqrt(lambda_max(p_k)) (the v1 paper's rule, c = 1 for SiMEC and 2 for SiMExp);
    ``step_rule="paper-final"``: delta_k = step_multiplier * eta * sqrt(lambda_min(p_k) /
    lambda_max(p_k)) (the final version's rule, lambda_min the smallest eigenvalue the spectrum
    keeps as non-null, so ``rtol`` moves it; ``simec.geometry.steps``). Either is capped at
    ``max_step * ||x0_P||`` where x0_P is the starting embedding of the explored segments. The
    cap exists because LayerNorm makes lambda_max shrink like 1/||x||^2 as ||x|| grows, so the
    uncapped rule grows geometrically and overflows; with it, ||x|| can grow at most linearly.
    ``max_step=None`` restores the uncapped paper rule. ``step_rule="official-code"``: the final
    version's code, delta_k = step_multiplier * eta / sqrt(lambda_max / (min|lambda| + 1e-6))
    with the minimum over all eigenvalues, null ones included (so ~ eta * 1e-3 / sqrt(lambda_max)
    whenever there is a null space).

    ``metric_blocks``: "joint" (default) is eq. (5) as written, one metric over all explored
    segments and one direction per step; "token" is the final version's code, one block
    J_i^T G J_i per explored segment i, a direction and a step (by ``step_rule`` on that block's
    spectrum) for each segment (``simec.explore.blocks``). Not with ``jacobian_reuse``, which
    keeps the joint null space; the blocks are always decomposed by thin SVDs (``method``
    "lowrank").

    ``direction_sign`` (SiMExp): "random" (default) gives the chosen eigenvector a random sign
    each step; "fixed" keeps the sign the decomposition gives (largest-magnitude entry
    positive), as the official code walks along ``eigh``'s eigenvector as returned. Both draw
    the same eigenvectors (``simec.geometry.steps.DIRECTION_SIGNS``).

    ``box``: the feasible region. "input" (default) is the range the original embeddings span
    per dimension; "embedding-bounds" is the final version's analytic bounds of the embedding
    layer (``simec.explore.box.embedding_bounds``). The final version projects after every
    step: use it with ``projection="step"``.
    ``projection``: "end" walks freely and projects the stored points onto the feasible box
    afterwards (Algorithm 1 line 11); "step" projects after every step; "none" never projects.
    ``corrector``: after each SiMEC step, Gauss-Newton iterations with the pseudo-inverse of J
    pull the point back onto the level set N(x) = N(x0).
    ``compile``: trace and compile the Jacobian with TorchInductor (about 2x faster on the paper's
    ViT, a one-off cost of a few seconds, checked against the eager result on first use, eager
    on any failure). None = auto: on for runs of at least ``AUTO_COMPILE_STEPS`` steps, unless
    the environment variable SIMEC_COMPILE says otherwise ("1"/"0").

    ``jacobian_reuse`` (SiMEC): "off" is the paper's algorithm, a fresh Jacobian every step.
    "auto" or N: predictor-corrector continuation (``simec.explore.reuse``): the null space and
    lambda_max of the last Jacobian serve the following steps, each step is pulled back onto the
    level set by forward-only chord iterations with that Jacobian's pseudo-inverse, and the
    Jacobian is refreshed when the corrector contracts slowly or fails (the step is then retried
    from its start with a fresh Jacobian), when the first residual says the step left the null
    space, or after N steps (``REUSE_AUTO_MAX_AGE`` for auto). It implies the corrector, with at
    least ``REUSE_MIN_ITERATIONS`` iterations.

    Divergence: a walk stops when a point, the model output or its Jacobian is NaN/Inf (it ends
    on the last good point), or when ||x - x0|| exceeds ``divergence_ratio * ||x0||``.
    ``recover`` > 0 retries such a step from its start with half the step size, up to
    ``recover`` times in a row, before stopping (every retry is listed in the result's
    ``recoveries``). ``projection="step"`` keeps every point in the feasible box, so the walk
    cannot run away at all.

    ``top_k`` / ``top_mass`` (output restriction, ``simec.geometry.restriction``): the Jacobian
    is taken of the chosen classes (the k most probable, or the smallest top set with at least
    that probability mass) plus their aggregated rest (Fisher-Rao) or of the chosen classes
    alone (euclidean-probs), |S| + 1 or |S| rows instead of q; the restricted metric is a lower
    bound of the full one (Loewner order) and what it drops along each step is measured with one
    Jacobian-vector product and reported per step (``ExplorationResult.restriction``). The
    classes are chosen at p_0 from the full output and chosen again whenever the full model's
    top set changes along the walk. Refused for logit metrics; not compiled.
    ``max_memory``: bytes (or '2GB', '512MiB') the Jacobian may need by the estimate of
    ``simec.geometry.jacobian``; the rows pulled back at once (and the walks batched at once)
    follow from it. The run's peak memory is recorded in ``ExplorationResult.memory``.
    """

    algorithm: str = option(
        "simec",
        "simec: null directions, delta = 1/sqrt(lmax); simexp: non-null eigenvectors, "
        "delta = 2/sqrt(lmax)",
        choices=tuple(ALGORITHMS),
    )
    steps: int = option(100, "number of iterations", metavar="K", min=0)
    method: str = option(
        "lowrank",
        "spectral back-end: lowrank = thin SVD of G^1/2 J, O(q^2 n); exact = eigh of the n x n "
        "pullback, O(n^3)",
        choices=METHODS,
    )
    output_metric: str = option(
        "euclidean-probs",
        "metric on the model output that is pulled back",
        choices=output_metric_names,
    )
    step_multiplier: float = option(1.0, "multiplies the paper's step size", metavar="X", gt=0)
    max_step: float | None = option(
        0.02,
        "cap each step at X * ||x0|| of the explored segments; 'none' for the uncapped paper rule",
        metavar="X",
        gt=0,
    )
    step_rule: str = option(
        "paper-v1",
        "paper-v1: delta = c/sqrt(lmax) (c = 1 SiMEC, 2 SiMExp); paper-final: the final "
        "version's delta = eta*sqrt(lmin/lmax), lmin the smallest non-null eigenvalue kept; "
        "official-code: the final version's code, eta/sqrt(lmax/(lmin_all + 1e-6)), lmin_all "
        "over all eigenvalues (0 with a null space)",
        choices=STEP_RULES,
    )
    eta: float = option(
        1.0,
        "--step-rule paper-final / official-code: eta in delta = eta*sqrt(lmin/lmax)",
        metavar="X",
        gt=0,
    )
    metric_blocks: str = option(
        "joint",
        "joint: one pullback metric over all explored segments (eq. 5); token: the final "
        "version's code, one block J_i^T G J_i per explored segment, each moved by its own "
        "direction and step",
        choices=METRIC_BLOCKS,
    )
    direction_sign: str = option(
        "random",
        "SiMExp: the sign of the chosen eigenvector. random: a random sign each step; fixed: "
        "the sign the decomposition gives (largest-magnitude entry positive), as the official "
        "code walks along eigh's eigenvector as returned, so steps along one eigenvector add up",
        choices=DIRECTION_SIGNS,
    )
    box: str = option(
        "input",
        "feasible box: input = per dimension, the range the original embeddings span; "
        "embedding-bounds = the final version's analytic bounds of the embedding layer over "
        "all valid inputs (pixels in [0, 1]; LayerNorm bounds for text)",
        choices=BOXES,
    )
    segments: tuple[int, ...] | None = option(
        None,
        "segments (tokens/patches) to update, e.g. '0,3,5-9' (default: all)",
        metavar="SPEC",
    )
    projection: str = option(
        "end",
        "project onto the box of the original embedding values at the end (Algorithm 1 line "
        "11), after every step, or never",
        choices=PROJECTIONS,
    )
    corrector: bool = option(
        False,
        "SiMEC: pull each step back onto the level set N(x) = N(x0) with Gauss-Newton iterations",
    )
    corrector_iterations: int = option(
        2, "--corrector: Gauss-Newton iterations per step", metavar="N", min=1
    )
    corrector_tolerance: float = option(
        1e-7,
        "--corrector: stop the iterations once ||N(x) - N(x0)|| is below X",
        metavar="X",
        gt=0,
    )
    seed: int = option(0, "random seed")
    record_every: int = option(
        1, "store every k-th point of the trajectory (and the last)", metavar="k", min=1
    )
    rtol: float | None = option(
        None,
        "eigenvalues below X * lmax count as zero (default: the back-end's round-off level)",
        metavar="X",
        min=0,
    )
    atol: float | None = option(
        None,
        "with --metric-blocks token: eigenvalues at or below X count as zero, an absolute "
        "threshold in place of rtol (the paper's code: 0.01)",
        metavar="X",
        min=0,
    )
    chunk_size: int | None = option(
        None,
        "pull back at most C output rows at once (caps Jacobian memory)",
        metavar="C",
        min=1,
    )
    compile: bool | None = option(
        None,
        "compile the Jacobian with TorchInductor (~2x faster after a one-off compile of ~10 s); "
        "auto: on for runs of 2000+ steps, or as SIMEC_COMPILE says (default: auto)",
    )
    divergence_ratio: float = option(
        100.0, "a walk has diverged once ||x - x0|| exceeds X * ||x0||", metavar="X", gt=0
    )
    recover: int = option(
        0,
        "on a NaN/Inf point, output or Jacobian, or a divergence, retry the step with half the "
        "step size up to N times in a row before stopping",
        metavar="N",
        min=0,
    )
    jacobian_reuse: str = field(
        default="off",
        metadata={
            "help": "SiMEC: off = a fresh Jacobian every step (the paper); auto or N = reuse "
            "the last Jacobian's null space and step size for several steps, each followed by "
            "forward-only corrector iterations, refreshed when the corrector slows or fails, "
            "when the predicted step leaves the null space, or after N steps (auto: "
            f"{REUSE_AUTO_MAX_AGE}); implies --corrector with at least "
            f"{REUSE_MIN_ITERATIONS} iterations",
            "metavar": "off|auto|N",
            "type": parse_reuse,
        },
    )
    top_k: int | None = option(
        None,
        "probability metrics: take the Jacobian of the K most probable classes (plus their "
        "rest for fisher-rao) instead of all q; a lower bound of the full metric, the dropped "
        "part measured per step (default: all classes)",
        metavar="K",
        min=1,
    )
    top_mass: float | None = option(
        None,
        "as --top-k, with the smallest top set of classes holding probability mass >= P",
        metavar="P",
        gt=0,
    )
    leakage: str = option(
        "every-step",
        "with --top-k/--top-mass, when to measure the exact leakage of the restricted metric "
        "along the step (one forward-mode product of the full logits, about 3 forward passes): "
        "every-step; fresh = only on steps whose direction comes from a fresh Jacobian "
        "(with --jacobian-reuse the reused steps record the dropped mass only); off = the "
        "dropped mass only",
        choices=LEAKAGE,
    )
    max_memory: int | None = field(
        default=None,
        metadata={
            "help": "memory the Jacobian may need (bytes, or e.g. 2GB, 512MiB): the rows "
            "pulled back at once follow from it (default: all rows at once)",
            "metavar": "SIZE",
            "type": parse_memory,
        },
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> ExploreConfig:
        def choose(name: str, value: str, options: Sequence[str]) -> None:
            if value not in options:
                raise InputError(f"{name}={value!r} is not one of {list(options)}")

        choose("algorithm", self.algorithm, list(ALGORITHMS))
        choose("method", self.method, METHODS)
        choose("projection", self.projection, PROJECTIONS)
        choose("step_rule", self.step_rule, STEP_RULES)
        choose("box", self.box, BOXES)
        choose("metric_blocks", self.metric_blocks, METRIC_BLOCKS)
        choose("direction_sign", self.direction_sign, DIRECTION_SIGNS)
        choose("leakage", self.leakage, LEAKAGE)
        if isinstance(self.output_metric, str):
            choose("output_metric", self.output_metric, output_metric_names())
        if not isinstance(self.steps, int) or self.steps < 0:
            raise InputError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not isinstance(self.record_every, int) or self.record_every < 1:
            raise InputError(f"record_every must be a positive integer, got {self.record_every!r}")
        for name in ("step_multiplier", "divergence_ratio", "eta"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise InputError(f"{name} must be a positive number, got {value!r}")
        if self.max_step is not None and not (0 < self.max_step < float("inf")):
            raise InputError(f"max_step must be positive or None, got {self.max_step!r}")
        if self.rtol is not None and not (0 <= self.rtol < 1):
            raise InputError(f"rtol must lie in [0, 1), got {self.rtol!r}")
        self._validate_atol()
        if isinstance(self.recover, bool) or not isinstance(self.recover, int) or self.recover < 0:
            raise InputError(f"recover must be a non-negative integer, got {self.recover!r}")
        if self.corrector_iterations < 1:
            raise InputError("corrector_iterations must be at least 1")
        try:
            self.jacobian_reuse = parse_reuse(self.jacobian_reuse)
        except ValueError as exc:
            raise InputError(f"jacobian_reuse: {exc}") from None
        if self.jacobian_reuse != "off" and self.algorithm != "simec":
            raise InputError(
                "jacobian_reuse is for SiMEC (it keeps the output fixed with a corrector); "
                f"use jacobian_reuse='off' with {self.algorithm}"
            )
        if self.metric_blocks == "token" and self.jacobian_reuse != "off":
            raise InputError(
                "metric_blocks='token' needs jacobian_reuse='off' (reuse keeps the joint "
                "metric's null space)"
            )
        if self.metric_blocks == "token" and self.method != "lowrank":
            raise InputError(
                "metric_blocks='token' decomposes each block by a thin SVD: use method='lowrank'"
            )
        self._validate_restriction()
        try:
            self.max_memory = parse_memory(self.max_memory)
        except ValueError as exc:
            raise InputError(f"max_memory: {exc}") from None
        check_seed(self.seed)
        if self.segments is not None:
            self.segments = _segment_tuple(self.segments)
        return self

    @property
    def restricted(self) -> bool:
        """Output restriction is on (``top_k`` or ``top_mass``)."""
        return self.top_k is not None or self.top_mass is not None

    def _validate_atol(self) -> None:
        if self.atol is None:
            return
        if not (isinstance(self.atol, (int, float)) and 0 <= self.atol < float("inf")):
            raise InputError(f"atol must be a non-negative number, got {self.atol!r}")
        if self.metric_blocks != "token":
            raise InputError(
                "atol is the paper's code's rule on its per-token blocks: use it with "
                "metric_blocks='token'"
            )

    def _validate_restriction(self) -> None:
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise InputError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_mass is not None and not (
            isinstance(self.top_mass, (int, float))
            and not isinstance(self.top_mass, bool)
            and 0 < self.top_mass <= 1
        ):
            raise InputError(f"top_mass must lie in (0, 1] or be None, got {self.top_mass!r}")
        if not self.restricted:  # leakage applies to restricted walks only (like eta to
            return  # the step rules that use it)
        if self.top_k is not None and self.top_mass is not None:
            raise InputError("give top_k or top_mass, not both")
        name = self.output_metric if isinstance(self.output_metric, str) else "a custom metric"
        restrictable(name)
        if self.compile:
            raise InputError(
                "output restriction (top_k/top_mass) re-chooses its classes along the walk; "
                "it cannot be compiled: use compile=False (or leave it unset)"
            )

    def reuse_age(self) -> int | None:
        """The most steps one Jacobian serves: None when reuse is off (every step fresh, the
        paper's algorithm); ``REUSE_AUTO_MAX_AGE`` for auto; N for N."""
        mode = parse_reuse(self.jacobian_reuse)
        if mode == "off":
            return None
        return REUSE_AUTO_MAX_AGE if mode == "auto" else int(mode)

    def use_compile(self) -> bool:
        """Resolve ``compile``: explicit value, else SIMEC_COMPILE, else on for long runs."""
        if self.restricted:  # the chosen classes change along the walk: never traced
            return False
        if self.compile is not None:
            return bool(self.compile)
        env = compile_from_environment()
        if env is not None:
            return env
        return self.steps >= AUTO_COMPILE_STEPS

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExploreConfig:
        """The config ``to_dict`` wrote (e.g. summary.json), not validated (the run is done).

        Keys this version does not know (a summary written by another version) are kept in
        ``extra`` under their own names, without replacing an ``extra`` entry of that name."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        extra = dict(known.pop("extra", None) or {})
        for key, value in values.items():
            if key not in names:
                extra.setdefault(key, value)
        if known.get("segments") is not None:
            known["segments"] = tuple(known["segments"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["segments"] = list(self.segments) if self.segments is not None else None
        if not isinstance(self.output_metric, str):
            out["output_metric"] = getattr(self.output_metric, "name", "custom")
        return out


#: the most segment indices one can select (more is a typo, e.g. '0-99999999')
MAX_SEGMENTS = 100_000


def _segment_tuple(segments: Any) -> tuple[int, ...]:
    """``segments`` as a non-empty tuple of ints; a string or non-integers are an InputError
    (a string would be read character by character: '12' as (1, 2))."""
    if isinstance(segments, (str, bytes)):
        raise InputError(
            f"segments={segments!r} is a string: give indices such as (1, 2), or "
            "parse_segments('1-3') for the command-line form, or None for all"
        )
    try:
        values = tuple(segments)
    except TypeError:
        raise InputError(
            f"segments must be a sequence of indices or None, got {segments!r}"
        ) from None
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise InputError(f"segments must be whole numbers, got {bad[0]!r}")
    if not values:
        raise InputError("segments is empty: select at least one segment, or None for all")
    return tuple(int(v) for v in values)


def parse_segments(spec: str | None) -> tuple[int, ...] | None:
    """'all' / None -> None; '0,3,5-9' -> (0, 3, 5, 6, 7, 8, 9); '' is an InputError."""
    if spec is None or spec.strip().lower() == "all":
        return None
    if not spec.strip():
        raise InputError(
            "--segments is empty: give indices like '0,3,5-9', or 'all' (or leave it out) "
            "for all segments"
        )
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            lo, hi = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part),) * 2
        except ValueError:
            lo, hi = 1, 0
        if hi < lo:
            raise InputError(f"cannot read segments {spec!r}: use 'all' or indices like '0,3,5-9'")
        if hi - lo >= MAX_SEGMENTS:
            raise InputError(
                f"segments {part!r} selects {hi - lo + 1} indices; an input has far fewer "
                "segments: check the range"
            )
        out.extend(range(lo, hi + 1))
    return tuple(out)
