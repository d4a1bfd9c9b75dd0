"""Prediction depth: k-NN against brute force, depth on constructed cases and properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from raystats.errors import ConfigError
from raystats.stats.depth import collect_features, depth_from_features, knn_predict, prediction_depth

# ------------------------------------------------------------------------------ k-NN


def knn_reference(support, labels, query, k, num_classes, exclude=None):
    """One query at a time in numpy; returns the set of acceptable answers per query.

    Neighbours: stable argsort of the distances (lower index first among equals). Vote,
    then smallest summed distance, then lowest class; sums within 1e-9 of the smallest
    count as tied, since two summation orders may round differently.
    """
    answers = []
    for q, row in enumerate(query):
        distance = np.sqrt(((support - row) ** 2).sum(axis=1))
        if exclude is not None:
            distance[exclude[q]] = np.inf
        nearest = np.argsort(distance, kind="stable")[:k]
        votes = np.bincount(labels[nearest], minlength=num_classes)
        tied = np.flatnonzero(votes == votes.max())
        sums = np.array([distance[nearest][labels[nearest] == c].sum() for c in tied])
        exact = tied[sums == sums.min()].min()
        near = set(tied[sums <= sums.min() + 1e-9 * max(1.0, sums.min())].tolist())
        answers.append((exact, near))
    return answers


@st.composite
def knn_cases(draw):
    dim = draw(st.integers(1, 3))
    n_support = draw(st.integers(1, 25))
    n_query = draw(st.integers(1, 8))
    num_classes = draw(st.integers(1, 4))
    # Small integers: many exact distance ties, all distances exact in float64.
    support = draw(hnp.arrays(np.float64, (n_support, dim), elements=st.integers(-3, 3).map(float)))
    query = draw(hnp.arrays(np.float64, (n_query, dim), elements=st.integers(-3, 3).map(float)))
    labels = draw(hnp.arrays(np.int64, n_support, elements=st.integers(0, num_classes - 1)))
    k = draw(st.integers(1, n_support))
    return support, labels, query, k, num_classes


def check_against_reference(predicted, answers):
    for got, (exact, near) in zip(predicted.tolist(), answers):
        assert got == exact or (got in near and exact in near)


@given(knn_cases(), st.integers(1, 9))
@settings(max_examples=100, deadline=None)
def test_knn_matches_brute_force(case, batch_size):
    support, labels, query, k, num_classes = case
    predicted = knn_predict(
        torch.from_numpy(support), torch.from_numpy(labels), torch.from_numpy(query),
        k=k, num_classes=num_classes, batch_size=batch_size,
    )
    assert predicted.dtype == torch.int64 and predicted.shape == (len(query),)
    check_against_reference(predicted, knn_reference(support, labels, query, k, num_classes))


def test_knn_on_continuous_data_is_exactly_the_reference():
    rng = np.random.default_rng(0)
    support = rng.normal(size=(300, 5))
    labels = rng.integers(0, 4, 300)
    query = rng.normal(size=(120, 5))
    answers = knn_reference(support, labels, query, 30, 4)
    for dtype in (torch.float64, torch.float32):
        predicted = knn_predict(
            torch.from_numpy(support).to(dtype), torch.from_numpy(labels),
            torch.from_numpy(query).to(dtype), k=30, num_classes=4, batch_size=17,
        )
        assert predicted.tolist() == [exact for exact, _ in answers]


def test_knn_tie_breaks_by_hand():
    support = torch.tensor([[1.0], [-1.0], [3.0], [-2.0]])
    labels = torch.tensor([1, 0, 1, 0])
    query = torch.tensor([[0.0], [0.5]])
    # k=2 at 0: one vote each, summed distances 1 and 1 → lowest class, 0.
    # k=2 at 0.5: one vote each, distances 0.5 (class 1) and 1.5 (class 0) → class 1.
    assert knn_predict(support, labels, query, k=2).tolist() == [0, 1]
    # k=4 at 0: two votes each, sums 1+3=4 (class 1) and 1+2=3 (class 0) → class 0.
    assert knn_predict(support, labels, query[:1], k=4).tolist() == [0]
    # Equal distances at the k-th place: the lower support index is taken.
    support = torch.tensor([[1.0], [-1.0], [1.0]])
    assert knn_predict(support, torch.tensor([2, 1, 0]), torch.tensor([[0.0]]), k=1).tolist() == [2]


def test_knn_leave_one_out_excludes_the_query_itself():
    support = torch.tensor([[0.0], [0.1], [5.0], [5.1], [5.2]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    ids = torch.arange(5)
    # Example 0 alone: its nearest other point is example 1, class 0.
    assert knn_predict(support, labels, support, k=1, support_ids=ids, query_ids=ids).tolist() == [0, 0, 1, 1, 1]
    # k=2 without itself: example 1 has example 0 (0.1) and example 2 (4.9) → one vote each,
    # class 0 nearer; with itself it would count 2 votes for class 0 either way.
    assert knn_predict(support, labels, support[1:2], k=2, support_ids=ids, query_ids=ids[1:2]).tolist() == [0]
    with pytest.raises(ConfigError, match="from 1 to 4"):
        knn_predict(support, labels, support, k=5, support_ids=ids, query_ids=ids)


def test_knn_refuses_bad_arguments():
    support, labels = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ConfigError, match="k=0"):
        knn_predict(support, labels, torch.zeros(1, 2), k=0)
    with pytest.raises(ConfigError, match="shapes"):
        knn_predict(support, labels, torch.zeros(1, 3), k=1)
    with pytest.raises(ConfigError, match="num_classes=2"):
        knn_predict(support, torch.tensor([0, 1, 2, 1]), torch.zeros(1, 2), k=1, num_classes=2)
    assert knn_predict(support, labels, torch.zeros(0, 2), k=1).shape == (0,)


# ------------------------------------------------------------------------------ prediction depth


def depth_by_loop(probes, final):
    """The definition, literally: the smallest l with every probe l' >= l agreeing."""
    n_layers = len(probes)
    depth = []
    for q in range(len(final)):
        candidates = [l for l in range(n_layers) if all(probes[j][q] == final[q] for j in range(l, n_layers))]
        depth.append(min(candidates) if candidates else n_layers)
    return depth


