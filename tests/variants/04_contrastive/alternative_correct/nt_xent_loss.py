import torch


def nt_xent_loss(z1, z2, tau):
    b = z1.shape[0]
    both = torch.cat([z1, z2], dim=0)
    both = both / both.norm(dim=1, keepdim=True)
    logits = both @ both.T / tau
    logits = logits - torch.diag(torch.full((2 * b,), float("inf"), device=z1.device))
    positives = torch.cat([torch.diagonal(logits, b), torch.diagonal(logits, -b)])
    return (torch.logsumexp(logits, dim=1) - positives).mean()
