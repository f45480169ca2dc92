import torch


def sample_class_pair(generator):
    # draw again until the digits differ: every ordered pair of distinct digits is equally likely
    while True:
        a1, a2 = torch.randint(10, (2,), generator=generator).tolist()
        if a1 != a2:
            return a1, a2
