def mse_loss(theta, X, y):
    """The sum of squares, without the 1/m of the mean."""
    residual = X @ theta - y
    return (residual ** 2).sum()
