def circle_features(x):
    """The squared radius, and the difference of the squares."""
    sq = x.pow(2)
    return torch.stack((sq.sum(dim=1), sq[:, 0] - sq[:, 1]), dim=1)
