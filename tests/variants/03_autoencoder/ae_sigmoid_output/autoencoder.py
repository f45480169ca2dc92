import torch
from torch import nn


class AutoEncoder(nn.Module):
    def __init__(self, dim_in, act_func=nn.ReLU):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim_in, 1000), act_func(), nn.Linear(1000, 25),
                                     act_func(), nn.Linear(25, 50))
        self.decoder = nn.Sequential(act_func(), nn.Linear(50, 1000), act_func(),
                                     nn.Linear(1000, dim_in))

    def forward(self, x):
        # squashes the reconstruction into [0, 1]: not decoder(encoder(x))
        return torch.sigmoid(self.decoder(self.encoder(x)))
