import torch


def sample_class_pair(generator):
    """Always the smaller digit first: only 45 of the 90 ordered pairs can come up."""
    first, second = torch.randperm(10, generator=generator)[:2].tolist()
    return min(first, second), max(first, second)
