"""Hidden tests of 05_vae (instructor only: never released).

Each test names the nbgrader grade cell its points go to. Student code runs in the worker
(``submission``); every verdict is computed here, in the grader's own torch, against references
written in float64. The VAE's methods are judged on the student's own model (its layers are the
student's design); vae_loss by differences of two calls, so a mistake in one of its two terms
is charged only by that term's test. While train_vae runs, the grader's vae_loss and corrupt
stand in for the notebook's (STAND_INS, recording what the loop gives them), so the loop is
judged on its own. The three tests that train a model (learns, denoises, detects unseen
digits) use the notebook's VAE: no torch-only module returns (recon, mu, log_var), so a broken
VAE may also fail them. Their thresholds come from the reference solution over seeds 0 to 4
(the comment above each constant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
import torch

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
from course.grading.sandbox import differentiable
from course.grading.session import Ref, Remote, StudentFailure

# The training tests: N_FIT MNIST training images, FIT_EPOCHS epochs of FIT_BATCH (192 steps),
# Adam with FIT_LR, scored on N_EVAL test images. The thresholds below come from the reference
# solution run that way with seeds 0-4 (the notebook's VAE, loop and loss written in plain torch).
N_FIT, N_EVAL, FIT_EPOCHS, FIT_BATCH, FIT_LR = 4096, 1000, 3, 64, 3e-3
# Test negative ELBO per image after those steps (z = mu): reference 133.1 to 134.8 nats; an
# untrained VAE scores about 544, the best constant image (the training mean) 201. Bound: 170.
ELBO_BOUND = 170.0
# Denoising (noise 0.5): MSE of decode(mu) to the clean images over the noisy input's MSE,
# reference 0.369 to 0.393; the mean image reaches 0.562, the plain (not denoising) loop 0.57
# to 0.65. Bound: 0.47.
DENOISE_RATIO, NOISE = 0.47, 0.5
# Anomalies: a VAE trained on N_FIT images of the digits 0-4, AUC of anomaly_scores for 5-9
# against 0-4 on 2,000 test images: reference 0.740 to 0.751; the score with the wrong sign
# 0.249 to 0.260. Floor: 0.65.
AUC_FLOOR = 0.65


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- grader-side references (float64) -------------------------------------------------------
def ref_bce(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per image, summed over pixels, with torch's clamp of the logs."""
    r, t = recon.double(), x.double()
    return -(t * r.log().clamp_min(-100) + (1 - t) * (1 - r).log().clamp_min(-100)).sum(-1)


def ref_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) per row."""
    m, lv = mu.double(), log_var.double()
    return -0.5 * (1 + lv - m ** 2 - lv.exp()).sum(-1)


def ref_vae_loss(recon, x, mu, log_var):
    return ref_bce(recon, x).sum() + ref_kl(mu, log_var).sum()


def ref_corrupt(x: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    return (x + noise * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


def sklearn_auc(scores: torch.Tensor, is_anomaly: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(is_anomaly.numpy(), scores.double().numpy()))


class Recorder:
    """The grader's vae_loss and corrupt standing in for the notebook's while train_vae runs,
    keeping what each call received and returned (detached, on the CPU)."""

    def __init__(self, corrupt_seed: int = 0) -> None:
        self.losses: list[dict] = []
        self.corrupted: list[dict] = []
        self._gen = gen(corrupt_seed)

        def vae_loss(recon, x, mu, log_var):
            value = ref_vae_loss(recon, x, mu, log_var).to(recon.dtype)
            self.losses.append({"recon": recon.detach().clone(), "x": x.detach().clone(),
                                "mu": mu.detach().clone(), "value": float(value.detach())})
            return value

        def corrupt(x, noise, generator=None):
            out = ref_corrupt(x, float(noise), self._gen)
            self.corrupted.append({"x": x.clone(), "noise": float(noise), "out": out.clone()})
            return out

        self.stand_in = {"vae_loss": differentiable(vae_loss), "corrupt": corrupt}


def mnist(split: str, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    import course.data
    X, y = course.data.load_mnist(split, flatten=True)
    return X[offset:offset + n].clone(), y[offset:offset + n].clone()


def build(submission, *dims, seed: int = 0) -> Remote:
    submission.call(Ref("torch.manual_seed"), seed)
    model = submission.call("VAE", *dims)
    expect(isinstance(model, Remote), f"VAE{dims} should build an nn.Module")
    return model


def triple(value: object, what: str) -> tuple:
    expect(isinstance(value, tuple | list) and len(value) == 3,
           f"{what} should return a tuple (recon, mu, log_var), got {type(value).__name__}")
    return tuple(value)


def pair(value: object, what: str) -> tuple:
    expect(isinstance(value, tuple | list) and len(value) == 2,
           f"{what} should return a tuple (mu, log_var), got {type(value).__name__}")
    return tuple(value)


def cpu_generator(submission, seed: int) -> Remote:
    g = submission.call(Ref("torch.Generator"), device="cpu")
    expect(isinstance(g, Remote), "could not create a torch.Generator in the notebook")
    submission.method(g, "manual_seed", seed)
    return g


def scalar(value: object, what: str) -> float:
    t = expect_tensor(value, what, floating=True)
    expect(t.dim() == 0, f"{what} should return a 0-dim tensor (a scalar), got shape "
           f"{tuple(t.shape)}")
    expect_finite(t, what)
    return float(t)


def images(rows: int, dim: int, seed: int) -> torch.Tensor:
    """Pixels in [0, 1] with exact 0s and 1s, as in MNIST."""
    x = torch.rand(rows, dim, generator=gen(seed))
    return torch.where(x < 0.3, 0.0, torch.where(x > 0.8, 1.0, x))


# -- VAE ------------------------------------------------------------------------------------
@points(1, cell="test_vae")
def test_vae_shapes(submission, device):
    """VAE: encode, decode and forward give the documented shapes for any sizes; latent_dim kept"""
    for dims, rows in (((784, 400, 20), 8), ((50, 16, 3), 5)):
        model = build(submission, *dims)
        d_in, _, d_lat = dims
        x = images(rows, d_in, 1)
        mu, log_var = pair(submission.method(model, "encode", x), f"VAE{dims}.encode(x)")
        expect_tensor(mu, f"VAE{dims}.encode(x)[0] (mu)", shape=(rows, d_lat), floating=True)
        expect_tensor(log_var, f"VAE{dims}.encode(x)[1] (log_var)", shape=(rows, d_lat),
                      floating=True)
        z = torch.randn(rows, d_lat, generator=gen(2))
        out = submission.method(model, "decode", z)
        expect_tensor(out, f"VAE{dims}.decode(z)", shape=(rows, d_in), floating=True)
        recon, mu2, lv2 = triple(submission.call(model, x), f"VAE{dims}(x)")
        expect_tensor(recon, f"VAE{dims}(x)[0] (recon)", shape=(rows, d_in), floating=True)
        expect_tensor(mu2, f"VAE{dims}(x)[1] (mu)", shape=(rows, d_lat), floating=True)
        expect_tensor(lv2, f"VAE{dims}(x)[2] (log_var)", shape=(rows, d_lat), floating=True)
        kept = submission.attr(model, "latent_dim")
        expect(kept == d_lat, f"VAE{dims}.latent_dim should be {d_lat} (keep latent_dim as "
               "self.latent_dim: sample() reads it)")


def _encoder_head(state: Mapping, hidden: int, latent: int) -> tuple[str, str]:
    heads = [k for k, v in state.items() if isinstance(v, torch.Tensor)
             and tuple(v.shape) == (2 * latent, hidden)]
    expect(len(heads) == 1, f"VAE(30, {hidden}, {latent}) should end its encoder with one "
           f"nn.Linear({hidden}, {2 * latent}) giving mu and log_var together "
           f"(found {len(heads)} weight(s) of that shape)")
    bias = heads[0][: -len("weight")] + "bias" if heads[0].endswith("weight") else ""
    expect(bias in state and tuple(state[bias].shape) == (2 * latent,),
           f"the encoder's nn.Linear({hidden}, {2 * latent}) should have a bias")
    return heads[0], bias


@points(1, cell="test_vae")
def test_vae_encode_splits_one_layer(submission):
    """VAE.encode: mu is the first half of one Linear's 2 * latent_dim outputs, log_var the second"""
    hidden, latent = 24, 4
    model = build(submission, 30, hidden, latent, seed=3)
    state = submission.method(model, "state_dict")
    expect(isinstance(state, Mapping), "the VAE's state_dict could not be read back")
    weight, bias = _encoder_head(state, hidden, latent)
    x = images(6, 30, 4)
    mu0, _ = pair(submission.method(model, "encode", x), "VAE.encode(x)")
    mu0 = expect_tensor(mu0, "VAE.encode(x)[0]", shape=(6, latent), floating=True)
    changed = {k: v.clone() for k, v in state.items()}
    changed[weight][latent:] = 0.0  # the second half now gives the constant of its bias
    changed[bias][latent:] = torch.linspace(-1.0, 1.0, latent)
    submission.method(model, "load_state_dict", changed)
    mu, log_var = pair(submission.method(model, "encode", x), "VAE.encode(x)")
    mu = expect_tensor(mu, "VAE.encode(x)[0]", shape=(6, latent), floating=True)
    log_var = expect_tensor(log_var, "VAE.encode(x)[1]", shape=(6, latent), floating=True)
    want = torch.linspace(-1.0, 1.0, latent).expand(6, latent)
    expect(torch.allclose(log_var.cpu().double(), want.double(), atol=1e-5),
           "log_var should be the second half of the encoder's last nn.Linear outputs "
           "(torch.chunk(h, 2, dim=-1) gives (mu, log_var) in that order), used as they are")
    expect(torch.allclose(mu.cpu(), mu0.cpu(), atol=1e-5),
           "mu should be the first half of the encoder's last nn.Linear outputs, used as they "
           "are (torch.chunk(h, 2, dim=-1)[0])")


