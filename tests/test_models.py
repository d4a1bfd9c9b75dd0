"""Architectures: output shapes on the studies' input sizes, published parameter counts,
probe points for prediction depth, and the errors at the edge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raystats.errors import ConfigError
from raystats.models import ARCHITECTURES, build_model, feature_blocks, hidden_representations
from raystats.models.cifar import ResNeXt
from raystats.models.imagenet import MIN_INPUT_SIZE

DIGITS, FASHION, CIFAR = (1, 8, 8), (1, 28, 28), (3, 32, 32)
CIFAR_SIZE = ("mlp3", "cnn", "wrn16_4", "densenet_bc100", "resnext29_4x64d")
IMAGENET_SIZE = ("alexnet", "vgg11", "vgg11_bn", "resnet18", "resnet50", "densenet121")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(arch: str, input_shape=CIFAR, num_classes: int = 10) -> nn.Module:
    """Built on the meta device: the shapes of the weights without allocating them."""
    with torch.device("meta"):
        return build_model(arch, input_shape, num_classes)


def test_architectures_are_the_studies():
    assert set(ARCHITECTURES) == set(CIFAR_SIZE) | set(IMAGENET_SIZE)
    assert len(ARCHITECTURES) == 11


@pytest.mark.parametrize("arch", CIFAR_SIZE)
@pytest.mark.parametrize("input_shape", [DIGITS, FASHION, CIFAR], ids=["digits", "fashion", "cifar"])
def test_cifar_size_logits_shape(arch, input_shape):
    torch.manual_seed(0)
    model = build_model(arch, input_shape, 7)
    logits = model(torch.randn(2, *input_shape))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", IMAGENET_SIZE)
def test_imagenet_size_logits_at_minimum_size(arch):
    size = MIN_INPUT_SIZE[arch]
    model = build_model(arch, (3, size, size), 5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)


@pytest.mark.parametrize("arch", ["alexnet", "resnet18", "densenet121", "vgg11_bn"])
def test_imagenet_size_first_conv_takes_the_channel_count(arch):
    size = max(MIN_INPUT_SIZE[arch], 32)
    model = build_model(arch, (1, size, size), 3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 3)


def test_imagenet_size_at_224_is_torchvisions_network():
    model = build_model("resnet18", (3, 224, 224), 1000)
    assert parameter_count(model) == 11_689_512  # torchvision's documented ResNet-18 size


@pytest.mark.parametrize("arch", IMAGENET_SIZE)
def test_imagenet_size_refuses_small_inputs(arch):
    size = MIN_INPUT_SIZE[arch] - 1
    with pytest.raises(ConfigError, match=rf"at least {size + 1}×{size + 1}.*wrn16_4"):
        build_model(arch, (3, size, size), 10)


def test_wrn16_4_parameters_match_published():
    # conv 3·16·9 + groups of 2 pre-activation blocks at 64/128/256 + 1×1 shortcuts,
    # BN scales and shifts, fc 256·10+10. Zagoruyko & Komodakis table 1: 2.7M.
    count = parameter_count(meta_model("wrn16_4"))
    assert count == 2_748_890
    assert abs(count - 2.75e6) / 2.75e6 < 0.03


def test_wrn16_4_parameters_by_hand():
    convs = 3 * 16 * 9 + sum(
        cin * cout * 9 + cout * cout * 9 + cin * cout + 2 * cout * cout * 9
        for cin, cout in [(16, 64), (64, 128), (128, 256)]
    )
    # Two BNs per block (input width, output width), then the head's BN on 256.
    batch_norms = 2 * (16 + 64 + 64 + 64 + 64 + 128 + 128 + 128 + 128 + 256 + 256 + 256 + 256)
    assert parameter_count(meta_model("wrn16_4")) == convs + batch_norms + 256 * 10 + 10


def test_densenet_bc100_parameters_match_published():
    count = parameter_count(meta_model("densenet_bc100"))
    assert count == 769_162
    assert abs(count - 0.8e6) / 0.8e6 < 0.05  # Huang et al. table 2: 0.8M


def test_resnext29_parameters_match_published():
    # Xie et al. table 7 gives 8×64d and 16×64d; 4×64d follows the same recipe.
    def count(cardinality):
        with torch.device("meta"):
            return parameter_count(ResNeXt(CIFAR, 10, cardinality=cardinality))

    assert abs(count(8) - 34.4e6) / 34.4e6 < 0.005
    assert abs(count(16) - 68.1e6) / 68.1e6 < 0.005
    assert parameter_count(meta_model("resnext29_4x64d")) == 17_562_442


def test_small_models_parameters():
    assert parameter_count(meta_model("mlp3", FASHION)) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert 190_000 < parameter_count(meta_model("cnn", FASHION)) < 230_000
    # The adaptive pool keeps the dense part the same on every input size.
    assert parameter_count(meta_model("cnn", DIGITS)) == parameter_count(meta_model("cnn", FASHION))


def test_same_seed_same_weights():
    torch.manual_seed(3)
    first = build_model("wrn16_4", CIFAR, 10).state_dict()
    torch.manual_seed(3)
    second = build_model("wrn16_4", CIFAR, 10).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


PROBE_COUNTS = {
    "mlp3": 2, "cnn": 3, "wrn16_4": 7, "densenet_bc100": 6, "resnext29_4x64d": 10,
    "alexnet": 7, "vgg11": 10, "vgg11_bn": 10, "resnet18": 9, "resnet50": 17, "densenet121": 5,
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_blocks_in_forward_order(arch):
    size = MIN_INPUT_SIZE.get(arch, 8)
    model = build_model(arch, (3, size, size), 4).eval()
    blocks = feature_blocks(model)
    assert len(blocks) == PROBE_COUNTS[arch]
    submodules = set(map(id, model.modules()))
    assert all(id(block) in submodules for block in blocks)
    called = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: called.append(i)) for i, b in enumerate(blocks)]
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    for handle in handles:
        handle.remove()
    assert called == list(range(len(blocks)))  # each once, in the listed order


def test_hidden_representations_of_mlp3_by_hand():
    torch.manual_seed(0)
    model = build_model("mlp3", DIGITS, 3)
    inputs = torch.randn(2, *DIGITS)
    representations, logits = hidden_representations(model, inputs)
    first = torch.relu(model.hidden1[0](inputs.flatten(1)))
    second = torch.relu(model.hidden2[0](first))
    assert torch.allclose(representations[0], first)
    assert torch.allclose(representations[1], second)
    assert torch.allclose(logits, model.classifier(second))


def test_hidden_representations_shapes_of_cnn_and_wrn():
    model = build_model("cnn", FASHION, 10).eval()
    representations, logits = hidden_representations(model, torch.randn(2, *FASHION))
    assert [r.shape for r in representations] == [(2, 32 * 14 * 14), (2, 64 * 7 * 7), (2, 128)]
    assert logits.shape == (2, 10)
    model = build_model("wrn16_4", CIFAR, 10).eval()
    representations, _ = hidden_representations(model, torch.randn(2, *CIFAR))
    assert [r.shape[1] for r in representations] == [16 * 32 * 32] + [64 * 32 * 32] * 2 + [
        128 * 16 * 16] * 2 + [256 * 8 * 8] * 2


def test_hidden_representations_survive_in_place_relu():
    # VGG's ReLUs are in place: the copy taken at the hook must be the post-ReLU value.
    model = build_model("vgg11", CIFAR, 10).eval()
    representations, _ = hidden_representations(model, torch.randn(2, *CIFAR))
    assert all((r >= 0).all() for r in representations)
    assert not any(hook for block in feature_blocks(model) for hook in block._forward_hooks.values())


def test_unknown_arch_lists_the_accepted_names():
    with pytest.raises(ConfigError, match="resnet34.*mlp3.*cnn.*wrn16_4.*densenet121"):
        build_model("resnet34", CIFAR, 10)


@pytest.mark.parametrize("input_shape", [(32, 32), (3, 0, 32), (3, 32, 32.5), "3x32x32", None])
def test_malformed_input_shape(input_shape):
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("cnn", input_shape, 10)


@pytest.mark.parametrize("num_classes", [0, 1, 2.0, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("cnn", CIFAR, num_classes)


def test_densenet_bc100_refuses_inputs_below_4_pixels():
    with pytest.raises(ConfigError, match="at least 4×4"):
        build_model("densenet_bc100", (1, 3, 3), 10)


def test_feature_blocks_of_a_foreign_model():
    with pytest.raises(ConfigError, match="Linear"):
        feature_blocks(nn.Linear(2, 2))
