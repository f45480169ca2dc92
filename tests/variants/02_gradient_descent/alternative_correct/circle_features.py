def circle_features(x):
    """Polar coordinates: the distance from the centre separates the circles on its own."""
    radius = torch.linalg.vector_norm(x, dim=1)
    angle = torch.atan2(x[:, 1], x[:, 0])
    return torch.stack([radius, angle], dim=1)
