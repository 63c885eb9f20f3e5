"""How tiny is "tiny"? The appendix tools of Wang et al. (arXiv 2512.24503) for picking a proxy LR.

A tiny-LR proxy ranks recipes well only inside a window of learning rates:

- **above**, Eq. 58 (App. C): the second-order (curvature) term of a step must not reorder recipes. One SGD step
  on recipe i changes the validation loss by ``E[Δℓ_val] = −η a_i + ½η² (b_i + tr(HΣ_i)/B)``, with the
  *alignment* ``a_i = g_val·g_i`` and ``b_i = g_iᵀHg_i``. Two recipes keep the order of their first-order terms
  while ``η |a_i − a_j| ≫ ½η² |b_i − b_j + (tr(HΣ_i) − tr(HΣ_j))/B|``, and the right side is at most
  ``η² λ_max (G² + σ_g²/B)`` with ``G² = max_k ‖g_k‖²``, ``σ_g² = max_k tr Σ_k`` over the recipes, ``λ_max = ‖H‖₂``.
  With ``Δa = min_{i≠j} |a_i − a_j|``, one bound holds for every pair:
  ``η_tiny ≤ Δa / (λ_max (G² + σ_g²/B))``. Here each recipe is warmed up and measured on its own, so λ_max, G² and
  σ_g²/B are each the largest over the recipes (``recommended_lr_range``); the per-recipe bound that
  ``tiny_lr_reports`` also prints shows which recipe drives it.
- **below**: float precision. An AdamW step moves a weight by about ``lr`` (its normalised step
  m̂/(√v̂+ε) is of order 1); a move smaller than half the spacing of floats near the weight is rounded away.
  The training-horizon floor c0/T of Theorem 2 depends on the step budget and is not estimated here.

The quantities come from a short warm-up (the same init, a few hundred steps per recipe)::

    # models[name]: the proxy after a short warm-up on recipe `name`; batches[name]: ~20 of its minibatches
    stats = {name: gradient_statistics(models[name], batches[name], val_batch) for name in models}
    lam = {name: hessian_max_eigenvalue(lambda: causal_lm_loss(models[name], val_batch), trainable(models[name]))
           for name in models}
    reports = tiny_lr_reports(lam, stats)             # one TinyLRReport per recipe, Eq. 58 with the sweep's Δa
    floor_lr, upper_lr = recommended_lr_range(reports, torch.float32)
    check_precision(1e-6, torch.bfloat16)             # -> "learning rate 1e-06 is below the precision floor …"

Gradients are lists of per-parameter tensors (never one flattened copy of the model), and every function here
uses ``torch.autograd.grad``, so the optimizer's ``.grad`` buffers are never written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
Grads = list[torch.Tensor]


def causal_lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss (nats per token) of a transformers causal LM on a batch of token ids."""
    return model(input_ids=batch, labels=batch).loss


def trainable(model: torch.nn.Module) -> list[torch.Tensor]:
    """The parameters the optimizer updates (tied weights once)."""
    return [p for p in model.parameters() if p.requires_grad]


def _dot(a: Grads, b: Grads) -> float:
    """Σ_p <a_p, b_p> over parameter tensors, accumulated in fp32 and summed on device (one sync)."""
    products = [torch.dot(x.reshape(-1).float(), y.reshape(-1).float()) for x, y in zip(a, b)]
    return torch.stack(products).sum().item()


def _gradient(model: torch.nn.Module, batch: torch.Tensor, loss_fn: LossFn, params: list[torch.Tensor]) -> Grads:
    """∇ℓ(θ; batch) as new tensors; unused parameters get zeros. `.grad` is left as it was."""
    with torch.enable_grad():
        return list(torch.autograd.grad(loss_fn(model, batch), params, allow_unused=True, materialize_grads=True))


# ---------------------------------------------------------------------------------------------- curvature


