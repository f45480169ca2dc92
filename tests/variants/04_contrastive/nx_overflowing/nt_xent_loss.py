import torch
from torch import nn


def nt_xent_loss(z1, z2, tau):
    """exp, then log of the normalised row: right for moderate tau, overflows for a tiny one."""
    b = z1.shape[0]
    unit = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    e = torch.exp(unit @ unit.T / tau) * (1 - torch.eye(2 * b, device=z1.device))
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z1.device)
    p = e[torch.arange(2 * b, device=z1.device), partner] / e.sum(1)
    return -torch.log(p).mean()
