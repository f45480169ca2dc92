def mse_grad(theta, X, y):
    """Asks autograd for the gradient instead of using the formula."""
    theta = theta.detach().clone().requires_grad_(True)
    loss = mse_loss(theta, X, y)
    loss.backward()
    return theta.grad
