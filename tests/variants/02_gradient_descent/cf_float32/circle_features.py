def circle_features(x):
    """Right features, always float32."""
    return (x * x).float()
