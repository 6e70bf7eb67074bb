"""One step of a walk: from the point p_k just accepted to the candidate p_{k+1}.

Each iteration of the walk loop (``simec.explore.driver``) reads the model at the current point
(an ``Evaluation``: a fresh Jacobian and its spectrum, batched over the walks, or a forward pass
for a walk that reuses its Jacobian), lets the walker accept the point (``Walker.accept``), then
asks the walk's stepper for the next step (``Walker.propose`` -> ``Stepper.step``). A stepper owns
whatever state its kind of step needs:

* ``Fresh``: the paper's step, lines 5-8 of Algorithms 1 and 2 from the spectrum at p_k (a fresh
  Jacobian every step), then the optional corrector (``ExploreConfig.corrector``) and the
  per-step box (``projection="step"``). Its only state is the corrector, made at p_0.
* ``simec.explore.reuse.Reuse``: the predictor-corrector walk that keeps a Jacobian for several
  steps (``ExploreConfig.jacobian_reuse``), with the kept Jacobian, its age and the step drawn
  ahead.

``Setup`` is what a walk is given and never changes (the model function, the box, the bounds,
the step rule); ``Cost`` counts its model calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..errors import InputError
from ..geometry.blocks import BlockSpectra
from ..geometry.metrics import OutputMetric
from ..models.base import ModelAdapter, PreparedInput
from . import policy
from .blocks import propose_blocks
from .box import Box, embedding_bounds, project, resolve_box
from .config import RULES, ExploreConfig
from .corrector import Corrector
from .model_function import ModelFunction, model_function
from .proposal import Proposal, StepRule, move, propose
from .restriction import Restriction
from .segments import Segments
from .walk import Walk

__all__ = ["Candidate", "Cost", "Evaluation", "Fresh", "Setup", "Status", "Stepper"]


class Status(NamedTuple):
    """What one step of one walk needs on the host, read back once per step for the batch."""

    point_ok: bool  # the current point is finite
    finite: bool  # the output, the Jacobian and G^1/2 J are finite there
    lambda_max: float
    rank: int
    distance: float  # ||x - x0|| over the explored segments
    lambda_min: float = 0.0  # the smallest non-null eigenvalue (0 at rank 0)


@dataclass(frozen=True)
class Evaluation:
    """The model at the current point: host facts (``status``), y and logits there; with a
    fresh Jacobian also the Jacobian (q, n), the metric's eigenvectors (n, >= rank; non-null
    first, canonical signs) and the singular values of G^1/2 J (used by Jacobian reuse); with
    ``metric_blocks="token"`` the per-token block spectra instead (``vectors`` is then (n, 0))."""

    status: Status
    output: Tensor
    logits: Tensor
    jacobian: Tensor | None = None
    vectors: Tensor | None = None
    singular_values: Tensor | None = None
    blocks: BlockSpectra | None = None

    @property
    def failure(self) -> str:
        """What is non-finite when ``status.finite`` is False."""
        return "non-finite output or Jacobian" if self.jacobian is not None else "non-finite output"


@dataclass(frozen=True)
class Candidate:
    """A step taken from the last accepted point ``start`` to ``point``, not yet accepted;
    ``checked``: the point passed ``policy.point_failure`` (its output is not known yet)."""

    start: Tensor
    proposal: Proposal
    jacobian: Tensor
    lambda_max: float
    rank: int
    point: Tensor
    uncorrected_drift: float | None
    retries: int = 0
    checked: bool = False
    fresh: bool = True
    corrector_iterations: int | None = None


@dataclass
class Cost:
    """Model calls of one walk: Jacobians, forward passes outside them, the points evaluated
    (a batched call evaluates two)."""

    jacobians: int = 0
    forwards: int = 0
    points: int = 0

    def add(self, calls: int, points: int) -> None:
        self.forwards, self.points = self.forwards + calls, self.points + points


@dataclass(frozen=True)
class Setup:
    """What one walk is given: model, input, settings, the explored rows and their box, the
    start x0 (explored rows), the step cap and the divergence bound, the model function."""

    adapter: ModelAdapter
    prepared: PreparedInput
    cfg: ExploreConfig
    metric: OutputMetric
    rule: StepRule
    segments: Segments
    lower: Tensor
    upper: Tensor
    start: Tensor
    cap: float
    bound: float
    model_fn: ModelFunction

    @classmethod
    def build(
        cls,
        adapter: ModelAdapter,
        prepared: PreparedInput,
        cfg: ExploreConfig,
        metric: OutputMetric,
        box: Box | None,
    ) -> Setup:
        x0 = prepared.embeddings
        segments = Segments.select(x0, cfg.segments)
        if cfg.box == "embedding-bounds":
            if box is not None:
                raise InputError("give either box=(lower, upper) or box='embedding-bounds'")
            box = embedding_bounds(adapter)
        lower, upper = resolve_box(box, x0, segments.rows)
        start = x0[segments.rows].clone()
        start_norm = float(torch.linalg.vector_norm(start))
        cap = cfg.max_step * start_norm if cfg.max_step is not None else math.inf
        #: (metric output coordinates y, logits) at the explored rows: one function per
        #: adapter and input, so that its compiled Jacobian is reused across runs
        restriction = Restriction.build(cfg, metric.name)
        model_fn = model_function(adapter, prepared, segments, metric, restriction)
        if restriction is not None:  # the classes at p_0, from its full logits
            with torch.no_grad():
                restriction.start(model_fn.logits(start))
        rule = RULES[cfg.algorithm]
        bound = cfg.divergence_ratio * start_norm
        return cls(
            adapter,
            prepared,
            cfg,
            metric,
            rule,
            segments,
            lower,
            upper,
            start,
            cap,
            bound,
            model_fn,
        )

    @property
    def reuse_age(self) -> int | None:
        """The most steps one Jacobian serves (None: a fresh one every step, the paper's)."""
        return self.cfg.reuse_age() if self.rule.name == "simec" else None

    def propose(
        self, vectors: Tensor, rank: int, lambda_max: float, lambda_min: float, generator: Any
    ) -> Proposal:
        """Lines 6-7 from a spectrum: a direction drawn with ``generator``, its step size."""
        cfg = self.cfg
        return propose(
            self.rule,
            vectors,
            rank,
            lambda_max,
            generator,
            multiplier=cfg.step_multiplier,
            cap=self.cap,
            step_rule=cfg.step_rule,
            lambda_min=lambda_min,
            eta=cfg.eta,
            sign=cfg.direction_sign,
        )

    def propose_blocks(self, blocks: BlockSpectra, generator: Any) -> Proposal:
        """Lines 6-7 per token block (``simec.explore.blocks``)."""
        cfg = self.cfg
        return propose_blocks(
            self.rule,
            blocks,
            generator,
            step_rule=cfg.step_rule,
            multiplier=cfg.step_multiplier,
            eta=cfg.eta,
            cap=self.cap,
            sign=cfg.direction_sign,
        )

    def box_step(self, x: Tensor) -> Tensor:
        """Line 11 after every step (``projection="step"``); x as it is otherwise."""
        return project(x, self.lower, self.upper) if self.cfg.projection == "step" else x

    def host_checks(
        self, x: Tensor, y: Tensor | None = None, logits: Tensor | None = None
    ) -> tuple[bool, float, bool]:
        """(x finite, ||x - x0|| over the explored rows, y and logits finite), read back from
        the device at once (one host read, as the driver packs its statuses)."""
        parts = [torch.isfinite(x).all(), torch.linalg.vector_norm(x - self.start)]
        if y is not None and logits is not None:
            parts.append(torch.isfinite(y).all() & torch.isfinite(logits).all())
        values = torch.stack([p.to(torch.float64) for p in parts]).tolist()
        return bool(values[0]), values[1], bool(values[2]) if len(values) > 2 else True


class Stepper:
    """The step rule a walker calls after each accepted point. Subclasses: ``Fresh``,
    ``simec.explore.reuse.Reuse``, ``simec.explore.guided.Guided`` (a ``Fresh`` whose ``step``
    takes the null-space part of target - x, with its own ``stop`` and ``remaining``); a new
    kind of walk adds one (and its own state)."""

    #: the ``jacobian_reuse`` recorded in the run's fidelity
    jacobian_reuse = "off"

    def __init__(self, setup: Setup, cost: Cost, generator: torch.Generator) -> None:
        self.setup, self.cost, self.generator = setup, cost, generator
        self.refreshes: list[dict[str, Any]] = []  # Jacobians taken after the first, and why
        self.retried = 0  # steps dropped and taken again with a fresh Jacobian

    @property
    def needs_jacobian(self) -> bool:
        """The next iteration takes a fresh Jacobian (else ``evaluate``: a forward pass)."""
        return True

    def evaluate(self, x: Tensor) -> Evaluation:
        """The model at x without a Jacobian (only when ``needs_jacobian`` is False)."""
        raise NotImplementedError(f"{type(self).__name__} takes a fresh Jacobian every step")

    def output(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(y, logits) at x: one forward pass."""
        with torch.no_grad():
            y, logits = self.setup.model_fn(x)
        self.cost.add(1, 1)
        return y, logits

    def stop(self, walk: Walk, evaluation: Evaluation) -> str | None:
        """Why no step is taken from the last accepted point, from its fresh spectrum (None:
        take one): ``policy.spectrum_stop``."""
        assert evaluation.vectors is not None
        dim, rank = int(evaluation.vectors.shape[0]), evaluation.status.rank
        return policy.spectrum_stop(self.setup.rule, rank, dim, len(walk) - 1)

    def remaining(self, x: Tensor) -> float | None:
        """What a walk toward a target records at each point: ||x - target|| / ||p_0 - target||
        (``simec.explore.guided``); None for the others."""
        return None

    def step(self, walk: Walk, evaluation: Evaluation) -> Candidate | None:
        """The step from the last accepted point (None: dropped, take it again next time)."""
        raise NotImplementedError

    def classes_changed(self) -> None:
        """Output restriction chose other classes: drop what was made with the old ones."""

    def retry(self, walk: Walk, failed: Candidate, proposal: Proposal) -> Candidate | None:
        """``failed``'s step taken again from its start with ``proposal`` (a smaller one)."""
        raise NotImplementedError


class Fresh(Stepper):
    """The paper's step (a fresh Jacobian every step), then the optional corrector."""

    def __init__(self, setup: Setup, cost: Cost, generator: torch.Generator) -> None:
        super().__init__(setup, cost, generator)
        self.corrector: Corrector | None = None

    def step(self, walk: Walk, evaluation: Evaluation) -> Candidate:
        s, vectors, jac = evaluation.status, evaluation.vectors, evaluation.jacobian
        assert vectors is not None and jac is not None
        if evaluation.blocks is not None:  # metric_blocks="token": a step per token block
            proposal = self.setup.propose_blocks(evaluation.blocks, self.generator)
        else:
            proposal = self.setup.propose(
                vectors, s.rank, s.lambda_max, s.lambda_min, self.generator
            )
        return self._take(walk, walk.point, proposal, jac, s.lambda_max, s.rank, 0)

    def classes_changed(self) -> None:
        self.corrector = None  # made again, aiming at p_0's output on the new classes

    def retry(self, walk: Walk, failed: Candidate, proposal: Proposal) -> Candidate:
        c = failed
        return self._take(walk, c.start, proposal, c.jacobian, c.lambda_max, c.rank, c.retries + 1)

    def _take(
        self,
        walk: Walk,
        x: Tensor,
        proposal: Proposal,
        jac: Tensor,
        lam: float,
        rank: int,
        retries: int,
    ) -> Candidate:
        """Line 8 from x, then the corrector and the per-step box."""
        cfg = self.setup.cfg
        if cfg.corrector and self.corrector is None:  # pulls back onto N(x) = N(p_0)
            target = self.setup.model_fn.level(walk.steps[0].output)
            self.corrector = Corrector(self.setup.model_fn, target, cfg)
        x_new = move(x, proposal)
        before, iterations = None, None
        if self.corrector is not None:
            x_new, before = self.corrector(x_new, jac)
            iterations = self.corrector.iterations
            # residuals measured: one per update, plus the one that met the tolerance
            measured = iterations + (iterations < cfg.corrector_iterations)
            self.cost.add(measured, measured)
        x_new = self.setup.box_step(x_new)
        return Candidate(
            x, proposal, jac, lam, rank, x_new, before, retries, corrector_iterations=iterations
        )
