import torch
from torch import nn
from tqdm import tqdm

import course.training


def train_with_contrastive(model, X, y, n_epochs, weight=1.0, tau=0.5, mode="pair",
                           batch_size=1024, lr=1e-3, optimizer=None, seed=0):
    terms = {
        "pair": lambda z, yb, xb, g: (lambda p: None if p is None else contrastive_loss(p[0], p[1], tau))(
            negative_pairs(z, yb, *sample_class_pair(g))),
        "all": lambda z, yb, xb, g: all_pairs_loss(z, yb, tau),
        "nt_xent": lambda z, yb, xb, g: nt_xent_loss(
            model.encoder(course.training.random_affine(xb, g)),
            model.encoder(course.training.random_affine(xb, g)), tau),
    }
    if mode not in terms:
        raise ValueError(f"unknown mode {mode}")
    model = model.to(X.device)
    y = y.to(X.device)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-8)
    g = torch.Generator().manual_seed(seed)
    recon_losses, contrastive_losses = [], []
    model.train()
    n_steps = n_epochs * ((len(X) + batch_size - 1) // batch_size)
    bar = tqdm(total=n_steps)
    for _ in range(n_epochs):
        for idx in course.training.minibatches(len(X), batch_size, g, X.device):
            xb = X[idx]
            z = model.encoder(xb)
            rec = nn.MSELoss()(model.decoder(z), xb)
            c = terms[mode](z, y[idx], xb, g)
            total = rec + weight * c if c is not None else rec
            opt.zero_grad()
            total.backward()
            opt.step()
            recon_losses.append(float(rec))
            contrastive_losses.append(float(c) if c is not None else 0.0)
            bar.set_postfix(recon=recon_losses[-1], contrastive=contrastive_losses[-1])
            bar.update(1)
    bar.close()
    return recon_losses, contrastive_losses
