def anomaly_scores(model, X, batch_size=1000):
    # the notebook's own vae_loss, image by image within each batch via torch.func-free sums
    model.eval()
    with torch.no_grad():
        chunks = []
        for start in range(0, X.shape[0], batch_size):
            xb = X[start:start + batch_size]
            mu, log_var = model.encode(xb)
            rec = model.decode(mu)
            per_pixel = nn.functional.binary_cross_entropy(rec, xb, reduction="none")
            kl = -0.5 * torch.sum(1 + log_var - mu * mu - torch.exp(log_var), dim=-1)
            chunks.append(per_pixel.sum(dim=-1) + kl)
        return torch.cat(chunks, dim=0)
