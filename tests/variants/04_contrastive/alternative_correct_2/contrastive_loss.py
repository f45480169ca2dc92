import torch.nn.functional as F


def contrastive_loss(z, z_neg, tau=0.5):
    # log(1 + e^s) = -log(sigmoid(-s)), and logsigmoid is stable for any s
    s = (F.normalize(z, dim=-1) * F.normalize(z_neg, dim=-1)).sum(-1) / tau
    return -F.logsigmoid(-s).mean()
