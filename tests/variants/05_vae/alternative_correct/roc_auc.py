def roc_auc(scores, is_anomaly):
    # for each anomaly, normal scores below it (searchsorted) plus half the tied ones
    labels = is_anomaly.to(torch.bool)
    pos, neg = scores[labels].double(), scores[~labels].double()
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError("both classes are needed")
    neg = neg.sort().values
    below = torch.searchsorted(neg, pos, right=False)
    at_or_below = torch.searchsorted(neg, pos, right=True)
    wins = below.double() + 0.5 * (at_or_below - below).double()
    return (wins.sum() / (pos.numel() * neg.numel())).item()
