from collections import OrderedDict

import torch
from torch import nn


class AutoEncoder(nn.Module):
    """The layers come from a list of sizes; the decoder's layers have names."""

    def __init__(self, dim_in, act_func=nn.ReLU):
        super().__init__()
        sizes = [dim_in, 1000, 25, 50]
        layers = []
        for i in range(len(sizes) - 1):
            if i > 0:
                layers.append(act_func())
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        self.encoder = nn.Sequential(*layers)
        self.decoder = nn.Sequential(OrderedDict([
            ("act_in", act_func()),
            ("hidden", nn.Linear(50, 1000)),
            ("act_hidden", act_func()),
            ("out", nn.Linear(1000, dim_in)),
        ]))

    def forward(self, x):
        code = self.encoder(x)
        return self.decoder(code)
