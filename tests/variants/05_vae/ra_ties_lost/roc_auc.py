def roc_auc(scores, is_anomaly):
    # counts the pairs where the anomaly is strictly higher; ties count 0
    is_anomaly = is_anomaly.bool()
    n1 = int(is_anomaly.sum())
    n0 = len(is_anomaly) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError("roc_auc needs both classes")
    neg = torch.sort(scores[~is_anomaly].double()).values
    below = torch.searchsorted(neg, scores[is_anomaly].double(), right=False)
    return float(below.sum()) / (n1 * n0)
