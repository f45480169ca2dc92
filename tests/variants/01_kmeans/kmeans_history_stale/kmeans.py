import torch


def kmeans(X, k, n_iters=20, seed=0):
    """Records the inertia of the new centres with the OLD labels, before reassigning: the
    last entry does not describe the returned C and labels."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(X.shape[0], generator=g)[:k].to(X.device)
    C = X[idx].clone()
    labels = pairwise_sq_dists(X, C).argmin(1)  # noqa: F821
    history = []
    for _ in range(n_iters):
        C = update_centroids(X, labels, C)  # noqa: F821
        D = pairwise_sq_dists(X, C)  # noqa: F821
        history.append(D.gather(1, labels[:, None]).sum().item())
        new_labels = D.argmin(1)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return C, labels, history
