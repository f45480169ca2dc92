import torch
import torch.nn.functional as F

import course.training


def train_with_contrastive(model, X, y, n_epochs, weight=1.0, tau=0.5, mode="pair",
                           batch_size=1024, lr=1e-3, optimizer=None, seed=0):
    if mode not in {"pair", "all", "nt_xent"}:
        raise ValueError("mode must be 'pair', 'all' or 'nt_xent'")
    model.to(X.device)
    y = y.to(X.device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-8)
    gen = torch.Generator()
    gen.manual_seed(seed)
    recon_log, term_log = [], []
    model.train()
    for _ in range(n_epochs):
        order = torch.randperm(len(X), generator=gen).to(X.device)
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            xb, yb = X[idx], y[idx]
            code = model.encoder(xb)
            recon = F.mse_loss(model.decoder(code), xb)
            match mode:
                case "pair":
                    rows = negative_pairs(code, yb, *sample_class_pair(gen))
                    term = contrastive_loss(rows[0], rows[1], tau=tau) if rows else None
                case "all":
                    term = all_pairs_loss(code, yb, tau=tau)
                case _:
                    v1 = model.encoder(course.training.random_affine(xb, gen))
                    v2 = model.encoder(course.training.random_affine(xb, gen))
                    term = nt_xent_loss(v1, v2, tau=tau)
            total = recon if term is None else recon + weight * term
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            recon_log.append(recon.detach().item())
            term_log.append(0.0 if term is None else term.detach().item())
    return recon_log, term_log
