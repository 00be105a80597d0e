"""The guide's models (`pytorch-fundamentals.md`), written the way the guide writes them.

They are the oracles of tests/test_specs_oracle.py and the hand-written side of
benchmarks/forward_overhead.py.  Only the guide bugs a spec fixes are fixed here,
the same way, and marked FIXED.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils as nn_utils


# --- the guide's modules ------------------------------------------------------------------
# Section 1. Types of Normalization

class BatchNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.bn1(self.fc1(x)))
        return torch.softmax(self.fc2(x), dim=1)


class LayerNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.ln1 = nn.LayerNorm(64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.ln1(self.fc1(x)))
        return torch.softmax(self.fc2(x), dim=1)


class InstanceNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1)
        self.in1 = nn.InstanceNorm2d(64)
        self.fc1 = nn.Linear(64 * 28 * 28, 10)

    def forward(self, x):
        x = torch.relu(self.in1(self.conv1(x)))
        x = torch.flatten(x, start_dim=1)
        return torch.softmax(self.fc1(x), dim=1)


class GroupNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1)
        self.gn1 = nn.GroupNorm(4, 64)
        self.fc1 = nn.Linear(64 * 28 * 28, 10)

    def forward(self, x):
        x = torch.relu(self.gn1(self.conv1(x)))
        x = torch.flatten(x, start_dim=1)
        return torch.softmax(self.fc1(x), dim=1)


class WeightNormModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn_utils.weight_norm(nn.Linear(784, 64))
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=1)


# Section 2. Types of Models (FNN is also SingleInputModel, DenseModel and the complete
# example's FeedforwardNN; CNN is also ConvModel and PoolingModel; RNN is also RecurrentModel)

class FNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=1)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * 14 * 14, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=1)


class RNN(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        # the guide reads the global hidden_size here; the layer's own is the same number
        h0 = torch.zeros(1, x.size(0), self.rnn.hidden_size).to(x.device)
        out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1, :])


class LSTM(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(0), self.lstm.hidden_size).to(x.device)
        c0 = torch.zeros(1, x.size(0), self.lstm.hidden_size).to(x.device)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1, :])


class GRU(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(0), self.gru.hidden_size).to(x.device)
        out, _ = self.gru(x, h0)
        return self.fc(out[:, -1, :])


class Transformer(nn.Module):
    def __init__(self, input_dim, num_heads, num_layers):
        super().__init__()
        # FIXED: batch_first=True, so that x.mean(dim=1) averages over the sequence, not the batch;
        # FIXED: the template layer is a local, not self.transformer_layer (never called, see GuideTransformer)
        transformer_layer = nn.TransformerEncoderLayer(d_model=input_dim, nhead=num_heads, batch_first=True)
        self.transformer = nn.TransformerEncoder(transformer_layer, num_layers=num_layers)
        self.fc = nn.Linear(input_dim, 1)

    def forward(self, x):
        x = self.transformer(x)
        return F.relu(self.fc(x.mean(dim=1)))


class GuideTransformer(nn.Module):
    """The guide's Transformer exactly as written (batch_first False, template kept)."""

    def __init__(self, input_dim, num_heads, num_layers):
        super().__init__()
        self.transformer_layer = nn.TransformerEncoderLayer(d_model=input_dim, nhead=num_heads)
        self.transformer = nn.TransformerEncoder(self.transformer_layer, num_layers=num_layers)
        self.fc = nn.Linear(input_dim, 1)

    def forward(self, x):
        x = self.transformer(x)
        return F.relu(self.fc(x.mean(dim=1)))


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid())

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        return self.decoder(self.encoder(x))


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(100, 128), nn.ReLU(), nn.Linear(128, 784), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(784, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1), nn.Sigmoid())

    def forward(self, x):
        return self.main(x)


# Section 3. Architectures

class MultiInputModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(10, 128)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x1, x2):
        x1 = torch.flatten(x1, start_dim=1)
        x1 = torch.relu(self.fc1(x1))
        x2 = torch.relu(self.fc2(x2))
        x = torch.cat((x1, x2), dim=1)
        return torch.softmax(self.fc3(x), dim=1)


class SingleOutputModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 128)
        self.fc2 = nn.Linear(128, 1)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class MultiOutputModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.fc1 = nn.Linear(32 * 14 * 14, 128)
        self.fc2 = nn.Linear(128, 10)
        self.fc3 = nn.Linear(128, 1)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.fc1(x))
        return torch.softmax(self.fc2(x), dim=1), self.fc3(x)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv1(x)))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(64, 1, kernel_size=3, padding=1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        return torch.sigmoid(self.conv1(self.upsample(x)))


class EncoderDecoder(nn.Module):          # the guide calls it Autoencoder too
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()

    def forward(self, x):
        return self.decoder(self.encoder(x))


class AttentionModel(nn.Module):
    def __init__(self, input_dim, num_heads, batch_first=True):
        super().__init__()
        # FIXED: batch_first=True, so that mean(dim=1) averages over the sequence, not the batch
        self.attention = nn.MultiheadAttention(embed_dim=input_dim, num_heads=num_heads, batch_first=batch_first)
        self.fc = nn.Linear(input_dim, 1)

    def forward(self, x):
        attn_output, _ = self.attention(x, x, x)
        return F.relu(self.fc(attn_output.mean(dim=1)))


# Section 4. Layers (Dense, Convolutional, Pooling, Recurrent and Batch Normalization Layer
# are FNN, CNN, CNN, RNN and BatchNormModel again)

class DropoutModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.dropout = nn.Dropout(0.2)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.flatten(x, start_dim=1)
        x = torch.relu(self.fc1(x))
        x = self.dropout(x)
        return torch.softmax(self.fc2(x), dim=1)


class EmbeddingModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(1000, 64)
        self.fc1 = nn.Linear(64 * 10, 10)

    def forward(self, x):
        x = self.embedding(x)
        x = torch.flatten(x, start_dim=1)
        return torch.softmax(self.fc1(x), dim=1)


# --- the cases ----------------------------------------------------------------------------