def hessian_max_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor], *, iters: int = 20,
                           tol: float = 1e-3, seed: int = 0) -> float:
    """λ_max of ∇²loss by power iteration on Hessian-vector products (Eq. 58's curvature; App. D.2.4's warm-up).

    ``v ← Hv/‖Hv‖`` from a seeded Gaussian start; the estimate is the Rayleigh quotient vᵀHv (‖v‖ = 1), and the
    loop stops when it changes by less than ``tol`` relative, or after ``iters`` products. Hv is the double
    backward ``∂(∇loss·v)/∂θ``: the gradient graph is built once and reused by every product.

    Power iteration finds the eigenvalue of largest *magnitude*; its absolute value is returned. That is λ_max
    when positive curvature dominates (as in LM training) and an upper bound on λ_max otherwise, so Eq. 58
    stays on the safe side. For Eq. 58, ``loss_fn`` is the validation loss at the recipe's warm-up point.

    Attention runs in SDPA's math backend inside this call: the fused flash/memory-efficient kernels have no
    double backward (on CPU: "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is
    not implemented"), the math backend is plain differentiable ops and gives the eager result. Models must
    use ``attn_implementation`` "sdpa" or "eager" (raysweep builds "sdpa"). Run it on fp32 weights.
    """
    if iters < 1:
        raise ValueError(f"power iteration needs at least one Hessian-vector product, got iters={iters}")
    generator = torch.Generator().manual_seed(seed)
    vector = [torch.randn(p.shape, generator=generator).to(p) for p in params]
    norm = math.sqrt(_dot(vector, vector))
    vector = [v / norm for v in vector]
    eigenvalue = math.inf
    with sdpa_kernel(SDPBackend.MATH), torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(), params, create_graph=True, allow_unused=True, materialize_grads=True)
        # a gradient with no graph is constant in θ: its Hessian rows are zero and add nothing to Hv
        live = [i for i, g in enumerate(grads) if g.requires_grad]
        for _ in range(iters):
            product = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[vector[i] for i in live],
                                          retain_graph=True, allow_unused=True, materialize_grads=True)
            previous, eigenvalue = eigenvalue, _dot(vector, product)
            norm = math.sqrt(_dot(product, product))
            if norm == 0.0:
                return 0.0
            vector = [h.detach() / norm for h in product]
            if abs(eigenvalue - previous) < tol * abs(eigenvalue):
                break
    return abs(eigenvalue)


# ----------------------------------------------------------------------------------------- gradient noise


@dataclass(frozen=True)
class GradientStatistics:
    """First-order quantities of Eq. 58 for one recipe at one point θ."""

    alignment: float
    """a_i = g_val·ḡ_i: the validation gradient dotted with the recipe's mean minibatch gradient."""
    grad_sq_max: float
    """G² = max_b ‖ĝ_b‖², the largest squared minibatch-gradient norm seen; it bounds ‖g_i‖² from above (the
    norm of a mean is at most the largest norm) and so keeps Eq. 58 conservative."""
    grad_noise_trace: float
    """σ_g² = tr Cov of the *per-sequence* gradient, so a minibatch of B sequences has noise σ_g²/B."""
    batch_size: int
    """B, sequences per minibatch."""
    num_batches: int


