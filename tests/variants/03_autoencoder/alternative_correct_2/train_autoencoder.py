import torch
from torch import nn


def train_autoencoder(model, X, n_epochs, batch_size=1024, lr=1e-3, device=None, optimizer=None,
                      seed=0):
    """course.training.minibatches, `optimizer or Adam`, set_to_none, no progress bar."""
    device = torch.device(device) if device is not None else X.device
    model = model.to(device)
    data = X.to(device)
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-8)
    shuffler = torch.Generator()
    shuffler.manual_seed(seed)
    losses = []
    for _epoch in range(n_epochs):
        for idx in course.training.minibatches(len(data), batch_size, shuffler, device):
            batch = data[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = ((model(batch) - batch) ** 2).mean()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
    return losses