@points(0.5, cell="test_vae")
def test_vae_decode_ends_with_a_sigmoid(submission):
    """VAE.decode: outputs in (0, 1) that reach near 0 and near 1 for large codes (one sigmoid)"""
    model = build(submission, 40, 32, 3, seed=5)
    z = torch.randn(200, 3, generator=gen(6)) * 60
    out = expect_tensor(submission.method(model, "decode", z), "VAE.decode(z)",
                        shape=(200, 40), floating=True).double()
    expect_finite(out, "VAE.decode(z)")
    expect(float(out.min()) >= 0 and float(out.max()) <= 1,
           "VAE.decode should end with a sigmoid: its outputs are pixel values in [0, 1]")
    expect(float(out.min()) < 0.01 and float(out.max()) > 0.99,
           "for codes far from the origin VAE.decode never gets near 0 or 1: apply the "
           "sigmoid once, to the last nn.Linear's output (twice squeezes into (0.5, 0.73))")


@points(1, cell="test_vae")
def test_vae_reparameterize_statistics(submission):
    """VAE.reparameterize: mu + exp(log_var / 2) * standard normal noise (mean and spread)"""
    model = build(submission, 10, 8, 4, seed=7)
    n = 20_000
    mu = torch.tensor([0.0, 2.0, -1.0, 0.5]).expand(n, 4).clone()
    log_var = torch.tensor([0.0, math.log(4.0), math.log(0.25), -3.0]).expand(n, 4).clone()
    g = cpu_generator(submission, 8)
    z = expect_tensor(submission.method(model, "reparameterize", mu, log_var, g),
                      "VAE.reparameterize(mu, log_var, generator)", shape=(n, 4), floating=True)
    expect_finite(z, "VAE.reparameterize(mu, log_var, generator)")
    z = z.cpu().double()
    sd = (0.5 * log_var[0].double()).exp()
    expect(bool((z.std(0) > 0.01).any()),
           "VAE.reparameterize returned mu itself: add exp(log_var / 2) * eps, eps drawn from "
           "a standard normal (torch.randn)")
    # 20,000 draws: the sample mean is within 5 standard errors, the spread within 4 %
    expect(bool(((z.mean(0) - mu[0]).abs() <= 5 * sd / math.sqrt(n)).all()),
           "the codes of VAE.reparameterize are not centred on mu: z = mu + sigma * eps with "
           "eps of mean 0 (torch.randn, not torch.rand)")
    ratio = z.std(0) / sd
    expect(bool(((ratio - 1).abs() <= 0.04).all()),
           "the spread of VAE.reparameterize's codes is not sigma = exp(log_var / 2): "
           + ("log_var is the log of the variance, so sigma = exp(0.5 * log_var), not "
              "exp(log_var) and not log_var itself" if float((ratio - 1).abs().max()) > 0.3
              else "eps should be standard normal (torch.randn)"))


