def gradient_descent(X, y, lr, n_epochs):
    """The whole loop under no_grad, an in-place step, float() of the loss."""
    theta = X.new_zeros(X.shape[1])
    loss_log = []
    with torch.no_grad():
        for _epoch in range(int(n_epochs)):
            loss_log.append(float(mse_loss(theta, X, y)))
            theta -= lr * mse_grad(theta, X, y)
    return theta, loss_log
