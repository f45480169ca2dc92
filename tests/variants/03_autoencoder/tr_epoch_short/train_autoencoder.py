import torch
from torch import nn


def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    """Counts epochs from 1 (range(1, n_epochs)): one epoch too few."""
    device = X.device if device is None else torch.device(device)
    model.to(device)
    X = X.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-8)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(1, n_epochs):
        for idx in torch.randperm(len(X), generator=g).to(device).split(batch_size):
            xb = X[idx]
            loss = nn.functional.mse_loss(model(xb), xb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses
