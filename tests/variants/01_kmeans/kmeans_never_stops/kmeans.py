import torch


def kmeans(X, k, n_iters=20, seed=0):
    """Right, but always runs n_iters iterations: it never stops when the labels settle."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(X.shape[0], generator=g)[:k].to(X.device)
    C = X[idx].clone()
    labels = pairwise_sq_dists(X, C).argmin(1)  # noqa: F821
    history = []
    for _ in range(n_iters):
        C = update_centroids(X, labels, C)  # noqa: F821
        min_d, new_labels = pairwise_sq_dists(X, C).min(1)  # noqa: F821
        history.append(min_d.sum().item())
        labels = new_labels
    return C, labels, history
