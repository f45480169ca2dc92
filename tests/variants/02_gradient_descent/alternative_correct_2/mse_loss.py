def mse_loss(theta, X, y):
    """The residual's dot product with itself, over m."""
    r = X.matmul(theta) - y
    return torch.dot(r, r) / len(y)
