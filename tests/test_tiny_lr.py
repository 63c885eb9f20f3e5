"""The appendix tools for "how tiny": Hessian power iteration, gradient noise, Eq. 58, precision floor, alignment."""

from __future__ import annotations


import pytest
import torch

from raysweep.models import MODEL_SIZES, build_model
from raysweep.tiny_lr import (GradientStatistics, alignment_gap, causal_lm_loss, check_precision, eta_tiny_upper_bound,
                              gradient_statistics, hessian_max_eigenvalue, precision_floor_lr,
                              recommended_lr_range, tiny_lr_reports, trainable)


class Point(torch.nn.Module):
    """A single parameter vector θ, for losses whose Hessian and gradient noise are known in closed form."""

    def __init__(self, dim: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))


def update_survives(lr: float, dtype: torch.dtype, weight: float = 1.0) -> bool:
    """Whether ``weight + lr`` computed in ``dtype`` differs from ``weight``: the floor, measured."""
    stored = torch.tensor(weight, dtype=dtype)
    return bool(stored + lr != stored)


def tiny_lm(name: str = "gpt2-nano") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODEL_SIZES[name], vocab_size=257, seq_len=32, eos_id=256)


def tokens(rows: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 257, (rows, 32), generator=torch.Generator().manual_seed(seed))


def test_power_iteration_finds_top_eigenvalue_of_quadratic():
    # 0.5 xᵀAx has Hessian A = Q diag(λ) Qᵀ, whose top eigenvalue we chose: 5.0 (next one below 4.0)
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=generator, dtype=torch.float64))
    eigenvalues = torch.cat([torch.tensor([5.0], dtype=torch.float64), 4.0 * torch.rand(29, generator=generator,
                                                                                          dtype=torch.float64)])
    a = q @ torch.diag(eigenvalues) @ q.T
    x = torch.nn.Parameter(torch.randn(30, generator=generator, dtype=torch.float64))
    estimate = hessian_max_eigenvalue(lambda: 0.5 * x @ a @ x, [x])
    assert estimate == pytest.approx(5.0, rel=0.05)


def test_power_iteration_matches_least_squares_hessian():
    # 0.5 · mean (Xw − y)² has Hessian XᵀX/n whatever w and y are
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(200, 10, generator=generator)
    x[:, 0] *= 3.0  # one stretched feature: a separated top eigenvalue (~9)
    y = torch.randn(200, generator=generator)
    weight, bias = torch.nn.Parameter(torch.randn(6)), torch.nn.Parameter(torch.randn(4))
    loss = lambda: 0.5 * ((x @ torch.cat([weight, bias]) - y) ** 2).mean()  # the split tests the per-tensor walk
    expected = torch.linalg.eigvalsh(x.T @ x / 200).max().item()
    assert hessian_max_eigenvalue(loss, [weight, bias]) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("name", ["gpt2-nano", "pythia-nano", "opt-nano"])
def test_power_iteration_runs_on_tiny_transformer(name):
    model = tiny_lm(name)
    batch = tokens(4, seed=0)
    estimate = hessian_max_eigenvalue(lambda: causal_lm_loss(model, batch), trainable(model), iters=5)
    assert 0.0 < estimate < float("inf")
    assert model.config._attn_implementation == "sdpa"  # the math backend is scoped to the call
    assert all(p.grad is None for p in model.parameters())


def test_power_iteration_matches_dense_hessian_of_transformer_block():
    # the final LayerNorm's 64 parameters: small enough for a dense Hessian built column by column
    model = tiny_lm("gpt2-nano")
    batch = tokens(4, seed=1)
    params = [model.transformer.ln_f.weight, model.transformer.ln_f.bias]
    grads = torch.autograd.grad(causal_lm_loss(model, batch), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    columns = [torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat[i], params, retain_graph=True)])
               for i in range(flat.numel())]
    dense = torch.stack(columns).double()
    expected = torch.linalg.eigvalsh((dense + dense.T) / 2).abs().max().item()
    estimate = hessian_max_eigenvalue(lambda: causal_lm_loss(model, batch), params, iters=300, tol=1e-7)
    assert estimate == pytest.approx(expected, rel=0.05)


def test_eta_tiny_upper_bound_matches_hand_worked_case():
    # Δa = 0.02, λ_max = 50, G² = 4, σ_g² = 64 per sequence, B = 16:
    # σ_g²/B = 4, G² + σ_g²/B = 8, λ_max · 8 = 400, η ≤ 0.02 / 400 = 5e-5
    assert eta_tiny_upper_bound(0.02, 50.0, 4.0, 64.0, 16) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="λ_max > 0"):
        eta_tiny_upper_bound(0.02, 0.0, 4.0, 64.0, 16)


