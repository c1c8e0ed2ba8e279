"""The Stage_1 baseline experiment: a small MLP on synthetic two-moons data, in torch.

Real work with a real metric, small enough for a CPU in seconds and placed on a GPU when
one is there. The research pipeline replaces it with LLM-written code in a later stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..contract.idea import ExperimentConfig


@dataclass
class TrainResult:
    device: str
    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    @property
    def final_val_accuracy(self) -> float:
        return self.val_accuracy[-1]


def two_moons(n: int, noise: float, generator):
    import torch

    half = n // 2
    t = torch.rand(half, generator=generator) * math.pi
    outer = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
    inner = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
    x = torch.cat([outer, inner]) + noise * torch.randn(2 * half, 2, generator=generator)
    y = torch.cat([torch.zeros(half), torch.ones(half)]).long()
    return x, y


def train(
    config: ExperimentConfig,
    on_epoch: Callable[[int, float, float], None] | None = None,
    *,
    epochs: Iterable[int] | None = None,
) -> TrainResult:
    """Train with full-batch SGD; `on_epoch(epoch, loss, val_acc)` after each epoch.

    `epochs` are the epoch numbers to run (default `1..config.epochs`): a notebook passes
    `ctx.track(range(1, config.epochs + 1))` to drive a progress bar and progress events.
    """
    import torch
    from torch import nn

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(config.seed)
    x, y = two_moons(config.samples, config.noise, gen)
    perm = torch.randperm(len(x), generator=gen)
    split = int(0.8 * len(x))
    tr, va = perm[:split], perm[split:]
    x, y = x.to(device), y.to(device)
    torch.manual_seed(config.seed)
    model = nn.Sequential(
        nn.Linear(2, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 2)
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    result = TrainResult(device=device)
    for epoch in epochs if epochs is not None else range(1, config.epochs + 1):
        model.train()
        opt.zero_grad()
        loss = loss_fn(model(x[tr]), y[tr])
        loss.backward()
        opt.step()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss {loss.item()})")
        model.eval()
        with torch.no_grad():
            acc = (model(x[va]).argmax(1) == y[va]).float().mean().item()
        result.train_loss.append(loss.item())
        result.val_accuracy.append(acc)
        if on_epoch:
            on_epoch(epoch, loss.item(), acc)
    return result
