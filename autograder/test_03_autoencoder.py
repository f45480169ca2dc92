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
    best_seconds,
    expect,
    expect_close,
    expect_device,
    expect_finite,
    expect_tensor,
    points,
    speed_bound,
    unseen_generator,
)
from course.grading.session import Ref, Remote, StudentFailure

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
    """Index of the nearest row of C, from float64 differences z - c: cdist's direct mode,
    without the (N, K, D) temporary that ((Z[:, None] - C[None]) ** 2).sum(-1) allocates
    (that took 0.8 s a call, 4.7 of the grader's 24 s on 03's reference)."""
    dist = torch.cdist(Z.double(), C.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return dist.argmin(1)


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


def _epochs_taken(value: object, per_epoch: int, most: int = 12) -> int:
    """How many whole epochs of ``per_epoch`` steps the returned losses describe. The number of
    epochs asked for is test_train_returns_step_losses's to judge: the other tests replay as
    many epochs as the loop ran, so an epoch too many or too few is charged once."""
    expect(isinstance(value, list) and value, "train_autoencoder should return a list of "
           "Python floats (loss.item() every step)")
    n = len(value)  # the values themselves are judged where a test reads them
    expect(n % per_epoch == 0 and 1 <= n // per_epoch <= most,
           f"train_autoencoder returned {n} losses, not a whole number of epochs of {per_epoch} "
           "steps: return the loss of every step")
    return n // per_epoch


# -- class_centroids ------------------------------------------------------------------------




def _float_matrix(value, rows: int, what: str) -> torch.Tensor:
    """A float result with ``rows`` rows, as float64 (its dtype has its own test)."""
    value = expect_tensor(value, what, floating=True)
    expect(value.dim() == 2 and value.shape[0] == rows, f"{what} has shape "
           f"{tuple(value.shape)}: one row per class expected ({rows})")
    return value.double()


@points(1, cell="test_class_centroids")
def test_class_centroids_are_class_means(submission, device):
    """class_centroids: row c is the mean of the rows of class c"""
    Z = torch.randn(600, 7, generator=gen(1)) * 3 + 1
    y = torch.arange(600) % 10
    y = y[torch.randperm(600, generator=gen(2))]
    counts = torch.bincount(y, minlength=10)
    y[y == 3] = torch.tensor([3, 9]).repeat(int(counts[3]) // 2 + 1)[: int(counts[3])]
    r = submission.call_info("class_centroids", Z, y, n_classes=10)
    C = _float_matrix(r.value, 10, "class_centroids(Z, y, n_classes=10)")
    expect_device(r.devices, device, "class_centroids")
    want = centroids_of(Z, y, 10)
    sums = torch.stack([Z[y == c].double().sum(0) for c in range(10)])
    expect_close(C, want, "class_centroids(Z, y, n_classes=10)", rtol=1e-5, atol=1e-5,
                 hint="these are the sums of each class's rows: divide by the class sizes"
                 if C.shape == sums.shape and torch.allclose(C, sums, rtol=1e-4, atol=1e-4)
                 else "")


@points(0.25, cell="test_class_centroids")
def test_class_centroids_number_of_classes(submission):
    """class_centroids: one row per class, n_classes of them (12 here; the values are test_class_centroids_are_class_means')"""
    Z = torch.randn(240, 3, generator=gen(3))
    y = torch.arange(240) % 12
    try:
        C12 = submission.call("class_centroids", Z, y, n_classes=12)
    except StudentFailure as exc:
        raise StudentFailure(f"class_centroids fails with n_classes=12 (labels 0..11): size "
                             f"the result by n_classes, not by a fixed 10 ({exc})") from None
    expect_tensor(C12, "class_centroids(Z, y, n_classes=12)", shape=(12, 3), floating=True)


@points(0.25, cell="test_class_centroids")
def test_class_centroids_keep_dtype(submission):
    """class_centroids: the centroids have Z's dtype (float64 in, float64 out)"""
    Z = torch.randn(50, 4, generator=gen(15), dtype=torch.float64)
    C = expect_tensor(submission.call("class_centroids", Z, torch.arange(50) % 10, n_classes=10),
                      "class_centroids(Z, y)")
    expect(C.dtype == torch.float64, f"class_centroids returned {C.dtype} for float64 Z: keep "
           "Z's dtype (torch.zeros(..., dtype=Z.dtype, device=Z.device))")


@points(0.5, cell="test_class_centroids")
def test_class_centroids_vectorised(submission):
    """class_centroids: vectorised, no Python loop over rows (400,000 rows quickly; data drawn when the test runs)"""
    g = unseen_generator()
    n, d = 400_000, 32
    Z = torch.randn(n, d, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    y[:10] = torch.arange(10)
    submission.call("class_centroids", Z[:100].clone(), y[:100].clone(), n_classes=10)  # warm-up
    # best of 5: a busy machine inflates this wall time, not the call's compute time;
    # idle, the reference takes ~10 ms and a loop over rows ~7 s
    r = submission.call_info("class_centroids", Z, y, n_classes=10, timeout=60)
    _float_matrix(r.value, 10, "class_centroids(Z, y)")
    bound = speed_bound(r.compute_s, 1.5, 20, lambda: best_seconds(
        lambda: torch.zeros(10, d).index_add_(0, y, Z), repeats=5))
    expect(r.compute_s <= bound, f"class_centroids computed for {r.compute_s:.2f} s for {n:,} "
           f"rows (allowed {bound:.2f} s): no Python loop over rows (index_add_ with bincount, or one mask "
           "per class)")


# -- nearest_centroid_predict ---------------------------------------------------------------
def _int_labels(value, n: int, what: str) -> torch.Tensor:
    """Labels of any integer dtype (int64 has its own test), as int64."""
    lab = expect_tensor(value, what, shape=(n,))
    expect(not lab.is_floating_point() and not lab.is_complex() and lab.dtype != torch.bool,
           f"{what} should hold integer indices, got {lab.dtype}")
    return lab.long()


@points(1.5, cell="test_nearest_centroid_predict")
def test_predict_nearest_centroid(submission, device):
    """nearest_centroid_predict: index of the nearest centroid (Euclidean), shape (N,)"""
    Z = torch.randn(500, 6, generator=gen(4)) * 2
    C = torch.randn(9, 6, generator=gen(5)) * 2
    r = submission.call_info("nearest_centroid_predict", Z, C)
    pred = _int_labels(r.value, 500, "nearest_centroid_predict(Z, centroids)")
    expect_device(r.devices, device, "nearest_centroid_predict")
    wrong = int((pred != nearest(Z, C)).sum())
    farthest = bool((pred == ((Z.double()[:, None] - C.double()[None]) ** 2).sum(-1)
                     .argmax(1)).all())
    expect(wrong == 0, f"nearest_centroid_predict picked a centroid that is not the nearest "
           f"for {wrong} of 500 points" + (": it picks the farthest (argmax instead of argmin)"
                                           if farthest else ""))


@points(0.25, cell="test_nearest_centroid_predict")
def test_predict_ties_go_to_lowest_index(submission):
    """nearest_centroid_predict: a tie goes to the lowest centroid index"""
    # small dyadic numbers: every distance is exact in float32 however it is computed
    Z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    C = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    pred = _int_labels(submission.call("nearest_centroid_predict", Z, C), 3,
                       "nearest_centroid_predict(Z, centroids)")
    expect(pred.tolist() == [0, 0, 2], "on ties (equal distances) pick the centroid with the "
           "lowest index, as torch.argmin does")


@points(0.25, cell="test_nearest_centroid_predict")
def test_predict_returns_int64(submission):
    """nearest_centroid_predict: the indices are an int64 tensor"""
    Z = torch.randn(20, 3, generator=gen(16))
    pred = expect_tensor(submission.call("nearest_centroid_predict", Z, Z[:4].clone()),
                         "nearest_centroid_predict(Z, centroids)", shape=(20,))
    expect(pred.dtype == torch.int64, f"nearest_centroid_predict returned {pred.dtype}: return "
           "int64 indices (argmin gives them; no .int() or .to(torch.int32))")


# -- accuracy -------------------------------------------------------------------------------
def _accuracy_data() -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.randint(0, 10, (1000,), generator=gen(6))
    pred = y.clone()
    pred[torch.randperm(1000, generator=gen(7))[:273]] += 1  # 273 wrong, 727 right
    return pred, y


@points(0.75, cell="test_accuracy")
def test_accuracy_value(submission):
    """accuracy: the fraction of entries where pred equals y (judged whatever number type it returns)"""
    pred, y = _accuracy_data()
    value = submission.call("accuracy", pred, y)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value.reshape(()))
    expect(isinstance(value, (int, float)), f"accuracy returned a {type(value).__name__}, not a "
           "number")
    hint = (": it is the number of equal entries: divide by their count" if value == 727
            else ": it is a percentage: return a fraction in [0, 1]" if abs(value - 72.7) < 1e-4
            else ": it is the fraction of DIFFERENT entries" if abs(value - 0.273) < 1e-6 else "")
    expect(abs(value - 0.727) <= 1e-6, "accuracy is not the fraction of predictions equal to "
           "the labels" + hint)


@points(0.25, cell="test_accuracy")
def test_accuracy_is_a_python_float(submission):
    """accuracy: returns a Python float (not a tensor)"""
    pred, y = _accuracy_data()
    value = submission.call("accuracy", pred[:10], y[:10])
    expect(isinstance(value, float), f"accuracy should return a Python float, got "
           f"{type(value).__name__} (use .item())")


# -- centroid_accuracy ----------------------------------------------------------------------
def reference_class_centroids(Z, y, n_classes=10):
    return centroids_of(Z, y, n_classes).to(Z.dtype)


def reference_predict(Z, centroids):
    return nearest(Z, centroids)


def reference_accuracy(pred, y):
    return float((pred == y).double().mean())


#: The grader's own versions of the three helpers: the test of centroid_accuracy runs it with
#: them standing in for the notebook's, so it judges how they are combined, and a mistake in
#: one of them is charged in that function's tests only.
CENTROID_STAND_INS = {"class_centroids": reference_class_centroids,
                      "nearest_centroid_predict": reference_predict,
                      "accuracy": reference_accuracy}


@points(2, cell="test_centroid_accuracy")
def test_centroid_accuracy_fits_on_train_and_scores_test(submission, mnist_train, mnist_test):
    """centroid_accuracy: centroids from the training set, accuracy on the test set, a Python float (raw MNIST pixels; the grader's own helpers stand in for the three functions above)"""
    X_tr, y_tr = mnist_train
    X_te, y_te = mnist_test
    g = unseen_generator()
    tr = torch.randperm(len(X_tr), generator=g)[:12_000]
    te = torch.randperm(len(X_te), generator=g)[:3_000]
    Z_train, y_train, Z_test, y_test = X_tr[tr], y_tr[tr], X_te[te], y_te[te]
    value = submission.call("centroid_accuracy", Z_train, y_train, Z_test, y_test,
                            stand_in=CENTROID_STAND_INS, timeout=120)
    expect(isinstance(value, float), f"centroid_accuracy should return a Python float, got "
           f"{type(value).__name__}")
    want = reference_accuracy(nearest(Z_test, centroids_of(Z_train, y_train, 10)), y_test)
    on_test = reference_accuracy(nearest(Z_test, centroids_of(Z_test, y_test, 10)), y_test)
    on_train = reference_accuracy(nearest(Z_train, centroids_of(Z_train, y_train, 10)), y_train)
    hint = (": the centroids were fitted on the test data: fit them on (Z_train, y_train)"
            if abs(value - on_test) < 1e-9 else ": this is the accuracy on the training data: "
            "predict Z_test and score against y_test" if abs(value - on_train) < 1e-9 else "")
    expect(abs(value - want) <= 1e-6, f"centroid_accuracy is {value:.4f}, not the test accuracy "
           "of class means fitted on the training set" + hint)


# -- train_autoencoder ----------------------------------------------------------------------
def _small_problem(submission, seed: int):
    """A Linear(20, 20) 'autoencoder' built in the worker from torch parts (seeded there), its
    starting weights, and 300 random samples."""
    submission.call(Ref("torch.manual_seed"), seed)
    model = submission.call(Ref("torch.nn.Linear"), 20, 20)
    start = submission.method(model, "state_dict")
    expect(isinstance(start, Mapping) and set(start) == {"weight", "bias"},
           "a torch.nn.Linear built in the worker has an unexpected state_dict")
    X = torch.randn(300, 20, generator=gen(seed + 100))
    return model, start, X


def full_batch_replay(start: Mapping, X: torch.Tensor, n_epochs: int, make_optimizer
                      ) -> tuple[list[float], dict]:
    """The docstring's loop with one batch holding every sample (so the shuffle does not
    matter): the MSE of every step recorded before it is taken."""
    model = nn.Linear(20, 20)
    model.load_state_dict(dict(start))
    optimizer = make_optimizer(model.parameters())
    losses = []
    for _ in range(n_epochs):
        loss = nn.functional.mse_loss(model(X), X)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _compare_with_replay(submission, model, losses, want_losses, want_state, what: str,
                         judge_losses: bool = True) -> None:
    """The final weights against the replay's, and the losses too when ``judge_losses``."""
    state = submission.method(model, "state_dict")
    expect(isinstance(state, Mapping) and set(state) == set(want_state),
           "after train_autoencoder the model's state_dict no longer has the model's parameters")
    if judge_losses:
        losses = _losses(losses, n=len(want_losses))
        first_ok = abs(losses[0] - want_losses[0]) <= 1e-4 * want_losses[0]
        expect_close(torch.tensor(losses, dtype=torch.float64), torch.tensor(want_losses),
                     f"the losses of {what}", rtol=1e-4, atol=1e-7,
                     hint="the first matches, the next do not: check the optimizer (its lr, "
                     "weight_decay=1e-8) and the order zero_grad, backward, step" if first_ok
                     else "each entry should be the MSE of that step's batch, computed before "
                     "the step")
    for name, want in want_state.items():
        expect_close(expect_tensor(state[name], f"model.{name}", shape=tuple(want.shape)), want,
                     f"model.{name} after {what}", rtol=1e-3, atol=1e-5)


def _linear(state: Mapping) -> nn.Linear:
    lin = nn.Linear(20, 20)
    lin.load_state_dict(dict(state))
    return lin


@points(0.5, cell="test_train_autoencoder")
def test_train_returns_step_losses(submission):
    """train_autoencoder: returns one float loss per step (n_epochs * ceil(N / batch_size)) and updates the model in place"""
    model, before, X = _small_problem(submission, 1)
    losses = submission.call("train_autoencoder", model, X, 3, batch_size=64, lr=1e-2)
    n = len(_losses(losses))
    cause = {2 * 5: ": one epoch too few (loop over range(n_epochs))",
             4 * 5: ": one epoch too many (loop over range(n_epochs))",
             3 * 4: ": the last, smaller batch of each epoch is missing (300 samples in batches "
             "of 64 make 5 steps)", 3: ": one loss per epoch; record every step's"}
    expect(n == 3 * 5, f"train_autoencoder returned {n} losses for 3 epochs of 300 samples in "
           f"batches of 64; expected one per step, 3 * ceil(300 / 64) = 15" + cause.get(n, ""))
    after = submission.method(model, "state_dict")
    expect(isinstance(after, Mapping) and set(after) == set(before),
           "after train_autoencoder the model's state_dict no longer has the model's parameters")
    weight = expect_tensor(after["weight"], "the trained model's weight",
                           shape=tuple(before["weight"].shape))
    expect(not torch.equal(weight, before["weight"]),
           "the model's weights did not change during training (train the model passed in)")


@points(1, cell="test_train_autoencoder")
def test_train_matches_a_full_batch_replay(submission):
    """train_autoencoder: with one batch per epoch, its losses and final weights are those of the default Adam (lr, weight_decay=1e-8) on the MSE, loss recorded before each step, replayed here"""
    model, start, X = _small_problem(submission, 2)
    losses = submission.call("train_autoencoder", model, X, 4, batch_size=300, lr=1e-2, seed=5)
    epochs = _epochs_taken(losses, 1)  # 4 asked; the count is test_train_returns_step_losses's
    want_losses, want_state = full_batch_replay(
        start, X, epochs, lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-8))
    _compare_with_replay(submission, model, losses, want_losses, want_state,
                         f"{epochs} epochs of one batch with lr = 1e-2")


@points(0.5, cell="test_train_autoencoder")
def test_train_uses_the_given_optimizer(submission):
    """train_autoencoder: trains with the optimizer it is given (here plain SGD), not its default"""
    model, start, X = _small_problem(submission, 3)
    params = submission.method(model, "parameters")
    optimizer = submission.call(Ref("torch.optim.SGD"), params, lr=0.5)
    losses = submission.call("train_autoencoder", model, X, 3, batch_size=300,
                             optimizer=optimizer)
    epochs = _epochs_taken(losses, 1)  # 3 asked; the count is test_train_returns_step_losses's
    want_losses, want_state = full_batch_replay(start, X, epochs,
                                                lambda p: torch.optim.SGD(p, lr=0.5))
    _, adam_state = full_batch_replay(
        start, X, epochs, lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-8))
    state = submission.method(model, "state_dict")
    if isinstance(state, Mapping) and isinstance(state.get("weight"), torch.Tensor):
        expect(not torch.allclose(state["weight"].double(), adam_state["weight"].double(),
                                  rtol=1e-4, atol=1e-6),
               "train_autoencoder ignored the optimizer it was given and trained with its own "
               "Adam: use the optimizer argument when it is not None")
    # the weights only: the losses are test_train_matches_a_full_batch_replay's
    _compare_with_replay(submission, model, losses, want_losses, want_state,
                         f"{epochs} epochs of one batch with the given SGD optimizer",
                         judge_losses=False)