@points(0.5, cell="test_vae")
def test_vae_reparameterize_uses_the_generator(submission):
    """VAE.reparameterize: the same generator seed gives the same z, another seed another z; the
    global generator only when none is given"""
    model = build(submission, 10, 8, 3, seed=9)
    mu, log_var = torch.randn(50, 3, generator=gen(10)), torch.randn(50, 3, generator=gen(11))

    def draw(seed: int | None, global_seed: int) -> torch.Tensor:
        submission.call(Ref("torch.manual_seed"), global_seed)
        args = (mu, log_var) if seed is None else (mu, log_var, cpu_generator(submission, seed))
        return expect_tensor(submission.method(model, "reparameterize", *args),
                             "VAE.reparameterize", shape=(50, 3), floating=True).cpu()

    a, b, c = draw(1, 100), draw(1, 200), draw(2, 100)
    expect(torch.equal(a, b), "VAE.reparameterize gave different codes for two generators "
           "with the same seed: draw eps with generator=generator (on the CPU, then .to(mu."
           "device)), not from torch's global generator")
    expect(not torch.equal(a, c), "VAE.reparameterize gave the same codes for generators with "
           "different seeds: draw eps from the generator")
    d, e = draw(None, 100), draw(None, 100)
    expect(torch.equal(d, e) and not torch.equal(d, draw(None, 200)),
           "without a generator VAE.reparameterize should draw eps from torch's global "
           "generator (torch.randn_like(mu))")


@points(0.5, cell="test_vae")
def test_vae_reparameterize_gradients(submission):
    """VAE.reparameterize: gradients flow to both mu and log_var"""
    model = build(submission, 10, 8, 3, seed=12)
    mu, log_var = torch.randn(20, 3, generator=gen(13)), torch.randn(20, 3, generator=gen(14))
    for wrt, name in ((0, "mu"), (1, "log_var")):
        value, grad = submission.call_grad(model, mu, log_var, cpu_generator(submission, 3),
                                           wrt=wrt, method="reparameterize")
        expect(isinstance(value, torch.Tensor),
               "VAE.reparameterize should return a tensor of codes")
        expect(grad is not None and bool(torch.isfinite(grad).all()) and bool((grad != 0).any()),
               f"no gradient reaches {name} through VAE.reparameterize: compute z = mu + "
               "torch.exp(0.5 * log_var) * eps with torch operations (eps alone is random; no "
               ".detach(), .item() or torch.tensor(...) of mu or log_var)")


@points(0.5, cell="test_vae")
def test_vae_forward_decodes_a_reparameterized_code(submission):
    """VAE.forward: (decode(reparameterize(mu, log_var, generator)), mu, log_var) of encode(x)"""
    model = build(submission, 30, 16, 4, seed=15)
    x = images(12, 30, 16)
    mu, log_var = pair(submission.method(model, "encode", x), "VAE.encode(x)")
    mu = expect_tensor(mu, "VAE.encode(x)[0]", shape=(12, 4), floating=True)
    log_var = expect_tensor(log_var, "VAE.encode(x)[1]", shape=(12, 4), floating=True)
    g = cpu_generator(submission, 17)
    submission.call(Ref("torch.manual_seed"), 18)  # the same global state for both
    z = submission.method(model, "reparameterize", mu, log_var, g)
    z = expect_tensor(z, "VAE.reparameterize", shape=(12, 4), floating=True)
    want = expect_tensor(submission.method(model, "decode", z), "VAE.decode(z)",
                         shape=(12, 30), floating=True)
    g = cpu_generator(submission, 17)
    submission.call(Ref("torch.manual_seed"), 18)
    out = submission.call(model, x, generator=g)
    recon, mu2, lv2 = triple(out, "VAE(x, generator=generator)")
    for got, ref, name in ((mu2, mu, "mu"), (lv2, log_var, "log_var")):
        expect_close(got, ref.cpu(), f"VAE(x)'s {name}", rtol=1e-5, atol=1e-6,
                     hint=f"forward should return encode(x)'s {name} as its "
                     f"{'second' if name == 'mu' else 'third'} value")
    expect_close(recon, want.cpu(), "VAE(x, generator)'s recon", rtol=1e-4, atol=1e-6,
                 hint="forward should return decode(reparameterize(mu, log_var, generator)), "
                 "passing its generator on, as its first value")


# -- vae_loss -------------------------------------------------------------------------------
def _loss_inputs(seed: int, rows: int = 16, d: int = 30, latent: int = 5):
    g = gen(seed)
    recon = torch.rand(rows, d, generator=g) * 0.98 + 0.01
    x = images(rows, d, seed + 1)
    mu = torch.randn(rows, latent, generator=g)
    log_var = torch.randn(rows, latent, generator=g)
    return recon, x, mu, log_var


@points(1.5, cell="test_vae_loss")
def test_vae_loss_reconstruction_term(submission):
    """vae_loss: the binary cross-entropy summed over pixels and images (with mu, log_var fixed)"""
    recon, x, mu, log_var = _loss_inputs(20)
    recon2 = torch.rand(recon.shape, generator=gen(22)) * 0.98 + 0.01
    a = scalar(submission.call("vae_loss", recon, x, mu, log_var), "vae_loss(...)")
    b = scalar(submission.call("vae_loss", recon2, x, mu, log_var), "vae_loss(...)")
    want = float(ref_bce(recon, x).sum() - ref_bce(recon2, x).sum())
    got = a - b
    ok = abs(got - want) <= 1e-3 * abs(want) + 1e-3
    if not ok and abs(got * recon.numel() - want) <= 1e-3 * abs(want):
        expect(False, "vae_loss's reconstruction term is averaged: sum the binary "
               "cross-entropy over pixels and images (reduction='sum')")
    if not ok and abs(got * len(x) - want) <= 1e-3 * abs(want):
        expect(False, "vae_loss's reconstruction term is averaged over the images: sum it "
               "(reduction='sum'), the loss of a batch is its total")
    expect_close(torch.tensor(got), torch.tensor(want), "vae_loss's reconstruction term",
                 rtol=1e-3, atol=1e-3, hint="it should be the binary cross-entropy of recon "
                 "against x summed over pixels and images: -sum(x log recon + (1 - x) log(1 - "
                 "recon)), recon first, the target x second")
    recon0 = torch.where(x == 1, 1.0, torch.where(x == 0, 0.0, recon))  # pixels decoded exactly
    got0 = expect_tensor(submission.call("vae_loss", recon0, x, mu, log_var), "vae_loss",
                         floating=True)
    expect(bool(torch.isfinite(got0).all()), "vae_loss is not finite when recon is exactly "
           "0 or 1 where x is: use nn.functional.binary_cross_entropy (it clamps its logs)")


