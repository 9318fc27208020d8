"""The shared training loop: per-epoch LR schedule, one cached view per image, best-val epoch.

docs/algorithm.md §8: SGD, cosine schedule stepped per epoch after a constant warm-up epoch;
the epoch kept is the one with the best ID-validation accuracy (the first one on ties).
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Iterator
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
from croft_pipeline.methods.broadcast import backward
from croft_pipeline.methods.params import TrainedParams

POINT_OPTIM_KEYS = frozenset({"lr", "momentum", "weight_decay", "warmup_lr"})  # may vary in a batch


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
        start = time.perf_counter()
        self._prepare(train)
        self._make_optimizers()
        features = train.features.to(self.device, torch.float32)
        labels = train.labels.to(self.device, torch.long)
        val_x = val.features.to(self.device, torch.float32)
        val_y = val.labels.to(self.device, torch.long)
        sampler = torch.Generator().manual_seed(self.seed)  # CPU: the same draws on any device
        epochs = int(self.config["epochs"])
        best = (-1, -math.inf, self.state_dict())
        history: list[dict[str, float]] = []
        for epoch in range(epochs):
            lr = epoch_lr(self.config, epoch)
            self._set_lr(lr)
            x_epoch, order = draw_epoch(features, sampler)
            sums: dict[str, float] = defaultdict(float)
            correct = seen = 0
            self.module.train()
            for step, idx in enumerate(batch_indices(order, int(self.config["batch_size"]))):
                terms, logits = self._guarded_step(x_epoch[idx], labels[idx], epoch, step)
                for key, value in terms.items():
                    sums[key] += value
                correct += int((logits.argmax(1) == labels[idx]).sum())
                seen += len(idx)
            with torch.no_grad():
                self.module.eval()
                val_acc = accuracy(self._logits(val_x), val_y)
            record = {key: value / (step + 1) for key, value in sums.items()}
            record.update(train_accuracy=correct / seen, val_accuracy=val_acc, lr=lr)
            history.append(record)
            log(epoch, record)
            if val_acc > best[1]:
                best = (epoch, val_acc, self.state_dict())
        self.load_state_dict(best[2])
        return FitReport(
            best_epoch=best[0],
            best_val_accuracy=best[1],
            epochs_run=epochs,
            history=history,
            seconds=time.perf_counter() - start,
        )

    def _guarded_step(
        self, x: Tensor, y: Tensor, epoch: int, step: int
    ) -> tuple[dict[str, float], Tensor]:
        """Run a step; on a non-finite term or weight, restore the pre-step weights and raise."""
        last_good = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        terms, logits = self._train_step(x, y)
        values = {key: float(value.detach()) for key, value in terms.items()}
        bad = next(((k, v) for k, v in values.items() if not math.isfinite(v)), None)
        if bad is None:
            bad = next(
                (
                    (f"parameter {name}", math.nan)
                    for name, p in self.module.named_parameters()
                    if not bool(torch.isfinite(p).all())
                ),
                None,
            )
        if bad is not None:
            self.module.load_state_dict(last_good)
            raise NonFiniteLossError(self.name, epoch, step, bad[0], bad[1])
        return values, logits.detach()
