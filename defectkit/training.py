"""Pieces every training loop shares."""

from __future__ import annotations

import math

from defectkit.errors import RunError

#: optimizer steps in a row with a non-finite loss after which training cannot recover
NONFINITE_PATIENCE = 10


class LossGuard:
    """Stops a step whose training loss stays non-finite, in one line, instead of letting a later step crash.

    A single NaN (an fp16 overflow that a loop skips) is tolerated; ``patience``
    checks in a row are not: by then the weights are NaN and every later step
    would fail far from the cause::

        guard = LossGuard(f"step {ctx.step_id} ({self.name})")
        for step in ...:
            ...
            guard.check(loss_value, step + 1)
    """

    def __init__(self, where: str, patience: int = NONFINITE_PATIENCE) -> None:
        self.where = where
        self.patience = patience
        self._bad = 0
        self._since: int | None = None

    def check(self, loss: float, step: int) -> None:
        """Record the loss of optimizer step ``step``; raise a RunError after ``patience`` non-finite ones in a row."""
        if math.isfinite(loss):
            self._bad, self._since = 0, None
            return
        self._bad += 1
        if self._since is None:
            self._since = step
        if self._bad >= self.patience:
            raise RunError(
                f"{self.where}: the training loss has been {loss} for {self._bad} steps in a row (since step "
                f"{self._since}); training cannot recover: lower the learning rate or check the data, then run again"
            )


def warmup_cosine(warmup: int, total: int):
    """A ``torch.optim.lr_scheduler.LambdaLR`` factor: linear warm-up over ``warmup`` steps, then cosine decay
    to zero at step ``total`` (and zero after it)::

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, steps))
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor
