"""Modules that are not shipped specs, for tests/test_import.py: each construct `specbuild import`
must turn into a spec (a skip connection, concatenated skips, a layer applied twice, dict
outputs, view/permute/indexing), and ones it must refuse, naming the construct and line."""
import torch
from torch import nn
import torch.nn.functional as F

class Residual(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
    def forward(self, x):
        return F.relu(x + self.fc2(torch.relu(self.fc1(x))))

class TinyUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.out = nn.Conv2d(16, 1, 1)
    def forward(self, x):
        d = self.down(x)
        u = self.up(self.mid(self.pool(d)))
        return torch.sigmoid(self.out(torch.cat([d, u], dim=1)))

class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
    def forward(self, x):
        return self.fc(torch.tanh(self.fc(x)))

class Heads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(12, 16)
        self.cls = nn.Linear(16, 3)
        self.reg = nn.Linear(16, 1)
    def forward(self, x):
        h = torch.relu(self.trunk(x))
        return {"label": self.cls(h), "value": self.reg(h)}

class Shapes(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
    def forward(self, x):
        y = x.view(x.size(0), 4, 6).permute(0, 2, 1)
        z = self.fc(y.transpose(1, 2))
        return z[:, -1, :]

class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class ReadsAParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return x * self.scale
