def circle_features(x):
    """A linear change of coordinates: a line in the new coordinates is still a line."""
    return torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], dim=1)
