"""Which shipped spec (`specs/<name>.yaml`) writes down which model of the guide.

The guide is `pytorch-fundamentals.md`, the reference specbuild grew from.  Its
sections 1-4 and its complete example show 27 modules; several are the same
model under another name (FNN, SingleInputModel, DenseModel and the example's
FeedforwardNN are one model), so 20 specs cover them.  `HEADINGS` maps each
guide heading, as the guide spells it, to its spec; `SPEC_DOCS` says in one line
what each spec is and lists where it deliberately differs from the guide.  Plain
literals, no torch: `specbuild list` prints them.  `ARCHITECTURES` does the same
for the real architectures shipped beside the guide's models.  A test keeps the
tables in step with the files in `specs/`.
"""
from __future__ import annotations

# The guide's own softmax-before-CrossEntropyLoss bug, fixed the same way in every classifier.
_LOGITS = ("the loss reads the logits ({node}), not the softmax output the guide trains on "
           "(CrossEntropyLoss applies softmax itself); the model still returns probabilities")

# guide heading -> spec name.  Sections 1-4 in the guide's order, then the complete example.
HEADINGS: dict[str, str] = {
    # 1. Types of Normalization
    "Batch Normalization": "batch_norm",
    "Layer Normalization": "layer_norm",
    "Instance Normalization": "instance_norm",
    "Group Normalization": "group_norm",
    "Weight Normalization": "weight_norm",
    # 2. Types of Models
    "Feedforward Neural Network (FNN)": "fnn",
    "Convolutional Neural Network (CNN)": "cnn",
    "Recurrent Neural Network (RNN)": "rnn",
    "Long Short-Term Memory Network (LSTM)": "lstm",
    "Gated Recurrent Unit (GRU)": "gru",
    "Transformer": "transformer",
    "Autoencoder": "autoencoder",
    "Generative Adversarial Network (GAN)": "gan",
    # 3. Architectures
    "Single Input": "fnn",
    "Multi-Input": "multi_input",
    "Single Output": "single_output",
    "Multi-Output": "multi_output",
    "Encoder-Decoder": "encoder_decoder",
    "Attention Mechanisms": "attention",
    # 4. Layers and Their Use Cases
    "Dense Layer": "fnn",
    "Convolutional Layer": "cnn",
    "Pooling Layer": "cnn",
    "Recurrent Layer": "rnn",
    "Dropout Layer": "dropout",
    "Batch Normalization Layer": "batch_norm",
    "Embedding Layer": "embedding",
    # the FeedforwardNN of the complete example
    "Complete Example of Training a Model": "fnn",
}