@points(0.5, cell="test_train_autoencoder")
def test_train_shuffles_every_epoch_from_the_seed(submission):
    """train_autoencoder: the batches are a new shuffle every epoch, decided by seed alone (seen through the losses of a model that SGD with lr = 0 leaves unchanged)"""
    def run(seed: int) -> list[float]:
        model, start, X = _small_problem(submission, 4)  # the same model and data every run
        params = submission.method(model, "parameters")
        frozen = submission.call(Ref("torch.optim.SGD"), params, lr=0.0)
        losses = submission.call("train_autoencoder", model, X, 3, batch_size=100, seed=seed,
                                 optimizer=frozen)
        # 3 epochs asked, 2 or more judged: the count is test_train_returns_step_losses's
        expect(_epochs_taken(_losses(losses), 3) >= 2, "train_autoencoder ran one epoch where 3 were "
               "asked: the shuffle of later epochs cannot be seen")
        return losses

    a, again, other = run(11), run(11), run(12)
    _, start, X = _small_problem(submission, 4)
    lin = _linear(start)
    with torch.no_grad():
        in_order = [float(nn.functional.mse_loss(lin(X[i:i + 100]), X[i:i + 100]))
                    for i in range(0, 300, 100)]
    same = torch.allclose(torch.tensor(a[:3]), torch.tensor(in_order), rtol=1e-5)
    expect(not same, "the first epoch's batches are the samples in their stored order: shuffle "
           "them (torch.randperm(N, generator=g))")
    epochs = [sorted(a[i:i + 3]) for i in range(0, len(a), 3)]
    expect(any(e != epochs[0] for e in epochs), "every epoch has the same batches: draw a "
           "new shuffle each epoch")
    expect(len(a) == len(again) and torch.allclose(torch.tensor(a), torch.tensor(again),
                                                   rtol=1e-6),
           "two runs with the same seed shuffled differently: shuffle with a torch.Generator "
           "seeded with seed (torch.Generator().manual_seed(seed))")
    expect(len(a) != len(other) or not torch.allclose(torch.tensor(a), torch.tensor(other),
                                                       rtol=1e-6),
           "runs with different seeds shuffled the same way: the seed argument should seed the "
           "generator that shuffles (not torch's global one)")


