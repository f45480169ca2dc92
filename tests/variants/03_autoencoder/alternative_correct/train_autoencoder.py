import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm


def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    # the textbook loop: a DataLoader over a TensorDataset, running loss as a plain average
    device = device or X.device
    model = model.to(device)
    loader = DataLoader(TensorDataset(X.to(device)), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    opt = optimizer if optimizer is not None else torch.optim.Adam(
        model.parameters(), lr=lr, weight_decay=1e-8)
    criterion = nn.MSELoss()
    model.train()
    losses = []
    bar = tqdm(total=n_epochs * len(loader))
    for _ in range(n_epochs):
        for (batch,) in loader:
            opt.zero_grad()
            loss = criterion(model(batch), batch)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=sum(losses[-20:]) / len(losses[-20:]))
            bar.update(1)
    bar.close()
    return losses
