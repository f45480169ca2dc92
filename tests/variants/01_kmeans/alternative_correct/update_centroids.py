import torch


def update_centroids(X, labels, C_old):
    """Cluster sums as a product with the one-hot matrix of the labels."""
    K = C_old.shape[0]
    onehot = torch.nn.functional.one_hot(labels, num_classes=K).to(X.dtype)  # (N, K)
    sums = onehot.T @ X  # (K, D)
    counts = onehot.sum(dim=0)  # (K,)
    C = C_old.clone()
    filled = counts > 0
    C[filled] = sums[filled] / counts[filled].unsqueeze(1)
    return C