def gradient_statistics(model: torch.nn.Module, batches: Iterable[torch.Tensor], val_batch: torch.Tensor,
                        loss_fn: LossFn = causal_lm_loss) -> GradientStatistics:
    """Alignment a_i, G² and σ_g² of one recipe, by Monte Carlo over ``batches`` (about 20) at fixed θ (Eq. 58).

    Each ĝ_b is the gradient of the mean loss over the B sequences of batch b. With n independent batches,
    ``S = Σ_b ‖ĝ_b − ḡ‖² / (n − 1)`` is an unbiased estimate of tr Cov(ĝ_b) = σ_g²/B, hence
    ``σ_g² = B · S``: the per-sequence variance that Eq. 58 divides by B. (A sequence, not a token, is the
    sample: tokens of one sequence are correlated.) The sum is accumulated with Welford's update, so memory is
    two gradients, not n. ``val_batch`` should be as large as memory allows: g_val stands in for the
    full validation gradient. Batches must all hold B sequences, drawn independently from the recipe.
    """
    params = trainable(model)
    val_grad = _gradient(model, val_batch, loss_fn, params)
    mean = [torch.zeros_like(p) for p in params]
    squared_deviations, grad_sq_max, batch_size, count = 0.0, 0.0, None, 0
    for count, batch in enumerate(batches, start=1):
        if batch_size is not None and batch.shape[0] != batch_size:
            raise ValueError(f"batch {count} has {batch.shape[0]} sequences, the first had {batch_size}: "
                             "σ_g² = B·S needs one batch size")
        batch_size = batch.shape[0]
        grad = _gradient(model, batch, loss_fn, params)
        grad_sq_max = max(grad_sq_max, _dot(grad, grad))
        delta = [g - m for g, m in zip(grad, mean)]
        mean = [m + d / count for m, d in zip(mean, delta)]
        squared_deviations += _dot(delta, [g - m for g, m in zip(grad, mean)])
    if count < 2:
        raise ValueError(f"gradient_statistics needs at least 2 batches to estimate the noise, got {count}")
    return GradientStatistics(alignment=_dot(val_grad, mean), grad_sq_max=grad_sq_max,
                              grad_noise_trace=batch_size * squared_deviations / (count - 1),
                              batch_size=batch_size, num_batches=count)


# ------------------------------------------------------------------------------------------------ Eq. 58


def eta_tiny_upper_bound(delta_a: float, lambda_max: float, grad_sq_max: float, grad_noise_trace: float,
                         batch_size: int) -> float:
    """Eq. 58: ``η_tiny ≤ Δa / (λ_max (G² + σ_g²/B))``, the largest LR whose curvature term cannot reorder
    recipes whose alignments differ by Δa (App. C's derivation, in the module docstring)."""
    if delta_a <= 0 or lambda_max <= 0 or batch_size < 1:
        raise ValueError(f"Eq. 58 needs Δa > 0, λ_max > 0 and B ≥ 1; got Δa={delta_a}, λ_max={lambda_max}, "
                         f"B={batch_size}")
    return delta_a / (lambda_max * (grad_sq_max + grad_noise_trace / batch_size))


def alignment_gap(alignments: Sequence[float]) -> float:
    """Δa: the smallest gap between the alignments of two recipes, i.e. between neighbours once sorted.

    Recipes whose alignments coincide exactly are tied (no learning rate separates them) and are skipped;
    every other pair must keep its order, so the closest pair sets the bound.
    """
    ordered = sorted(alignments)
    gaps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
    if not gaps:
        raise ValueError(f"need two recipes with different alignments to define Δa, got {list(alignments)}")
    return min(gaps)


@dataclass(frozen=True)
class TinyLRReport:
    """One recipe's measurements and its Eq. 58 bound, for the ``estimate-lr`` table."""

    recipe: str
    lambda_max: float
    alignment: float
    grad_sq_max: float
    grad_noise_trace: float
    batch_size: int
    alignment_gap: float
    """Δa of the whole sweep: the same for every recipe."""
    eta_upper: float


def tiny_lr_reports(lambda_max: Mapping[str, float], stats: Mapping[str, GradientStatistics]) -> list[TinyLRReport]:
    """Eq. 58 per recipe, each with its own λ_max, G², σ_g², B and the sweep's smallest alignment gap Δa: which
    recipe drives the bound (the bound itself takes each maximum over recipes: ``recommended_lr_range``)."""
    if set(lambda_max) != set(stats):
        raise ValueError(f"λ_max and gradient statistics name different recipes: {sorted(lambda_max)} vs "
                         f"{sorted(stats)}")
    delta_a = alignment_gap([s.alignment for s in stats.values()])
    return [TinyLRReport(name, lambda_max[name], s.alignment, s.grad_sq_max, s.grad_noise_trace, s.batch_size,
                         delta_a, eta_tiny_upper_bound(delta_a, lambda_max[name], s.grad_sq_max,
                                                       s.grad_noise_trace, s.batch_size))
            for name, s in stats.items()]