@points(0.75, cell="test_train_autoencoder")
def test_train_loss_halves(trained_ae, mnist_train):
    """train_autoencoder: the last step's loss is at most half the first (Adam, lr 1e-3)"""
    losses = _losses(trained_ae[0])  # the count is test_train_returns_step_losses's
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


@points(1, cell="test_train_autoencoder")
def test_train_reconstructs_heldout_images(trained_ae, mnist_test):
    """train_autoencoder: the trained model reconstructs unseen test images well"""
    X_te, _ = mnist_test
    mse = heldout_mse(trained_ae[1], X_te[:N_HELDOUT])
    # reference, seeds 0-4: 0.039 to 0.044 (bound 0.055, 25% above the worst); untrained
    # 0.104, predicting the mean image 0.067
    expect(mse <= 0.055, f"after training, the mean squared reconstruction error on unseen test "
           f"images is {mse:.4f}, more than a correct training loop reaches")


@points(0.75, cell="test_train_autoencoder")
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
    """LinearAutoencoder: forward is decoder(encoder(x)) with no activation (whatever the layer sizes)"""
    model = submission.call("LinearAutoencoder", 30, 4)
    expect(isinstance(model, Remote), "LinearAutoencoder(30, 4) should build an nn.Module")
    enc, dec = submission.attr(model, "encoder"), submission.attr(model, "decoder")
    expect(isinstance(enc, Remote) and isinstance(dec, Remote),
           "LinearAutoencoder should have an encoder and a decoder module")
    x = torch.randn(10, 30, generator=gen(10)) * 2
    r = submission.call_info(model, x)
    expect_device(r.devices, device, "LinearAutoencoder.forward")
    out = expect_tensor(r.value, "LinearAutoencoder(30, 4)(x)", floating=True)
    code = expect_tensor(submission.call(enc, x), "LinearAutoencoder.encoder(x)", floating=True)
    want = expect_tensor(submission.call(dec, code), "LinearAutoencoder.decoder(code)",
                         floating=True)
    expect_close(out, want.double(), "LinearAutoencoder(30, 4)(x) against decoder(encoder(x))",
                 rtol=1e-4, atol=1e-5, hint="forward should return decoder(encoder(x))")
    # no activation: the map is affine, so the midpoint of two inputs maps to the midpoint
    y = torch.randn(10, 30, generator=gen(17)) * 2
    mid = expect_tensor(submission.call(model, (x + y) / 2), "LinearAutoencoder(30, 4)(x)",
                        floating=True)
    other = expect_tensor(submission.call(model, y), "LinearAutoencoder(30, 4)(x)",
                          floating=True)
    expect_close(mid, (out.double() + other.double()) / 2, "LinearAutoencoder(30, 4) of the "
                 "midpoint of two inputs", rtol=1e-4, atol=1e-4,
                 hint="the map is not affine: leave out every activation (no ReLU, no sigmoid)")


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
                             what: str, through_forward: bool = True) -> None:
    """The student's encoder and, through forward or the decoder alone, the output equal the
    grader's copy holding the same weights."""
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
    expect_close(submission.call(dec_r, z_want), out_want, f"{what}.decoder(z)",
                 rtol=1e-4, atol=1e-5)
    if through_forward:  # encoder and decoder are right here: what is left is forward
        expect_close(submission.call(model, x), out_want, f"{what}(x)", rtol=1e-4, atol=1e-5,
                     hint="the encoder and the decoder are right: forward should return "
                     "decoder(encoder(x)), nothing added")


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
    """AutoEncoder: act_func is used for every activation (checked with nn.Tanh, through the encoder and the decoder, not forward)"""
    _check_against_reference(submission, 64, nn.Tanh, Ref("torch.nn.Tanh"),
                             "AutoEncoder(64, act_func=nn.Tanh)", through_forward=False)


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


