"""The task library's architectures: layer shapes and parameter counts against their papers,
the activation swap, normalisation and residual knobs, and how the monitor sees each model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional

from gradbench.monitor.gradient_monitor import model_layers
from gradbench.tasks.cnn import MNIST1DCNN, ThreeConvThreeDense, TwoConvTwoDense
from gradbench.tasks.deep_cnn import DeepCNN
from gradbench.tasks.mlp import MLP
from gradbench.tasks.resnet import resnet18_cifar
from gradbench.tasks.rnn import RecurrentNet


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_with_its_first_knobs_is_the_core_mlp():
    model = MLP(40, 10, depth=3, width=32, activation="relu")
    assert [name for name, _ in model_layers(model)] == ["layers.0", "layers.2", "layers.4", "layers.6"]
    assert [type(m).__name__ for m in model.layers] == ["Linear", "ReLU"] * 3 + ["Linear"]


@pytest.mark.parametrize("norm, norm_class", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_norm_sits_between_each_hidden_linear_and_its_activation(norm, norm_class):
    model = MLP(40, 10, depth=4, width=16, activation="tanh", norm=norm)
    kinds = [type(m) for m in model.layers]
    assert kinds == [nn.Linear, norm_class, nn.Tanh] * 4 + [nn.Linear]
    assert model(torch.randn(5, 40)).shape == (5, 10)


def test_mlp_residual_adds_identity_shortcuts_to_hidden_layers_2_to_depth():
    model = MLP(40, 10, depth=4, width=16, activation="relu", residual=True)
    residual = [m for m in model.layers if type(m).__name__ == "Residual"]
    assert len(residual) == 3
    assert count(model) == count(MLP(40, 10, depth=4, width=16, activation="relu"))
    block = residual[0]
    x = torch.randn(3, 16)
    torch.testing.assert_close(block(x), x + block.block(x))
    # The monitor sees every linear layer, inside the shortcut wrappers too.
    assert len(model_layers(model)) == 5


def test_mnist1d_cnn_matches_the_paper():
    model = MNIST1DCNN(channels=25, activation="relu")
    assert count(model) == 5210  # the MNIST-1D paper's ConvBase
    assert [name for name, _ in model_layers(model)] == ["conv1", "conv2", "conv3", "linear"]
    assert model(torch.randn(4, 40)).shape == (4, 10)


def _shapes(model: nn.Sequential, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, module in model.named_children():
        x = module(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


def test_2c2d_has_deepobs_shapes_parameters_and_initialisation():
    torch.manual_seed(0)
    model = TwoConvTwoDense(activation="relu")
    shapes = _shapes(model, torch.randn(2, 1, 28, 28))
    assert shapes["conv1"] == (32, 28, 28) and shapes["pool1"] == (32, 14, 14)
    assert shapes["conv2"] == (64, 14, 14) and shapes["pool2"] == (64, 7, 7)
    assert shapes["dense1"] == (1024,) and shapes["dense2"] == (10,)
    assert count(model) == 3_274_634  # DeepOBS's fmnist_2c2d
    for module in (model.conv1, model.conv2, model.dense1, model.dense2):
        assert torch.all(module.bias == 0.05)
        weight = module.weight
        assert weight.abs().max() <= 0.1  # truncated at two standard deviations
        assert 0.04 < weight.std() < 0.05  # a N(0, 0.05^2) truncated at 2 sigma has std 0.044


def test_3c3d_has_deepobs_shapes_parameters_and_initialisation():
    model = ThreeConvThreeDense(activation="relu")
    shapes = _shapes(model, torch.randn(2, 3, 32, 32))
    assert (shapes["conv1"], shapes["pool1"]) == ((64, 28, 28), (64, 14, 14))
    assert (shapes["conv2"], shapes["pool2"]) == ((96, 12, 12), (96, 6, 6))
    assert (shapes["conv3"], shapes["pool3"]) == ((128, 6, 6), (128, 3, 3))
    assert (shapes["dense1"], shapes["dense2"], shapes["dense3"]) == ((512,), (256,), (10,))
    assert count(model) == 895_210  # DeepOBS's cifar10_3c3d
    assert all(torch.all(m.bias == 0) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("size", [28, 12, 6])
def test_3c3d_pooling_is_tensorflows_same_pooling(size):
    """TensorFlow's "same" 3x3 stride-2 pooling at the sizes 3c3d pools: pad the bottom and
    right so the output is ceil(size / 2), with padding that never wins the max (inputs here
    are mostly negative, where zero padding would win)."""
    x = torch.randn(2, 3, size, size) - 3.0
    output_size = -(-size // 2)
    pad = max((output_size - 1) * 2 + 3 - size, 0)
    before = pad // 2
    reference = functional.max_pool2d(functional.pad(x, (before, pad - before, before, pad - before), value=float("-inf")), 3, 2)
    torch.testing.assert_close(ThreeConvThreeDense(activation="relu").pool1(x), reference, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [8, 20, 32])
def test_deep_cnn_has_depth_weighted_layers_and_plain_twins_of_resnets(depth):
    plain = DeepCNN(3, 10, spatial_dims=2, depth=depth, width=16, norm="batch", residual=False, activation="relu")
    weighted = [m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth
    residual = DeepCNN(3, 10, spatial_dims=2, depth=depth, width=16, norm="batch", residual=True, activation="relu")
    assert count(plain) == count(residual)  # option A shortcuts have no parameters
    if depth == 20:
        assert count(residual) == 269_722  # He et al.'s ResNet-20: "0.27M"
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert residual(x).shape == plain(x).shape == (2, 10)
    assert not torch.allclose(residual(x), plain(x))


def test_deep_cnn_shortcut_subsamples_and_pads_channels():
    model = DeepCNN(1, 10, spatial_dims=1, depth=8, width=4, norm="none", residual=True, activation="identity")
    block = model.stages[1][0]  # 4 -> 8 channels, stride 2
    x = torch.randn(2, 4, 40)
    shortcut = block._shortcut(x)
    assert shortcut.shape == (2, 8, 20)
    torch.testing.assert_close(shortcut[:, :4], x[:, :, ::2])
    assert torch.all(shortcut[:, 4:] == 0)
    assert model(torch.randn(2, 40)).shape == (2, 10)


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm2d), ("layer", nn.GroupNorm)])
def test_deep_cnn_norm_knob(norm, kind):
    model = DeepCNN(3, 10, spatial_dims=2, depth=8, width=4, norm=norm, residual=False, activation="relu")
    assert sum(isinstance(m, kind) for m in model.modules()) == 7  # after every convolution
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_resnet18_is_adapted_to_32x32_and_has_no_relu_left():
    model = resnet18_cifar(activation="gelu")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # The stem's activation and one per BasicBlock (each applies it twice).
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 1 + 8
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    assert count(model) == 11_173_962
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    assert model.layer4(model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x))))))).shape == (2, 512, 4, 4)
    # The new stem is initialised as torchvision initialises its convolutions.
    assert 0.8 < model.conv1.weight.std().item() / (2 / (64 * 9)) ** 0.5 < 1.2


def test_resnet18_with_relu_uses_non_inplace_modules_and_norm_none_has_no_norm():
    model = resnet18_cifar(activation="relu")
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 9 and not any(m.inplace for m in relus)
    bare = resnet18_cifar(activation="relu", norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in bare.modules())
    assert bare(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("cell, module_class", [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_recurrent_layers_are_stacked_single_layer_modules(cell, module_class):
    model = RecurrentNet(cell, 2, 1, depth=3, width=8)
    assert [name for name, _ in model_layers(model)] == ["layers.0", "layers.1", "layers.2", "head"]
    assert all(isinstance(layer, module_class) and layer.num_layers == 1 for layer in model.layers)
    assert model(torch.randn(4, 15, 2)).shape == (4, 1)
    assert RecurrentNet(cell, 1, 10, depth=1, width=8)(torch.randn(4, 40)).shape == (4, 10)


def test_recurrent_net_reads_out_the_last_step():
    model = RecurrentNet("gru", 1, 3, depth=1, width=4)
    x = torch.randn(2, 12)
    later_change = x.clone()
    later_change[:, :-1] += 1.0
    assert not torch.allclose(model(x), model(later_change))  # early steps reach the output
    outputs, _ = model.layers[0](x.unsqueeze(-1))
    torch.testing.assert_close(model(x), model.head(outputs[:, -1]))


def test_vanilla_rnn_nonlinearity_knob():
    assert RecurrentNet("rnn", 2, 1, depth=1, width=4, nonlinearity="relu").layers[0].nonlinearity == "relu"
    assert RecurrentNet("rnn", 2, 1, depth=1, width=4).layers[0].nonlinearity == "tanh"


def test_mnist1d_paper_gru_is_bidirectional_and_reads_every_step():
    model = RecurrentNet("gru", 1, 10, depth=1, width=6, bidirectional=True, readout="all", length=40)
    assert count(model) == 5134  # the MNIST-1D paper's GRUBase (hidden 6, bidirectional, 2*6*40 -> 10)
    x = torch.randn(3, 40)
    outputs, _ = model.layers[0](x.unsqueeze(-1))
    assert outputs.shape == (3, 40, 12)
    torch.testing.assert_close(model(x), model.head(outputs.flatten(1)))
    stacked = RecurrentNet("lstm", 2, 1, depth=2, width=4, bidirectional=True)
    assert stacked.layers[1].input_size == 8 and stacked(torch.randn(2, 5, 2)).shape == (2, 1)


def test_mnist1d_paper_gru_knobs_build_it_and_leave_old_keys_alone():
    from gradbench.tasks.base import TaskConfig
    from gradbench.tasks.rnn import build_recurrent
    from gradbench.tasks.base import resolve_knobs

    knobs = resolve_knobs("mnist1d_gru", {"width": 6, "bidirectional": True, "readout": "all", "num_samples": 100})
    model = build_recurrent(TaskConfig(knobs=knobs, init="default"), cell="gru", problem="mnist1d").model
    assert count(model) == 5134
    with pytest.raises(ValueError, match="readout='every'.*choose from: last, all"):
        resolve_knobs("mnist1d_gru", {"readout": "every"})
