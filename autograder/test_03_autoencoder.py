"""Hidden tests of 03_autoencoder (instructor only: never released).

Each test names the nbgrader grade cell its points go to. Student code runs in the worker
(``submission``); every verdict below is computed here, in the grader's own torch. Models the
student trains come back as state_dicts (data) and are evaluated in grader-side copies of the
architecture, so a submission that patches torch in the worker cannot fake a good score.

The training tests use a small budget (4,096 images, a couple of epochs, seeded with
``torch.manual_seed`` in the worker). Their thresholds were measured with the reference
solution over seeds 0 to 4 (and other data orders); each comment gives the range and margin.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from torch import nn

from course.grading.checks import (
    expect,
    expect_close,
    expect_device,
    expect_finite,
    expect_tensor,
    points,
)
from course.grading.session import Ref, Remote

N_FIT = 4096  # training images for the short runs
N_HELDOUT = 2000  # test images on which reconstructions are scored
N_CENTROID_FIT = 10_000  # training codes behind the latent centroids


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- grader-side references -----------------------------------------------------------------
def reference_autoencoder(dim_in: int, act: type[nn.Module] = nn.ReLU
                          ) -> tuple[nn.Sequential, nn.Sequential]:
    """The encoder and decoder COURSE.md specifies, as the grader builds them."""
    encoder = nn.Sequential(nn.Linear(dim_in, 1000), act(), nn.Linear(1000, 25), act(),
                            nn.Linear(25, 50))
    decoder = nn.Sequential(act(), nn.Linear(50, 1000), act(), nn.Linear(1000, dim_in))
    return encoder, decoder


def autoencoder_parameters(dim_in: int) -> int:
    return (dim_in * 1000 + 1000) + (1000 * 25 + 25) + (25 * 50 + 50) + (50 * 1000 + 1000) \
        + (1000 * dim_in + dim_in)


def flat_autoencoder() -> nn.Sequential:
    """The same network as one Sequential; the training tests build it in the worker."""
    encoder, decoder = reference_autoencoder(784)
    return nn.Sequential(*encoder, *decoder)


def centroids_of(Z: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    return torch.stack([Z[y == c].double().mean(0) for c in range(n_classes)])


def nearest(Z: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    return ((Z.double()[:, None, :] - C.double()[None, :, :]) ** 2).sum(-1).argmin(1)


def copy_in_order(module: nn.Module, state: object, what: str) -> None:
    """Copy a student's weights into ``module`` parameter by parameter, in registration order.

    Names do not matter (an OrderedDict of named layers is fine), the order and shapes do.
    """
    expect(isinstance(state, Mapping), f"{what}.state_dict() did not return a dict of tensors")
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    params = list(module.parameters())
    shapes_ok = len(tensors) == len(params) and all(
        tuple(t.shape) == tuple(p.shape) for t, p in zip(tensors, params, strict=True))
    expect(shapes_ok, f"{what} does not have the specified layers in the specified order "
           "(compare your layer sizes with the table in section 4)")
    with torch.no_grad():
        for p, t in zip(params, tensors, strict=True):
            p.copy_(t.to(p.dtype))


def heldout_mse(model: nn.Module, X: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(X), X))


# -- fixtures -------------------------------------------------------------------------------
def build_in_worker(submission, dim_in: int = 784) -> Remote:
    """``flat_autoencoder()`` made of torch parts in the worker (no student class involved)."""
    def linear(i: int, o: int) -> Remote:
        return submission.call(Ref("torch.nn.Linear"), i, o)

    def relu() -> Remote:
        return submission.call(Ref("torch.nn.ReLU"))

    layers = [linear(dim_in, 1000), relu(), linear(1000, 25), relu(), linear(25, 50),
              relu(), linear(50, 1000), relu(), linear(1000, dim_in)]
    return submission.call(Ref("torch.nn.Sequential"), *layers)


@pytest.fixture(scope="module")
def trained_ae(submission, mnist_train):
    """The specified autoencoder (built from torch parts in the worker, seed 0) after the
    student's ``train_autoencoder``: 4,096 images, 2 epochs, batches of 128 (64 steps)."""
    X, _ = mnist_train
    submission.call(Ref("torch.manual_seed"), 0)
    model = build_in_worker(submission)
    losses = submission.call("train_autoencoder", model, X[:N_FIT], 2, batch_size=128,
                             timeout=180)
    state = submission.method(model, "state_dict")
    grader_model = flat_autoencoder()
    try:
        grader_model.load_state_dict(state)
    except Exception:  # noqa: BLE001 - any malformed state is the submission's fault
        expect(False, "after train_autoencoder the model's state_dict could not be read back")
    return losses, grader_model