@points(1.5, cell="test_vae_loss")
def test_vae_loss_kl_term(submission):
    """vae_loss: plus -1/2 sum(1 + log_var - mu^2 - exp(log_var)), as torch.distributions' KL"""
    recon, x, mu, log_var = _loss_inputs(30)
    zero = torch.zeros_like(mu)
    base = scalar(submission.call("vae_loss", recon, x, zero, zero), "vae_loss(...)")
    for m, lv, what in ((mu, log_var, "random mu and log_var"),
                        (torch.ones_like(mu), zero, "mu = 1, log_var = 0"),
                        (zero, torch.full_like(mu, math.log(4.0)), "mu = 0, sigma = 2")):
        got = scalar(submission.call("vae_loss", recon, x, m, lv), "vae_loss(...)") - base
        q = torch.distributions.Normal(m.double(), (0.5 * lv.double()).exp())
        p = torch.distributions.Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
        want = float(torch.distributions.kl_divergence(q, p).sum())
        if abs(got - want) <= 1e-3 * abs(want) + 1e-3:
            expect_close(torch.tensor(got), torch.tensor(want), "vae_loss's KL term", rtol=1e-3,
                         atol=1e-3)
            continue
        if abs(got + want) <= 1e-3 * abs(want) + 1e-3:
            hint = "it has the wrong sign: KL = -1/2 * sum(1 + log_var - mu**2 - exp(log_var))"
        elif abs(got - 2 * want) <= 1e-3 * abs(want) + 1e-3:
            hint = "it is twice the KL divergence: keep the factor -1/2"
        elif abs(got * len(mu) - want) <= 1e-3 * abs(want) + 1e-3:
            hint = "it is averaged over the images: sum it, like the reconstruction term"
        else:
            hint = ("it should be -1/2 * sum(1 + log_var - mu**2 - exp(log_var)) over coordinates "
                    "and images (log_var is log sigma^2: sigma^2 = exp(log_var))")
        expect(False, f"vae_loss's KL term is wrong for {what}: {hint}")


@points(1, cell="test_vae_loss")
def test_vae_loss_scalar_with_gradients(submission, device):
    """vae_loss: a 0-dim tensor on the inputs' device that gradients flow through to recon, mu
    and log_var"""
    recon, x, mu, log_var = _loss_inputs(40)
    r = submission.call_info("vae_loss", recon, x, mu, log_var)
    scalar(r.value, "vae_loss(recon, x, mu, log_var)")
    expect_device(r.devices, device, "vae_loss")
    for wrt, name in ((0, "recon"), (2, "mu"), (3, "log_var")):
        _, grad = submission.call_grad("vae_loss", recon, x, mu, log_var, wrt=wrt)
        expect(grad is not None and bool(torch.isfinite(grad).all()) and bool((grad != 0).any()),
               f"no gradient reaches {name} through vae_loss: build it from the arguments with "
               "torch operations (no .item(), .detach() or torch.tensor(...) of them)")


# -- corrupt --------------------------------------------------------------------------------
@points(1, cell="test_corrupt")
def test_corrupt_noise_and_clipping(submission, device):
    """corrupt: adds zero-mean Gaussian noise of standard deviation noise, clipped to [0, 1]"""
    x = torch.full((4000, 50), 0.5)
    g = cpu_generator(submission, 50)
    r = submission.call_info("corrupt", x, 0.1, g)
    out = expect_tensor(r.value, "corrupt(x, 0.1, generator)", shape=(4000, 50), floating=True)
    expect_device(r.devices, device, "corrupt")
    expect(out.dtype == x.dtype, f"corrupt returned {out.dtype} for a {x.dtype} x: keep x's dtype")
    diff = out.double() - 0.5
    # 200,000 draws (5 standard deviations from 0.5, hardly ever clipped): mean within 0.0012,
    # standard deviation within 2 %
    expect(abs(float(diff.mean())) <= 0.0012 and abs(float(diff.std()) / 0.1 - 1) <= 0.02,
           "corrupt(x, 0.1, ...) should add noise of mean 0 and standard deviation 0.1: "
           "x + noise * torch.randn(...) (noise is the standard deviation, not the variance; "
           "standard normal, not uniform)")
    hard = submission.call("corrupt", images(200, 50, 51), 3.0, cpu_generator(submission, 52))
    hard = expect_tensor(hard, "corrupt(x, 3.0, generator)", shape=(200, 50), floating=True)
    expect(float(hard.min()) >= 0 and float(hard.max()) <= 1,
           "corrupt should clip its result to [0, 1] (torch.clamp(..., 0, 1))")
    expect(bool((hard == 0).any()) and bool((hard == 1).any()),
           "with noise 3 many pixels should be clipped to exactly 0 or 1")
    same = submission.call("corrupt", images(20, 50, 53), 0.0, cpu_generator(submission, 54))
    expect_close(same, images(20, 50, 53), "corrupt(x, 0.0, generator)", rtol=0, atol=0,
                 hint="with noise 0 x should come back unchanged")


@points(0.5, cell="test_corrupt")
def test_corrupt_uses_the_generator(submission):
    """corrupt: the same generator seed gives the same noise, whatever torch's global seed"""
    x = images(64, 30, 55)

    def draw(seed: int, global_seed: int) -> torch.Tensor:
        submission.call(Ref("torch.manual_seed"), global_seed)
        return expect_tensor(submission.call("corrupt", x, 0.4, cpu_generator(submission, seed)),
                             "corrupt(x, 0.4, generator)", shape=(64, 30), floating=True).cpu()

    a, b, c = draw(1, 100), draw(1, 200), draw(2, 100)
    expect(torch.equal(a, b), "corrupt gave different results for two generators with the "
           "same seed: draw the noise with generator=generator (torch.randn(x.shape, "
           "generator=generator), then .to(x.device))")
    expect(not torch.equal(a, c), "corrupt gave the same noise for generators with different "
           "seeds: draw it from the generator")


