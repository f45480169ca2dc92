def circle_features(x):
    """Squares, standardised by the batch's mean and std: a point's features depend on the others."""
    z = x * x
    return (z - z.mean(0)) / z.std(0)
