"""The one training loop (:func:`fit_stack`, for one method or a stack of grid points): per-epoch
LR schedule, one cached view per image, the non-finite guard, best-val epoch.

docs/algorithm.md §8: SGD, cosine schedule stepped per epoch after a constant warm-up epoch;
the epoch kept is the one with the best ID-validation accuracy (the first one on ties).
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
from torch import Tensor

from croft_pipeline.methods.base import (
    EvalSet,
    FitReport,
    LogFn,
    Method,
    NonFiniteLossError,
    TrainSet,
    accuracy,
    no_log,
)
from croft_pipeline.methods.batched import keep_points, point_vector, stack_points
from croft_pipeline.methods.broadcast import backward
from croft_pipeline.methods.params import TrainedParams

POINT_OPTIM_KEYS = frozenset({"lr", "momentum", "weight_decay", "warmup_lr"})  # may vary in a batch
Fit = FitReport | NonFiniteLossError  # what fitting one grid point gives


def lr_at_epoch(
    epoch: int, *, lr: float, epochs: int, warmup_epochs: int, warmup_lr: float
) -> float:
    """Constant ``warmup_lr`` for the warm-up epochs, then cosine from ``lr`` over ``epochs``.

    With one warm-up epoch: e=0 -> warmup_lr; e>=1 -> lr * (1 + cos(pi (e-1) / epochs)) / 2
    (Dassl's ConstantWarmupScheduler with WARMUP_RECOUNT around CosineAnnealingLR(T_max=epochs)).
    """
    if epoch < warmup_epochs:
        return float(warmup_lr)
    return float(lr) * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / epochs)) / 2.0


def epoch_lr(config: dict, epoch: int) -> float:
    """:func:`lr_at_epoch` with a method configuration's schedule keys."""
    return lr_at_epoch(
        epoch,
        lr=config["lr"],
        epochs=int(config["epochs"]),
        warmup_epochs=int(config["warmup_epochs"]),
        warmup_lr=config["warmup_lr"],
    )


def draw_epoch(features: Tensor, sampler: torch.Generator) -> tuple[Tensor, Tensor]:
    """One epoch's draws from ``sampler``: one cached view per image ``[N, D]`` and the order."""
    n, n_views = features.shape[:2]
    views = torch.randint(n_views, (n,), generator=sampler).to(features.device)
    order = torch.randperm(n, generator=sampler).to(features.device)
    return features[torch.arange(n, device=features.device), views], order


def batch_indices(order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Batches of ``order``; the last partial batch is dropped when a full one exists (Dassl)."""
    n_batches = max(1, len(order) // batch_size)
    for b in range(n_batches):
        yield order[b * batch_size : (b + 1) * batch_size]


class TrainableMethod(Method):
    """A method trained by SGD with the shared loop; subclasses define the step."""

    params = TrainedParams
    trains = True
    # The per-point scalars the step reads from ``self`` (named as their config keys): a stack of
    # grid points (methods/batched.py) holds them as [G, 1, 1] tensors; None: never batched.
    point_attributes: ClassVar[tuple[str, ...] | None] = ()

    def batch_signature(self) -> tuple | None:
        """What must be equal for grid points to train as one stack (every config value but the
        per-point ones, and what :meth:`_structure` derives); None: this method is not batched."""
        if self.point_attributes is None:
            return None
        per_point = POINT_OPTIM_KEYS | set(self.point_attributes)
        fixed = tuple(sorted((k, repr(v)) for k, v in self.config.items() if k not in per_point))
        return (*fixed, *self._structure())

    def _structure(self) -> tuple:
        """Code paths chosen from per-point values (e.g. a term skipped when its weight is 0)."""
        return ()

    def _make_optimizers(self) -> None:
        """One SGD per parameter group returned by :meth:`_param_groups` (CRoFT has two)."""
        self.optimizers = [
            torch.optim.SGD(
                params,
                lr=float(self.config["lr"]),
                momentum=float(self.config["momentum"]),
                weight_decay=float(self.config["weight_decay"]),
            )
            for params in self._param_groups()
        ]

    def _param_groups(self) -> list[list[torch.nn.Parameter]]:
        return [list(self.module.parameters())]

    def _prepare(self, train: TrainSet) -> None:
        """Hook run once before training (e.g. build a cache from the training set)."""

    @abstractmethod
    def _train_step(self, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """One batch: backward and optimizer steps; returns (loss terms, training logits)."""

    def _step_all(self, loss: Tensor, retain_graph: bool = False) -> None:
        """Zero every optimizer, backpropagate ``loss``, step every optimizer (Dassl's update)."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=False)
        backward(loss, retain_graph=retain_graph)
        for optimizer in self.optimizers:
            optimizer.step()

    def _set_lr(self, lr: float) -> None:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def fit(self, train: TrainSet, val: EvalSet, log: LogFn = no_log) -> FitReport:
        """:func:`fit_stack` of this method alone; raises its :class:`NonFiniteLossError`."""
        (fit,) = fit_stack([self], train, val, log)
        if isinstance(fit, NonFiniteLossError):
            raise fit
        return fit


def _verdicts(
    stack: TrainableMethod, terms: dict[str, list[float]], points: int
) -> list[tuple | None]:
    """The guard's verdict per point of a step: ``None``, or ``(what, value)`` for its first
    non-finite term, else its first parameter (``named_parameters`` order) with a non-finite
    entry."""
    finite = {
        name: torch.isfinite(p.detach()).reshape(points, -1).all(1).tolist()
        for name, p in stack.module.named_parameters()
    }
    verdicts: list[tuple | None] = []
    for slot in range(points):
        bad = next(((key, v[slot]) for key, v in terms.items() if not math.isfinite(v[slot])), None)
        if bad is None:
            bad = next(
                ((f"parameter {name}", math.nan) for name, ok in finite.items() if not ok[slot]),
                None,
            )
        verdicts.append(bad)
    return verdicts


def fit_stack(
    methods: Sequence[TrainableMethod], train: TrainSet, val: EvalSet, log: LogFn = no_log
) -> list[Fit]:
    """The training loop, for one method or a stack of grid points (one batch signature): the
    same draws and schedule for every point, each with its own guard and best epoch.

    One method trains as itself (its own tensors and ``torch.optim.SGD``), several as one stack
    (:func:`~croft_pipeline.methods.batched.stack_points`). ``log(epoch, record)`` gets each
    point's epoch record. A point whose step goes non-finite (a loss term or a weight) gets its
    :class:`NonFiniteLossError` and leaves the stack; the others go on and end with their
    best-epoch weights. A method trained alone gets its last good weights back; a stack does not
    copy itself before every step for that (up to 70 % of a Tip-Adapter-F step), so its diverged
    points keep their initial weights, which a grid search never reads.
    """
    start = time.perf_counter()
    for method in methods:
        method._prepare(train)
    stacked = len(methods) > 1
    stack = stack_points(methods) if stacked else methods[0]
    if not stacked:
        stack._make_optimizers()

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
        stack._set_lr(point_vector([lrs[p] for p in alive], device) if stacked else lrs[0])
        x_epoch, order = draw_epoch(features, sampler)
        sums: dict[int, dict[str, float]] = {point: defaultdict(float) for point in alive}
        correct: dict[int, int] = dict.fromkeys(alive, 0)
        seen = 0
        stack.module.train()
        for step, idx in enumerate(batch_indices(order, int(config["batch_size"]))):
            last_good = (
                None
                if stacked
                else {k: v.detach().clone() for k, v in stack.module.state_dict().items()}
            )
            terms, logits = stack._train_step(x_epoch[idx], labels[idx])
            values = {
                key: value.detach().expand(len(alive), 1, 1).flatten().tolist()
                for key, value in terms.items()
            }
            hits = logits.detach().argmax(-1).eq(labels[idx]).sum(-1).expand(len(alive)).tolist()
            kept = []
            for slot, bad in enumerate(_verdicts(stack, values, len(alive))):
                point = alive[slot]
                if bad is not None:
                    if last_good is not None:
                        stack.module.load_state_dict(last_good)
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
            log(epoch, record)
            if val_acc > best[point][1]:
                kept_state = {k: v[slot].clone() for k, v in state.items()} if stacked else state
                best[point] = (epoch, val_acc, kept_state)
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
