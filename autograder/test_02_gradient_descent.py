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
from torch import nn

from course.data import load_toy
from course.grading.checks import (
    ImportedLater,
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

# scikit-learn (the reference of the last test) loads while the tests before it run
SKLEARN = ImportedLater("sklearn.linear_model")


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


# -- the grader's own references, standing in for the student's functions in the tests of
# -- the functions that call them (so a mistake is charged once, in its own function's tests)
def reference_mse_loss(theta, X, y):
    return ((X @ theta - y) ** 2).mean()


def reference_mse_grad(theta, X, y):
    return (2.0 / X.shape[0]) * (X.T @ (X @ theta - y))


STAND_INS = {"mse_loss": reference_mse_loss, "mse_grad": reference_mse_grad}






def _as_number(value, what: str) -> torch.Tensor:
    """A loss as a 1-element float tensor, whatever it came as (its type has its own test)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    value = expect_tensor(value, what, floating=True)
    expect(value.numel() == 1, f"{what} should be a single number, got shape "
           f"{tuple(value.shape)} (check the shapes of X @ theta and y: both (m,))")
    return value.reshape(())


# -- mse_loss -------------------------------------------------------------------------------
@points(1.5, cell="test_mse_loss")
def test_mse_loss_value(submission):
    """mse_loss: equals (1/m) sum_i (theta^T x_i - y_i)^2"""
    for m, d, seed in ((50, 3, 1), (7, 1, 2), (1, 4, 3)):
        theta, X, y = random_problem(m, d, seed)
        loss = _as_number(submission.call("mse_loss", theta, X, y), f"mse_loss (m = {m}, d = {d})")
        want = ((X.double() @ theta.double() - y.double()) ** 2).mean()
        ratio = float(loss) / float(want)
        hint = ("it is m times the mean: divide the sum of squares by m" if abs(ratio - m) < 1e-3 * m
                and m > 1 else "it is the root of the mean square: leave out the sqrt"
                if abs(float(loss) - float(want) ** 0.5) <= 1e-5 * float(want) ** 0.5 else "")
        expect_close(loss, want, f"mse_loss (m = {m}, d = {d})", rtol=1e-5, atol=1e-6, hint=hint)


@points(0.25, cell="test_mse_loss")
def test_mse_loss_is_a_scalar_tensor(submission, device):
    """mse_loss: returns a 0-dim tensor (not a Python float) on the inputs' device"""
    theta, X, y = random_problem(20, 2, 4)
    r = submission.call_info("mse_loss", theta, X, y)
    expect(isinstance(r.value, torch.Tensor), "mse_loss should return a 0-dim tensor, got a "
           f"{type(r.value).__name__}: leave out .item() / float(), so autograd can use it")
    expect_tensor(r.value, "mse_loss(theta, X, y)", shape=(), floating=True)
    expect_device(r.devices, device, "mse_loss")


@points(0.25, cell="test_mse_loss")
def test_mse_loss_is_differentiable(submission):
    """mse_loss: built from torch operations, so autograd can differentiate it (judged when it returns a tensor: a Python float is test_mse_loss_is_a_scalar_tensor's, the value test_mse_loss_value's)"""
    theta, X, y = random_problem(30, 3, 13)
    try:
        value, grad = submission.call_grad("mse_loss", theta, X, y, wrt=0)
    except StudentFailure as exc:
        raise StudentFailure(f"mse_loss fails when theta requires grad: build it from torch "
                             f"operations on the tensors, with no .numpy() or .item() inside "
                             f"({exc})") from None
    if not isinstance(value, torch.Tensor):
        return
    expect(grad is not None, "autograd cannot differentiate mse_loss: its result is not built "
           "from theta by torch operations (no .numpy(), .item(), .detach() or "
           "torch.tensor(...) of a computed number inside)")
    grad = expect_tensor(grad, "autograd's gradient of mse_loss")
    expect(bool(torch.isfinite(grad).all()) and bool((grad != 0).any()),
           "autograd's gradient of mse_loss is zero or not finite: build the loss from theta by "
           "torch operations")


# -- mse_grad -------------------------------------------------------------------------------
def _grad_vector(value, d: int, what: str) -> torch.Tensor:
    """A gradient of any shape with d entries, flattened (the shape has its own test)."""
    value = expect_tensor(value, what, floating=True)
    expect(value.numel() == d, f"{what} has {value.numel()} entries for d = {d}: one per "
           "parameter expected (X^T (X theta - y) has d entries)")
    return value.reshape(d)


def _factor_hint(got: torch.Tensor, want: torch.Tensor, m: int) -> str:
    """Name the likely mistake when the gradient is the right one times a constant."""
    w, g = want.double(), got.double()
    if float(w.norm()) == 0:
        return ""
    c = float(g @ w / (w @ w))
    if float((g - c * w).norm()) > 1e-4 * float(g.norm() + w.norm()):
        return "check X^T (X theta - y): each entry should sum over all m examples"
    for factor, why in ((0.5, "the factor 2 of the square's derivative is missing"),
                        (2.0, "the factor 2 is counted twice"),
                        (-1.0, "the sign is flipped: it is X^T (X theta - y), prediction "
                               "minus target"),
                        (m, "it is m times too large: divide by m (the mean, not the sum)"),
                        (m / 2, "it is m / 2 times too large: the factor is 2 / m"),
                        (1 / m, "it is divided by m twice")):
        if m > 1 or factor in (0.5, 2.0, -1.0):
            if abs(c - factor) <= 1e-3 * abs(factor):
                return why
    return f"it is {c:.3g} times the gradient: check the constant factor 2 / m"


@points(1.5, cell="test_mse_grad")
def test_mse_grad_matches_autograd(submission):
    """mse_grad: equals autograd's gradient of the mean squared error at random theta"""
    for m, d, seed in ((200, 5, 5), (30, 2, 6), (3, 1, 7)):
        theta, X, y = random_problem(m, d, seed)
        grad = _grad_vector(submission.call("mse_grad", theta, X, y),
                            d, f"mse_grad (m = {m}, d = {d})")
        want = autograd_mse_grad(theta, X, y)
        scale = max(1.0, float(want.abs().max()))
        expect_close(grad, want, f"mse_grad (m = {m}, d = {d})", rtol=1e-5, atol=1e-6 * scale,
                     hint=_factor_hint(grad, want, m))


#: Names that only autograd code mentions (read from the function's source in the grader).
AUTOGRAD_NAMES = {"backward", "autograd", "requires_grad", "requires_grad_", "enable_grad",
                  "set_grad_enabled"}


@points(0.5, cell="test_mse_grad")
def test_mse_grad_without_autograd(submission):
    """mse_grad: computed by hand, with no autograd: the same result with gradients switched off, and no autograd in its code"""
    theta, X, y = random_problem(40, 3, 8)
    usual = _grad_vector(submission.call("mse_grad", theta, X, y), 3, "mse_grad(theta, X, y)")
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
    off = _grad_vector(off, 3, "mse_grad with autograd switched off")
    expect_close(off, usual.double(), "mse_grad with autograd switched off", rtol=1e-6,
                 atol=1e-7)
    # the switch above is set inside the worker, where the student's code could turn it back
    # on (torch.enable_grad()); what the code mentions is read here, in the grader
    used = submission.plan.names_used("mse_grad")
    expect(used is not None, "the notebook's mse_grad cell could not be read")
    found = sorted(used & AUTOGRAD_NAMES)
    expect(not found, f"mse_grad uses autograd ({', '.join(found)}): compute "
           "(2/m) X^T (X theta - y) from the formula")


@points(0.5, cell="test_mse_grad")
def test_mse_grad_shape_dtype_and_device(submission, device):
    """mse_grad: returns a (d,) tensor with theta's dtype, on the inputs' device"""
    theta, X, y = random_problem(25, 4, 9)
    r = submission.call_info("mse_grad", theta, X, y)
    expect_tensor(r.value, "mse_grad(theta, X, y)", shape=(4,), floating=True)
    expect_device(r.devices, device, "mse_grad")
    g = expect_tensor(submission.call("mse_grad", theta.double(), X.double(), y.double()),
                      "mse_grad of float64 inputs", floating=True)
    expect(g.dtype == torch.float64, f"mse_grad returned {g.dtype} for float64 inputs: keep "
           "theta's dtype (no .float() or fixed dtype=)")


@points(0.5, cell="test_mse_grad")
def test_mse_grad_is_vectorised(submission):
    """mse_grad: vectorised, no Python loop over examples (200,000 examples quickly; inputs drawn when the test runs)"""
    g = unseen_generator()
    m, d = 200_000, 4
    X, y, theta = torch.randn(m, d, generator=g), torch.randn(m, generator=g), torch.randn(d, generator=g)
    submission.call("mse_grad", theta, X[:100].clone(), y[:100].clone())  # warm-up
    r = submission.call_info("mse_grad", theta, X, y, timeout=60)
    _grad_vector(r.value, d, "mse_grad(theta, X, y)")
    bound = speed_bound(r.compute_s, 0.3, 100, lambda: best_seconds(lambda: X.T @ (X @ theta - y)))
    expect(r.compute_s <= bound, f"mse_grad computed for {r.compute_s:.2f} s for {m:,} examples "
           f"(allowed {bound:.2f} s): use one matrix-vector product, no Python loop over examples")


# -- gradient_descent -----------------------------------------------------------------------
# Every test of gradient_descent runs it with the grader's mse_loss and mse_grad standing in
# for the notebook's (STAND_INS): a wrong mse_grad costs mse_grad's points only.
def _gd(submission, X, y, lr, n_epochs, **kw):
    return submission.call_info("gradient_descent", X, y, lr, n_epochs, stand_in=STAND_INS, **kw)


def _gd_theta(value, d: int) -> torch.Tensor:
    expect(isinstance(value, (tuple, list)) and len(value) == 2,
           "gradient_descent should return a tuple (theta, loss_log)")
    theta = expect_tensor(value[0], "theta", floating=True)
    expect(theta.numel() == d, f"theta has shape {tuple(theta.shape)}: one entry per column "
           f"of X expected ({d})")
    theta = theta.reshape(d)
    expect_finite(theta, "theta")
    return theta


def _gd_log(value, n_epochs: int) -> list[float]:
    loss_log = value[1]
    expect(isinstance(loss_log, list) and all(isinstance(v, float) for v in loss_log),
           "loss_log should be a list of Python floats (append loss.item(), not the tensor)")
    expect(len(loss_log) == n_epochs, f"loss_log has {len(loss_log)} entries for "
           f"n_epochs = {n_epochs}: record one loss per epoch")
    return loss_log


def replay_gd(X, y, lr: float, n_epochs: int, start=None) -> tuple[torch.Tensor, list[float]]:
    """The prescribed loop, here, in float64."""
    X, y = X.double(), y.double()
    theta = torch.zeros(X.shape[1], dtype=torch.float64) if start is None else start.double()
    log = []
    for _ in range(n_epochs):
        log.append(float(reference_mse_loss(theta, X, y)))
        theta = theta - lr * reference_mse_grad(theta, X, y)
    return theta, log


@points(1, cell="test_gradient_descent")
def test_gradient_descent_update_rule(submission):
    """gradient_descent: starts at theta = 0 and makes n_epochs steps theta <- theta - lr * mse_grad(theta)"""
    _, X, y = random_problem(40, 3, 10)
    lr = 0.02
    theta0 = _gd_theta(_gd(submission, X, y, lr, 0).value, 3)
    if not bool((theta0 == 0).all()):
        one_step = torch.allclose(theta0.double(), replay_gd(X, y, lr, 1)[0], rtol=1e-4,
                                  atol=1e-6)
        expect(False, "gradient_descent with n_epochs = 0 made an update: n_epochs counts the "
               "updates (for _ in range(n_epochs))" if one_step else "gradient_descent with "
               "n_epochs = 0 should return the start theta_0 = zeros(d), X's dtype")
    n_epochs = 3
    theta = _gd_theta(_gd(submission, X, y, lr, n_epochs).value, 3)
    want, _ = replay_gd(X, y, lr, n_epochs)
    if not torch.allclose(theta.double(), want, rtol=1e-4, atol=1e-6):
        near = [why for other, why in (
            (replay_gd(X, y, -lr, n_epochs)[0], "the step goes uphill: theta - lr * grad"),
            (replay_gd(X, y, lr, n_epochs + 1)[0], "it makes one update too many"),
            (replay_gd(X, y, lr, n_epochs - 1)[0], "it makes one update too few"))
            if torch.allclose(theta.double(), other, rtol=1e-4, atol=1e-6)]
        expect_close(theta, want, f"theta after {n_epochs} epochs", rtol=1e-4, atol=1e-6,
                     hint=near[0] if near else "start at zeros, then n_epochs times theta <- "
                     "theta - lr * mse_grad(theta, X, y), with the lr given")


@points(1, cell="test_gradient_descent")
def test_gradient_descent_reaches_least_squares(submission):
    """gradient_descent: converges to the least-squares solution (torch.linalg.lstsq)"""
    g = gen(11)
    m = 200
    X = torch.cat([torch.randn(m, 2, generator=g), torch.ones(m, 1)], dim=1)
    y = X @ torch.tensor([1.5, -2.0, 0.7]) + 0.3 * torch.randn(m, generator=g)
    # 100 epochs: the prescribed loop is within 3e-9 of the solution (its contraction is
    # 1 - 0.1 * 1.79 per epoch), 1e6 times inside the tolerance; every epoch is two round
    # trips to the grader's stand-ins, so 500 took 6 s of the grading for nothing more
    theta = _gd_theta(_gd(submission, X, y, 0.1, 100).value, 3)
    best = torch.linalg.lstsq(X.double(), y.double().unsqueeze(1)).solution.squeeze(1)
    expect_close(theta, best, "theta after 100 epochs with lr = 0.1 (compared with the "
                 "least-squares solution)", rtol=1e-3, atol=1e-3)


@points(0.5, cell="test_gradient_descent")
def test_gradient_descent_loss_log(submission):
    """gradient_descent: loss_log[t] is mse_loss at the theta of t updates, recorded before update t, one Python float per epoch (judged against its own returned thetas)"""
    _, X, y = random_problem(60, 2, 12)
    lr, n_epochs = 0.05, 6
    loss_log = _gd_log(_gd(submission, X, y, lr, n_epochs).value, n_epochs)
    # theta_t is what the same call returns after t updates: the log is judged on its own,
    # whatever the update does (that is test_gradient_descent_update_rule's)
    for t in range(n_epochs):
        theta_t = _gd_theta(_gd(submission, X, y, lr, t).value, 2)
        want = float(reference_mse_loss(theta_t.double(), X.double(), y.double()))
        if abs(loss_log[t] - want) > 1e-4 * max(want, 1e-6):
            after = float(reference_mse_loss(
                _gd_theta(_gd(submission, X, y, lr, t + 1).value, 2).double(), X.double(),
                y.double()))
            expect(abs(loss_log[t] - after) > 1e-4 * max(after, 1e-6),
                   f"loss_log[{t}] is the loss after update {t}: record the loss before the "
                   "update (loss_log[0] is the loss of theta_0 = 0)")
            expect(False, f"loss_log[{t}] is not mse_loss(theta_{t}, X, y), the loss of the "
                   f"parameters after {t} updates")


@points(0.5, cell="test_gradient_descent")
def test_gradient_descent_keeps_dtype_and_device(submission, device):
    """gradient_descent: theta has X's dtype (float64 in, float64 out) and device"""
    _, X, y = random_problem(30, 2, 14)
    r = _gd(submission, X, y, 0.01, 2)
    _gd_theta(r.value, 2)
    expect_device(r.devices, device, "gradient_descent")
    theta = _gd_theta(_gd(submission, X.double(), y.double(), 0.01, 2).value, 2)
    expect(theta.dtype == torch.float64, f"theta is {theta.dtype} for float64 X: start from "
           "zeros with X's dtype and device (torch.zeros(d, dtype=X.dtype, device=X.device))")


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
    return r, model, loss_log, acc_log


def check_log(log, name: str, max_epoch: int) -> list[float]:
    """A log as the docstring says (checked only by the tests of that log)."""
    expect(isinstance(log, list) and all(isinstance(v, float) for v in log),
           f"{name} should be a list of Python floats (use .item())")
    expect(len(log) == max_epoch, f"{name} has {len(log)} entries for max_epoch = "
           f"{max_epoch}: record one value per epoch")
    return log


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
    """train_classifier: returns (nn.Linear(2, 1) on the inputs' device, loss_log, acc_log); the logs have their own tests"""
    _, model, _, _ = blobs_run
    expect(isinstance(model, Remote) and model.type == "Linear",
           "the first value returned should be the trained nn.Linear(2, 1), got "
           f"{model.type if isinstance(model, Remote) else type(model).__name__}")
    linear_weights(submission, model)
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
    loss_log = check_log(blobs_run[2], "loss_log", 80)
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
           epochs: int, zero_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The prescribed loop, here, from the given starting weights (float32 like the student)."""
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(w0)
        model.bias.copy_(b0)
    loss_fn = nn.BCEWithLogitsLoss()
    losses = []
    for _ in range(epochs):
        if zero_grad:
            model.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        # torch.optim.SGD's step (no momentum, no weight decay: p <- p - lr * grad, the same
        # add_ it does), written out: the optimizer's first step imports torch._dynamo, 1.3 s
        # of CPU in every grading
        with torch.no_grad():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        losses.append(loss.item())
    return model.weight.detach().double(), model.bias.detach().double(), losses


@points(1.5, cell="test_train_classifier")
def test_train_classifier_follows_the_sgd_recipe(submission, moons):
    """train_classifier: each epoch is one SGD step on the current full-batch gradient (zero_grad, BCEWithLogitsLoss)"""
    seed, lr, epochs = 7, 0.5, 5
    x_train, _, y_train, _ = moons
    # the starting weights: the same seed with max_epoch = 0 returns the untrained model
    w0, b0 = linear_weights(submission, train(submission, seed, moons, lr, 0)[1])
    _, model, loss_log, _ = train(submission, seed, moons, lr, epochs)
    w, b = linear_weights(submission, model)
    loss_log = check_log(loss_log, "loss_log", epochs)
    want_w, want_b, want_losses = replay(w0.float(), b0.float(), x_train, y_train, lr, epochs)
    what = (f"[weight, bias] after {epochs} epochs from the same start (each epoch: "
            "zero_grad, BCEWithLogitsLoss on all training points, backward, SGD step)")
    got = torch.cat([w.ravel(), b])
    acc_w, acc_b, _ = replay(w0.float(), b0.float(), x_train, y_train, lr, epochs, zero_grad=False)
    accumulated = torch.allclose(got, torch.cat([acc_w.ravel(), acc_b]), rtol=1e-4, atol=1e-5)
    expect_close(got, torch.cat([want_w.ravel(), want_b]), what, rtol=1e-4, atol=1e-5,
                 hint="the gradients add up over the epochs: call optimizer.zero_grad() before "
                 "each backward()" if accumulated else "")
    expect_close(torch.tensor(loss_log, dtype=torch.float64), torch.tensor(want_losses),
                 "loss_log (the training loss of each epoch, before its update)", rtol=1e-4,
                 atol=1e-6)


@points(1, cell="test_train_classifier")
def test_train_classifier_acc_log_is_test_accuracy_before_each_update(submission, moons):
    """train_classifier: acc_log[e] is the test accuracy of the model before update e, one float in [0, 1] per epoch"""
    seed, lr, epochs = 11, 0.5, 6
    _, x_test, _, y_test = moons
    # the model after e updates (max_epoch = e, the same seed and lr), then the full run
    models = [train(submission, seed, moons, lr, e)[1] for e in range(epochs)]
    acc_log = check_log(train(submission, seed, moons, lr, epochs)[3], "acc_log", epochs)
    expect(all(0.0 <= a <= 1.0 for a in acc_log), "acc_log entries should be fractions in [0, 1]")
    x_train, _, y_train, _ = moons
    logits = []
    for model in models:
        expect(isinstance(model, Remote), "train_classifier should return the trained model "
               "as its first value")
        logits.append(expect_tensor(submission.call(model, x_test), "model(x_test)",
                                    shape=(len(x_test), 1), floating=True))

    def acc(z: torch.Tensor, y: torch.Tensor, at: float = 0.0) -> float:
        return float(((z > at).double() == y.double()).double().mean())

    tol = 1.5 / len(x_test)
    wrong = [e for e in range(epochs) if abs(acc_log[e] - acc(logits[e], y_test)) > tol]
    if not wrong:
        return
    # name the mistake whose accuracies explain every entry of the log
    on_train = [submission.call(m, x_train) for m in models]
    candidates = {
        "it is the accuracy after the update: measure it at the start of the epoch, before "
        "optimizer.step()": [acc(logits[e + 1], y_test) for e in range(epochs - 1)],
        "it is the training accuracy: measure it on (x_test, y_test)":
            [acc(z, y_train) if isinstance(z, torch.Tensor) and z.shape == y_train.shape
             else float("nan") for z in on_train],
        "the model outputs logits: predict 1 where model(x_test) > 0 (sigmoid > 0.5), not "
        "where the logit > 0.5": [acc(z, y_test, 0.5) for z in logits],
    }
    why = [text for text, accs in candidates.items()
           if all(abs(acc_log[e] - a) <= tol for e, a in enumerate(accs))]
    expect(False, f"acc_log[{wrong[0]}] is not the test accuracy of the model before update "
           f"{wrong[0]}: " + (why[0] if why else "measure the accuracy on (x_test, y_test), "
                              "under torch.no_grad(), at the start of each epoch"))


# -- circle_features ------------------------------------------------------------------------
@points(0.25, cell="test_circle_features")
def test_circle_features_shape_dtype_and_device(submission, device):
    """circle_features: (N, 2) float features with the points' dtype, on the points' device"""
    x = torch.randn(50, 2, generator=gen(20))
    r = submission.call_info("circle_features", x)
    feats = expect_tensor(r.value, "circle_features(x)", shape=(50, 2), floating=True)
    expect_finite(feats, "circle_features(x)")
    expect_device(r.devices, device, "circle_features")
    f64 = expect_tensor(submission.call("circle_features", x.double()),
                        "circle_features of float64 points", floating=True)
    expect(f64.dtype == torch.float64, f"circle_features returned {f64.dtype} for float64 "
           "points: keep the points' dtype")


@points(0.25, cell="test_circle_features")
def test_circle_features_each_point_by_a_fixed_formula(submission):
    """circle_features: each point's features come from that point alone, the same every call (no batch statistics, no randomness)"""
    x = torch.randn(50, 2, generator=gen(20))
    feats = _feature_matrix(submission.call("circle_features", x), 50, "circle_features(x)")
    again = _feature_matrix(submission.call("circle_features", x), 50, "circle_features(x)")
    expect_close(again, feats.double(), "circle_features(x) called a second time on the same "
                 "points", rtol=1e-6, atol=1e-7, hint="the features must not be random")
    part = _feature_matrix(submission.call("circle_features", x[10:20]), 10,
                           "circle_features(x[10:20])")
    expect_close(part, feats[10:20].double(), "circle_features of a subset of the points",
                 rtol=1e-5, atol=1e-6, hint="each point's features should depend on that point "
                 "only (no mean, std or max over the batch)")


def _feature_matrix(value, n: int, what: str) -> torch.Tensor:
    """Features of any float layout with n rows (the shape has its own test)."""
    value = expect_tensor(value, what, floating=True)
    expect(value.dim() >= 1 and value.shape[0] == n, f"{what} has shape {tuple(value.shape)}: "
           f"one row per point expected ({n})")
    return value.reshape(n, -1)


@points(1.5, cell="test_circle_features")
def test_circle_features_separate_the_circles(submission, circles):
    """circle_features: a linear classifier on the features reaches test accuracy >= 0.95 on the circles"""
    x_train, x_test, y_train, y_test = circles
    # any number of feature columns: (N, 2) is test_circle_features_shape_dtype_and_device's
    f_train = _feature_matrix(submission.call("circle_features", x_train), len(x_train),
                              "circle_features(x_train)")
    f_test = _feature_matrix(submission.call("circle_features", x_test), len(x_test),
                             "circle_features(x_test)")
    expect(f_train.shape[1] == f_test.shape[1], "circle_features gave the training and test "
           "points different numbers of features")
    expect_finite(f_train, "circle_features(x_train)")
    expect_finite(f_test, "circle_features(x_test)")
    mean = f_train.double().mean(0)
    std = f_train.double().std(0).clamp_min(1e-12)
    clf = SKLEARN["sklearn.linear_model"].LogisticRegression(C=1e4, max_iter=5000)
    clf.fit(((f_train.double() - mean) / std).numpy(), y_train.ravel().numpy())
    acc = float(clf.score(((f_test.double() - mean) / std).numpy(), y_test.ravel().numpy()))
    expect(acc >= 0.95, f"a linear classifier trained on circle_features of the training "
           f"points reaches a test accuracy of {acc:.3f} on the circles (at least 0.95 needed)")
