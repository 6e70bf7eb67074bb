"""The experiment's settings: ``InterpretationsConfig`` (the final version's walk nested as
``explore``), its checks, and reading a saved ``config.json`` of either form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...explainers import explainer_names
from ...explore import ExploreConfig

__all__ = [
    "DECODED_PIXELS",
    "FLAT_WALK_KEYS",
    "MLM_FALLBACK",
    "MLM_PREFERRED",
    "SEGMENT_SETS",
    "InterpretationsConfig",
    "check_config",
    "config_from_dict",
    "paper_final_walk",
    "upgrade_config",
]


SEGMENT_SETS = ("all", "one", "q2")

#: images: what the decoder does with pixels outside [0, 1] before the decoded image is
#: re-classified (the paper's code leaves them as decoded)
DECODED_PIXELS = ("clamp", "raw")


#: the masked LM trained for issue 14 (item 1), used when it is in the cache
MLM_PREFERRED = "minilm-mlm-hatexplain"


MLM_FALLBACK = "minilm-mlm-full"


def paper_final_walk() -> ExploreConfig:
    """The final version's walk (reference 003, section 2): its step rule and box projected
    after every step, the identity metric on the logits, K = 1000, every 10th point measured."""
    return ExploreConfig(
        steps=1000,
        step_rule="paper-final",
        box="embedding-bounds",
        projection="step",
        output_metric="euclidean-logits",
        max_step=None,
        record_every=10,
        jacobian_reuse="off",
        compile=False,
    )


@dataclass
class InterpretationsConfig:
    model: str = field(
        metadata={
            "help": "an image classifier (ViT, with --data an IDX folder) or a sequence "
            "classifier (with --data a HateXplain JSONL): a directory or a cached name",
            "metavar": "DIR|NAME",
        }
    )
    data: str = field(
        metadata={"help": "IDX folder of the images, or HateXplain JSONL", "metavar": "PATH"}
    )
    out: str = field(metadata={"metavar": "DIR"})
    mlm: str = field(
        default="auto",
        metadata={
            "help": "text: masked LM decoding the explored embeddings; auto = "
            f"{MLM_PREFERRED} if it is in the cache, else {MLM_FALLBACK} (the one used is "
            "recorded in config.json)",
            "metavar": "DIR|NAME",
        },
    )
    images: int = field(
        default=10,
        metadata={"help": "images: one per class, classes 0..N-1", "metavar": "N", "min": 1},
    )
    posts: int = field(default=8, metadata={"metavar": "N", "min": 1})
    repetitions: int = field(
        default=3, metadata={"help": "walks per input (seeds)", "metavar": "R", "min": 1}
    )
    etas: tuple[float, ...] = field(
        default=(1.0, 10.0),
        metadata={"help": "the step rule's eta values", "metavar": "ETA,..."},
    )
    segment_sets: tuple[str, ...] = field(
        default=SEGMENT_SETS,
        metadata={
            "help": "all = every patch/token; one = the top-attribution one; q2 = those above "
            "the input's median attribution",
            "choices": SEGMENT_SETS,
        },
    )
    attribution: str = field(
        default="relevancy",
        metadata={
            "help": "explainer choosing the one/q2 segments (relevancy: Chefer et al., the "
            "paper's code)",
            "choices": explainer_names,
        },
    )
    max_tokens: int = field(
        default=40, metadata={"help": "text: skip posts with more word pieces", "min": 1}
    )
    dataset: str = field(default="mnist", metadata={"choices": ("mnist", "fashion-mnist")})
    decoded_pixels: str = field(
        default="clamp",
        metadata={
            "help": "images: decoded pixels capped to [0, 1] before they are re-classified "
            "(clamp: a picture a person can look at) or left as decoded (raw: the paper's code)",
            "choices": DECODED_PIXELS,
        },
    )
    seed: int = 0
    device: str = "cpu"
    #: every walk's settings: the final version's (``paper_final_walk``); algorithm, eta and
    #: segments are set per walk, jacobian_reuse applies to SiMEC only
    explore: ExploreConfig = field(default_factory=lambda: paper_final_walk())

    def explore_config(self, algorithm: str, eta: float, segments: Sequence[int]) -> ExploreConfig:
        return replace(
            self.explore,
            algorithm=algorithm,
            eta=eta,
            segments=tuple(segments),
            jacobian_reuse=self.explore.jacobian_reuse if algorithm == "simec" else "off",
        )


#: the walk settings a config.json written before ``explore`` was nested held at its top level
FLAT_WALK_KEYS = (
    "steps",
    "record_every",
    "jacobian_reuse",
    "step_rule",
    "box",
    "projection",
    "output_metric",
    "max_step",
)


def config_from_dict(saved: dict[str, Any]) -> InterpretationsConfig:
    """The config of a saved ``config.json`` (either form, ``upgrade_config``)."""
    saved = upgrade_config(saved)
    walk: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved["explore"].items()
    }
    return InterpretationsConfig(
        **{
            **saved,
            "etas": tuple(saved["etas"]),
            "segment_sets": tuple(saved["segment_sets"]),
            "explore": ExploreConfig(**walk),
        }
    )


def upgrade_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config (``asdict``) in today's form: one written before ``explore`` was nested
    has its walk settings (``FLAT_WALK_KEYS``) moved into ``explore``."""
    if "explore" in saved:
        return saved
    flat = {k: saved[k] for k in FLAT_WALK_KEYS if k in saved}
    walk = asdict(replace(paper_final_walk(), **flat))
    return {**{k: v for k, v in saved.items() if k not in FLAT_WALK_KEYS}, "explore": walk}


def check_config(cfg: InterpretationsConfig) -> None:
    """Refuse bad settings with a one-line ``InputError``, before any work."""
    if not cfg.etas or any(
        not (isinstance(e, (int, float)) and 0 < e < math.inf) for e in cfg.etas
    ):
        raise InputError(f"etas must be positive numbers, got {cfg.etas!r}")
    if len(set(cfg.etas)) != len(cfg.etas):
        raise InputError(f"etas has repeated values: {cfg.etas!r}")
    bad = [s for s in cfg.segment_sets if s not in SEGMENT_SETS]
    if not cfg.segment_sets or bad:
        raise InputError(f"segment_sets must be taken from {list(SEGMENT_SETS)}, got {bad or '()'}")
    if cfg.decoded_pixels not in DECODED_PIXELS:
        raise InputError(
            f"decoded_pixels must be one of {list(DECODED_PIXELS)}, got {cfg.decoded_pixels!r}"
        )
    if cfg.attribution not in explainer_names():
        raise InputError(f"attribution {cfg.attribution!r} is not one of {explainer_names()}")
    walk = cfg.explore
    for name, value in (
        *((n, getattr(cfg, n)) for n in ("images", "posts", "repetitions")),
        *((n, getattr(walk, n)) for n in ("steps", "record_every")),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive whole number, got {value!r}")
    if walk.record_every > walk.steps:
        raise InputError(f"record_every={walk.record_every} exceeds steps={walk.steps}")
    cfg.explore_config("simec", cfg.etas[0], (0,)).validate()  # the explorer's own checks
    if not Path(cfg.data).exists():
        raise InputError(f"--data {cfg.data} does not exist")
