"""Hidden tests of 02_gradient_descent (instructor only: never released).

Each test names the nbgrader grade cell its points go to. Student code runs in the worker
(``submission``); every verdict below is computed here, in the grader's own torch: gradients
with the grader's autograd, the least-squares solution with ``torch.linalg.lstsq``, accuracies
from the returned model's weights, the prescribed training loop replayed here from the
student's own starting weights.
"""

from __future__ import annotations

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from course.data import load_toy
from course.grading.checks import (
    expect,
    expect_close,
    expect_device,
    expect_finite,
    expect_tensor,
    points,
)
from course.grading.session import Ref, Remote, StudentFailure


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_problem(m: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(theta, X, y) for a linear model: X (m, d), y (m,), theta (d,), float32."""
    g = gen(seed)
    X = torch.randn(m, d, generator=g) * 2 + 0.5
    y = torch.randn(m, generator=g) * 3
    theta = torch.randn(d, generator=g)
    return theta, X, y


def autograd_mse_grad(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of the MSE by the grader's autograd, in float64."""
    th = theta.double().clone().requires_grad_(True)
    loss = ((X.double() @ th - y.double()) ** 2).mean()
    (grad,) = torch.autograd.grad(loss, th)
    return grad


# -- mse_loss -------------------------------------------------------------------------------
@points(1.5, cell="test_mse_loss")
def test_mse_loss_value(submission):
    """mse_loss: equals (1/m) sum_i (theta^T x_i - y_i)^2"""
    for m, d, seed in ((50, 3, 1), (7, 1, 2), (1, 4, 3)):
        theta, X, y = random_problem(m, d, seed)
        loss = expect_tensor(submission.call("mse_loss", theta, X, y),
                             f"mse_loss (m = {m}, d = {d})", floating=True)
        expect(loss.numel() == 1, f"mse_loss should return a single number, got shape "
               f"{tuple(loss.shape)} for m = {m}, d = {d} (check the shapes of X @ theta and y)")
        want = ((X.double() @ theta.double() - y.double()) ** 2).mean()
        expect_close(loss.reshape(()), want, f"mse_loss (m = {m}, d = {d})", rtol=1e-5, atol=1e-6)


@points(0.5, cell="test_mse_loss")
def test_mse_loss_is_a_scalar_tensor(submission, device):
    """mse_loss: returns a 0-dim tensor on the inputs' device (so autograd can use it)"""
    theta, X, y = random_problem(20, 2, 4)
    r = submission.call_info("mse_loss", theta, X, y)
    expect_tensor(r.value, "mse_loss(theta, X, y)", shape=(), floating=True)
    expect_device(r.devices, device, "mse_loss")


# -- mse_grad -------------------------------------------------------------------------------
@points(2, cell="test_mse_grad")
def test_mse_grad_matches_autograd(submission):
    """mse_grad: equals autograd's gradient of the mean squared error at random theta"""
    for m, d, seed in ((200, 5, 5), (30, 2, 6), (3, 1, 7)):
        theta, X, y = random_problem(m, d, seed)
        grad = expect_tensor(submission.call("mse_grad", theta, X, y),
                             f"mse_grad (m = {m}, d = {d})", shape=(d,), floating=True)
        want = autograd_mse_grad(theta, X, y)
        scale = max(1.0, float(want.abs().max()))
        expect_close(grad, want, f"mse_grad (m = {m}, d = {d})", rtol=1e-5, atol=1e-6 * scale)


@points(0.5, cell="test_mse_grad")
def test_mse_grad_without_autograd(submission):
    """mse_grad: computed by hand (gives the same result with autograd switched off)"""
    theta, X, y = random_problem(40, 3, 8)
    usual = expect_tensor(submission.call("mse_grad", theta, X, y), "mse_grad(theta, X, y)",
                          shape=(3,), floating=True)
    submission.call(Ref("torch.set_grad_enabled"), False)
    try:
        off = submission.call("mse_grad", theta, X, y)
    except StudentFailure as exc:
        raise StudentFailure(f"mse_grad fails when autograd is switched off (as under "
                             f"torch.no_grad()): compute it from the formula, without backward() "
                             f"or torch.autograd ({exc})") from None
    finally:
        try:
            submission.call(Ref("torch.set_grad_enabled"), True)
        except StudentFailure:
            pass  # the worker was restarted, with autograd on
    off = expect_tensor(off, "mse_grad with autograd switched off", shape=(3,), floating=True)
    expect_close(off, usual.double(), "mse_grad with autograd switched off", rtol=1e-6,
                 atol=1e-7)


@points(0.5, cell="test_mse_grad")
def test_mse_grad_shape_and_device(submission, device):
    """mse_grad: returns a (d,) tensor like theta, on the inputs' device"""
    theta, X, y = random_problem(25, 4, 9)
    r = submission.call_info("mse_grad", theta, X, y)
    expect_tensor(r.value, "mse_grad(theta, X, y)", shape=(4,), floating=True)
    expect_device(r.devices, device, "mse_grad")


# -- gradient_descent -----------------------------------------------------------------------
def _gd_result(value, d: int, n_epochs: int) -> tuple[torch.Tensor, list]:
    expect(isinstance(value, (tuple, list)) and len(value) == 2,
           "gradient_descent should return a tuple (theta, loss_log)")
    theta, loss_log = value
    theta = expect_tensor(theta, "theta", shape=(d,), floating=True)
    expect_finite(theta, "theta")
    expect(isinstance(loss_log, list) and all(isinstance(v, float) for v in loss_log),
           "loss_log should be a list of Python floats (use .item())")
    expect(len(loss_log) == n_epochs, f"loss_log has {len(loss_log)} entries for "
           f"n_epochs = {n_epochs}: record one loss per epoch")
    return theta, loss_log


@points(1, cell="test_gradient_descent")
def test_gradient_descent_update_rule(submission, device):
    """gradient_descent: starts at theta = 0 and steps theta <- theta - lr * mse_grad(theta)"""
    _, X, y = random_problem(40, 3, 10)
    lr, n_epochs = 0.02, 3
    r = submission.call_info("gradient_descent", X, y, lr, n_epochs)
    theta, _ = _gd_result(r.value, 3, n_epochs)
    expect_device(r.devices, device, "gradient_descent")
    # replay the rule with the submission's own mse_grad, so a wrong gradient is not counted twice
    want = torch.zeros(3)
    for _ in range(n_epochs):
        grad = expect_tensor(submission.call("mse_grad", want, X, y), "mse_grad(theta, X, y)",
                             shape=(3,), floating=True)
        want = want - lr * grad.float()
    expect_close(theta, want, f"theta after {n_epochs} epochs (start at zeros, then "
                 "theta - lr * mse_grad(theta, X, y) each epoch)", rtol=1e-4, atol=1e-6)


@points(1.5, cell="test_gradient_descent")
def test_gradient_descent_reaches_least_squares(submission):
    """gradient_descent: converges to the least-squares solution (torch.linalg.lstsq)"""
    g = gen(11)
    m = 200
    X = torch.cat([torch.randn(m, 2, generator=g), torch.ones(m, 1)], dim=1)
    y = X @ torch.tensor([1.5, -2.0, 0.7]) + 0.3 * torch.randn(m, generator=g)
    theta, _ = _gd_result(submission.call("gradient_descent", X, y, 0.1, 500), 3, 500)
    best = torch.linalg.lstsq(X.double(), y.double().unsqueeze(1)).solution.squeeze(1)
    expect_close(theta, best, "theta after 500 epochs with lr = 0.1 (compared with the "
                 "least-squares solution)", rtol=1e-3, atol=1e-3)


@points(0.5, cell="test_gradient_descent")
def test_gradient_descent_loss_log(submission):
    """gradient_descent: loss_log starts at the loss of theta = 0 and never increases for a small step"""
    _, X, y = random_problem(60, 2, 12)
    n_epochs = 50
    _, loss_log = _gd_result(submission.call("gradient_descent", X, y, 0.01, n_epochs), 2,
                             n_epochs)
    start = float((y.double() ** 2).mean())
    expect(abs(loss_log[0] - start) <= 1e-4 * start,
           "loss_log[0] should be the loss at the start theta = 0, recorded before the first "
           "update")
    rises = [t for t in range(1, n_epochs) if loss_log[t] > loss_log[t - 1] * (1 + 1e-6)]
    expect(not rises, f"the loss went up at epoch {rises[0] if rises else ''} with a small "
           "learning rate: check the sign of the update")


# -- train_classifier -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def blobs() -> tuple[torch.Tensor, ...]:
    return load_toy("toy_data")


@pytest.fixture(scope="module")
def moons() -> tuple[torch.Tensor, ...]:
    return load_toy("toy_data_two_moon")


@pytest.fixture(scope="module")
def circles() -> tuple[torch.Tensor, ...]:
    return load_toy("toy_data_two_circles")


def train(submission, seed: int, data: tuple[torch.Tensor, ...], lr: float, max_epoch: int):
    """Seed the worker's torch, then call train_classifier; returns (reply, model, losses, accs)."""
    x_train, x_test, y_train, y_test = data
    submission.call(Ref("torch.manual_seed"), seed)
    r = submission.call_info("train_classifier", x_train, y_train, x_test, y_test, lr=lr,
                             max_epoch=max_epoch)
    expect(isinstance(r.value, (tuple, list)) and len(r.value) == 3,
           "train_classifier should return a tuple (model, loss_log, acc_log)")
    model, loss_log, acc_log = r.value
    for name, log in (("loss_log", loss_log), ("acc_log", acc_log)):
        expect(isinstance(log, list) and all(isinstance(v, float) for v in log),
               f"{name} should be a list of Python floats (use .item())")
        expect(len(log) == max_epoch, f"{name} has {len(log)} entries for max_epoch = "
               f"{max_epoch}: record one value per epoch")
    return r, model, loss_log, acc_log


def linear_weights(submission, model) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (1, 2) and bias (1,) of the returned model, which must be exactly nn.Linear(2, 1)."""
    expect(isinstance(model, Remote), "train_classifier should return the trained model "
           f"(an nn.Linear(2, 1)) as its first value, got a {type(model).__name__}")
    state = submission.method(model, "state_dict")
    expect(isinstance(state, dict) and set(state) == {"weight", "bias"},
           "the returned model should be exactly nn.Linear(2, 1) (its state_dict has keys "
           f"{sorted(state) if isinstance(state, dict) else type(state).__name__})")
    w = expect_tensor(state["weight"], "model.weight", shape=(1, 2), floating=True)
    b = expect_tensor(state["bias"], "model.bias", shape=(1,), floating=True)
    expect_finite(w, "model.weight")
    expect_finite(b, "model.bias")
    return w.double(), b.double()


def accuracy_of(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy of the linear classifier logit = x w^T + b, computed here."""
    predicted = ((x.double() @ w.T + b) > 0).double()
    return float((predicted == y.double()).double().mean())


@pytest.fixture(scope="module")
def blobs_run(submission, blobs):
    """One run on the linearly separable blobs (seed 0, lr 0.1, 80 epochs), for several tests."""
    return train(submission, 0, blobs, 0.1, 80)


@points(1, cell="test_train_classifier")
def test_train_classifier_returns_a_linear_model(submission, blobs_run, blobs, device):
    """train_classifier: returns (nn.Linear(2, 1) on the inputs' device, loss_log, acc_log), one float per epoch"""
    _, model, _, acc_log = blobs_run
    expect(isinstance(model, Remote) and model.type == "Linear",
           "the first value returned should be the trained nn.Linear(2, 1), got "
           f"{model.type if isinstance(model, Remote) else type(model).__name__}")
    linear_weights(submission, model)
    expect(all(0.0 <= a <= 1.0 for a in acc_log), "acc_log entries should be fractions in [0, 1]")
    x_test = blobs[1]
    r = submission.call_info(model, x_test)
    expect_tensor(r.value, "model(x_test)", shape=(len(x_test), 1), floating=True)
    expect_device(r.devices, device, "the returned model")


@points(1, cell="test_train_classifier")
def test_train_classifier_blobs_accuracy(submission, blobs_run, blobs):
    """train_classifier: test accuracy >= 0.95 on the linearly separable toy data"""
    w, b = linear_weights(submission, blobs_run[1])
    acc = accuracy_of(w, b, blobs[1], blobs[3])
    expect(acc >= 0.95, f"the returned model's test accuracy on the separable toy data is "
           f"{acc:.3f} after 80 epochs with lr = 0.1 (at least 0.95 expected)")


def bce_of(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """The training loss of the linear classifier with weights (w, b), computed here."""
    logits = x.double() @ w.double().T + b.double()
    return float(nn.functional.binary_cross_entropy_with_logits(logits, y.double()))


@points(0.5, cell="test_train_classifier")
def test_train_classifier_loss_falls(submission, blobs_run, blobs):
    """train_classifier: the training loss falls to less than half its first value on the toy data"""
    loss_log = blobs_run[2]
    expect(all(v == v and abs(v) != float("inf") for v in loss_log),
           "loss_log contains NaN or infinite values")
    expect(loss_log[-1] < 0.5 * loss_log[0], f"the training loss went from {loss_log[0]:.3f} "
           f"to {loss_log[-1]:.3f} in 80 epochs: it should fall below half its first value")
    # the reported losses must be those of real training: recompute them here, from the start
    # the recipe prescribes (seed 0) and from the returned model (reference ratio 0.05)
    x_train, _, y_train, _ = blobs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        start = nn.Linear(2, 1)
    w, b = linear_weights(submission, blobs_run[1])
    expect(bce_of(w, b, x_train, y_train) < 0.5 * bce_of(start.weight.detach(), start.bias.detach(),
                                                         x_train, y_train),
           "loss_log falls, but the returned model's own training loss did not fall below half "
           "that of its starting weights: loss_log should come from training the model")


@points(1, cell="test_train_classifier")
def test_train_classifier_moons_accuracy(submission, moons):
    """train_classifier: test accuracy >= 0.80 on the two moons"""
    _, model, _, _ = train(submission, 0, moons, 0.5, 100)
    w, b = linear_weights(submission, model)
    acc = accuracy_of(w, b, moons[1], moons[3])
    expect(acc >= 0.80, f"the returned model's test accuracy on the moons is {acc:.3f} after "
           "100 epochs with lr = 0.5 (at least 0.80 expected)")


def replay(w0: torch.Tensor, b0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float,
           epochs: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The prescribed loop, here, from the given starting weights (float32 like the student)."""
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(w0)
        model.bias.copy_(b0)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model.weight.detach().double(), model.bias.detach().double(), losses


@points(1.5, cell="test_train_classifier")
def test_train_classifier_follows_the_sgd_recipe(submission, moons):
    """train_classifier: each epoch is one SGD step on the current full-batch gradient (zero_grad, BCEWithLogitsLoss)"""
    seed, lr, epochs = 7, 0.5, 5
    x_train, _, y_train, _ = moons
    # the starting weights: the same seed with lr = 0 returns the untrained model
    w0, b0 = linear_weights(submission, train(submission, seed, moons, 0.0, 1)[1])
    _, model, loss_log, _ = train(submission, seed, moons, lr, epochs)
    w, b = linear_weights(submission, model)
    want_w, want_b, want_losses = replay(w0.float(), b0.float(), x_train, y_train, lr, epochs)
    what = (f"[weight, bias] after {epochs} epochs from the same start (each epoch: "
            "zero_grad, BCEWithLogitsLoss on all training points, backward, SGD step)")
    expect_close(torch.cat([w.ravel(), b]), torch.cat([want_w.ravel(), want_b]), what,
                 rtol=1e-4, atol=1e-5)
    expect_close(torch.tensor(loss_log, dtype=torch.float64), torch.tensor(want_losses),
                 "loss_log (the training loss of each epoch, before its update)", rtol=1e-4,
                 atol=1e-6)


@points(1, cell="test_train_classifier")
def test_train_classifier_acc_log_is_test_accuracy_before_each_update(submission, moons):
    """train_classifier: acc_log[e] is the test accuracy of the model before update e"""
    seed, lr, epochs = 11, 0.5, 6
    _, x_test, _, y_test = moons
    # the model after e updates, for e = 0 (lr = 0) and e = 1 .. epochs - 1; then the full run
    models = [train(submission, seed, moons, 0.0, 1)[1]]
    models += [train(submission, seed, moons, lr, e)[1] for e in range(1, epochs)]
    acc_log = train(submission, seed, moons, lr, epochs)[3]
    for e, model in enumerate(models):
        expect(isinstance(model, Remote), "train_classifier should return the trained model "
               "as its first value")
        logits = expect_tensor(submission.call(model, x_test), "model(x_test)",
                               shape=(len(x_test), 1), floating=True)
        acc = float(((logits > 0).double() == y_test.double()).double().mean())
        expect(abs(acc_log[e] - acc) <= 1.5 / len(x_test),
               f"acc_log[{e}] is not the test accuracy of the model before update {e}: "
               "measure the accuracy on (x_test, y_test), under torch.no_grad(), at the start "
               "of each epoch")


# -- circle_features ------------------------------------------------------------------------
@points(0.5, cell="test_circle_features")
def test_circle_features_shape(submission, device):
    """circle_features: two float features per point, on the points' device, each from its own point"""
    x = torch.randn(50, 2, generator=gen(20))
    r = submission.call_info("circle_features", x)
    feats = expect_tensor(r.value, "circle_features(x)", shape=(50, 2), floating=True)
    expect_finite(feats, "circle_features(x)")
    expect_device(r.devices, device, "circle_features")
    part = submission.call("circle_features", x[10:20])
    expect_close(part, feats[10:20].double(), "circle_features of a subset of the points "
                 "(each point's features should depend on that point only)", rtol=1e-5,
                 atol=1e-6)


@points(1.5, cell="test_circle_features")
def test_circle_features_separate_the_circles(submission, circles):
    """circle_features: a linear classifier on the features reaches test accuracy >= 0.95 on the circles"""
    x_train, x_test, y_train, y_test = circles
    f_train = expect_tensor(submission.call("circle_features", x_train),
                            "circle_features(x_train)", shape=(len(x_train), 2), floating=True)
    f_test = expect_tensor(submission.call("circle_features", x_test),
                           "circle_features(x_test)", shape=(len(x_test), 2), floating=True)
    expect_finite(f_train, "circle_features(x_train)")
    expect_finite(f_test, "circle_features(x_test)")
    mean = f_train.double().mean(0)
    std = f_train.double().std(0).clamp_min(1e-12)
    clf = LogisticRegression(C=1e4, max_iter=5000)
    clf.fit(((f_train.double() - mean) / std).numpy(), y_train.ravel().numpy())
    acc = float(clf.score(((f_test.double() - mean) / std).numpy(), y_test.ravel().numpy()))
    expect(acc >= 0.95, f"a linear classifier trained on circle_features of the training "
           f"points reaches a test accuracy of {acc:.3f} on the circles (at least 0.95 needed)")
