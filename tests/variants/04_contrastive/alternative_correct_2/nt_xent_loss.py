import torch
import torch.nn.functional as F


def nt_xent_loss(z1, z2, tau):
    n2 = 2 * len(z1)
    h = F.normalize(torch.cat((z1, z2)), dim=1)
    logits = h @ h.T / tau
    self_mask = torch.eye(n2, dtype=torch.bool, device=h.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = (torch.arange(n2, device=h.device) + len(z1)) % n2
    return -F.log_softmax(logits, dim=1).gather(1, partner[:, None]).mean()
