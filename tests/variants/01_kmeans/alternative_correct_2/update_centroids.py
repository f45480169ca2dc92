import torch


def update_centroids(X, labels, C_old):
    """Means by scatter_reduce; rows of empty clusters are taken from C_old."""
    K, D = C_old.shape
    index = labels.unsqueeze(1).expand(-1, D)
    means = torch.zeros(K, D, dtype=X.dtype, device=X.device).scatter_reduce(
        0, index, X, reduce="mean", include_self=False)
    occupied = torch.zeros(K, dtype=torch.bool, device=X.device)
    occupied[labels] = True
    return torch.where(occupied[:, None], means, C_old)
