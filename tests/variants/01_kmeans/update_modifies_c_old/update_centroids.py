import torch


def update_centroids(X, labels, C_old):
    """Right centres, but written into C_old in place and C_old returned."""
    K = C_old.shape[0]
    sums = torch.zeros_like(C_old).index_add_(0, labels, X)
    counts = torch.bincount(labels, minlength=K)
    filled = counts > 0
    C_old[filled] = sums[filled] / counts[filled].unsqueeze(1).to(X.dtype)
    return C_old
