"""Helpers for training and inspecting models on tensors that already live on the device.

No ``DataLoader`` and no per-sample Python work: a data set is one tensor on the device and a
minibatch is a slice of it picked by a random permutation of the row indices. Used by
03_autoencoder (and meant for 04_contrastive and 05_vae): ``minibatches`` for training loops,
``batched`` and ``mean_reconstruction_error`` for evaluation, ``tsne`` for 2-D maps, and
``stopwatch`` for honest timings on any device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["minibatches", "batched", "mean_reconstruction_error", "tsne", "stopwatch"]


def minibatches(n: int, batch_size: int, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, shuffle: bool = True
                ) -> Iterator[torch.Tensor]:
    """Yield the index tensors of one epoch over ``n`` samples, ``batch_size`` at a time.

    The order is ``torch.randperm(n, generator=generator)`` (a CPU generator gives the same
    batches on every device), moved once to ``device``; the last batch may be smaller.
    ``shuffle=False`` keeps the natural order. Index the device-resident data with each
    batch: ``for idx in minibatches(len(X), 256, g, X.device): xb = X[idx]``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if shuffle:
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    order = order.to(device) if device is not None else order
    yield from order.split(batch_size)


def batched(fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor,
            batch_size: int = 4096) -> torch.Tensor:
    """``fn`` applied to ``X`` in slices of ``batch_size`` rows without gradients, concatenated.

    For encoders and models that are evaluated on a whole data set (03, 04, 05). Modules in
    ``fn`` are not switched to eval mode here: call ``model.eval()`` first when the model has
    batch normalisation or dropout.
    """
    with torch.no_grad():
        return torch.cat([fn(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


def mean_reconstruction_error(model: torch.nn.Module, X: torch.Tensor,
                              batch_size: int = 4096) -> float:
    """Mean squared error between ``model(X)`` and ``X`` over every pixel, in eval mode.

    The model's train/eval mode is restored afterwards. Used for validation curves and the
    reconstruction numbers of 03 (and 04, 05).
    """
    was_training = model.training
    model.eval()
    try:
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(X), batch_size):
                xb = X[i:i + batch_size]
                total += torch.nn.functional.mse_loss(model(xb), xb, reduction="sum").item()
        return total / X.numel()
    finally:
        model.train(was_training)


def tsne(Z: torch.Tensor, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 2,
         n_iter: int = 500) -> torch.Tensor:
    """2-D t-SNE embedding of the rows of ``Z`` with openTSNE (Barnes-Hut, seeded).

    ``Z``: (N, d) on any device; returns an (N, 2) float32 CPU tensor. ``n_iter`` is the
    number of iterations after the 250 of early exaggeration. Subsample first: a few thousand
    points are plenty for a picture and keep it to seconds (03 and 04 use it for latent
    spaces).
    """
    from openTSNE import TSNE

    data = Z.detach().to("cpu", torch.float64).numpy()
    emb = TSNE(n_components=2, perplexity=perplexity, n_iter=n_iter, random_state=seed,
               n_jobs=n_jobs, negative_gradient_method="bh", verbose=False).fit(data)
    return torch.from_numpy(np.asarray(emb, dtype=np.float32))


@contextmanager
def stopwatch(device: torch.device | str | None = None) -> Iterator[dict[str, float]]:
    """Time a block: ``with stopwatch(device) as t: ...``, then ``t["seconds"]``.

    Waits for queued GPU work at both ends, so the time covers the computation and not only
    launching it. Used by the timing printouts of 03 (and 04, 05).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    result = {"seconds": float("nan")}
    sync()
    start = time.perf_counter()
    try:
        yield result
    finally:
        sync()
        result["seconds"] = time.perf_counter() - start
