# counts epochs from 1 (range(1, n_epochs)): one epoch too few
def train_vae(model, X, n_epochs, batch_size=128, lr=1e-3, optimizer=None, noise=0.0, seed=0):
    """Train a VAE by minimising vae_loss; a denoising VAE when noise > 0.

    Args:
        model: a VAE (trained in place, on X's device).
        X: (N, D) float tensor of training images in [0, 1].
        n_epochs: passes over the data, in minibatches from course.training.minibatches.
        batch_size: images per step (the last batch of an epoch may be smaller).
        lr: learning rate of the default optimizer.
        optimizer: a torch optimizer over model's parameters; None means
            torch.optim.Adam(model.parameters(), lr=lr).
        noise: when > 0, each batch enters the model as corrupt(xb, noise, generator) and the
            loss compares the reconstruction with the clean batch.
        seed: seeds the one CPU torch.Generator behind shuffling, corruption and the
            reparameterisation noise.

    Returns:
        A list of Python floats, one per step (n_epochs * ceil(N / batch_size)): the step's
        vae_loss divided by its number of images.
    """
    model.to(X.device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(X) // batch_size)
    losses = []
    model.train()
    with tqdm(total=n_epochs * steps_per_epoch, desc="VAE" if noise == 0 else f"denoising VAE ({noise})",
              unit="step") as bar:
        for epoch in range(1, n_epochs):
            for idx in course.training.minibatches(len(X), batch_size, generator, X.device):
                xb = X[idx]
                inputs = corrupt(xb, noise, generator) if noise > 0 else xb
                recon, mu, log_var = model(inputs, generator=generator)
                loss = vae_loss(recon, xb, mu, log_var)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item() / len(xb))
                bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.1f}", refresh=False)
                bar.update()
    return losses