def grader_training(submission, model: Remote, X: torch.Tensor, batch_size: int, lr: float,
                    seed: int) -> None:
    """One epoch of Adam on the MSE, driven from here, step by step, on a model in the worker:
    the architecture's tests do not depend on the student's train_autoencoder."""
    submission.method(model, "train")
    params = submission.method(model, "parameters")
    optimizer = submission.call(Ref("torch.optim.Adam"), params, lr=lr)
    data = submission.call_remote(Ref("torch.clone"), X)
    g = torch.Generator().manual_seed(seed)
    for idx in torch.randperm(len(X), generator=g).split(batch_size):
        xb = submission.call_remote(Ref("torch.index_select"), data, 0, idx)
        out = submission.call_remote(model, xb)
        loss = submission.call_remote(Ref("torch.nn.functional.mse_loss"), out, xb)
        submission.method(optimizer, "zero_grad")
        submission.method(loss, "backward")
        submission.method(optimizer, "step")
        submission.drop(xb, out, loss)
    submission.drop(data, optimizer, params)


@points(2, cell="test_conv_autoencoder")
def test_conv_autoencoder_learns(submission, mnist_train, mnist_test):
    """ConvAutoencoder: trained briefly by the grader (its own Adam loop, not your train_autoencoder), it reconstructs test images through its 4 x 7 x 7 code"""
    X_tr, _ = mnist_train
    X_te, _ = mnist_test
    submission.call(Ref("torch.manual_seed"), 0)
    model = submission.call("ConvAutoencoder")
    expect(isinstance(model, Remote), "ConvAutoencoder() should build an nn.Module")
    grader_training(submission, model, X_tr[:N_FIT].view(-1, 1, 28, 28), 64, 1e-2, 0)
    submission.method(model, "eval")
    X = X_te[:1000].view(-1, 1, 28, 28)
    out = expect_tensor(submission.call(model, X, timeout=60), "ConvAutoencoder()(x)",
                        shape=(1000, 1, 28, 28), floating=True)
    expect_finite(out, "ConvAutoencoder()(x) after training")
    # the reconstruction must come through the code: decoder(encoder(x)) in two calls, the
    # code passing through the grader, gives the same images
    enc, dec = submission.attr(model, "encoder"), submission.attr(model, "decoder")
    expect(isinstance(enc, Remote) and isinstance(dec, Remote),
           "ConvAutoencoder should have an encoder and a decoder module")
    code = expect_tensor(submission.call(enc, X[:50]), "ConvAutoencoder().encoder(x)",
                         shape=(50, 4, 7, 7), floating=True)
    order = torch.randperm(50, generator=gen(18))  # the codes in another order than the images
    expect_close(submission.call(dec, code[order]), out[:50][order].double(),
                 "decoder(encoder(x)) of the trained model, compared with its forward",
                 rtol=1e-4, atol=1e-5, hint="forward should return decoder(encoder(x)), "
                 "nothing else")
    mse = float(nn.functional.mse_loss(out.double(), X.double()))
    # reference (16 channels), seeds 0-4: 0.021 to 0.049; with 8 channels 0.033 to 0.049, with
    # 32 channels and 3x3 transposed convolutions 0.023 to 0.040 (bound 0.06, 0.011 above the worst);
    # untrained about 0.17, predicting the mean image 0.067
    expect(mse <= 0.06, f"after one short epoch of Adam the mean squared reconstruction error "
           f"on test images is {mse:.4f}, more than the reference architecture reaches")