# spec name -> {"summary": one line, "deviations": what differs from the guide, and why}
SPEC_DOCS: dict[str, dict] = {
    "batch_norm": {
        "summary": "BatchNormModel: flatten, fc1 Linear(784, 64), bn1 BatchNorm1d, relu, fc2 Linear(64, 10), softmax",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "layer_norm": {
        "summary": "LayerNormModel: flatten, fc1 Linear(784, 64), ln1 LayerNorm(64), relu, fc2 Linear(64, 10), softmax",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "instance_norm": {
        "summary": "InstanceNormModel: conv1 Conv2d(1, 64, 3), in1 InstanceNorm2d, relu, flatten, fc1 Linear(50176, 10), softmax",
        "deviations": (_LOGITS.format(node="fc1"),)},
    "group_norm": {
        "summary": "GroupNormModel: conv1 Conv2d(1, 64, 3), gn1 GroupNorm(4, 64), relu, flatten, fc1 Linear(50176, 10), softmax",
        "deviations": (_LOGITS.format(node="fc1"),)},
    "weight_norm": {
        "summary": "WeightNormModel: flatten, fc1 weight_norm(Linear(784, 64)), relu, fc2 Linear(64, 10), softmax",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "fnn": {
        "summary": "FNN / SingleInputModel / DenseModel / FeedforwardNN: flatten, fc1 Linear(784, 128), relu, "
                   "fc2 Linear(128, 10), softmax; trained as the complete example trains it",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "cnn": {
        "summary": "CNN / ConvModel / PoolingModel: conv1 Conv2d(1, 32, 3), relu, pool MaxPool2d(2), flatten, "
                   "fc1 Linear(6272, 128), relu, fc2 Linear(128, 10), softmax",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "rnn": {
        "summary": "RNN / RecurrentModel: rnn RNN(input_size, hidden_size, batch_first), last step, fc Linear(hidden_size, "
                   "output_size); params input_size 1, hidden_size 50, output_size 1, seq_len 50",
        "deviations": ("no h0 input: the guide's zero h0 is torch's default",)},
    "lstm": {
        "summary": "LSTM: lstm LSTM(input_size, hidden_size, batch_first), last step, fc Linear(hidden_size, output_size); "
                   "params input_size 1, hidden_size 50, output_size 1, seq_len 50",
        "deviations": ("no h0/c0 input: the guide's zero states are torch's default",)},
    "gru": {
        "summary": "GRU: gru GRU(input_size, hidden_size, batch_first), last step, fc Linear(hidden_size, output_size); "
                   "params input_size 1, hidden_size 50, output_size 1, seq_len 50",
        "deviations": ("no h0 input: the guide's zero h0 is torch's default",)},
    "transformer": {
        "summary": "Transformer: transformer TransformerEncoder(TransformerEncoderLayer(input_dim, num_heads), num_layers), "
                   "mean over the sequence, fc Linear(input_dim, 1), relu; params input_dim 512, num_heads 8, "
                   "num_layers 6, seq_len 16",
        "deviations": ("batch_first: true, so the mean over dim 1 averages over the sequence; the guide's "
                       "batch_first False made it average over the batch, mixing samples",
                       "the guide's unused template self.transformer_layer (deep-copied into transformer.layers, "
                       "never called) is not kept: its transformer_layer.* weights are gone, every other name and "
                       "shape is the guide's")},
    "autoencoder": {
        "summary": "Autoencoder: flatten, encoder (Linear(784, 128), ReLU, Linear(128, 32), ReLU), decoder (Linear(32, 128), "
                   "ReLU, Linear(128, 784), Sigmoid); reconstruction of [0, 1] pixels",
        "deviations": ()},
    "gan": {
        "summary": "GAN: networks generator (main: Linear(100, 128), ReLU, Linear(128, 784), Tanh) and discriminator "
                   "(main: Linear(784, 128), LeakyReLU(0.2), Linear(128, 1), Sigmoid); BCELoss",
        "deviations": ("both networks exist: the guide's `discriminator = Discriminator` never instantiates it",)},
    "multi_input": {
        "summary": "MultiInputModel: x1 image -> flatten, fc1 Linear(784, 128), relu; x2 [10] -> fc2 Linear(10, 128), relu; "
                   "cat, fc3 Linear(256, 10), softmax",
        "deviations": (_LOGITS.format(node="fc3"),)},
    "single_output": {
        "summary": "SingleOutputModel: fc1 Linear(10, 128), relu, fc2 Linear(128, 1); regression on diabetes",
        "deviations": ()},
    "multi_output": {
        "summary": "MultiOutputModel: conv1, relu, pool, flatten, fc1 Linear(6272, 128), relu, then softmax(fc2) "
                   "and fc3 Linear(128, 1) as a tuple; class loss on label, MSE on ink",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "encoder_decoder": {
        "summary": "Encoder-Decoder Autoencoder: encoder (conv1 Conv2d(1, 64, 3), relu, pool), decoder (upsample x2, "
                   "conv1 Conv2d(64, 1, 3), sigmoid); reconstruction of [0, 1] pixels",
        "deviations": ()},
    "attention": {
        "summary": "AttentionModel: attention MultiheadAttention(input_dim, num_heads) on (x, x, x), mean over the "
                   "sequence, fc Linear(input_dim, 1), relu; params input_dim 512, num_heads 8, seq_len 16",
        "deviations": ("batch_first: true, so the mean over dim 1 averages over the sequence; the guide's "
                       "batch_first False made it average over the batch, mixing samples",)},
    "dropout": {
        "summary": "DropoutModel: flatten, fc1 Linear(784, 128), relu, dropout Dropout(0.2), fc2 Linear(128, 10), softmax",
        "deviations": (_LOGITS.format(node="fc2"),)},
    "embedding": {
        "summary": "EmbeddingModel: embedding Embedding(1000, 64) over 10 long token ids, flatten, fc1 Linear(640, 10), "
                   "softmax; the synthetic tokens set",
        "deviations": (_LOGITS.format(node="fc1"),)},
}


# Beside the guide's models: real architectures, written with their usual parameter names so that
# their published weights load (spec name -> one line).
ARCHITECTURES: dict[str, str] = {
    "resnet18": "ResNet-18, torchvision's parameter names (its state_dict loads strictly); one BasicBlock definition",
    "resnet50": "ResNet-50 (v1.5), torchvision's parameter names; one Bottleneck definition",
    "vgg11": "VGG-11 (configuration A), torchvision's parameter names: features and classifier Sequentials",
    "mobilenet_v2": "MobileNetV2, torchvision's parameter names; one InvertedResidual definition with "
                    "`when:` for the expansion and the residual",
    "unet": "a small U-Net: DoubleConv levels, transposed convs up, concatenated skips; MNIST reconstruction",
    "gpt": "a nanoGPT-style GPT: pre-LN blocks, fused q/k/v, causal scaled_dot_product_attention, lm_head tied "
           "to the token embedding; trains on token-stream",
}


def headings_for(spec: str) -> list[str]:
    """The guide headings a spec writes down, in the guide's order."""
    return [heading for heading, name in HEADINGS.items() if name == spec]