@points(0.5, cell="test_corrupt")
def test_corrupt_leaves_x_unchanged(submission):
    """corrupt: x itself is not modified"""
    x = images(32, 20, 56)
    _, (x_after, *_) = submission.call_echo("corrupt", x, 0.5, cpu_generator(submission, 57))
    expect(isinstance(x_after, torch.Tensor) and torch.equal(x_after.cpu(), x),
           "corrupt modified x (an in-place add_ or clamp_): return a new tensor")


# -- train_vae ------------------------------------------------------------------------------
def _fit_data(n: int = 300, dim: int = 20) -> torch.Tensor:
    return images(n, dim, 60)


def _run(submission, X, n_epochs, batch_size, seed=0, noise=0.0, lr=None, optimizer=None,
         model=None, dims=(20, 16, 3), offset=0):
    """Run the student's train_vae with the recording stand-ins for n_epochs epochs (asking for
    n_epochs - offset, see epoch_offset); (model, losses, recorder)."""
    model = model if model is not None else build(submission, *dims, seed=61)
    rec = Recorder()
    kwargs = {"batch_size": batch_size, "noise": noise, "seed": seed}
    if lr is not None:
        kwargs["lr"] = lr
    if optimizer is not None:
        kwargs["optimizer"] = optimizer
    out = submission.call("train_vae", model, X, max(n_epochs - offset, 0),
                          stand_in=rec.stand_in, **kwargs)
    return model, out, rec


@pytest.fixture(scope="module")
def epoch_offset(submission) -> int:
    """How many epochs the student's loop runs beyond the n_epochs it is given: 0 for a
    correct loop, -1 for range(1, n_epochs), +1 for range(n_epochs + 1). The number of epochs is
    test_train_vae_records_each_steps_loss_per_image's to judge; the other tests ask for as
    many as give the steps they need, so an epoch too few or too many is charged once.
    Measured as the vae_loss calls of two epochs of one full batch (SGD with lr 0)."""
    try:
        model = build(submission, 20, 16, 3, seed=68)
        _, _, rec = _run(submission, _fit_data(40), 2, 40, optimizer=_sgd(submission, model, 0.0),
                         model=model)
    except StudentFailure:
        return 0  # the tests that call the loop report the error themselves
    return len(rec.losses) - 2 if len(rec.losses) in (1, 3) else 0


def _sgd(submission, model, lr):
    return submission.call(Ref("torch.optim.SGD"), submission.method(model, "parameters"), lr=lr)


def _rows_of(batch: torch.Tensor, X: torch.Tensor) -> list[int] | None:
    """Indices of X's rows that make up ``batch`` (None when a row is not one of X's)."""
    match = (batch[:, None, :] == X[None, :, :]).all(-1)
    if not bool(match.any(1).all()):
        return None
    return match.float().argmax(1).tolist()


