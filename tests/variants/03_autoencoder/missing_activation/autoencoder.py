from torch import nn


class AutoEncoder(nn.Module):
    def __init__(self, dim_in, act_func=nn.ReLU):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(dim_in, 1000), act_func(), nn.Linear(1000, 25),
                                     act_func(), nn.Linear(25, 50))
        # forgot the activation in front of the decoder's first Linear
        self.decoder = nn.Sequential(nn.Linear(50, 1000), act_func(), nn.Linear(1000, dim_in))

    def forward(self, x):
        return self.decoder(self.encoder(x))
