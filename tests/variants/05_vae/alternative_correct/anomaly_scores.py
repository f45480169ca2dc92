def anomaly_scores(model, X, batch_size=1000):
    # inference_mode, the per-pixel cross-entropy written out, a list of chunks
    parts = []
    with torch.inference_mode():
        for xb in X.split(batch_size):
            mu, log_var = model.encode(xb)
            r = model.decode(mu).clamp(1e-12, 1 - 1e-7)
            bce = -(xb * r.log() + (1 - xb) * (1 - r).log()).sum(dim=1)
            kl = 0.5 * (mu ** 2 + log_var.exp() - 1 - log_var).sum(dim=1)
            parts.append(bce + kl)
    return torch.cat(parts).clone()
