def mse_grad(theta, X, y):
    """Right, but always float32 (theta's dtype is not kept)."""
    m = X.shape[0]
    return ((2.0 / m) * (X.T @ (X @ theta - y))).float()
