"""Batch norm and convolution whose double backward costs what its arithmetic does (CPU, fp32).

Exact GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, Eq. (6)) differentiates the input gradient
∇_z ℓ(z; θ) with respect to θ: the backward pass at z is built as a graph (``create_graph``) and differentiated
again. Autograd's derivative of batch norm's backward (ATen ``batchnorm_double_backward``) is a composite of
some thirty whole-tensor operations per layer, and the weight derivative of a convolution's input gradient is
computed as a convolution of batch-transposed copies; on a CPU at the quick scale these cost more than the
convolutions of the step (docs/performance.md, benchmarks/step_profile.py).

Inside :func:`fused_double_backward` (entered by :func:`fastadv.attacks.grad.input_grad` for its
``create_graph`` forward when the run's ``runtime.double_backward`` is ``fused``), ``F.batch_norm`` in training
mode and ``F.conv2d`` run as the autograd functions below. Their forward and every first-order backward call the
ATen kernels autograd's own nodes call (bit-identical values); only the derivative of the input gradient taken
by that ``create_graph`` backward is new:

* batch norm, per channel over M = N·H·W elements, x̂ = (x − μ)·r, r = 1/√(σ² + ε), a = γ·r, the input gradient
  gx = a·(gy − m(gy) − x̂·m(gy·x̂)) (m: the channel mean), upstream v (derived by hand; checked against
  autograd's double backward and finite differences in tests/test_double_backward.py)::

      ∂⟨v,gx⟩/∂gy = a·(v − m(v) − x̂·m(v·x̂))
      ∂⟨v,gx⟩/∂γ  = r·Q,   Q = Σ v·gy − M·(m(gy)·m(v) + m(gy·x̂)·m(v·x̂))
      ∂⟨v,gx⟩/∂x  = γr²·[m(gy)·m(v·x̂) + m(v)·m(gy·x̂) − gy·m(v·x̂) − v·m(gy·x̂)
                         + x̂·(2·m(v·x̂)·m(gy·x̂) − Q/M)]

  five channel reductions and five fused passes;
* convolution, gx = Wᵀ⋆gy (the input gradient), upstream v: ∂/∂gy = W⋆v (a forward convolution) and ∂/∂W = the
  weight gradient of a convolution with input v and output gradient gy (ATen ``convolution_backward``).

The contract that makes this exact: the first backward through a node built in the context is ``input_grad``'s
own ``create_graph`` backward, which asks for the input gradient only (``autograd.grad(loss, δ)``); later
backward passes (the training loss's, through the same forward) compute what autograd would, with ATen's
kernels. A third derivative raises.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

aten = torch.ops.aten
KINDS = ("native", "fused")  # runtime.double_backward
_KIND = contextvars.ContextVar("fastadv_double_backward", default="native")


@contextlib.contextmanager
def double_backward_as(kind: str):
    """Inside: ``input_grad(create_graph=True)`` builds its graph as ``kind`` says (native | fused)."""
    if kind not in KINDS:
        raise ValueError(f"double backward {kind!r}: valid are {', '.join(KINDS)}")
    token = _KIND.set(kind)
    try:
        yield
    finally:
        _KIND.reset(token)


def fused_requested() -> bool:
    return _KIND.get() == "fused"


def _refuse_third_derivative() -> None:
    # not once_differentiable: its error node hangs off detached copies, so autograd.grad(..., inputs=θ)
    # prunes it and silently returns the third derivative without this term
    if torch.is_grad_enabled():
        raise RuntimeError("a third derivative through runtime.double_backward: fused is not supported "
                           "(its double backward is not differentiable); use runtime.double_backward: native")


def _first_graph_backward(ctx) -> bool:
    """Whether this backward through a node built in the context is input_grad's own ``create_graph`` backward
    (the module docstring's contract): the first one, with grad mode on. Later ones compute what autograd would."""
    if torch.is_grad_enabled() and not ctx.input_grad_taken:
        ctx.input_grad_taken = True
        return True
    return False


def _channel_view(*ts: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, ...], list[int], bool]:
    """The tensors with channels last in memory and in shape when they are 4-d and all channels-last (then a
    per-channel vector broadcasts along the contiguous axis), else as given (any dimensionality ≥ 2); with the
    reduction dims, the shape a per-channel vector takes and whether they were permuted (channels_last)."""
    if ts[0].dim() == 4 and all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
                                for t in ts):
        return [t.permute(0, 2, 3, 1) for t in ts], (0, 1, 2), [-1], True
    # the flag, not the shape, says how to permute back: (N, C) input's per-channel shape is [-1] too
    return list(ts), tuple(d for d in range(ts[0].dim()) if d != 1), [-1] + [1] * (ts[0].dim() - 2), False


