def train_vae(model, X, n_epochs, batch_size=128, lr=1e-3, optimizer=None, noise=0.0, seed=0):
    # always calls corrupt (noise 0 returns the batch as it is), set_to_none zeroing, no tqdm
    model = model.to(X.device)
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator()
    g.manual_seed(seed)
    history = []
    for _ in range(n_epochs):
        for idx in course.training.minibatches(X.shape[0], batch_size, g, X.device):
            clean = X[idx]
            recon, mu, log_var = model(corrupt(clean, noise, g), g)
            loss = vae_loss(recon, clean, mu, log_var)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()) / clean.shape[0])
    return history