@points(0.75, cell="test_train_vae")
def test_train_vae_records_each_steps_loss_per_image(submission):
    """train_vae: one Python float per step, that step's vae_loss divided by its number of images"""
    X = _fit_data(300)
    _, losses, rec = _run(submission, X, 2, 64, optimizer=None, lr=1e-3)
    expect(isinstance(losses, list), f"train_vae should return a list, got {type(losses).__name__}")
    steps = 2 * math.ceil(300 / 64)
    cause = {steps // 2: ": one epoch too few (loop over range(n_epochs))",
             3 * steps // 2: ": one epoch too many (loop over range(n_epochs))",
             2 * (300 // 64): ": the last, smaller batch of each epoch is missing",
             2: ": one value per epoch; record every step's"}
    expect(len(losses) == steps, f"300 images in batches of 64 for 2 epochs are {steps} steps: "
           f"train_vae returned {len(losses)} values" + cause.get(len(losses), ""))
    expect(all(isinstance(v, float) and not isinstance(v, bool) for v in losses),
           "record Python floats (loss.item() / len(xb)), not tensors")
    expect(len(rec.losses) == steps, f"train_vae called vae_loss {len(rec.losses)} times in "
           f"{steps} steps: once per step")
    for i, (v, call) in enumerate(zip(losses, rec.losses, strict=True)):
        want = call["value"] / len(call["x"])
        if abs(v - want) > 1e-4 * abs(want):
            if abs(v - call["value"]) <= 1e-4 * abs(call["value"]):
                expect(False, "train_vae recorded the batch's total loss: divide loss.item() by "
                       "the number of images of the step (len(xb), the last batch is smaller)")
            if abs(v - call["value"] / 64) <= 1e-4 * abs(want):
                expect(False, "train_vae divided the last, smaller batch's loss by batch_size: "
                       "divide by len(xb)")
            expect(False, f"train_vae's value of step {i + 1} is not that step's vae_loss "
                   "divided by its number of images (record loss.item() / len(xb) right after "
                   "computing the loss of the step)")
    expect_close(torch.tensor(losses), torch.tensor(
        [c["value"] / len(c["x"]) for c in rec.losses]), "train_vae's losses", rtol=1e-4,
        atol=1e-6)


@points(0.5, cell="test_train_vae")
def test_train_vae_shuffles_with_the_seed(submission, epoch_offset):
    """train_vae: every epoch visits each image once in a shuffled order set by seed"""
    X = _fit_data(200)

    def orders(seed: int) -> list[list[int]]:
        _, _, rec = _run(submission, X, 2, 50, seed=seed, optimizer=None, lr=0.0,
                         offset=epoch_offset)
        rows = []
        for call in rec.losses:
            found = _rows_of(call["x"].cpu(), X)
            expect(found is not None, "the target x that train_vae gives vae_loss should be a "
                   "minibatch of X's rows (X[idx])")
            rows.append(found)
        return rows

    a, b, c = orders(3), orders(3), orders(4)
    expect(len(a) == 8, f"200 images in batches of 50 for 2 epochs are 8 steps, vae_loss was "
           f"called {len(a)} times")
    for epoch in range(2):
        seen = sorted(i for batch in a[4 * epoch:4 * epoch + 4] for i in batch)
        expect(seen == list(range(200)), f"epoch {epoch + 1} did not visit every image exactly "
               "once: use the batches of course.training.minibatches(len(X), batch_size, "
               "generator, X.device)")
    flat = [i for batch in a[:4] for i in batch]
    expect(flat != list(range(200)), "train_vae does not shuffle: pass its generator to "
           "course.training.minibatches")
    expect(a == b, "two runs with the same seed took different batches: shuffle with one CPU "
           "torch.Generator seeded with seed (not torch's global generator)")
    expect(a != c, "runs with different seeds took the same batches: seed the generator with "
           "the seed argument")


@points(0.75, cell="test_train_vae")
def test_train_vae_denoising_inputs_and_targets(submission, epoch_offset):
    """train_vae: with noise > 0 the model sees corrupt(xb, noise, generator) and the loss the
    clean xb; with noise 0 it sees xb"""
    X = _fit_data(120)
    for noise in (0.3, 0.0):
        model = build(submission, 20, 16, 3, seed=62)
        start = submission.method(model, "state_dict")
        sgd = _sgd(submission, model, 0.0)
        _, _, rec = _run(submission, X, 1, 40, noise=noise, optimizer=sgd, model=model,
                        offset=epoch_offset)
        # a loop that ignores its optimizer has moved the weights: back to the start (its first
        # step is still judged here; ignoring the optimizer is another test's)
        submission.method(model, "load_state_dict", start)
        expect(len(rec.losses) == 3, f"120 images in batches of 40 are 3 steps, vae_loss was "
               f"called {len(rec.losses)} times")
        noisy = [c for c in rec.corrupted if c["noise"] > 0]
        if noise > 0:
            expect(len(noisy) == 3, f"with noise={noise} train_vae should call corrupt(xb, "
                   f"noise, generator) once per step: it was called {len(noisy)} times in 3 steps")
        else:
            expect(not noisy, "with noise=0 train_vae corrupted its inputs")
        for step, call in enumerate(rec.losses[:1]):
            target = call["x"].cpu()
            expect(_rows_of(target, X) is not None,
                   "vae_loss should compare the reconstruction with the clean batch xb (X[idx]), "
                   "not with the corrupted input" if noise else
                   "vae_loss's target should be the batch xb = X[idx]")
            seen = noisy[step]["out"] if noise > 0 else target
            if noise > 0:
                expect(torch.equal(noisy[step]["x"].cpu(), target),
                       "corrupt should be given the same clean batch xb that vae_loss compares with")
            mu, _ = pair(submission.method(model, "encode", seen), "VAE.encode(x)")
            mu = expect_tensor(mu, "VAE.encode(x)[0]", floating=True)
            expect(mu.shape == call["mu"].shape and torch.allclose(
                mu.cpu(), call["mu"].cpu(), rtol=1e-4, atol=1e-5),
                f"with noise={noise} the model should be given "
                + ("corrupt(xb, noise, generator), the corrupted batch" if noise
                   else "the batch xb itself") + ": the mu that reached vae_loss came from "
                "another input")


@points(0.5, cell="test_train_vae")
def test_train_vae_uses_the_given_optimizer(submission, epoch_offset):
    """train_vae: steps with the optimizer it is given (here SGD with lr 0: nothing moves)"""
    X = _fit_data(100)
    model = build(submission, 20, 16, 3, seed=63)
    before = submission.method(model, "state_dict")
    sgd = _sgd(submission, model, 0.0)
    _run(submission, X, 1, 50, optimizer=sgd, model=model, offset=epoch_offset)
    after = submission.method(model, "state_dict")
    expect(isinstance(after, Mapping) and isinstance(before, Mapping) and set(after) == set(before),
           "the VAE's state_dict could not be read back after train_vae")
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    expect(not moved, "train_vae changed the weights although the optimizer it was given has "
           "learning rate 0: step the optimizer argument, create Adam only when it is None")


@points(0.5, cell="test_train_vae")
def test_train_vae_default_optimizer_is_adam_with_lr(submission, epoch_offset):
    """train_vae: without an optimizer, Adam with the lr argument (one step moves each weight by
    about lr)"""
    X = _fit_data(64)
    for lr in (1e-3, 4e-3):
        model = build(submission, 20, 16, 3, seed=64)
        before = submission.method(model, "state_dict")
        _run(submission, X, 1, 64, lr=lr, model=model, offset=epoch_offset)
        after = submission.method(model, "state_dict")
        expect(isinstance(after, Mapping) and set(after) == set(before),
               "the VAE's state_dict could not be read back after train_vae")
        step = torch.cat([(after[k].double() - before[k].double()).flatten() for k in before])
        moving = step[step != 0].abs()
        expect(moving.numel() > 0, "one step of train_vae without an optimizer changed no weight")
        # Adam's first step is lr * g / (|g| + 1e-8): lr for every weight whose gradient is
        # not tiny; SGD's would spread over orders of magnitude
        median = float(moving.median())
        expect(abs(median / lr - 1) <= 0.05,
               f"without an optimizer, one step moved the weights by a median of {median:.2g} "
               f"with lr={lr}: the default should be torch.optim.Adam(model.parameters(), lr=lr)")


def _neg_elbo(submission, model, X) -> float:
    mu, log_var = pair(submission.method(model, "encode", X), "VAE.encode(X)")
    recon = expect_tensor(submission.method(model, "decode", mu), "VAE.decode(mu)",
                          shape=tuple(X.shape), floating=True)
    expect_finite(recon, "VAE.decode(mu)")
    return float((ref_bce(recon.cpu(), X) + ref_kl(mu.cpu(), log_var.cpu())).mean())


@points(0.5, cell="test_train_vae")
def test_train_vae_learns(submission, epoch_offset):
    """train_vae: 192 steps on MNIST bring the test negative ELBO per image under a bound"""
    X, _ = mnist("train", N_FIT)
    X_eval, _ = mnist("test", N_EVAL)
    model, losses, _ = _run(submission, X, FIT_EPOCHS, FIT_BATCH, lr=FIT_LR,
                            model=build(submission, seed=65), offset=epoch_offset)
    got = _neg_elbo(submission, model, X_eval)
    expect(math.isfinite(got) and got <= ELBO_BOUND,
           f"after train_vae (3 epochs of 4,096 images, batches of 64, lr 3e-3) the test "
           f"negative ELBO is {got:.1f} nats per image, above the bound of {ELBO_BOUND:.0f}: "
           "does each step zero the gradients, backpropagate the loss and step the optimizer?")


@points(0.5, cell="test_train_vae")
def test_train_vae_denoises(submission, epoch_offset):
    """train_vae: with noise 0.5 the model's output is much closer to the clean images than its
    noisy input"""
    X, _ = mnist("train", N_FIT)
    X_eval, _ = mnist("test", N_EVAL)
    model, _, _ = _run(submission, X, FIT_EPOCHS, FIT_BATCH, lr=FIT_LR, noise=NOISE,
                       model=build(submission, seed=66), offset=epoch_offset)
    noisy = ref_corrupt(X_eval, NOISE, gen(67))
    mu, _ = pair(submission.method(model, "encode", noisy), "VAE.encode(x)")
    out = expect_tensor(submission.method(model, "decode", mu), "VAE.decode(mu)",
                        shape=tuple(X_eval.shape), floating=True).cpu().double()
    expect_finite(out, "VAE.decode(mu)")
    ratio = float(((out - X_eval) ** 2).mean() / ((noisy - X_eval) ** 2).mean())
    expect(ratio <= DENOISE_RATIO,
           f"after denoising training (noise 0.5) the output's squared error to the clean "
           f"images is {ratio:.2f} of the noisy input's (should be at most {DENOISE_RATIO}): "
           "feed the model corrupt(xb, noise, generator) and compare its output with the clean xb")


# -- sample ---------------------------------------------------------------------------------
@points(0.75, cell="test_sample")
def test_sample_shape_range_and_no_gradients(submission, device):
    """sample: (n, input_dim) pixels in [0, 1] on the model's device, without gradients"""
    for dims, n in (((784, 400, 20), 64), ((50, 16, 3), 7)):
        model = build(submission, *dims, seed=70)
        r = submission.call_info("sample", model, n, cpu_generator(submission, 71))
        out = expect_tensor(r.value, f"sample(VAE{dims}, {n}, generator)", shape=(n, dims[0]),
                            floating=True)
        expect_device(r.devices, device, "sample")
        expect(float(out.min()) >= 0 and float(out.max()) <= 1,
               "sample should return decoded pixels in [0, 1]")
    got = submission.call_remote("sample", model, 3, cpu_generator(submission, 72))
    needs = submission.attr(got, "requires_grad")
    submission.drop(got)
    expect(needs is False, "sample's images carry gradients: decode them inside "
           "torch.no_grad()")


@points(1.25, cell="test_sample")
def test_sample_decodes_normal_codes_from_the_generator(submission):
    """sample: decode(z) of (n, latent_dim) standard normal codes drawn on the CPU from the
    generator"""
    model = build(submission, 30, 16, 4, seed=73)
    got = expect_tensor(submission.call("sample", model, 25, cpu_generator(submission, 74)),
                        "sample(model, 25, generator)", shape=(25, 30), floating=True)
    z = torch.randn(25, 4, generator=gen(74))
    want = expect_tensor(submission.method(model, "decode", z), "VAE.decode(z)", shape=(25, 30),
                         floating=True)
    expect_close(got.cpu(), want.cpu(), "sample(model, 25, generator)", rtol=1e-4, atol=1e-6,
                 hint="sample should decode (with model.decode) standard normal codes of shape "
                 "(n, model.latent_dim) drawn by torch.randn from the generator on the CPU, then "
                 "moved to the model's device")


# -- anomaly_scores -------------------------------------------------------------------------
@points(1.5, cell="test_anomaly_scores")
def test_anomaly_scores_negative_elbo_at_mu(submission):
    """anomaly_scores: per image, summed BCE of decode(mu) plus its KL term (z = mu, no noise)"""
    model = build(submission, 40, 24, 4, seed=80)
    X = images(2500, 40, 81)
    got = submission.call("anomaly_scores", model, X, batch_size=700)
    rows = got.shape[0] if isinstance(got, torch.Tensor) and got.dim() >= 1 else None
    expect(rows not in (2100, 2800), f"anomaly_scores of 2,500 images in batches of 700 has "
           f"{rows} rows: " + ("the last, smaller batch (400 images) is missing"
                              if rows == 2100 else "the last batch is scored twice or padded"))
    got = expect_tensor(got, "anomaly_scores(model, X, batch_size=700)", shape=(2500,),
                        floating=True)
    mu, log_var = pair(submission.method(model, "encode", X), "VAE.encode(X)")
    recon = expect_tensor(submission.method(model, "decode", mu), "VAE.decode(mu)",
                          shape=(2500, 40), floating=True)
    bce, kl = ref_bce(recon.cpu(), X), ref_kl(mu.cpu(), log_var.cpu())
    want = bce + kl
    g = got.cpu().double()
    if bool(torch.isfinite(g).all()) and not torch.allclose(g, want, rtol=1e-4, atol=1e-3):
        for alt, hint in ((bce, "the KL term of each image is missing"),
                          (-want, "the sign is flipped: the score is the negative ELBO, high "
                           "for images the model explains badly"),
                          (bce / 40 + kl, "the cross-entropy is averaged over the pixels: sum it"),
                          (want / 2500, "divide by nothing: one total per image")):
            if torch.allclose(g, alt, rtol=1e-4, atol=1e-3):
                expect(False, f"anomaly_scores is wrong: {hint}")
    expect_close(got.cpu(), want, "anomaly_scores(model, X)", rtol=1e-4, atol=1e-3,
                 hint="each image's score should be the binary cross-entropy of decode(mu) "
                 "against it summed over pixels plus -1/2 * sum(1 + log_var - mu**2 - "
                 "exp(log_var)), with z = mu (no random noise), one number per row")


@points(1, cell="test_anomaly_scores")
def test_anomaly_scores_device_and_no_gradients(submission, device):
    """anomaly_scores: an (N,) tensor on X's device, without gradients"""
    model = build(submission, 40, 24, 4, seed=82)
    X = images(130, 40, 83)  # two whole batches: the batching is the value test's
    r = submission.call_info("anomaly_scores", model, X, batch_size=65)
    expect_tensor(r.value, "anomaly_scores(model, X, batch_size=65)", shape=(130,),
                  floating=True)
    expect_device(r.devices, device, "anomaly_scores")
    got = submission.call_remote("anomaly_scores", model, X, batch_size=65)
    needs = submission.attr(got, "requires_grad")
    submission.drop(got)
    expect(needs is False, "anomaly_scores' result carries gradients: compute it inside "
           "torch.no_grad()")


@points(0.5, cell="test_anomaly_scores")
def test_anomaly_scores_detect_unseen_digits(submission, epoch_offset):
    """anomaly_scores: a VAE trained on digits 0-4 scores 5-9 higher (AUC above a floor)"""
    X, y = mnist("train", 4 * N_FIT)
    X = X[y < 5][:N_FIT]
    X_eval, y_eval = mnist("test", 2 * N_EVAL)
    model, _, _ = _run(submission, X, FIT_EPOCHS, FIT_BATCH, lr=FIT_LR,
                       model=build(submission, seed=84), offset=epoch_offset)
    scores = expect_tensor(submission.call("anomaly_scores", model, X_eval),
                           "anomaly_scores(model, X)", shape=(len(X_eval),), floating=True)
    expect_finite(scores, "anomaly_scores(model, X)")
    auc = sklearn_auc(scores.cpu(), y_eval >= 5)
    expect(auc >= AUC_FLOOR, f"a VAE trained on the digits 0-4 gives the digits 5-9 an "
           f"anomaly AUC of {auc:.2f} with your scores (should be at least {AUC_FLOOR}): the "
           "score should be high for images the model explains badly (the negative ELBO)")


# -- roc_auc --------------------------------------------------------------------------------
def _auc(submission, scores: torch.Tensor, labels: torch.Tensor, what: str) -> float:
    """The student's AUC as a number (its type is test_roc_auc_float_and_errors')."""
    value = submission.call("roc_auc", scores, labels)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = float(value)
    expect(isinstance(value, int | float) and not isinstance(value, bool),
           f"roc_auc should return a number, got {type(value).__name__} ({what})")
    return float(value)


@points(1.5, cell="test_roc_auc")
def test_roc_auc_matches_scikit_learn(submission):
    """roc_auc: equals scikit-learn's roc_auc_score on distinct scores"""
    for seed, n, share in ((90, 500, 0.3), (91, 2001, 0.5), (92, 50, 0.1)):
        g = gen(seed)
        labels = torch.rand(n, generator=g) < share
        labels[0], labels[1] = True, False
        scores = torch.randn(n, generator=g) + 0.8 * labels
        got = _auc(submission, scores, labels, "distinct scores")
        want = sklearn_auc(scores, labels)
        if abs(got - want) > 1e-6:
            hint = ("it is 1 - AUC: rank the scores in increasing order and sum the anomalies' "
                    "ranks" if abs(got - (1 - want)) <= 1e-6 else
                    "it should be (R1 - n1 (n1 + 1) / 2) / (n1 n0), R1 the sum of the anomalies' "
                    "ranks 1..N in increasing order of score")
            expect(False, f"roc_auc differs from scikit-learn's on {n} distinct scores: {hint}")
        expect_close(torch.tensor(got), torch.tensor(want), f"roc_auc on {n} scores",
                     rtol=0, atol=1e-6)


@points(1, cell="test_roc_auc")
def test_roc_auc_ties_count_half(submission):
    """roc_auc: tied scores count one half (average ranks)"""
    g = gen(93)
    labels = torch.rand(1000, generator=g) < 0.4
    scores = (torch.randint(0, 5, (1000,), generator=g) + labels.long()).double()
    got = _auc(submission, scores, labels, "tied scores")
    want = sklearn_auc(scores, labels)
    if abs(got - (1 - want)) <= 1e-6:  # ranked the wrong way round: that is the value test's
        got = 1 - got
    expect(abs(got - want) <= 1e-6,
           "roc_auc differs from scikit-learn's when scores are tied: give tied scores the "
           "average of the ranks they occupy, so a tie counts one half")
    flat = _auc(submission, torch.ones(10), torch.arange(10) % 2 == 0, "all scores equal")
    expect(abs(flat - 0.5) <= 1e-9, "roc_auc with all scores equal should be 0.5")


@points(0.5, cell="test_roc_auc")
def test_roc_auc_float_and_errors(submission):
    """roc_auc: a Python float in [0, 1]; ValueError when is_anomaly is all True or all False"""
    value = submission.call("roc_auc", torch.tensor([0.2, 0.9, 0.4]),
                            torch.tensor([False, True, True]))
    expect(isinstance(value, float), f"roc_auc should return a Python float (float(...) or "
           f".item()), got {type(value).__name__}")
    for value in (True, False):
        try:
            submission.call("roc_auc", torch.rand(20, generator=gen(94)),
                            torch.full((20,), value))
        except StudentFailure as failure:
            expect("ValueError" in str(failure), f"roc_auc with is_anomaly all {value} should "
                   f"raise ValueError, it failed otherwise: {str(failure)[:200]}")
        else:
            expect(False, f"roc_auc with is_anomaly all {value} should raise ValueError (the AUC "
                   "is undefined without both classes)")


@points(1, cell="test_roc_auc")
def test_roc_auc_without_loops(submission):
    """roc_auc: no Python loop over the scores (a million scores take a fraction of a second)"""
    g = unseen_generator()  # drawn now: no answer computed in an untimed cell can match
    labels = torch.rand(1_000_000, generator=g) < 0.3
    scores = torch.randn(1_000_000, generator=g) + labels
    submission.call("roc_auc", scores[:100], labels[:100])  # warm-up
    # best of 3; idle, a sort-based reference takes ~0.15 s, a loop over the scores minutes
    try:
        r = submission.call_info("roc_auc", scores, labels, timeout=60)
    except StudentFailure as failure:
        expect("did not finish" not in str(failure), "roc_auc did not finish within 60 s for "
               "a million scores: rank them with one torch.sort, no Python loop")
        raise
    bound = speed_bound(r.compute_s, 2.0, 20, lambda: best_seconds(
        lambda: _reference_auc(scores, labels), repeats=3))
    expect(r.compute_s <= bound, f"roc_auc computed for {r.compute_s:.2f} s for a million scores "
           f"(allowed {bound:.2f} s): rank them with one torch.sort, no Python loop over the scores")


def _reference_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    values, order = torch.sort(scores.double())
    _, group, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    average = torch.cumsum(counts, 0).double() - (counts.double() - 1) / 2
    ranks = torch.empty(len(values), dtype=torch.float64)
    ranks[order] = average[group]
    n1 = int(labels.sum())
    n0 = len(labels) - n1
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
