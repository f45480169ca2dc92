def mse_grad(theta, X, y):
    """The right values as a (d, 1) column instead of a (d,) vector."""
    m = X.shape[0]
    return (2.0 / m) * (X.T @ (X @ theta - y)).unsqueeze(1)
