import torch


def negative_pairs(z, y, a1, a2):
    first = torch.where(y == a1)[0]
    second = torch.where(y == a2)[0]
    if len(first) == 0 or len(second) == 0:
        return None
    n = min(len(first), len(second))
    return z[first[:n]], z[second[:n]]