def _losses(value: object, n: int | None = None) -> list[float]:
    expect(isinstance(value, list) and value and all(isinstance(v, float) for v in value),
           "train_autoencoder should return a list of Python floats (loss.item() every step)")
    if n is not None:
        expect(len(value) == n, f"train_autoencoder returned {len(value)} losses; expected one "
               f"per step, n_epochs * ceil(N / batch_size) = {n}")
    expect_finite(torch.tensor(value), "the losses returned by train_autoencoder")
    return value


# -- class_centroids ------------------------------------------------------------------------
@points(1.5, cell="test_class_centroids")
def test_class_centroids_are_class_means(submission, device):
    """class_centroids: row c is the mean of the rows of class c"""
    Z = torch.randn(600, 7, generator=gen(1)) * 3 + 1
    y = torch.arange(600) % 5
    y = y[torch.randperm(600, generator=gen(2))]
    r = submission.call_info("class_centroids", Z, y, n_classes=5)
    C = expect_tensor(r.value, "class_centroids(Z, y, n_classes=5)", shape=(5, 7), floating=True)
    expect_device(r.devices, device, "class_centroids")
    expect_close(C, centroids_of(Z, y, 5), "class_centroids(Z, y, n_classes=5)",
                 rtol=1e-5, atol=1e-5)


@points(0.5, cell="test_class_centroids")
def test_class_centroids_number_of_classes(submission):
    """class_centroids: one row per class, n_classes=10 by default"""
    Z = torch.randn(240, 3, generator=gen(3))
    y = torch.arange(240) % 12
    C12 = submission.call("class_centroids", Z, y, n_classes=12)
    expect_tensor(C12, "class_centroids(Z, y, n_classes=12)", shape=(12, 3), floating=True)
    expect_close(C12, centroids_of(Z, y, 12), "class_centroids(Z, y, n_classes=12)",
                 rtol=1e-5, atol=1e-5)
    C10 = submission.call("class_centroids", Z, y % 10)
    expect_tensor(C10, "class_centroids(Z, y) with the default n_classes", shape=(10, 3))


# -- nearest_centroid_predict ---------------------------------------------------------------
@points(1.5, cell="test_nearest_centroid_predict")
def test_predict_nearest_centroid(submission, device):
    """nearest_centroid_predict: index of the nearest centroid, int64, shape (N,)"""
    Z = torch.randn(500, 6, generator=gen(4)) * 2
    C = torch.randn(9, 6, generator=gen(5)) * 2
    r = submission.call_info("nearest_centroid_predict", Z, C)
    pred = expect_tensor(r.value, "nearest_centroid_predict(Z, centroids)", shape=(500,),
                         dtype=torch.int64)
    expect_device(r.devices, device, "nearest_centroid_predict")
    wrong = int((pred != nearest(Z, C)).sum())
    expect(wrong == 0, f"nearest_centroid_predict picked a centroid that is not the nearest "
           f"for {wrong} of 500 points")


@points(0.5, cell="test_nearest_centroid_predict")
def test_predict_ties_go_to_lowest_index(submission):
    """nearest_centroid_predict: a tie goes to the lowest centroid index"""
    # small dyadic numbers: every distance is exact in float32 however it is computed
    Z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    C = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    pred = expect_tensor(submission.call("nearest_centroid_predict", Z, C),
                         "nearest_centroid_predict(Z, centroids)", shape=(3,), dtype=torch.int64)
    expect(pred.tolist() == [0, 0, 2], "on ties (equal distances) pick the centroid with the "
           "lowest index, as torch.argmin does")


# -- accuracy -------------------------------------------------------------------------------
@points(1, cell="test_accuracy")
def test_accuracy_value(submission, device):
    """accuracy: fraction of equal entries, as a Python float"""
    y = torch.randint(0, 10, (1000,), generator=gen(6))
    pred = y.clone()
    pred[torch.randperm(1000, generator=gen(7))[:273]] += 1  # 273 wrong, 727 right
    value = submission.call("accuracy", pred, y)
    expect(isinstance(value, float), f"accuracy should return a Python float, got "
           f"{type(value).__name__} (use .item())")
    expect(abs(value - 0.727) <= 1e-6, "accuracy is not the fraction of predictions equal to "
           "the labels")


