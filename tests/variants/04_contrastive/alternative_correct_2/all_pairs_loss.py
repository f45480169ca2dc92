import torch
import torch.nn.functional as F


def all_pairs_loss(z, y, tau=0.5):
    # cosine similarity is symmetric: the mean over unordered pairs i < j equals the mean
    # over ordered ones
    i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
    keep = y[i] != y[j]
    if not keep.any():
        return None
    unit = F.normalize(z, dim=1)
    sim = (unit[i[keep]] * unit[j[keep]]).sum(1)
    return F.softplus(sim / tau).mean()
