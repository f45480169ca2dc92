import torch
from torch import nn
from tqdm import tqdm

import course.training


def train_with_contrastive(model, X, y, n_epochs, weight=1.0, tau=0.5, mode="pair",
                           batch_size=1024, lr=1e-3, optimizer=None, seed=0):
    """Counts epochs from 1 (range(1, n_epochs)): one epoch too few."""
    if mode not in ("pair", "all", "nt_xent"):
        raise ValueError(f"mode must be 'pair', 'all' or 'nt_xent', got {mode!r}")
    device = X.device
    model.to(device)
    y = y.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-8)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(X) // batch_size)
    recon_losses, contrastive_losses = [], []
    running = None
    model.train()
    with tqdm(total=n_epochs * steps_per_epoch, desc=f"{mode}, weight {weight}",
              unit="step") as bar:
        for epoch in range(1, n_epochs):
            for idx in course.training.minibatches(len(X), batch_size, generator, device):
                xb, yb = X[idx], y[idx]
                z = model.encoder(xb)
                recon = nn.functional.mse_loss(model.decoder(z), xb)
                if mode == "pair":
                    pair = negative_pairs(z, yb, *sample_class_pair(generator))
                    term = None if pair is None else contrastive_loss(*pair, tau=tau)
                elif mode == "all":
                    term = all_pairs_loss(z, yb, tau=tau)
                else:
                    z1 = model.encoder(course.training.random_affine(xb, generator))
                    z2 = model.encoder(course.training.random_affine(xb, generator))
                    term = nt_xent_loss(z1, z2, tau)
                loss = recon if term is None else recon + weight * term
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                recon_losses.append(recon.item())
                contrastive_losses.append(0.0 if term is None else term.item())
                now = (recon_losses[-1], contrastive_losses[-1])
                running = now if running is None else tuple(
                    0.9 * r + 0.1 * v for r, v in zip(running, now))
                bar.set_postfix(epoch=epoch, recon=f"{running[0]:.4f}",
                                contrastive=f"{running[1]:.3f}", refresh=False)
                bar.update()
    return recon_losses, contrastive_losses