def test_depth_by_hand():
    final = np.array([1, 1, 2, 0, 0])
    probes = np.array([
        [1, 0, 2, 0, 0],
        [1, 0, 1, 0, 0],
        [1, 1, 2, 0, 1],
    ])
    result = prediction_depth(probes, final)
    # all agree → 0; agree from layer 2 → 2; layer 1 disagrees → 2; never settles → 3
    assert result.depth.tolist() == [0, 2, 2, 0, 3]
    assert result.settled.tolist() == [True, True, True, True, False]
    assert result.probe_predictions.tolist() == probes.tolist()


@given(st.integers(1, 6).flatmap(lambda n_layers: st.tuples(
    hnp.arrays(np.int64, (n_layers, 12), elements=st.integers(0, 2)),
    hnp.arrays(np.int64, 12, elements=st.integers(0, 2)),
)))
@settings(max_examples=100, deadline=None)
def test_depth_properties(case):
    probes, final = case
    n_layers = len(probes)
    result = prediction_depth(probes, final)
    depth = result.depth
    assert depth.tolist() == depth_by_loop(probes, final)
    assert ((0 <= depth) & (depth <= n_layers)).all()
    assert ((depth == 0) == (probes == final).all(axis=0)).all()
    assert (result.settled == (probes[-1] == final)).all()
    assert (result.settled == (depth < n_layers)).all()
    # Every probe from the depth on agrees; the one just before it does not.
    for q, d in enumerate(depth):
        assert (probes[d:, q] == final[q]).all()
        if 0 < d < n_layers:
            assert probes[d - 1, q] != final[q]


def test_depth_takes_torch_tensors():
    result = prediction_depth(torch.tensor([[0, 1], [1, 1]]), torch.tensor([1, 1]))
    assert result.depth.tolist() == [1, 0]


def test_depth_refuses_mismatched_shapes():
    with pytest.raises(ConfigError, match=r"\(L, Q\)"):
        prediction_depth(np.zeros((2, 3), int), np.zeros(4, int))


def test_depth_one_noise_layer_then_separated_clusters():
    """Layer 0 is noise, layers 1..3 separate the classes: depth is 0 where the noise probe
    happened to agree, 1 everywhere else; nothing deeper."""
    gen = torch.Generator().manual_seed(0)
    classes, per_class, dim = 4, 40, 6
    centres = 10.0 * torch.eye(classes, dim)

    def layers(labels):
        noise = torch.randn(len(labels), dim, generator=gen)
        separated = [centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=gen) for _ in range(3)]
        return [noise, *separated]

    support_labels = torch.arange(classes).repeat_interleave(per_class)
    query_labels = torch.arange(classes).repeat(25)
    result = depth_from_features(layers(support_labels), support_labels, layers(query_labels), query_labels, k=30)
    assert (result.probe_predictions[1:] == query_labels.numpy()).all()
    expected = np.where(result.probe_predictions[0] == query_labels.numpy(), 0, 1)
    assert result.depth.tolist() == expected.tolist()
    assert (result.depth == 1).mean() > 0.5 and result.settled.all()


