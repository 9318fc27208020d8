"""A tuning grid trained as one stack of grid points, at about the cost of one fit.

Every grid point of a fit job draws the same views and batch order (the sampler is seeded by the
job's seed), so the points differ only in their parameters and per-point hyper-parameters.
:func:`stack_points` builds one method whose parameters are the points' parameters stacked on a
leading axis G and whose per-point scalars (its class's ``point_attributes``) are ``[G, 1, 1]``
tensors; the method's own ``_train_step`` then runs unchanged on the stack
(:mod:`croft_pipeline.methods.broadcast`), so each method's math, croft_faithful's stale graph
and double optimizer steps included, has a single source. :class:`StackedSGD` is
``torch.optim.SGD``'s update with a per-point lr, momentum and weight decay. The training loop,
its guard and its best-epoch rule are :func:`croft_pipeline.methods.trainer.fit_stack`'s, for a
stack as for one method.

Points train together when :meth:`TrainableMethod.batch_signature` is equal (every config value
but the per-point ones: a grid over ``reduction``, ``gen_step`` or ``epochs`` makes one stack per
value; :func:`croft_pipeline.methods.selection.fit_points`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from croft_pipeline.methods.trainer import TrainableMethod


class StackedSGD:
    """``torch.optim.SGD`` (no dampening, no Nesterov) on parameters stacked over G points, with
    a per-point lr (``param_groups[0]["lr"]``), momentum and weight decay (``[G]`` tensors).

    Per point it is SGD's update: ``d = g + wd·p``; ``buf = d`` on the first step, else
    ``buf = momentum·buf + d``; ``p -= lr·buf``.
    """

    def __init__(self, params: list[nn.Parameter], momentum: Tensor, weight_decay: Tensor):
        self.param_groups = [{"params": list(params), "lr": None}]
        self.momentum, self.weight_decay = momentum, weight_decay
        self.buffers: dict[int, Tensor] = {}  # parameter index -> momentum buffer
        # as SGD skips a zero weight decay / momentum (and no device sync per step)
        self.decays, self.accelerates = bool(weight_decay.any()), bool(momentum.any())

    @property
    def params(self) -> list[nn.Parameter]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        lr = self.param_groups[0]["lr"]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            per_point = (-1,) + (1,) * (p.ndim - 1)
            d_p = p.grad
            if self.decays:
                d_p = d_p + self.weight_decay.view(per_point) * p
            if self.accelerates:
                if i not in self.buffers:
                    self.buffers[i] = d_p.clone()
                else:
                    self.buffers[i].mul_(self.momentum.view(per_point)).add_(d_p)
                d_p = self.buffers[i]
            p.sub_(lr.view(per_point) * d_p)

    def keep(self, slots: Tensor, params: list[nn.Parameter]) -> None:
        """Only the points at ``slots`` stay; ``params`` are the stack's new parameters."""
        group = self.param_groups[0]
        group["params"], group["lr"] = list(params), group["lr"][slots]
        self.momentum, self.weight_decay = self.momentum[slots], self.weight_decay[slots]
        self.buffers = {i: buffer[slots] for i, buffer in self.buffers.items()}


def point_vector(values: Sequence[float], device: torch.device) -> Tensor:
    return torch.tensor([float(v) for v in values], dtype=torch.float32, device=device)


def _set(module: nn.Module, name: str, value: Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner), leaf, value)


def stack_points(methods: Sequence[TrainableMethod]) -> TrainableMethod:
    """One method training every point of ``methods`` (built, and prepared, with one batch
    signature): their parameters and buffers stacked on a leading axis, per-point scalars as
    ``[G, 1, 1]`` tensors, and one :class:`StackedSGD` per parameter group."""
    first, device = methods[0], methods[0].device
    stack = copy.copy(first)
    stack.module = copy.deepcopy(first.module)
    tensors = [*first.module.named_parameters(), *first.module.named_buffers()]
    for name, tensor in tensors:
        values = torch.stack(
            [
                m.module.get_parameter(name)
                if isinstance(tensor, nn.Parameter)
                else m.module.get_buffer(name)
                for m in methods
            ]
        ).detach()
        _set(
            stack.module, name, nn.Parameter(values) if isinstance(tensor, nn.Parameter) else values
        )
    for attr in first.point_attributes or ():
        setattr(
            stack, attr, point_vector([getattr(m, attr) for m in methods], device).view(-1, 1, 1)
        )
    momentum = point_vector([m.config["momentum"] for m in methods], device)
    weight_decay = point_vector([m.config["weight_decay"] for m in methods], device)
    stack.optimizers = [
        StackedSGD(group, momentum, weight_decay) for group in stack._param_groups()
    ]
    return stack


def keep_points(stack: TrainableMethod, slots: Tensor) -> None:
    """Drop every point of ``stack`` but those at ``slots`` (parameters with their gradients,
    buffers, per-point scalars, optimizer state): a dropped point's values leave the stack."""
    new: dict[int, nn.Parameter] = {}
    for name, p in list(stack.module.named_parameters()):
        kept = nn.Parameter(p.detach()[slots].clone())
        if p.grad is not None:
            kept.grad = p.grad[slots].clone()
        new[id(p)] = kept
        _set(stack.module, name, kept)
    for name, buffer in list(stack.module.named_buffers()):
        _set(stack.module, name, buffer[slots])
    for attr in stack.point_attributes or ():
        setattr(stack, attr, getattr(stack, attr)[slots])
    for optimizer in stack.optimizers:
        optimizer.keep(slots, [new[id(p)] for p in optimizer.params])
