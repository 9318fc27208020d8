"""A tuning grid trained as one stack of grid points, at about the cost of one fit.

Every grid point of a fit job draws the same views and batch order (the sampler is seeded by the
job's seed), so the points differ only in their parameters and per-point hyper-parameters.
:func:`stack_points` builds one method whose parameters are the points' parameters stacked on a
leading axis G and whose per-point scalars (its class's ``point_attributes``) are ``[G, 1, 1]``
tensors; the method's own ``_train_step`` then runs unchanged on the stack
(:mod:`croft_pipeline.methods.broadcast`), so each method's math, croft_faithful's stale graph
and double optimizer steps included, has a single source. :class:`StackedSGD` is
``torch.optim.SGD``'s update with a per-point lr, momentum and weight decay. A point whose step
goes non-finite gets the sequential path's error and leaves the stack; the others go on.

Points train together when :meth:`TrainableMethod.batch_signature` is equal (every config value
but the per-point ones: a grid over ``reduction``, ``gen_step`` or ``epochs`` makes one stack per
value); a point alone, or a method without a signature, is fitted by its own ``fit``.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from croft_pipeline.methods.base import (
    EvalSet,
    FitReport,
    Method,
    NonFiniteLossError,
    TrainSet,
    accuracy,
)
from croft_pipeline.methods.trainer import (
    TrainableMethod,
    batch_indices,
    draw_epoch,
    epoch_lr,
)

Fit = FitReport | NonFiniteLossError  # what fitting one grid point gives


def fit_or_error(method: Method, train: TrainSet, val: EvalSet) -> Fit:
    """The sequential path: ``method.fit``, or the error of a diverged fit."""
    try:
        return method.fit(train, val)
    except NonFiniteLossError as exc:
        return exc


def fit_points(methods: Sequence[Method], train: TrainSet, val: EvalSet) -> list[Fit]:
    """Each method's fit (in order): stacks of the points that can train together, the rest
    one by one. Each fitted method ends with its best-epoch weights, as after ``fit``."""
    fits: list[Fit | None] = [None] * len(methods)
    stacks: dict[tuple, list[int]] = defaultdict(list)
    for i, method in enumerate(methods):
        signature = method.batch_signature() if isinstance(method, TrainableMethod) else None
        if signature is None:
            fits[i] = fit_or_error(method, train, val)
        else:
            stacks[signature].append(i)
    for members in stacks.values():
        if len(members) == 1:
            fits[members[0]] = fit_or_error(methods[members[0]], train, val)
            continue
        for i, fit in zip(
            members, fit_stack([methods[i] for i in members], train, val), strict=True
        ):
            fits[i] = fit
    return fits  # type: ignore[return-value]


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


def _point_vector(values: Sequence[float], device: torch.device) -> Tensor:
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
        values = torch.stack([m.module.get_parameter(name) if isinstance(tensor, nn.Parameter)
                              else m.module.get_buffer(name) for m in methods]).detach()  # fmt: skip
        _set(
            stack.module, name, nn.Parameter(values) if isinstance(tensor, nn.Parameter) else values
        )
    for attr in first.point_attributes or ():
        setattr(
            stack, attr, _point_vector([getattr(m, attr) for m in methods], device).view(-1, 1, 1)
        )
    momentum = _point_vector([m.config["momentum"] for m in methods], device)
    weight_decay = _point_vector([m.config["weight_decay"] for m in methods], device)
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


def _verdicts(stack: TrainableMethod, terms: dict[str, list[float]]) -> list[tuple | None]:
    """The sequential guard's verdict per point of a step: ``None``, or ``(what, value)`` for
    its first non-finite term, else its first parameter (``named_parameters`` order) with a
    non-finite entry."""
    finite = {name: torch.isfinite(p.detach()).flatten(1).all(1).tolist()
              for name, p in stack.module.named_parameters()}  # fmt: skip
    verdicts: list[tuple | None] = []
    for slot in range(len(next(iter(finite.values())))):
        bad = next(((key, v[slot]) for key, v in terms.items() if not math.isfinite(v[slot])), None)
        if bad is None:
            bad = next((
                (f"parameter {name}", math.nan) for name, ok in finite.items() if not ok[slot]
            ), None)  # fmt: skip
        verdicts.append(bad)
    return verdicts


def fit_stack(methods: Sequence[TrainableMethod], train: TrainSet, val: EvalSet) -> list[Fit]:
    """:meth:`TrainableMethod.fit` for every point of ``methods`` at once (one batch signature):
    the same draws, schedule, guard and best-epoch rule, per point."""
    start = time.perf_counter()
    for method in methods:
        method._prepare(train)
    stack = stack_points(methods)
    device, config = stack.device, stack.config
    features = train.features.to(device, torch.float32)
    labels = train.labels.to(device, torch.long)
    val_x, val_y = val.features.to(device, torch.float32), val.labels.to(device, torch.long)
    sampler = torch.Generator().manual_seed(stack.seed)  # CPU: the same draws on any device
    epochs = int(config["epochs"])
    alive = list(range(len(methods)))  # the point behind each slot of the stack
    best = [(-1, -math.inf, method.state_dict()) for method in methods]
    histories: list[list[dict[str, float]]] = [[] for _ in methods]
    errors: dict[int, NonFiniteLossError] = {}
    for epoch in range(epochs):
        lrs = {point: epoch_lr(methods[point].config, epoch) for point in alive}
        stack._set_lr(_point_vector([lrs[point] for point in alive], device))
        x_epoch, order = draw_epoch(features, sampler)
        sums: dict[int, dict[str, float]] = {point: defaultdict(float) for point in alive}
        correct: dict[int, int] = dict.fromkeys(alive, 0)
        seen = 0
        stack.module.train()
        for step, idx in enumerate(batch_indices(order, int(config["batch_size"]))):
            terms, logits = stack._train_step(x_epoch[idx], labels[idx])
            values = {key: value.detach().expand(len(alive), 1, 1).flatten().tolist()
                      for key, value in terms.items()}  # fmt: skip
            hits = logits.detach().argmax(-1).eq(labels[idx]).sum(-1).expand(len(alive)).tolist()
            kept = []
            for slot, bad in enumerate(_verdicts(stack, values)):
                point = alive[slot]
                if bad is not None:
                    errors[point] = NonFiniteLossError(methods[point].name, epoch, step, *bad)
                    continue
                kept.append(slot)
                for key, per_point in values.items():
                    sums[point][key] += per_point[slot]
                correct[point] += hits[slot]
            seen += len(idx)
            if len(kept) < len(alive):
                alive = [alive[slot] for slot in kept]
                if not alive:
                    break
                keep_points(stack, torch.tensor(kept, device=device))
        if not alive:
            break
        with torch.no_grad():
            stack.module.eval()
            val_logits = stack._logits(val_x).expand(len(alive), *val_y.shape, -1)
        val_accs = [accuracy(val_logits[slot], val_y) for slot in range(len(alive))]
        improved = any(acc > best[point][1] for acc, point in zip(val_accs, alive, strict=True))
        state = stack.state_dict() if improved else {}
        for slot, (point, val_acc) in enumerate(zip(alive, val_accs, strict=True)):
            record = {key: value / (step + 1) for key, value in sums[point].items()}
            record.update(train_accuracy=correct[point] / seen, val_accuracy=val_acc, lr=lrs[point])
            histories[point].append(record)
            if val_acc > best[point][1]:
                best[point] = (epoch, val_acc, {k: v[slot].clone() for k, v in state.items()})
    share = (time.perf_counter() - start) / len(methods)  # each point's share of the stack's time
    fits: list[Fit] = []
    for point, method in enumerate(methods):
        if point in errors:
            fits.append(errors[point])
            continue
        epoch, val_acc, weights = best[point]
        method.load_state_dict(weights)
        fits.append(FitReport(epoch, val_acc, epochs, histories[point], share))
    return fits