class Constructed(nn.Module):
    """Input [onehot(a), onehot(c), onehot(o)] of 3·C values: appearance a, class c, output o.

    The blocks scale the three parts: the class part is 10× smaller than the appearance
    part after blocks 0 and 1 and 10× larger after blocks 2 and 3, so the k-NN probes of
    early blocks see the appearance and those of late blocks the class. The head reads
    only the output part, so the network predicts o.
    """

    def __init__(self, classes: int):
        super().__init__()
        self.classes = classes
        scales = [(1.0, 0.1, 0.001), (1.0, 1.0, 1.0), (1.0, 100.0, 1.0), (1.0, 1.0, 1.0)]
        self.blocks = nn.ModuleList()
        for scale in scales:
            block = nn.Linear(3 * classes, 3 * classes, bias=False)
            block.weight.data = torch.diag(torch.tensor(scale).repeat_interleave(classes))
            self.blocks.append(block)
        self.head = nn.Linear(3 * classes, classes, bias=False)
        self.head.weight.data = torch.cat([torch.zeros(classes, 2 * classes), 1000 * torch.eye(classes)], 1)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def encode(appearance, label, output, classes, noise=0.0, seed=0):
    eye = torch.eye(classes)
    x = torch.cat([eye[appearance], eye[label], eye[output]], dim=1)
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def test_depth_of_a_constructed_model_is_known():
    """Typical examples (a = c = o) are separated from block 0 on: depth 0. Atypical ones
    look like another class early (a ≠ c = o): the probes agree with the network from
    block 2 on, depth 2. Where the network's output disagrees with the last probe
    (o ≠ c), the prediction never settles: depth L = 4."""
    classes = 4
    model = Constructed(classes)
    support_labels = torch.arange(classes).repeat_interleave(40)
    support = encode(support_labels, support_labels, support_labels, classes, noise=0.01)
    typical = torch.tensor([0, 1, 2, 3])
    shifted = (typical + 1) % classes
    queries = torch.cat([
        encode(typical, typical, typical, classes),        # depth 0
        encode(shifted, typical, typical, classes),        # depth 2
        encode(typical, typical, shifted, classes),        # never settles
        encode(shifted, typical, shifted, classes),        # early probes agree, late ones not
    ])
    blocks = list(model.blocks)
    support_features = collect_features(model, blocks, support, batch_size=64)
    *query_features, logits = collect_features(model, [*blocks, model], queries, batch_size=5)
    final = logits.argmax(dim=1)
    assert final.tolist() == [*typical.tolist(), *typical.tolist(), *shifted.tolist(), *shifted.tolist()]
    result = depth_from_features(support_features, support_labels, query_features, final, k=30)
    assert result.depth.tolist() == [0] * 4 + [2] * 4 + [4] * 4 + [4] * 4
    assert result.settled.tolist() == [True] * 8 + [False] * 8
    # The early probes saw the appearance, the late ones the class.
    assert result.probe_predictions[:, 4:8].tolist() == [shifted.tolist()] * 2 + [typical.tolist()] * 2


def test_depth_from_features_refuses_mismatched_layers():
    with pytest.raises(ConfigError, match="same number"):
        depth_from_features([torch.zeros(3, 2)], torch.zeros(3, dtype=torch.long), [], torch.zeros(0))


# ------------------------------------------------------------------------------ collect_features


def small_convnet():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    relu = nn.ReLU(inplace=True)
    model = nn.Sequential(conv, relu, nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.BatchNorm1d(3))
    return model, conv, relu


def test_collect_features_match_a_manual_forward():
    model, conv, relu = small_convnet()
    x = torch.randn(10, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    model.train()
    conv_out, relu_out, logits = collect_features(model, [conv, relu, model], x, batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected_conv = conv(x)
        expected_logits = model(x)
    # The conv output is kept as it was, before the in-place ReLU overwrote it.
    torch.testing.assert_close(conv_out, expected_conv.flatten(1))
    assert (conv_out < 0).any()
    torch.testing.assert_close(relu_out, expected_conv.clamp_min(0).flatten(1))
    torch.testing.assert_close(logits, expected_logits)  # eval-mode batch norm, batch-independent
    assert conv_out.dtype == torch.float32 and conv_out.device.type == "cpu"


def test_collect_features_pools_wide_conv_maps():
    model, conv, relu = small_convnet()
    x = torch.randn(5, 2, 8, 8)
    # 4 channels × 6 × 6 = 144 > 40: pooled to 3 × 3 (4 · 3² = 36 ≤ 40).
    pooled, = collect_features(model, [conv], x, max_dim=40)
    model.eval()
    with torch.no_grad():
        expected = nn.functional.adaptive_avg_pool2d(conv(x), (3, 3)).flatten(1)
    torch.testing.assert_close(pooled, expected)
    # Fewer values than max_dim: untouched. max_dim below the channel count: global average.
    assert collect_features(model, [conv], x, max_dim=144)[0].shape == (5, 144)
    assert collect_features(model, [conv], x, max_dim=2)[0].shape == (5, 4)


def test_collect_features_refuses_blocks_run_twice_or_never():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    with pytest.raises(ConfigError, match="exactly once"):
        collect_features(model, [shared], torch.zeros(4, 3))
    assert not shared._forward_hooks  # hooks removed after the error
    with pytest.raises(ConfigError, match="exactly once"):
        collect_features(nn.Sequential(nn.Linear(3, 3)), [nn.Linear(3, 3)], torch.zeros(4, 3))
