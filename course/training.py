"""Helpers for training and inspecting models on tensors that already live on the device.

No ``DataLoader`` and no per-sample Python work: a data set is one tensor on the device and a
minibatch is a slice of it picked by a random permutation of the row indices. Used by
03_autoencoder and 04_contrastive (and meant for 05_vae): ``minibatches`` for training loops,
``batched`` and ``mean_reconstruction_error`` for evaluation, ``random_affine`` for augmented
views of digits (04), ``tsne`` for 2-D maps, and ``stopwatch`` for honest timings on any
device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["minibatches", "batched", "mean_reconstruction_error", "random_affine", "tsne",
           "stopwatch"]


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


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None,
                  degrees: float = 15.0, shift: float = 0.15, scale: float = 0.1) -> torch.Tensor:
    """A randomly rotated, shifted and zoomed copy of every image in ``x``, in one batched call.

    ``x``: (B, 784) rows or (B, 1, 28, 28) images (any square size), on any device; the result
    has the same shape, dtype and device. Each image gets its own rotation in
    ``[-degrees, degrees]``, shift in ``[-shift, shift]`` of half the image side along each
    axis and zoom factor in ``[1 - scale, 1 + scale]``, drawn from ``generator`` on the CPU
    (so a seed gives the same views on every device). The transform is applied with
    ``affine_grid`` and bilinear ``grid_sample`` (zeros outside the image): no Python loop over
    images. Used by 04_contrastive to make two views of the same digit (NT-Xent positives).
    """
    if x.dim() not in (2, 4):
        raise ValueError(f"random_affine: expected (B, H*W) or (B, 1, H, W), got {tuple(x.shape)}")
    n = x.shape[0]
    side = math.isqrt(x.shape[1]) if x.dim() == 2 else x.shape[-1]
    if x.dim() == 2 and side * side != x.shape[1]:
        raise ValueError(f"random_affine: rows of {x.shape[1]} numbers are not square images")
    images = x.reshape(n, -1, side, side)

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * 2 - 1  # in [-1, 1)

    angle = uniform(n) * math.radians(degrees)
    zoom = 1 + uniform(n) * scale
    offset = uniform(n, 2) * shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], dim=1),
                         torch.stack([sin, cos, offset[:, 1]], dim=1)], dim=1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)
    return out.reshape(x.shape)


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
