def mse_grad(theta, X, y):
    """Right values, one example at a time in a Python loop."""
    m = X.shape[0]
    grad = torch.zeros_like(theta)
    for i in range(m):
        grad += (X[i] @ theta - y[i]) * X[i]
    return (2.0 / m) * grad
