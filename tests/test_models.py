"""Architectures: output shapes on the studies' input sizes, published parameter counts,
minimum input sizes, probe points for prediction depth, airbench and its recipe, and the
errors at the edge."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch
from torch import nn

from raystats.config import RunConfig
from raystats.errors import ConfigError
from raystats.models import (
    ARCHITECTURES, MIN_INPUT_SIZE, build_model, feature_blocks, hidden_representations, recommended_recipe,
)
from raystats.models.cifar import ResNeXt
from raystats.models.fast import ShiftOnlyBatchNorm

DIGITS, FASHION, CIFAR = (1, 8, 8), (1, 28, 28), (3, 32, 32)
SHAPES = {"digits": DIGITS, "fashion": FASHION, "cifar": CIFAR}
CIFAR_SIZE = ("mlp3", "cnn", "wrn16_4", "densenet_bc100", "resnext29_4x64d", "airbench")
IMAGENET_SIZE = ("alexnet", "vgg11", "vgg11_bn", "resnet18", "resnet50", "densenet121")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(arch: str, input_shape=CIFAR, num_classes: int = 10) -> nn.Module:
    """Built on the meta device: the shapes of the weights without allocating them."""
    with torch.device("meta"):
        return build_model(arch, input_shape, num_classes)


def takes(arch: str, input_shape) -> bool:
    return min(input_shape[1:]) >= MIN_INPUT_SIZE[arch]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Batch-2 forwards gain nothing from a second thread, and on a loaded machine two
    OpenMP threads spin waiting for each other (DenseNet-BC on 3×32×32, load 5 on 2
    cores: 1.8 s with 2 threads, 0.08 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def smallest_model(arch: str) -> nn.Module:
    """``arch`` in eval mode for 3 channels at max(its minimum, 8) pixels and 4 classes,
    built once per session (VGG's 133M weights take seconds to initialise)."""
    size = max(MIN_INPUT_SIZE[arch], 8)
    return build_model(arch, (3, size, size), 4).eval()


def test_architectures_are_the_studies_and_airbench():
    assert set(ARCHITECTURES) == set(CIFAR_SIZE) | set(IMAGENET_SIZE)
    assert len(ARCHITECTURES) == 12
    assert set(MIN_INPUT_SIZE) == set(ARCHITECTURES)


# --- output shapes -------------------------------------------------------------------

@pytest.mark.parametrize("arch, shape", [
    (arch, shape) for arch in CIFAR_SIZE for shape in SHAPES if takes(arch, SHAPES[shape])
])
def test_cifar_size_logits_shape(arch, shape):
    input_shape = SHAPES[shape]
    torch.manual_seed(0)
    model = build_model(arch, input_shape, 7)  # training mode: batch statistics
    with torch.no_grad():
        logits = model(torch.randn(2, *input_shape))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_every_cifar_size_network_but_airbench_takes_digits():
    assert [arch for arch in CIFAR_SIZE if not takes(arch, DIGITS)] == ["airbench"]
    with pytest.raises(ConfigError, match=r"airbench.*at least 9×9.*got 8×8.*mlp3, cnn, wrn16_4"):
        build_model("airbench", DIGITS, 10)


@pytest.mark.parametrize("arch", IMAGENET_SIZE)
def test_imagenet_size_logits_at_minimum_size(arch):
    size = MIN_INPUT_SIZE[arch]
    with torch.no_grad():
        assert smallest_model(arch)(torch.randn(2, 3, size, size)).shape == (2, 4)


@pytest.mark.parametrize("arch", IMAGENET_SIZE)
def test_imagenet_size_first_conv_takes_the_channel_count(arch):
    # On the meta device: shapes are checked layer by layer, nothing is computed.
    size = MIN_INPUT_SIZE[arch]
    model = meta_model(arch, (1, size, size), 3)
    assert model_channels(model) == 1
    assert model(torch.zeros(2, 1, size, size, device="meta")).shape == (2, 3)


def test_imagenet_size_on_the_studies_shapes():
    # Which torchvision networks take Fashion-MNIST and CIFAR as they are.
    assert [a for a in IMAGENET_SIZE if takes(a, FASHION)] == ["resnet18", "resnet50"]
    assert [a for a in IMAGENET_SIZE if takes(a, CIFAR)] == [a for a in IMAGENET_SIZE if a != "alexnet"]
    model = build_model("resnet18", FASHION, 10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *FASHION)).shape == (2, 10)


