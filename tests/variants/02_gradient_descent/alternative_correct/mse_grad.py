def mse_grad(theta, X, y):
    """Each example contributes 2 * residual * x_i; the gradient is their mean."""
    residual = torch.mv(X, theta) - y
    return 2 * (residual.unsqueeze(1) * X).mean(dim=0)
