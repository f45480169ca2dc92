def accuracy(pred, y):
    """Count, then divide, in Python."""
    return int(pred.eq(y).sum()) / y.numel()