# -- centroid_accuracy ----------------------------------------------------------------------
@points(2, cell="test_centroid_accuracy")
def test_centroid_accuracy_on_raw_pixels(submission, mnist_train, mnist_test):
    """centroid_accuracy: raw MNIST pixels, all 60,000 training images -> the known accuracy"""
    X_tr, y_tr = mnist_train
    X_te, y_te = mnist_test
    value = submission.call("centroid_accuracy", X_tr, y_tr, X_te, y_te, timeout=180)
    expect(isinstance(value, float), f"centroid_accuracy should return a Python float, got "
           f"{type(value).__name__}")
    # the reference (and any correct float32 version) gives 0.8203; test-set centroids 0.8229
    expect(abs(value - 0.8203) <= 0.001, f"centroid_accuracy on raw pixels is {value:.4f}, not "
           "what class means of the training set give: fit the centroids on the training "
           "data only, and predict the test data")


# -- train_autoencoder ----------------------------------------------------------------------
@points(1, cell="test_train_autoencoder")
def test_train_returns_step_losses(submission):
    """train_autoencoder: returns one float loss per step and updates the model in place"""
    submission.call(Ref("torch.manual_seed"), 1)
    model = submission.call(Ref("torch.nn.Linear"), 20, 20)
    before = submission.method(model, "state_dict")
    X = torch.randn(300, 20, generator=gen(8))
    losses = submission.call("train_autoencoder", model, X, 3, batch_size=64, lr=1e-2)
    _losses(losses, n=3 * 5)
    after = submission.method(model, "state_dict")
    expect(isinstance(after, Mapping) and set(after) == set(before),
           "after train_autoencoder the model's state_dict no longer has the model's parameters")
    weight = expect_tensor(after["weight"], "the trained model's weight",
                           shape=tuple(before["weight"].shape))
    expect(not torch.equal(weight, before["weight"]),
           "the model's weights did not change during training")