@pytest.mark.parametrize("arch", IMAGENET_SIZE)
def test_imagenet_size_refuses_small_inputs(arch):
    size = MIN_INPUT_SIZE[arch] - 1
    with pytest.raises(ConfigError, match=rf"at least {size + 1}×{size + 1}.*CIFAR-size.*wrn16_4"):
        build_model(arch, (3, size, size), 10)


def _passes_minimum(model: nn.Module, side: int) -> bool:
    """The criterion of MIN_INPUT_SIZE, by running the network on the meta device: the
    forward pass is defined and every stride-2 layer receives at least 2×2."""
    received = []
    strided = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
               and max(m.stride if isinstance(m.stride, tuple) else (m.stride,)) > 1]
    hooks = [m.register_forward_pre_hook(lambda m, args: received.append(min(args[0].shape[-2:])))
             for m in strided]
    try:
        logits = model(torch.zeros(2, model_channels(model), side, side, device="meta"))
        return logits.shape[0] == 2 and min(received) >= 2
    except RuntimeError:  # an output size of 0, a pooling window larger than its input
        return False
    finally:
        for hook in hooks:
            hook.remove()


def model_channels(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if MIN_INPUT_SIZE[a] > 1])
def test_minimum_input_size_is_the_smallest_that_works(arch):
    size = MIN_INPUT_SIZE[arch]
    model = meta_model(arch, (3, 224, 224))  # built for a large input, then probed smaller
    assert _passes_minimum(model, size)
    assert not _passes_minimum(model, size - 1)


# --- parameter counts ------------------------------------------------------------------

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
    assert abs(count - 0.769e6) / 0.769e6 < 0.05
    assert abs(count - 0.8e6) / 0.8e6 < 0.05  # Huang et al. table 2: 0.8M


def test_resnext29_parameters_match_published():
    # Xie et al. table 7 gives 8×64d and 16×64d; 4×64d follows the same recipe.
    def count(cardinality):
        with torch.device("meta"):
            return parameter_count(ResNeXt(CIFAR, 10, cardinality=cardinality))

    assert abs(count(8) - 34.4e6) / 34.4e6 < 0.005
    assert abs(count(16) - 68.1e6) / 68.1e6 < 0.005
    assert parameter_count(meta_model("resnext29_4x64d")) == 17_562_442


def test_airbench_parameters_by_hand():
    def count(channels):
        whiten = 2 * channels * 4  # airbench's whitening width, 24 on RGB
        return (
            channels * 4 * whiten + whiten
            + (whiten * 64 + 64 * 64) * 9 + 2 * 64  # BN: a shift per channel, no scale
            + (64 * 256 + 256 * 256) * 9 + 2 * 256
            + 2 * 256 * 256 * 9 + 2 * 256
            + 256 * 10  # head without bias
        )

    assert parameter_count(meta_model("airbench", CIFAR)) == count(3) == 1_971_640
    assert parameter_count(meta_model("airbench", FASHION)) == count(1) == 1_962_152


@pytest.mark.parametrize("arch, published", [
    ("alexnet", 61_100_840), ("vgg11", 132_863_336), ("vgg11_bn", 132_868_840),
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("densenet121", 7_978_856),
])
def test_imagenet_size_at_224_is_torchvisions_network(arch, published):
    # torchvision's documented sizes for 1000 classes.
    assert parameter_count(meta_model(arch, (3, 224, 224), 1000)) == published


