def gradient_descent(X, y, lr, n_epochs):
    """In-place updates and a while loop."""
    theta = X.new_zeros(X.shape[1])
    loss_log = []
    epoch = 0
    while epoch < n_epochs:
        loss_log.append(float(mse_loss(theta, X, y)))
        theta.sub_(mse_grad(theta, X, y), alpha=lr)
        epoch += 1
    return theta, loss_log
