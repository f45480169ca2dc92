def gradient_descent(X, y, lr, n_epochs):
    """Steps along the gradient (theta + lr * grad) instead of against it."""
    theta = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    loss_log = []
    for _ in range(n_epochs):
        loss_log.append(mse_loss(theta, X, y).item())
        theta = theta + lr * mse_grad(theta, X, y)
    return theta, loss_log
