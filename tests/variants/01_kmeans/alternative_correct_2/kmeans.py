import torch


def kmeans(X, k, n_iters=20, seed=0):
    """Lloyd's steps through the notebook's helpers; the inertia gathered from the distances."""
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    C = X[torch.randperm(len(X), generator=g)[:k].to(X.device)]
    labels = assign_clusters(X, C)  # noqa: F821
    inertia_history = []
    for _ in range(n_iters):
        C = update_centroids(X, labels, C)  # noqa: F821
        D = pairwise_sq_dists(X, C)  # noqa: F821
        new_labels = D.argmin(dim=1)
        inertia_history.append(D.gather(1, new_labels[:, None]).sum().item())
        converged = torch.equal(new_labels, labels)
        labels = new_labels
        if converged:
            break
    return C, labels, inertia_history
