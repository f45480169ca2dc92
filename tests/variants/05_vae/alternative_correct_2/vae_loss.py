def vae_loss(recon, x, mu, log_var):
    # sums per image first, then over the batch
    bce = nn.functional.binary_cross_entropy(recon, x, reduction="none").sum(dim=1)
    kl = 0.5 * (mu.square() + log_var.exp() - log_var - 1).sum(dim=1)
    return (bce + kl).sum()
