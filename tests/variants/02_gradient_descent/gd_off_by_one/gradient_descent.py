def gradient_descent(X, y, lr, n_epochs):
    """n_epochs + 1 epochs (range(n_epochs + 1)): one update and one log entry too many."""
    theta = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    loss_log = []
    for _ in range(n_epochs + 1):
        loss_log.append(mse_loss(theta, X, y).item())
        theta = theta - lr * mse_grad(theta, X, y)
    return theta, loss_log
