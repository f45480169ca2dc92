import torch
from torch import nn


def nt_xent_loss(z1, z2, tau):
    """Keeps each row's similarity with itself among the candidates of its cross-entropy."""
    b = z1.shape[0]
    unit = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z1.device)
    return nn.functional.cross_entropy(unit @ unit.T / tau, partner)