def test_lr_range_uses_smallest_alignment_gap_and_worst_recipe():
    stats = {"web": GradientStatistics(0.10, 4.0, 64.0, 16, 20), "code": GradientStatistics(0.13, 4.0, 64.0, 16, 20),
             "books": GradientStatistics(0.125, 2.0, 32.0, 16, 20),
             "copy": GradientStatistics(0.13, 4.0, 64.0, 16, 20)}
    reports = tiny_lr_reports({"web": 50.0, "code": 100.0, "books": 50.0, "copy": 50.0}, stats)
    # sorted alignments 0.10, 0.125, 0.13, 0.13: gaps 0.025, 0.005 (the tie is skipped) → Δa = 0.005
    assert alignment_gap([s.alignment for s in stats.values()]) == pytest.approx(0.005)
    by_recipe = {r.recipe: r for r in reports}
    assert by_recipe["code"].eta_upper == pytest.approx(0.005 / (100.0 * 8.0))
    assert by_recipe["books"].eta_upper == pytest.approx(0.005 / (50.0 * 4.0))
    floor, upper = recommended_lr_range(reports, torch.float32)
    assert floor == pytest.approx(2.0 ** -24) and upper == pytest.approx(0.005 / 800.0)


def test_lr_range_takes_each_maximum_over_recipes_as_eq58_defines_them():
    # A has the sharpest curvature and the largest gradient, B the noisiest gradient: App. C's G² and σ_g² are
    # maxima over datasets, so the bound is below either recipe's own.
    stats = {"A": GradientStatistics(0.1, 10.0, 0.1 * 16, 16, 20), "B": GradientStatistics(0.2, 0.1, 10.0 * 16, 16, 20)}
    reports = tiny_lr_reports({"A": 4.0, "B": 2.0}, stats)
    _, upper = recommended_lr_range(reports, torch.float32)
    assert upper == pytest.approx(0.1 / (4.0 * (10.0 + 10.0)))
    assert upper < min(r.eta_upper for r in reports)


def test_noise_trace_estimator_is_unbiased():
    # ℓ(θ; x) = ½‖θ − x‖², x ~ N(μ, s²I) in d dims: per-sample gradient θ − x, covariance trace σ_g² = d s²
    dim, std, batch_size, num_batches = 8, 0.5, 4, 20
    loss = lambda model, batch: 0.5 * ((model.theta - batch) ** 2).sum(dim=1).mean()
    model = Point(dim)
    generator = torch.Generator().manual_seed(2)
    draw = lambda rows: 1.0 + std * torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    estimates = []
    for _ in range(300):
        batches, val = [draw(batch_size) for _ in range(num_batches)], draw(64)
        stats = gradient_statistics(model, batches, val, loss_fn=loss)
        estimates.append(stats.grad_noise_trace)
    # single estimates have ~11% relative spread; the mean of 300 ~0.7%. Dividing by n instead of n − 1
    # would be 5% low.
    assert sum(estimates) / len(estimates) == pytest.approx(dim * std ** 2, rel=0.025)
    # the other statistics of the last draw, by hand (θ = 0, so gradients are −x̄)
    mean_grad = -torch.cat(batches).mean(0)
    assert stats.alignment == pytest.approx((-val.mean(0) @ mean_grad).item(), rel=1e-6)
    assert stats.grad_sq_max == pytest.approx(max((b.mean(0) ** 2).sum().item() for b in batches), rel=1e-6)
    assert (stats.batch_size, stats.num_batches) == (batch_size, num_batches)


def test_bf16_weights_at_tiny_lr_are_refused_and_fp32_accepted():
    refusal = check_precision(1e-6, torch.bfloat16)
    assert refusal is not None
    assert "bfloat16" in refusal and "fp32 master weights" in refusal and "1e-06" in refusal
    assert check_precision(1e-6, torch.float32) is None
    assert "Raise the lr" in check_precision(1e-8, torch.float32)  # fp32 can't be told to keep fp32 weights
    assert not update_survives(1e-6, torch.bfloat16) and update_survives(1e-6, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("weight", [1.0, 0.02, 3.7])
def test_precision_floor_agrees_with_actual_rounding(dtype, weight):
    floor = precision_floor_lr(dtype, weight_scale=weight)
    assert update_survives(1.1 * floor, dtype, weight)
    assert not update_survives(0.9 * floor, dtype, weight)
