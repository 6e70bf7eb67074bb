"""Per-token blocks of the pullback metric (``metric_blocks="token"``, the final version's code)
and the code's step rule (``step_rule="official-code"``) in the walk, against independent
references: a per-block ``torch.linalg.eigh`` of J_i^T G J_i with J from autograd, and step
sizes worked by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simec import TorchAdapter
from simec.errors import InputError
from simec.explore import explore
from simec.explore.config import ExploreConfig
from simec.explore.explorer import explore_batch
from tests.conftest import LinearLogits

pytestmark = pytest.mark.usefixtures("one_thread")

M, H = 3, 4  # explored tokens, token width
FREE = {"max_step": None, "projection": "none"}


class _TinyMLP(nn.Module):
    """logits = W2 tanh(W1 vec(x) + b1) + b2 on x (3, 4): a smooth non-linear model."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(7)
        self.w1 = nn.Parameter(torch.randn(6, M * H, generator=gen, dtype=torch.float64) / 2)
        self.b1 = nn.Parameter(torch.randn(6, generator=gen, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(3, 6, generator=gen, dtype=torch.float64))
        self.b2 = nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2 @ torch.tanh(self.w1 @ x.reshape(-1) + self.b1) + self.b2


def _mlp() -> tuple[TorchAdapter, _TinyMLP, torch.Tensor]:
    model = _TinyMLP()
    x0 = torch.randn(M, H, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    return TorchAdapter(model, dtype="float64"), model, x0


def _reference_blocks(model: nn.Module, x: torch.Tensor, probs: bool):
    """Per token i: eigh of J_i^T J_i (ascending), J the autograd Jacobian of the metric's
    output (probabilities for euclidean-probs, G = I on them; logits for euclidean-logits)."""

    def out(z: torch.Tensor) -> torch.Tensor:
        logits = model(z)
        return torch.softmax(logits, -1) if probs else logits

    jac = torch.autograd.functional.jacobian(out, x)  # (q, M, H)
    blocks = []
    for i in range(x.shape[0]):
        j_i = jac[:, i, :]
        w, v = torch.linalg.eigh(j_i.T @ j_i)
        blocks.append((j_i, w, v))
    return blocks


@pytest.mark.parametrize("metric", ["euclidean-probs", "euclidean-logits"])
@pytest.mark.parametrize("rule", ["paper-v1", "official-code"])
def test_simexp_token_step_moves_each_token_along_its_block_eigenvector(metric, rule):
    adapter, model, x0 = _mlp()
    eta = 10.0
    options = dict(algorithm="simexp", steps=1, output_metric=metric, step_rule=rule, eta=eta)
    seen = set()
    for seed in range(6):
        result = explore(adapter, x0, metric_blocks="token", seed=seed, **options, **FREE)
        moved = result.trajectory[1] - result.trajectory[0]
        refs = _reference_blocks(model, x0, probs=metric == "euclidean-probs")
        sizes = []
        for i, (_, w, v) in enumerate(refs):
            lam_max = float(w[-1])
            if rule == "paper-v1":
                expected = 2 / math.sqrt(lam_max)  # c = 2 for SiMExp
            else:  # h = 4 > q = 3: every block has a null space, min|lambda| = 0
                expected = eta / math.sqrt(lam_max / 1e-6)
            d = moved[i]
            assert float(torch.linalg.vector_norm(d)) == pytest.approx(expected, rel=1e-9)
            sizes.append(expected)
            nonnull = [k for k in range(H) if float(w[k]) > 1e-10 * lam_max]
            overlaps = [abs(float(d @ v[:, k])) / expected for k in nonnull]
            best = max(range(len(nonnull)), key=lambda k: overlaps[k])
            assert overlaps[best] == pytest.approx(1.0, abs=1e-9)  # a block eigenvector, +-
            seen.add((i, nonnull[best]))
        assert result.step_sizes[0] == pytest.approx(math.hypot(*sizes), rel=1e-9)
    assert len(seen) > M  # different eigenvectors drawn across seeds


@pytest.mark.parametrize("metric", ["euclidean-probs", "euclidean-logits"])
def test_simec_token_step_is_in_each_block_null_space(metric):
    adapter, model, x0 = _mlp()
    result = explore(
        adapter, x0, algorithm="simec", steps=1, output_metric=metric, metric_blocks="token",
        **FREE,
    )  # fmt: skip
    moved = result.trajectory[1] - result.trajectory[0]
    refs = _reference_blocks(model, x0, probs=metric == "euclidean-probs")
    for i, (j_i, w, _) in enumerate(refs):
        d = moved[i]
        norm = float(torch.linalg.vector_norm(d))
        assert norm == pytest.approx(1 / math.sqrt(float(w[-1])), rel=1e-9)  # c = 1
        # first-order output change of token i's move: J_i d_i = 0
        assert (
            float(torch.linalg.vector_norm(j_i @ d))
            < 1e-12 * float(torch.linalg.matrix_norm(j_i, 2)) * norm + 1e-15
        )


def _two_token_linear(
    weight_rows: list[list[float]], width: int
) -> tuple[TorchAdapter, torch.Tensor]:
    weight = torch.tensor(weight_rows, dtype=torch.float64)
    m = weight.shape[1] // width
    model = LinearLogits(weight, torch.zeros(weight.shape[0], dtype=torch.float64), (m, width))
    x0 = torch.linspace(-0.5, 0.7, m * width, dtype=torch.float64).reshape(m, width)
    return TorchAdapter(model, dtype="float64"), x0


# token 0: J_0 = [[3, 0, 0], [0, 1, 0]], eigenvalues 9, 1, 0; token 1: J_1 = [[0, 0, 2], [0, 0, 0]],
# eigenvalues 4, 0, 0 (identity metric on the logits)
BLOCKS = [[3.0, 0.0, 0.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("algorithm", "rule", "eta", "sizes"),
    [
        # the code's rule per block: eta / sqrt(lmax_i / (0 + 1e-6))
        ("simec", "official-code", 10.0, (10 * 1e-3 / 3, 10 * 1e-3 / 2)),
        ("simexp", "official-code", 1.0, (1e-3 / 3, 1e-3 / 2)),
        # the v1 rule per block: c / sqrt(lmax_i)
        ("simec", "paper-v1", 1.0, (1 / 3, 1 / 2)),
        ("simexp", "paper-v1", 1.0, (2 / 3, 2 / 2)),
        # the final text's rule per block: eta sqrt(lmin_i / lmax_i), lmin_i non-null
        ("simexp", "paper-final", 10.0, (10 * math.sqrt(1 / 9), 10 * math.sqrt(4 / 4))),
    ],
)
def test_token_steps_by_hand_on_a_linear_model(algorithm, rule, eta, sizes):
    adapter, x0 = _two_token_linear(BLOCKS, 3)
    result = explore(
        adapter, x0, algorithm=algorithm, steps=3, output_metric="euclidean-logits",
        metric_blocks="token", step_rule=rule, eta=eta, **FREE,
    )  # fmt: skip
    assert result.step_sizes == pytest.approx([math.hypot(*sizes)] * 3, rel=1e-12)
    assert result.lambda_max == pytest.approx([9.0] * 3)  # the largest over the blocks
    for k in range(3):
        d = result.trajectory[k + 1] - result.trajectory[k]
        norms = torch.linalg.vector_norm(d, dim=1)
        assert norms.tolist() == pytest.approx(list(sizes), rel=1e-9)
        if algorithm == "simec":  # null spaces: e3 for token 0, span(e1, e2) for token 1
            assert abs(float(d[0, 2])) == pytest.approx(sizes[0], rel=1e-9)
            assert abs(float(d[1, 2])) < 1e-15
        else:  # non-null eigenvectors: e1 or e2 for token 0, e3 for token 1
            assert abs(float(d[0, 2])) < 1e-15
            assert abs(float(d[1, 2])) == pytest.approx(sizes[1], rel=1e-12)
    if algorithm == "simec":  # a linear model: the logits do not move at all
        probs = result.probabilities
        torch.testing.assert_close(probs[-1], probs[0], rtol=0, atol=1e-14)


def test_official_code_rule_on_the_joint_metric_by_hand():
    # joint metric of BLOCKS: eigenvalues 13, 1, 0, 0, 0, 0 (rows (3,0,0,0,0,2) and (0,1,0,...))
    adapter, x0 = _two_token_linear(BLOCKS, 3)
    result = explore(
        adapter, x0, algorithm="simexp", steps=2, output_metric="euclidean-logits",
        step_rule="official-code", eta=10.0, **FREE,
    )  # fmt: skip
    assert result.lambda_max == pytest.approx([13.0] * 2)
    assert result.step_sizes == pytest.approx([10 * 1e-3 / math.sqrt(13)] * 2, rel=1e-9)
    # full rank (n = 2 = q): min|lambda| = 1 is not replaced by 0
    full, y0 = _two_token_linear([[3.0, 0.0], [0.0, 1.0]], 2)
    result = explore(
        full, y0, algorithm="simexp", steps=1, output_metric="euclidean-logits",
        step_rule="official-code", eta=1.0, **FREE,
    )  # fmt: skip
    assert result.step_sizes == pytest.approx([math.sqrt(1.000001 / 9)], rel=1e-12)


def test_a_token_without_a_direction_stays():
    # width 2, q = 2: token 0's block is the identity (full rank, no null direction, SiMEC);
    # token 1's block is [[1, 1], [0, 0]] (null direction (1, -1) / sqrt 2)
    adapter, x0 = _two_token_linear([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]], 2)
    result = explore(
        adapter, x0, algorithm="simec", steps=2, output_metric="euclidean-logits",
        metric_blocks="token", **FREE,
    )  # fmt: skip
    d = result.trajectory[1] - result.trajectory[0]
    assert d[0].tolist() == [0.0, 0.0]
    step = 1 / math.sqrt(2)  # 1 / sqrt(lmax = 2)
    assert abs(float(d[1, 0])) == pytest.approx(step / math.sqrt(2), rel=1e-12)
    assert float(d[1, 0]) == pytest.approx(-float(d[1, 1]), rel=1e-12)
    assert result.ranks == [3, 3]  # 2 + 1: the summed ranks of the blocks
    # SiMExp: a zero block (token 1 of [[1, 0, 0, 0], [0, 1, 0, 0]]) stays
    adapter, x0 = _two_token_linear([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]], 2)
    result = explore(
        adapter, x0, algorithm="simexp", steps=1, output_metric="euclidean-logits",
        metric_blocks="token", **FREE,
    )  # fmt: skip
    d = result.trajectory[1] - result.trajectory[0]
    assert d[1].tolist() == [0.0, 0.0]
    assert float(torch.linalg.vector_norm(d[0])) == pytest.approx(2.0, rel=1e-12)


def test_the_codes_absolute_threshold_counts_small_eigenvalues_as_zero():
    # token 0: J_0 = [[3, 0, 0], [0, 0.05, 0]], eigenvalues 9, 0.0025, 0; token 1: eigenvalue 4.
    # With atol = 0.01 (the code's |lambda| < 0.01), 0.0025 counts as zero: SiMExp never moves
    # token 0 along e2, SiMEC may (and then the logits move); the step (lmax 9) is unchanged.
    adapter, x0 = _two_token_linear(
        [[3.0, 0.0, 0.0, 0.0, 0.0, 2.0], [0.0, 0.05, 0.0] + [0.0] * 3], 3
    )
    options = dict(
        steps=40, output_metric="euclidean-logits", metric_blocks="token", **FREE,
        step_rule="official-code", eta=10.0,
    )  # fmt: skip
    size0 = 10 * 1e-3 / 3  # eta / sqrt(lmax / (0 + 1e-6)), lmax = 9 either way
    along = {}
    for atol in (None, 0.01):
        r = explore(adapter, x0, algorithm="simexp", atol=atol, **options)
        d = r.trajectory[1:] - r.trajectory[:-1]  # (40, 2, 3)
        norms = torch.linalg.vector_norm(d[:, 0], dim=1)
        assert norms.tolist() == pytest.approx([size0] * 40, rel=1e-9)
        along[atol] = int((d[:, 0, 1].abs() > 0.5 * size0).sum())  # steps along e2
        assert set(r.ranks) == {3 if atol is None else 2}  # summed block ranks: 2 + 1, 1 + 1
    assert along[None] > 0 and along[0.01] == 0
    simec = explore(adapter, x0, algorithm="simec", atol=0.01, **options)
    d = simec.trajectory[1:] - simec.trajectory[:-1]
    assert int((d[:, 0, 1].abs() > 1e-3 * size0).sum()) > 0  # e2 is now a "null" direction
    assert float((simec.probabilities[-1] - simec.probabilities[0]).abs().max()) > 0
    exact = explore(adapter, x0, algorithm="simec", **options)  # default: e3 only, logits fixed
    torch.testing.assert_close(exact.probabilities[-1], exact.probabilities[0], rtol=0, atol=1e-14)
    with pytest.raises(InputError, match="metric_blocks='token'"):
        ExploreConfig(atol=0.01).validate()
    with pytest.raises(InputError, match="atol must be"):
        ExploreConfig(metric_blocks="token", atol=-1.0).validate()


def test_the_cap_scales_the_whole_token_move():
    adapter, x0 = _two_token_linear(BLOCKS, 3)
    cap_ratio = 0.01
    result = explore(
        adapter, x0, algorithm="simexp", steps=1, output_metric="euclidean-logits",
        metric_blocks="token", max_step=cap_ratio, projection="none",
    )  # fmt: skip
    cap = cap_ratio * float(torch.linalg.vector_norm(x0))
    assert result.step_sizes == pytest.approx([cap], rel=1e-12)
    norms = torch.linalg.vector_norm(result.trajectory[1] - result.trajectory[0], dim=1)
    # paper-v1 sizes 2/3 and 1, scaled by one factor
    assert norms.tolist() == pytest.approx(
        [cap * (2 / 3) / math.hypot(2 / 3, 1), cap / math.hypot(2 / 3, 1)]
    )


def test_batched_token_walks_equal_single_ones():
    adapter, _, x0 = _mlp()
    starts = [x0, x0 * 0.5, x0 + 0.1]
    options = dict(algorithm="simexp", steps=4, metric_blocks="token", step_rule="official-code")
    batch = explore_batch(adapter, starts, seeds=[0, 1, 2], eta=10.0, **options, **FREE)
    for start, seed, got in zip(starts, [0, 1, 2], batch):
        alone = explore(adapter, start, seed=seed, eta=10.0, **options, **FREE)
        torch.testing.assert_close(got.trajectory, alone.trajectory, rtol=1e-10, atol=1e-13)


def test_joint_is_the_default_and_token_combinations_are_checked():
    assert ExploreConfig().metric_blocks == "joint"
    assert ExploreConfig().step_rule == "paper-v1"
    with pytest.raises(InputError, match="metric_blocks"):
        ExploreConfig(metric_blocks="tokens").validate()
    with pytest.raises(InputError, match="jacobian_reuse='off'"):
        ExploreConfig(metric_blocks="token", jacobian_reuse="auto").validate()
    with pytest.raises(InputError, match="lowrank"):
        ExploreConfig(metric_blocks="token", method="exact").validate()
    ExploreConfig(metric_blocks="token", step_rule="official-code").validate()
    restored = ExploreConfig.from_dict(ExploreConfig(metric_blocks="token").to_dict())
    assert restored.metric_blocks == "token"


def test_a_dataset_run_resumes_only_with_the_same_metric_blocks(
    vit_dir, idx_data, tmp_path, capsys
):
    import json

    from simec.cli import main

    out = tmp_path / "run"
    argv = ["explore", "--model", str(vit_dir), "--data", str(idx_data), "--steps", "2"]
    argv += ["--limit", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert json.loads((out / "run.json").read_text())["config"]["metric_blocks"] == "joint"
    assert main([*argv, "--resume", "--metric-blocks", "token"]) == 2
    assert "metric_blocks: 'joint' then, 'token' now" in capsys.readouterr().err
    # a run.json written before the option existed: it had the default, joint
    info = json.loads((out / "run.json").read_text())
    del info["config"]["metric_blocks"]
    (out / "run.json").write_text(json.dumps(info))
    assert main([*argv, "--resume"]) == 0
    assert main([*argv, "--resume", "--metric-blocks", "token"]) == 2


@pytest.mark.parametrize(
    ("name", "value"), [("metric_blocks", "token"), ("direction_sign", "fixed"), ("atol", 0.01)]
)
def test_an_experiment_saved_before_a_walk_field_resumes_with_its_default_only(
    tmp_path, name, value
):
    """A nested config written before ``name`` existed had its default then (joint blocks, a
    random sign, the relative rank rule): it resumes with the default and refuses ``value``."""
    import json
    from dataclasses import asdict, dataclass, field, replace

    from simec.experiments import start_or_resume

    @dataclass(frozen=True)
    class _Config:
        out: str = "x"
        explore: ExploreConfig = field(default_factory=ExploreConfig)

    cfg = _Config()
    saved = asdict(cfg)
    del saved["explore"][name]  # a nested config written before the field
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "r.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"config": saved}))
    start_or_resume(tmp_path, cfg)
    (tmp_path / "config.json").write_text(json.dumps({"config": saved}))
    other = replace(cfg, explore=replace(cfg.explore, **{name: value}))
    with pytest.raises(InputError, match="cannot resume") as refused:
        start_or_resume(tmp_path, other)
    assert name in str(refused.value)


def test_the_interpretations_experiment_takes_metric_blocks_and_step_rule():
    from dataclasses import replace

    from simec.cli import build_parser
    from simec.cli.options import dataclass_from_args
    from simec.experiments.interpretations import InterpretationsConfig, paper_final_walk

    argv = ["experiment", "interpretations", "--model", "m", "--data", "d", "--out", "o"]
    args = build_parser().parse_args(
        [*argv, "--metric-blocks", "token", "--step-rule", "official-code"]
    )
    cfg = dataclass_from_args(InterpretationsConfig, args)
    walk = paper_final_walk()
    assert cfg.explore == replace(walk, metric_blocks="token", step_rule="official-code")
    cfg = dataclass_from_args(InterpretationsConfig, build_parser().parse_args(argv))
    assert cfg.explore == walk and walk.metric_blocks == "joint"
