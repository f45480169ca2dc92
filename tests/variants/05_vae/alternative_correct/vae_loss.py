def vae_loss(recon, x, mu, log_var):
    # the cross-entropy written out (logs clamped), the KL term of torch.distributions
    eps = 1e-12
    bce = -(x * torch.log(recon.clamp_min(eps)) + (1 - x) * torch.log((1 - recon).clamp_min(eps))).sum()
    q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return bce + torch.distributions.kl_divergence(q, p).sum()
