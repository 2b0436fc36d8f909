"""Training-dependent baselines ``aum`` (Pleiss et al. 2020) and ``datamap`` (Swayamdipta et al. 2020),
classification only.

A linear classifier head is trained on the unit-norm image embeddings of every split at once (train, val and
test, as the original trains on all three) over the *observed* (noisy) labels: ``--dynamics_epochs`` epochs
of minibatch SGD with momentum 0.9 (``--dynamics_lr``, ``--dynamics_batch_size``). After each epoch the
logits of every sample are recorded (one matrix product) and folded into running sums, so memory is O(n)
for any number of epochs. With y the observed label:

- ``aum``: AUM = mean over epochs of the margin z_y - max_{c != y} z_c; score = -AUM.
- ``datamap``: confidence = mean over epochs of p(y), variability = its standard deviation over epochs;
  score = 1 - confidence (the map's "hard-to-learn" axis). The original's binary flag (confidence < 0.5 and
  variability < 0.1) is written beside it as ``datamap_flag``.

The original fine-tunes the whole CLIP ViT-B/32 vision tower for 150 epochs; a head on the embeddings the
run already has trains in seconds, and a few epochs at a large step size stop before it memorises the
noisy labels (which erases both signals). Deterministic per ``--seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lemon.scorers.base import ScorerOptions, ScoringContext, option
from lemon.scorers.probs import ClassificationScorer, n_classes
from lemon.scorers.registry import SCORERS

#: the classifier head trained on the image embeddings (linear, SGD with momentum)
DYNAMICS_EPOCHS, DYNAMICS_LR, DYNAMICS_BATCH_SIZE = 20, 0.5, 256


@dataclass(frozen=True)
class DynamicsOptions(ScorerOptions):
    """How aum and datamap train their classifier head."""

    dynamics_epochs: int = option(DYNAMICS_EPOCHS, "aum/datamap: epochs of the classifier head.")
    dynamics_lr: float = option(DYNAMICS_LR, "aum/datamap: SGD learning rate.")
    dynamics_batch_size: int = option(DYNAMICS_BATCH_SIZE, "aum/datamap: SGD batch size.")

    def validate(self) -> None:
        super().validate()
        self.at_least("dynamics_epochs", 1)
        self.at_least("dynamics_batch_size", 1)
        self.at_least("dynamics_lr", 0, strict=True)


def training_dynamics(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Train a linear head on (x (n, d), labels y (n,)) and return per-sample training statistics.

    Returns ``aum`` (mean margin of the label's logit over the best other one), ``confidence`` and
    ``variability`` (mean and std of p(label)) and ``correctness`` (fraction of epochs predicting the
    label), each (n,), averaged over the ``epochs`` end-of-epoch snapshots.
    """
    import torch

    X = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    Y = torch.as_tensor(np.asarray(y, dtype=np.int64), device=device)
    n, d = X.shape
    order = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(d, n_classes).to(device)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    rows = torch.arange(n, device=device)
    sums = torch.zeros((4, n), dtype=torch.float64, device=device)  # margin, p, p^2, correct
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order).to(device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = torch.nn.functional.cross_entropy(head(X[idx]), Y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = head(X).double()
            z_y = z[rows, Y]
            other = z.scatter(1, Y[:, None], float("-inf")).max(dim=1).values
            p = torch.softmax(z, dim=1)[rows, Y]
            sums += torch.stack([z_y - other, p, p * p, (z.argmax(dim=1) == Y).double()])
    mean = (sums / max(epochs, 1)).cpu().numpy()
    variability = np.sqrt(np.clip(mean[2] - mean[1] ** 2, 0.0, None))
    return {
        "aum": mean[0],
        "confidence": mean[1],
        "variability": variability,
        "correctness": mean[3],
    }


class _DynamicsScorer(ClassificationScorer):
    """Trains the head once over every split, then reads each split's rows."""

    Options = DynamicsOptions
    options: DynamicsOptions
    prob_source = "none"

    def __init__(self, options: ScorerOptions | None = None) -> None:
        super().__init__(options)
        self._stats: dict[str, dict[str, np.ndarray]] | None = None

    def dynamics(self, ctx: ScoringContext) -> dict[str, dict[str, np.ndarray]]:
        """Per split, the training statistics of its samples."""
        if self._stats is None:
            splits = list(ctx.features.splits)
            parts = [ctx.split(s) for s in splits]
            o = self.options
            stats = training_dynamics(
                np.concatenate([p.img for p in parts]),
                np.concatenate([p.observed for p in parts]).astype(np.int64),
                n_classes(ctx.features),
                o.dynamics_epochs,
                o.dynamics_lr,
                o.dynamics_batch_size,
                o.seed,
                ctx.device,
            )
            bounds = np.cumsum([0] + [len(p) for p in parts])
            self._stats = {
                s: {k: v[bounds[i] : bounds[i + 1]] for k, v in stats.items()}
                for i, s in enumerate(splits)
            }
        return self._stats

    def score_mismatched(
        self,
        ctx: ScoringContext,
        split: str,
        image_rows: np.ndarray,
        text_rows: np.ndarray,
        hparams: dict[str, Any],
    ) -> np.ndarray:
        """None: training dynamics exist only for the pairs the head trained on, and a mismatched pair
        never was; the label-free rule then falls back to cleanlab's confident-joint estimate."""
        return np.zeros(0)

    def fit(self, ctx: ScoringContext) -> dict[str, Any]:
        stats = self.dynamics(ctx)
        o = self.options
        return {
            "head": "linear on the image embeddings",
            "trained_on": list(stats),
            "dynamics_epochs": o.dynamics_epochs,
            "dynamics_lr": o.dynamics_lr,
            "dynamics_batch_size": o.dynamics_batch_size,
            "fit_accuracy": float(
                np.mean(np.concatenate([s["correctness"] for s in stats.values()]))
            ),
        }


@SCORERS.register("aum")
class AumScorer(_DynamicsScorer):
    """-AUM: a label the head keeps ranking below another class has a negative margin."""

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        s = self.dynamics(ctx)[split]
        return {"score": -s["aum"], "aum": s["aum"], "correctness": s["correctness"]}


@SCORERS.register("datamap")
class DatamapScorer(_DynamicsScorer):
    """1 - confidence of the observed label over training (hard to learn = suspicious)."""

    def score(
        self, ctx: ScoringContext, split: str, hparams: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        s = self.dynamics(ctx)[split]
        flag = ((s["confidence"] < 0.5) & (s["variability"] < 0.1)).astype(np.float64)
        return {
            "score": 1.0 - s["confidence"],
            "confidence": s["confidence"],
            "variability": s["variability"],
            "datamap_flag": flag,
        }
