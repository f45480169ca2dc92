"""The training helpers of ``course.training`` (used by 03 and 04)."""

from __future__ import annotations

import pytest
import torch

from course import training


def test_minibatches_cover_every_index_once_and_follow_the_seed() -> None:
    batches = list(training.minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(training.minibatches(10, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    plain = torch.cat(list(training.minibatches(10, 3, shuffle=False)))
    assert plain.tolist() == list(range(10))
    with pytest.raises(ValueError, match="batch_size"):
        list(training.minibatches(10, 0))


def test_batched_equals_one_call() -> None:
    X = torch.randn(1000, 7)
    layer = torch.nn.Linear(7, 3)
    out = training.batched(layer, X, batch_size=128)
    assert torch.allclose(out, layer(X), atol=1e-6) and not out.requires_grad


def test_random_affine_keeps_shape_and_follows_the_seed() -> None:
    X = torch.rand(6, 784)
    a = training.random_affine(X, torch.Generator().manual_seed(1))
    b = training.random_affine(X, torch.Generator().manual_seed(1))
    c = training.random_affine(X, torch.Generator().manual_seed(2))
    assert a.shape == X.shape and a.dtype == X.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert training.random_affine(X.view(6, 1, 28, 28)).shape == (6, 1, 28, 28)


def test_random_affine_with_no_range_is_the_identity() -> None:
    X = torch.rand(4, 1, 28, 28)
    same = training.random_affine(X, degrees=0, shift=0, scale=0)
    assert torch.allclose(same, X, atol=1e-5)


def test_random_affine_transforms_each_image_differently() -> None:
    # one image repeated: if every copy got the same transform, all outputs would be equal
    img = torch.zeros(1, 28, 28)
    img[0, 8:20, 12:16] = 1.0
    out = training.random_affine(img.expand(5, 1, 28, 28).contiguous(),
                                 torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten().round(decimals=4).tolist()) for o in out}) == 5
    # a 15-degree rotation, 15 % shift and 10 % zoom keep most of a centred stroke's ink
    assert (out.sum(dim=(1, 2, 3)) > 0.6 * img.sum()).all()


def test_random_affine_rejects_what_is_not_an_image_batch() -> None:
    with pytest.raises(ValueError, match="square"):
        training.random_affine(torch.rand(3, 20))
    with pytest.raises(ValueError, match="expected"):
        training.random_affine(torch.rand(28, 28, 3, 1, 1))


def test_stopwatch_measures_the_block() -> None:
    with training.stopwatch() as t:
        torch.randn(200, 200) @ torch.randn(200, 200)
    assert 0 < t["seconds"] < 60
