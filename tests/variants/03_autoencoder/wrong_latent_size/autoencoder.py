from torch import nn


class AutoEncoder(nn.Module):
    def __init__(self, dim_in, act_func=nn.ReLU):
        super().__init__()
        # the bottleneck doubles as the code: 25 numbers instead of 50
        self.encoder = nn.Sequential(nn.Linear(dim_in, 1000), act_func(), nn.Linear(1000, 25))
        self.decoder = nn.Sequential(act_func(), nn.Linear(25, 1000), act_func(),
                                     nn.Linear(1000, dim_in))

    def forward(self, x):
        return self.decoder(self.encoder(x))
