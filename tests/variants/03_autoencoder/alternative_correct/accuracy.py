def accuracy(pred, y):
    return int((pred == y).sum()) / y.numel()