def test_small_models_parameters():
    assert parameter_count(meta_model("mlp3", FASHION)) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    assert 190_000 < parameter_count(meta_model("cnn", FASHION)) < 230_000
    # The adaptive pool keeps the dense part the same on every input size.
    assert parameter_count(meta_model("cnn", DIGITS)) == parameter_count(meta_model("cnn", FASHION))


@pytest.mark.parametrize("arch, input_shape", [
    ("mlp3", DIGITS), ("cnn", DIGITS), ("wrn16_4", DIGITS), ("densenet_bc100", DIGITS),
    ("airbench", FASHION), ("resnet18", FASHION),
])
def test_same_seed_same_weights(arch, input_shape):
    torch.manual_seed(3)
    first = build_model(arch, input_shape, 10).state_dict()
    torch.manual_seed(3)
    second = build_model(arch, input_shape, 10).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    torch.manual_seed(4)
    third = build_model(arch, input_shape, 10).state_dict()
    assert not all(torch.equal(first[name], third[name]) for name in first)


# --- airbench ------------------------------------------------------------------------

def test_airbench_batch_norm_learns_only_its_shift():
    model = build_model("airbench", CIFAR, 10)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(isinstance(m, ShiftOnlyBatchNorm) for m in norms)
    assert all(set(dict(m.named_parameters())) == {"bias"} for m in norms)
    assert all(torch.equal(m.weight, torch.ones_like(m.bias)) for m in norms)  # a buffer
    assert all(p.requires_grad for p in model.parameters())  # nothing frozen by a flag


def test_airbench_starts_with_small_logits():
    # The 1/9 output scale: logits at initialisation are a ninth of the head's output.
    torch.manual_seed(0)
    model = build_model("airbench", CIFAR, 10)
    inputs = torch.randn(4, *CIFAR)
    pooled = torch.amax(model.blocks(torch.nn.functional.gelu(model.whiten(inputs))), dim=(2, 3))
    assert torch.allclose(model(inputs), model.head(pooled) / 9, atol=1e-6)


def test_airbench_trains_as_a_stacked_ensemble():
    # The vectorized-ensemble path (torch.func.functional_call under vmap) gives each
    # trial what the trial's own model gives, batch norm in training mode included.
    from raystats.train.ensemble import StackedEnsemble

    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        models.append(build_model("airbench", FASHION, 10))
    ensemble = StackedEnsemble([copy.deepcopy(m) for m in models])
    inputs = torch.randn(2, 3, *FASHION)
    stacked = ensemble(inputs)
    single = torch.stack([m(x) for m, x in zip(models, inputs)])
    assert stacked.shape == (2, 3, 10)
    assert torch.allclose(stacked, single, atol=1e-5)
    stacked.sum().backward()
    assert all(p.grad is not None for p in ensemble.params)


def test_airbench_recipe_in_airbench_units():
    recipe = recommended_recipe("airbench")
    batch, momentum = recipe["batch_size"], recipe["momentum"]
    assert (batch, momentum, recipe["nesterov"], recipe["label_smoothing"]) == (1024, 0.85, True, 0.2)
    assert 9.9 <= recipe["epochs"] <= 10
    # airbench94: summed loss, lr 11.5 and decay 0.0153 per 1024 examples, both divided
    # by 1024 · (1 + 1/(1 − momentum)); decay applied as weight_decay = wd / lr.
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr_summed_loss = 11.5 / kilostep_scale
    decay_step = 0.0153 * batch / kilostep_scale
    assert recipe["lr"] == pytest.approx(lr_summed_loss * batch, rel=1e-5)  # mean loss
    assert recipe["lr"] * recipe["weight_decay"] == pytest.approx(decay_step, rel=1e-5)
    assert recipe["lr"] == pytest.approx(1.5)


