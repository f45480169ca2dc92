# BCE with input and target swapped
def vae_loss(recon, x, mu, log_var):
    """Negative ELBO of a batch: summed binary cross-entropy + KL(q(z|x) || N(0, I)).

    Args:
        recon: (B, D) decoded pixels in (0, 1); x: (B, D) target pixels in [0, 1].
        mu, log_var: (B, d) parameters of q(z|x).

    Returns:
        A scalar tensor that gradients flow through: the binary cross-entropy of recon
        against x summed over pixels and images, plus
        -1/2 * sum(1 + log_var - mu**2 - exp(log_var)) summed over coordinates and images.
    """
    bce = nn.functional.binary_cross_entropy(x, recon, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return bce + kl
