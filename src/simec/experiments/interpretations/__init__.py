"""The final (NeurIPS 2025) version's experiment: do decoded inputs agree with the walk?

Reference 003 (``shared/reference/003_final_version_notes.md``), sections 2-4. For each input
(MNIST: one image per class; text: HateXplain validation posts labelled hate speech or
offensive), each repetition (seed), each eta and each segment set (``all`` / ``one`` = the
top-attribution patch or token / ``q2`` = those above the input's median attribution), SiMEC
and SiMExp walk K steps with the final version's step rule (delta = eta*sqrt(lmin/lmax)), its
box (the embedding layer's analytic bounds) projected after every step, and the identity
metric on the logits (the paper's code). Every ``record_every``-th point (k̂ = 10) is decoded
(ViT: the embedding layer's pseudo-inverse; text: the masked LM's top-1 token) and
re-classified, and ``simec.interpret.walk_measures.measure_run`` records M1-M3 and M6-M9 per
walk; M4 (rho_V, SiMExp over SiMEC) compares the two walks of a row.

Attribution (which patches/tokens ``one`` and ``q2`` explore): a method of the explainer
registry, by default ``relevancy`` (Chefer et al. 2021, which the paper's code uses). Special
positions ([CLS], [SEP]) are never explored: the decoders cannot turn them back into input.

One row (both walks on one input, repetition, eta and segment set) is written atomically to
``out/rows/`` as soon as it is done; a run resumes where it stopped and refuses rows made with
other settings (``start_or_resume``).

Modules: ``config`` (``InterpretationsConfig``, reading a saved config), ``inputs`` (the inputs,
the model and its decoders), ``records`` (a saved row), ``run`` (the walks of a row, the run),
``tables`` (the markdown tables, results.json), ``plots`` (the M1 figure).
"""

from .config import (
    DECODED_PIXELS,
    FLAT_WALK_KEYS,
    SEGMENT_SETS,
    InterpretationsConfig,
    config_from_dict,
    paper_final_walk,
    upgrade_config,
)
from .inputs import resolve_mlm
from .plots import plot_original_vs_top
from .records import InterpretationRow, WalkRecord
from .run import choose_segments, run_interpretations
from .tables import PAPER, summarize, tables_from_rows, write_tables

__all__ = [
    "DECODED_PIXELS",
    "FLAT_WALK_KEYS",
    "PAPER",
    "SEGMENT_SETS",
    "InterpretationRow",
    "InterpretationsConfig",
    "WalkRecord",
    "choose_segments",
    "config_from_dict",
    "paper_final_walk",
    "plot_original_vs_top",
    "resolve_mlm",
    "run_interpretations",
    "summarize",
    "tables_from_rows",
    "upgrade_config",
    "write_tables",
]
