import torch
from torch import nn
from tqdm import tqdm


def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    device = X.device if device is None else torch.device(device)
    model.to(device)
    X = X.to(device)
    if optimizer is None:
        # learning rate left at 0 while debugging: the weights never move
        optimizer = torch.optim.Adam(model.parameters(), lr=0.0, weight_decay=1e-8)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    bar = tqdm(total=n_epochs * -(-len(X) // batch_size))
    for _ in range(n_epochs):
        for idx in torch.randperm(len(X), generator=g).to(device).split(batch_size):
            xb = X[idx]
            loss = nn.functional.mse_loss(model(xb), xb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    bar.close()
    return losses
