def mse_grad(theta, X, y):
    """Autograd, switched back on inside: right values even under torch.no_grad()."""
    with torch.enable_grad():
        th = theta.detach().clone().requires_grad_(True)
        loss = ((X @ th - y) ** 2).mean()
        loss.backward()
    return th.grad.detach()
