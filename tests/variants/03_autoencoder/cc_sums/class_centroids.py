def class_centroids(Z, y, n_classes=10):
    """The sum of each class's rows, not their mean."""
    return torch.zeros(n_classes, Z.shape[1], dtype=Z.dtype, device=Z.device).index_add_(0, y, Z)
