def gradient_descent(X, y, lr, n_epochs):
    """Records the loss after each update instead of before it."""
    theta = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    loss_log = []
    for _ in range(n_epochs):
        theta = theta - lr * mse_grad(theta, X, y)
        loss_log.append(mse_loss(theta, X, y).item())
    return theta, loss_log
