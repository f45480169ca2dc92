import torch


def sample_class_pair(generator):
    a1, a2 = torch.randint(0, 10, (2,), generator=generator).tolist()  # may draw one class twice
    return a1, a2
