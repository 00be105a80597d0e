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


class PreNormBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc(self.ln(x))


class BlockList(nn.Module):
    """The stack as most real models write it: a ModuleList looped over in forward."""
    def __init__(self, width=8, depth=3):
        super().__init__()
        self.embed = nn.Linear(4, width)
        self.h = nn.ModuleList([PreNormBlock(width) for _ in range(depth)])
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        x = self.embed(x)
        for block in self.h:
            x = block(x)
        return self.head(x)


class LayerList(nn.Module):
    """A ModuleList of torch layers, its last output returned beside the head's."""
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4)])
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x), x


class ReluBetween(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


class ParallelHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(4, 2) for _ in range(3)])

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], 1)


class ItemReadTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x):
        y = self.h[0](x)
        return self.h[1](y) + y


class DictParts(nn.Module):
    def __init__(self):
        super().__init__()
        self.parts = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 2)})

    def forward(self, x):
        return self.parts["b"](self.parts["a"](x))


class FunctionalPools(nn.Module):
    """Pools called as functions, as torchvision's MobileNetV2 calls F.adaptive_avg_pool2d."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        x = F.max_pool2d(self.conv(x), 2)
        x = F.avg_pool2d(x, 2, stride=1)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