def recommended_lr_range(reports: Sequence[TinyLRReport], param_dtype: torch.dtype = torch.float32,
                         weight_scale: float = 1.0) -> tuple[float, float]:
    """[floor, upper]: the precision floor of ``param_dtype`` and Eq. 58's uniform bound, with the largest λ_max,
    G² and σ_g²/B over the recipes as App. C defines them (at most the smallest per-recipe bound, and below it when
    the largest curvature and the largest gradients come from different recipes).

    floor > upper means the window is empty (e.g. bf16 weights): report it rather than pick a rate.
    """
    worst = max(reports, key=lambda r: r.lambda_max).lambda_max
    upper = eta_tiny_upper_bound(reports[0].alignment_gap, worst, max(r.grad_sq_max for r in reports),
                                 max(r.grad_noise_trace / r.batch_size for r in reports), 1)
    return precision_floor_lr(param_dtype, weight_scale=weight_scale), upper


# --------------------------------------------------------------------------------------- precision floor


def half_spacing(weight: float, dtype: torch.dtype) -> float:
    """Half the gap between ``|weight|`` and the next float of ``dtype`` away from zero: eps·2^⌊log2|w|⌋ / 2.

    eps is the relative spacing at 1 (fp32 2^-23 ≈ 1.19e-7, bf16 2^-7 ≈ 7.8e-3, fp16 2^-10 ≈ 9.8e-4). A move
    away from zero by less than this rounds back to the weight (round to nearest). Toward zero the spacing
    can be half as large (just below a power of two), so this is the binding direction.
    """
    if weight == 0:
        raise ValueError("the precision floor is relative to a weight's magnitude; weight must be non-zero")
    _, exponent = math.frexp(abs(weight))  # |w| = m·2^exponent with m in [0.5, 1)
    return torch.finfo(dtype).eps * 2.0 ** (exponent - 1) / 2


def precision_floor_lr(dtype: torch.dtype, typical_update: float = 1.0, weight_scale: float = 1.0) -> float:
    """The LR below which AdamW updates of weights of magnitude ``weight_scale`` stored in ``dtype`` vanish.

    An AdamW step is ``lr · typical_update`` with typical_update = |m̂/(√v̂+ε)| ≈ 1 (exactly 1 on the first
    step; smaller when the gradient's sign fluctuates, which raises the floor). It is lost when below
    ``half_spacing(weight_scale)``, so ``floor = eps·2^⌊log2 w⌋ / (2 · typical_update)``.
    ``weight_scale = 1`` because LayerNorm gains start at exactly 1 and are the first to freeze; linear and
    embedding weights (init std 0.02) have a floor ~64× lower. fp32 at w = 1: 6.0e-8; bf16: 3.9e-3.
    """
    return half_spacing(weight_scale, dtype) / typical_update


def check_precision(lr: float, param_dtype: torch.dtype, weight_scale: float = 1.0,
                    typical_update: float = 1.0) -> str | None:
    """None when ``lr`` is above the precision floor of weights stored in ``param_dtype``, else why not.

    ``param_dtype`` is the dtype of the weights the optimizer writes (the master weights): bf16 autocast
    over fp32 parameters is fp32 here.
    """
    floor = precision_floor_lr(param_dtype, typical_update, weight_scale)
    if lr >= floor:
        return None
    name = str(param_dtype).removeprefix("torch.")
    if torch.finfo(param_dtype).bits < 32:
        advice = (f"Keep fp32 master weights (train the proxy in float32, or autocast so only activations are "
                  f"{name}); raising the lr to {floor:.2g} would leave the tiny-LR regime the ranking relies on.")
    else:
        advice = f"Raise the lr to at least {floor:.2g}: no smaller step moves {name} weights of this size."
    spacing = half_spacing(weight_scale, param_dtype)
    return (f"learning rate {lr:g} is below the precision floor of {name} weights ({floor:.2g}): an AdamW step "
            f"moves a weight by about lr × {typical_update:g} = {lr * typical_update:.2g}, less than half the "
            f"spacing of {name} numbers near |w| = {weight_scale:g} ({spacing:.2g}), so rounding discards the "
            f"update and those weights never train (LayerNorm gains start at 1). {advice}")