@points(1, cell="test_train_autoencoder")
def test_train_loss_halves(trained_ae, mnist_train):
    """train_autoencoder: the last step's loss is at most half the first (Adam, lr 1e-3)"""
    losses = _losses(trained_ae[0], n=2 * N_FIT // 128)
    # reference, seeds 0-4: last / first = 0.33 to 0.40; lr = 0 stays at 1.01
    expect(losses[-1] <= 0.5 * losses[0], f"the loss went from {losses[0]:.4f} to "
           f"{losses[-1]:.4f}: it should at least halve in this short run")
    # the reported losses must be those of real training: the model's own error on the
    # training images, here, before (same seed, same layers) and after
    X, _ = mnist_train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = flat_autoencoder()
    expect(heldout_mse(trained_ae[1], X[:N_FIT]) <= 0.5 * heldout_mse(untrained, X[:N_FIT]),
           "the returned losses halve, but the trained model's own reconstruction error on the "
           "training images did not: the losses should come from training the model")


@points(2, cell="test_train_autoencoder")
def test_train_reconstructs_heldout_images(trained_ae, mnist_test):
    """train_autoencoder: the trained model reconstructs unseen test images well"""
    X_te, _ = mnist_test
    mse = heldout_mse(trained_ae[1], X_te[:N_HELDOUT])
    # reference, seeds 0-4: 0.039 to 0.044 (bound 0.055, 25% above the worst); untrained
    # 0.104, predicting the mean image 0.067
    expect(mse <= 0.055, f"after training, the mean squared reconstruction error on unseen test "
           f"images is {mse:.4f}, more than a correct training loop reaches")


@points(1, cell="test_train_autoencoder")
def test_train_latent_accuracy(trained_ae, mnist_train, mnist_test):
    """train_autoencoder: nearest-centroid accuracy in the trained latent space above a floor"""
    X_tr, y_tr = mnist_train
    X_te, y_te = mnist_test
    encoder = trained_ae[1][:5]
    with torch.no_grad():
        Z_tr, Z_te = encoder(X_tr[:N_CENTROID_FIT]), encoder(X_te)
    acc = float((nearest(Z_te, centroids_of(Z_tr, y_tr[:N_CENTROID_FIT], 10)) == y_te)
                .double().mean())
    # reference, seeds 0-4: 0.555 to 0.664 (floor 0.50, 0.055 below the worst); untrained
    # models score 0.42 to 0.50, so this test alone cannot tell an untrained model apart
    expect(acc >= 0.50, f"nearest-centroid accuracy in the latent space after training is "
           f"{acc:.3f}, below what a correct training loop reaches")


# -- LinearAutoencoder ----------------------------------------------------------------------
@points(1, cell="test_linear_autoencoder")
def test_linear_autoencoder_layout(submission):
    """LinearAutoencoder: encoder and decoder are one nn.Linear each, with the right sizes"""
    model = submission.call("LinearAutoencoder", 784, 20)
    expect(isinstance(model, Remote), "LinearAutoencoder(784, 20) should build an nn.Module")
    for part in ("encoder", "decoder"):
        sub = submission.attr(model, part)
        expect(isinstance(sub, Remote) and sub.type == "Linear",
               f"LinearAutoencoder.{part} should be an nn.Linear")
    state = submission.method(model, "state_dict")
    n = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
    expect(n == 2 * 784 * 20 + 20 + 784, f"LinearAutoencoder(784, 20) has {n:,} parameters; "
           "one Linear each way has 32,164")
    out = submission.call(model, torch.rand(6, 784, generator=gen(9)))
    expect_tensor(out, "LinearAutoencoder(784, 20)(x)", shape=(6, 784), floating=True)


@points(1, cell="test_linear_autoencoder")
def test_linear_autoencoder_forward(submission, device):
    """LinearAutoencoder: forward is decoder(encoder(x)) with no activation"""
    model = submission.call("LinearAutoencoder", 30, 4)
    parts = {p: submission.method(submission.attr(model, p), "state_dict")
             for p in ("encoder", "decoder")}
    enc, dec = nn.Linear(30, 4), nn.Linear(4, 30)
    copy_in_order(enc, parts["encoder"], "LinearAutoencoder.encoder")
    copy_in_order(dec, parts["decoder"], "LinearAutoencoder.decoder")
    x = torch.randn(10, 30, generator=gen(10)) * 2
    r = submission.call_info(model, x)
    expect_device(r.devices, device, "LinearAutoencoder.forward")
    with torch.no_grad():
        want = dec(enc(x))
    expect_close(r.value, want, "LinearAutoencoder(30, 4)(x)", rtol=1e-4, atol=1e-5)


# -- AutoEncoder ----------------------------------------------------------------------------
def _autoencoder_parts(submission, *args, **kwargs) -> tuple[Remote, Remote, Remote]:
    model = submission.call("AutoEncoder", *args, **kwargs)
    expect(isinstance(model, Remote), "AutoEncoder(...) should build an nn.Module")
    parts = []
    for name in ("encoder", "decoder"):
        part = submission.attr(model, name)
        expect(isinstance(part, Remote) and part.type == "Sequential",
               f"AutoEncoder.{name} should be an nn.Sequential")
        parts.append(part)
    return model, parts[0], parts[1]


def _check_against_reference(submission, dim_in: int, act: type[nn.Module], act_arg: object,
                             what: str) -> None:
    kwargs = {} if act_arg is None else {"act_func": act_arg}
    model, enc_r, dec_r = _autoencoder_parts(submission, dim_in, **kwargs)
    encoder, decoder = reference_autoencoder(dim_in, act)
    copy_in_order(encoder, submission.method(enc_r, "state_dict"), "AutoEncoder.encoder")
    copy_in_order(decoder, submission.method(dec_r, "state_dict"), "AutoEncoder.decoder")
    x = torch.rand(32, dim_in, generator=gen(11))
    with torch.no_grad():
        z_want = encoder(x)
        out_want = decoder(z_want)
    expect_close(submission.call(enc_r, x), z_want, f"{what}.encoder(x)", rtol=1e-4, atol=1e-5)
    expect_close(submission.call(model, x), out_want, f"{what}(x)", rtol=1e-4, atol=1e-5)


@points(1, cell="test_autoencoder")
def test_autoencoder_layout(submission, device):
    """AutoEncoder: encoder and decoder are nn.Sequential; code (B, 50), output (B, dim_in)"""
    model, enc_r, _ = _autoencoder_parts(submission, 784)
    x = torch.rand(16, 784, generator=gen(12))
    z = submission.call_info(enc_r, x)
    expect_tensor(z.value, "AutoEncoder(784).encoder(x)", shape=(16, 50), floating=True)
    expect_device(z.devices, device, "AutoEncoder.encoder")
    expect_tensor(submission.call(model, x), "AutoEncoder(784)(x)", shape=(16, 784),
                  floating=True)
    small = submission.call("AutoEncoder", 64)
    expect_tensor(submission.call(small, torch.rand(3, 64, generator=gen(13))),
                  "AutoEncoder(64)(x)", shape=(3, 64), floating=True)


@points(1, cell="test_autoencoder")
def test_autoencoder_parameter_count(submission):
    """AutoEncoder: exactly 1,647,109 parameters for dim_in = 784 (and right for other sizes)"""
    for dim_in in (784, 100):
        model = submission.call("AutoEncoder", dim_in)
        expect(isinstance(model, Remote), "AutoEncoder(...) should build an nn.Module")
        state = submission.method(model, "state_dict")
        expect(isinstance(state, Mapping), "AutoEncoder(...).state_dict() is not a dict")
        n = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
        expect(n == autoencoder_parameters(dim_in), f"AutoEncoder({dim_in}) has {n:,} "
               f"parameters, expected {autoencoder_parameters(dim_in):,}")


@points(1, cell="test_autoencoder")
def test_autoencoder_matches_specification(submission):
    """AutoEncoder: layers and ReLUs exactly as specified (outputs equal the grader's copy)"""
    _check_against_reference(submission, 784, nn.ReLU, None, "AutoEncoder(784)")


@points(1, cell="test_autoencoder")
def test_autoencoder_act_func(submission):
    """AutoEncoder: act_func is used for every activation (checked with nn.Tanh)"""
    _check_against_reference(submission, 64, nn.Tanh, Ref("torch.nn.Tanh"),
                             "AutoEncoder(64, act_func=nn.Tanh)")


# -- ConvAutoencoder ------------------------------------------------------------------------
@points(1, cell="test_conv_autoencoder")
def test_conv_autoencoder_layout(submission, device):
    """ConvAutoencoder: code (B, 4, 7, 7), output (B, 1, 28, 28) in [0, 1], batch norm"""
    model = submission.call("ConvAutoencoder")
    expect(isinstance(model, Remote), "ConvAutoencoder() should build an nn.Module")
    submission.method(model, "eval")
    x = torch.rand(8, 1, 28, 28, generator=gen(14))
    enc = submission.attr(model, "encoder")
    expect(isinstance(enc, Remote), "ConvAutoencoder.encoder should be a module")
    expect_tensor(submission.call(enc, x), "ConvAutoencoder().encoder(x)", shape=(8, 4, 7, 7),
                  floating=True)
    r = submission.call_info(model, x)
    out = expect_tensor(r.value, "ConvAutoencoder()(x)", shape=(8, 1, 28, 28), floating=True)
    expect_device(r.devices, device, "ConvAutoencoder.forward")
    expect_finite(out, "ConvAutoencoder()(x)")
    expect(float(out.min()) >= 0 and float(out.max()) <= 1,
           "ConvAutoencoder outputs should lie in [0, 1] (end with a sigmoid)")
    state = submission.method(model, "state_dict")
    n_bn = sum(1 for k in (state if isinstance(state, Mapping) else {})
               if str(k).endswith("running_mean"))
    expect(n_bn >= 2, "ConvAutoencoder should use batch normalisation (nn.BatchNorm2d) after "
           "each of the two convolutions of the encoder")


@points(2, cell="test_conv_autoencoder")
def test_conv_autoencoder_learns(submission, mnist_train, mnist_test):
    """ConvAutoencoder: trained briefly with your train_autoencoder, it reconstructs test images"""
    X_tr, _ = mnist_train
    X_te, _ = mnist_test
    submission.call(Ref("torch.manual_seed"), 0)
    model = submission.call("ConvAutoencoder")
    expect(isinstance(model, Remote), "ConvAutoencoder() should build an nn.Module")
    submission.call("train_autoencoder", model, X_tr[:N_FIT].view(-1, 1, 28, 28), 1,
                    batch_size=64, lr=1e-2, timeout=180)
    submission.method(model, "eval")
    X = X_te[:1000].view(-1, 1, 28, 28)
    out = expect_tensor(submission.call(model, X, timeout=60), "ConvAutoencoder()(x)",
                        shape=(1000, 1, 28, 28), floating=True)
    expect_finite(out, "ConvAutoencoder()(x) after training")
    mse = float(nn.functional.mse_loss(out.double(), X.double()))
    # reference (16 channels), seeds 0-4: 0.021 to 0.049; with 8 channels 0.033 to 0.049, with
    # 32 channels and 3x3 transposed convolutions 0.023 to 0.040 (bound 0.06, 0.011 above the worst);
    # untrained about 0.17, predicting the mean image 0.067
    expect(mse <= 0.06, f"after one short epoch the mean squared reconstruction error on test "
           f"images is {mse:.4f}, more than the reference architecture reaches (or "
           "train_autoencoder does not train)")
