def roc_auc(scores, is_anomaly):
    # a Python loop over the anomalies
    is_anomaly = is_anomaly.bool()
    pos, neg = scores[is_anomaly].double(), scores[~is_anomaly].double()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("roc_auc needs both classes")
    wins = 0.0
    for s in pos.tolist():
        wins += float((neg < s).sum()) + 0.5 * float((neg == s).sum())
    return wins / (len(pos) * len(neg))