class _BatchNormInputGrad(torch.autograd.Function):
    """gx of training-mode batch norm as a differentiable function of (gy, x, γ); the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps):
        ctx.save_for_backward(gy, x, weight, mean, invstd)
        return aten.native_batch_norm_backward(gy, x, weight, None, None, mean, invstd, True, eps,
                                               [True, False, False])[0]

    @staticmethod
    def backward(ctx, v):
        _refuse_third_derivative()
        gy0, x0, weight, mean, invstd = ctx.saved_tensors
        (gy, x, v), dims, shape, channels_last = _channel_view(gy0, x0, v)
        m = x0.numel() // x0.shape[1]

        def c(t):  # a per-channel vector, broadcastable against the (viewed) tensors
            return t.reshape(shape)

        xh = torch.addcmul(c(-mean * invstd), x, c(invstd))
        m_gy, m_v = gy.sum(dims) / m, v.sum(dims) / m
        m_gx, m_vx = (gy * xh).sum(dims) / m, (v * xh).sum(dims) / m
        q = (v * gy).sum(dims) - m * (m_gy * m_v + m_gx * m_vx)
        a, k = weight * invstd, weight * invstd * invstd
        g_gy = torch.addcmul(c(-a * m_v), v, c(a)).addcmul_(xh, c(-a * m_vx))
        g_x = torch.addcmul(c(k * (m_gy * m_vx + m_v * m_gx)), gy, c(-k * m_vx))
        g_x.addcmul_(v, c(-k * m_gx)).addcmul_(xh, c(k * (2 * m_vx * m_gx - q / m)))
        if channels_last:
            g_gy, g_x = g_gy.permute(0, 3, 1, 2), g_x.permute(0, 3, 1, 2)
        return g_gy, g_x, q * invstd, None, None, None


class _BatchNorm(torch.autograd.Function):
    """Training-mode batch norm (ATen ``native_batch_norm``, running statistics updated in place)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.input_grad_taken = eps, False
        return out

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        if _first_graph_backward(ctx):
            return _BatchNormInputGrad.apply(gy, x, weight, mean, invstd, ctx.eps), None, None, None, None, None, None
        gx, gw, gb = aten.native_batch_norm_backward(gy, x, weight, None, None, mean, invstd, True, ctx.eps,
                                                     list(ctx.needs_input_grad[:3]))
        return gx, gw, gb, None, None, None, None


class _ConvInputGrad(torch.autograd.Function):
    """gx = Wᵀ⋆gy of a convolution as a differentiable function of (gy, W); the module docstring."""

    @staticmethod
    def forward(ctx, gy, x, weight, geometry):
        ctx.save_for_backward(gy, weight)
        ctx.geometry = geometry
        return aten.convolution_backward(gy, x, weight, None, *geometry, [True, False, False])[0]

    @staticmethod
    def backward(ctx, v):
        _refuse_third_derivative()
        gy, weight = ctx.saved_tensors
        stride, padding, dilation, _, _, groups = ctx.geometry
        g_gy = F.conv2d(v, weight, None, stride, padding, dilation, groups) if ctx.needs_input_grad[0] else None
        g_w = (aten.convolution_backward(gy, v, weight, None, *ctx.geometry, [False, True, False])[1]
               if ctx.needs_input_grad[2] else None)
        return g_gy, None, g_w, None


class _Conv2d(torch.autograd.Function):
    """``F.conv2d`` (ATen ``convolution``) whose input gradient, when taken with ``create_graph``, is
    :class:`_ConvInputGrad`."""

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        stride, padding, dilation, _, _, groups = geometry
        ctx.save_for_backward(x, weight)
        ctx.geometry, ctx.bias_sizes, ctx.input_grad_taken = geometry, None if bias is None else [bias.shape[0]], False
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        if _first_graph_backward(ctx):
            return _ConvInputGrad.apply(gy, x, weight, ctx.geometry), None, None, None
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.bias_sizes is not None and ctx.needs_input_grad[2]]
        gx, gw, gb = aten.convolution_backward(gy, x, weight, ctx.bias_sizes, *ctx.geometry, mask)
        return gx, gw, gb, None


def _pair(v) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)


def _conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, str) or input.dim() != 4:  # "same" / "valid", unbatched: autograd's own
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    geometry = (_pair(stride), _pair(padding), _pair(dilation), False, [0, 0], groups)
    return _Conv2d.apply(input, weight, bias, geometry)


def _batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if not training or weight is None or bias is None:  # evaluation mode, no affine: autograd's own
        return F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return _BatchNorm.apply(input, weight, bias, running_mean, running_var, momentum, eps)


class _FusedDoubleBackward(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.batch_norm:
            return _batch_norm(*args, **kwargs)
        if func is F.conv2d:
            return _conv2d(*args, **kwargs)
        return func(*args, **kwargs)


def fused_double_backward():
    """Inside: batch norm and 2-d convolutions build graph nodes whose double backward is fused (module
    docstring). Enter it only around the forward of an input gradient taken with ``create_graph``."""
    return _FusedDoubleBackward()