def test_airbench_recipe_flags_are_run_config_fields():
    recipe = recommended_recipe("airbench")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    flags = {name: value for name, value in recipe.items() if name in fields}
    assert set(flags) == {"batch_size", "epochs", "optimizer", "lr", "weight_decay", "augment",
                          "translate_pixels", "flip"}
    config = RunConfig(run_id="cifar10-airbench", dataset="cifar10", arch="airbench", **flags)
    assert config.learning_rate == recipe["lr"] and config.decay == recipe["weight_decay"]
    recipe["lr"] = 0.0
    assert recommended_recipe("airbench")["lr"] == pytest.approx(1.5)  # a fresh dict each call


def test_recipe_only_for_airbench():
    with pytest.raises(ConfigError, match="wrn16_4.*only 'airbench'"):
        recommended_recipe("wrn16_4")


# --- probe points for prediction depth ---------------------------------------------

PROBE_COUNTS = {
    "mlp3": 2, "cnn": 3, "wrn16_4": 7, "densenet_bc100": 6, "resnext29_4x64d": 10, "airbench": 3,
    "alexnet": 7, "vgg11": 10, "vgg11_bn": 10, "resnet18": 9, "resnet50": 17, "densenet121": 8,
}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_blocks_in_forward_order(arch):
    size = max(MIN_INPUT_SIZE[arch], 8)
    model = smallest_model(arch)
    blocks = feature_blocks(model)
    assert len(blocks) == PROBE_COUNTS[arch]
    submodules = set(map(id, model.modules()))
    assert all(id(block) in submodules for block in blocks)
    called = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: called.append((i, o.shape[0])))
               for i, b in enumerate(blocks)]
    with torch.no_grad():
        model(torch.randn(2, 3, size, size))
    for handle in handles:
        handle.remove()
    assert called == [(i, 2) for i in range(len(blocks))]  # each once, in order, batch of 2


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


def test_hidden_representations_shapes_of_cnn_wrn_and_airbench():
    model = build_model("cnn", FASHION, 10).eval()
    representations, logits = hidden_representations(model, torch.randn(2, *FASHION))
    assert [r.shape for r in representations] == [(2, 32 * 14 * 14), (2, 64 * 7 * 7), (2, 128)]
    assert logits.shape == (2, 10)
    model = build_model("wrn16_4", CIFAR, 10).eval()
    representations, _ = hidden_representations(model, torch.randn(2, *CIFAR))
    assert [r.shape[1] for r in representations] == [16 * 32 * 32] + [64 * 32 * 32] * 2 + [
        128 * 16 * 16] * 2 + [256 * 8 * 8] * 2
    model = build_model("airbench", CIFAR, 10).eval()
    representations, _ = hidden_representations(model, torch.randn(2, *CIFAR))
    assert [r.shape for r in representations] == [(2, 64 * 15 * 15), (2, 256 * 7 * 7), (2, 256 * 3 * 3)]


def test_hidden_representations_survive_in_place_relu():
    # VGG's ReLUs are in place: the copy taken at the hook must be the post-ReLU value.
    model = smallest_model("vgg11")
    representations, _ = hidden_representations(model, torch.randn(2, *CIFAR))
    assert all((r >= 0).all() for r in representations)
    assert not any(hook for block in feature_blocks(model) for hook in block._forward_hooks.values())


def test_feature_blocks_of_a_foreign_model():
    with pytest.raises(ConfigError, match="Linear"):
        feature_blocks(nn.Linear(2, 2))


# --- errors at the edge ----------------------------------------------------------------

def test_unknown_arch_lists_the_accepted_names():
    with pytest.raises(ConfigError, match="resnet34.*mlp3.*cnn.*wrn16_4.*airbench.*densenet121"):
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
    with pytest.raises(ConfigError, match="at least 4×4.*mlp3, cnn, wrn16_4, resnext29_4x64d"):
        build_model("densenet_bc100", (1, 3, 3), 10)
