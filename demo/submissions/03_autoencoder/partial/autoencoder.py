from torch import nn


class AutoEncoder(nn.Module):
    def __init__(self, dim_in, act_func=nn.ReLU):
        super().__init__()
        # nn.ReLU() written out everywhere: act_func is accepted but never used
        self.encoder = nn.Sequential(nn.Linear(dim_in, 1000), nn.ReLU(), nn.Linear(1000, 25),
                                     nn.ReLU(), nn.Linear(25, 50))
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(50, 1000), nn.ReLU(),
                                     nn.Linear(1000, dim_in))

    def forward(self, x):
        return self.decoder(self.encoder(x))
