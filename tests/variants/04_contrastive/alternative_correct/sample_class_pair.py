import torch


def sample_class_pair(generator):
    # first digit uniform, then a non-zero offset so the second always differs
    first = int(torch.randint(0, 10, (1,), generator=generator))
    offset = int(torch.randint(1, 10, (1,), generator=generator))
    return first, (first + offset) % 10
