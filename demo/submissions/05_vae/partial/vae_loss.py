def vae_loss(recon, x, mu, log_var):
    # forgot the 1/2 in front of the closed-form KL divergence
    bce = nn.functional.binary_cross_entropy(recon, x, reduction="sum")
    kl = -torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return bce + kl
