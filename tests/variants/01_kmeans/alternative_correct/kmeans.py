import torch


def kmeans(X, k, n_iters=20, seed=0):
    """Lloyd's algorithm with a while loop, self-contained, inertia from the gathered centres."""
    N = X.shape[0]
    gen = torch.Generator()
    gen.manual_seed(seed)
    start = torch.randperm(N, generator=gen)[:k]
    C = X[start.to(X.device)].clone()

    def nearest(C):
        return torch.argmin((C * C).sum(dim=1) - 2 * (X @ C.T), dim=1)

    labels = nearest(C)
    history = []
    it = 0
    while it < n_iters:
        onehot = torch.nn.functional.one_hot(labels, num_classes=k).to(X.dtype)
        counts = onehot.sum(dim=0)
        means = (onehot.T @ X) / counts.clamp(min=1).unsqueeze(1)
        C = torch.where(counts.unsqueeze(1) > 0, means, C)
        new_labels = nearest(C)
        history.append(float(((X - C[new_labels]) ** 2).sum()))
        it += 1
        same = bool((new_labels == labels).all())
        labels = new_labels
        if same:
            break
    return C, labels, history
