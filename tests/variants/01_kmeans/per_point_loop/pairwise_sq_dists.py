import torch


def pairwise_sq_dists(X, C):
    """Correct but loops over every point and every centre in Python: hopelessly slow."""
    N, K = X.shape[0], C.shape[0]
    D = torch.zeros(N, K, dtype=X.dtype, device=X.device)
    for i in range(N):
        for j in range(K):
            diff = X[i] - C[j]
            D[i, j] = (diff * diff).sum()
    return D
