def mse_grad(theta, X, y):
    """einsum over the examples, then the factor 2 / m."""
    r = torch.mv(X, theta).sub(y)
    return torch.einsum("md,m->d", X, r).mul(2.0 / X.shape[0])
