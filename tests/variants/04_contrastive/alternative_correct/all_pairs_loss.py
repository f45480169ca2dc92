import torch


def all_pairs_loss(z, y, tau=0.5):
    lengths = z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit = z / lengths
    x = unit @ unit.T / tau
    mask = (y[:, None] != y[None, :]).to(z.dtype)
    count = mask.sum()
    if count.item() == 0:
        return None
    stable = x.clamp_min(0) + torch.log1p(torch.exp(-x.abs()))  # log(1 + e^x) without overflow
    return (stable * mask).sum() / count
