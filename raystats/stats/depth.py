"""Prediction depth (Baldock, Maennel & Neyshabur, 2021): how deep a prediction is made.

A k-NN classifier ("probe", k = 30 in the study) is fitted on the hidden representation
after each of L probed layers, using a support set of training examples with their
labels. An example's prediction depth is the earliest probed layer from which the
probes of *every* later layer agree with the network's final prediction::

    agree[l, i] = (probe_l(x_i) == f(x_i))
    depth(i)    = min { l ∈ {0..L-1} : agree[l', i] for every l' ≥ l }

Probe indices are positions in the list of representations handed in: to follow the
study's "layer 0 is the input", pass the (flattened) input as the first representation.
An example classified consistently by every probe has depth 0. When the *last* probe
disagrees with the network the set above is empty: the prediction never settles inside
the probed layers, and this module reports depth = L (the number of probed layers,
one past the last probe — the study's "effective" convention) together with
``settled = False``, so such examples sort as the deepest and can still be told apart.

Shallow depth goes with easy examples: the study relates it to consistency, confidence,
accuracy and speed of learning. The k-NN runs batched in torch on the support set's
device — one ``torch.cdist`` and one ``topk`` per batch of queries, no Python loop over
examples; :func:`collect_features` gathers the representations with forward hooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raystats.errors import ConfigError

DEFAULT_K = 30
# Elements of the (batch × support) distance matrix per query batch: with its masks and
# running counts, a few hundred MB at most, whatever the support size.
_BATCH_ELEMENTS = 1 << 23


class PredictionDepth(NamedTuple):
    depth: np.ndarray              # (Q,) int64 in [0, L]; L = never settled
    settled: np.ndarray            # (Q,) bool: depth < L, the last probe agrees
    probe_predictions: np.ndarray  # (L, Q) int64: the k-NN prediction of each probe


def knn_predict(
    support_feats: torch.Tensor,
    support_labels: torch.Tensor,
    query_feats: torch.Tensor,
    k: int = DEFAULT_K,
    num_classes: int | None = None,
    batch_size: int | None = None,
    support_ids: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """k-nearest-neighbour majority vote in Euclidean distance, batched on the device.

    For each query q: take the k support points nearest to q (``torch.cdist``; among
    points at the same distance, the lower support index first), count their labels,
    and predict the label with the most votes. A tie in votes goes to the tied class
    whose neighbours have the smallest summed distance to q, and a tie in that sum (as
    computed) to the lowest class index. The result depends only on the inputs, not on
    the batch size or on how ``topk`` orders equal values.

    Parameters
    ----------
    support_feats : torch.Tensor
        (S, D) float: representations of the support (training) examples. The work
        runs on this tensor's device and dtype.
    support_labels : torch.Tensor
        (S,) int: their labels.
    query_feats : torch.Tensor
        (Q, D): representations to classify; moved to the support's device batch by batch.
    k : int, default 30
        Neighbours per query, 1 ≤ k ≤ S (≤ S − 1 when ids exclude the query itself).
    num_classes : int, optional
        Default ``max(support_labels) + 1``.
    batch_size : int, optional
        Queries per ``cdist``; default keeps the (batch × S) matrix near 2²³ elements.
    support_ids, query_ids : torch.Tensor, optional
        (S,) and (Q,) example ids. When both are given, a support point is never a
        neighbour of the query with the same id: leave-one-out, for probing training
        examples that are in the support set themselves.

    Returns
    -------
    torch.Tensor
        (Q,) int64 predicted labels, on the support's device.

    Examples
    --------
    >>> support = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> knn_predict(support, labels, torch.tensor([[0.4], [9.0]]), k=2).tolist()
    [0, 1]
    """
    support_feats, support_labels, query_feats = _check_knn(support_feats, support_labels, query_feats)
    n_support = len(support_feats)
    exclude = support_ids is not None and query_ids is not None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_support - int(exclude):
        raise ConfigError(
            f"k={k!r} is out of range: expected an int from 1 to {n_support - int(exclude)} "
            f"({n_support} support examples{', one excluded per query' if exclude else ''})"
        )
    if num_classes is None:
        num_classes = int(support_labels.max()) + 1
    if int(support_labels.min()) < 0 or int(support_labels.max()) >= num_classes:
        raise ConfigError(
            f"support labels span {int(support_labels.min())}..{int(support_labels.max())}: "
            f"expected 0..{num_classes - 1} for num_classes={num_classes}"
        )
    if batch_size is None:
        batch_size = max(1, _BATCH_ELEMENTS // max(n_support, 1))
    device, dtype = support_feats.device, support_feats.dtype
    one_hot = F.one_hot(support_labels, num_classes).to(dtype)  # (S, C)
    if exclude:
        support_ids = torch.as_tensor(support_ids, device=device)
        query_ids = torch.as_tensor(query_ids, device=device)
        if support_ids.shape != (n_support,) or query_ids.shape != (len(query_feats),):
            raise ConfigError(
                f"support_ids {tuple(support_ids.shape)} and query_ids {tuple(query_ids.shape)} "
                f"must have shapes ({n_support},) and ({len(query_feats)},)"
            )
    predictions = []
    for start in range(0, len(query_feats), batch_size):
        query = query_feats[start:start + batch_size].to(device, dtype)
        distance = torch.cdist(query, support_feats)  # (B, S)
        if exclude:
            same = query_ids[start:start + batch_size, None] == support_ids[None, :]
            distance = distance.masked_fill(same, math.inf)
        predictions.append(_vote(distance, one_hot, k))
    if not predictions:
        return torch.empty(0, dtype=torch.int64, device=device)
    return torch.cat(predictions)


def _vote(distance: torch.Tensor, one_hot: torch.Tensor, k: int) -> torch.Tensor:
    # The k-th smallest distance is unique even when topk's choice among ties is not;
    # take everything closer, then the lowest-index points at exactly that distance.
    kth = distance.topk(k, dim=1, largest=False).values[:, -1:]
    closer = distance < kth
    at_kth = distance == kth
    missing = k - closer.sum(dim=1, keepdim=True)
    chosen = closer | (at_kth & (at_kth.cumsum(dim=1) <= missing))
    votes = chosen.to(one_hot.dtype) @ one_hot  # (B, C), exact small integers
    summed = torch.where(chosen, distance, 0.0) @ one_hot
    most = votes == votes.amax(dim=1, keepdim=True)
    summed = summed.masked_fill(~most, math.inf)
    nearest = most & (summed == summed.amin(dim=1, keepdim=True))
    return nearest.to(torch.uint8).argmax(dim=1)  # argmax returns the first (lowest) class


def prediction_depth(probe_preds, final_pred) -> PredictionDepth:
    """The earliest probed layer from which every later probe agrees with the network.

    ``depth(i) = min {l : probe_l'(x_i) == f(x_i) for every l' ≥ l}``, computed as
    ``L − (length of the run of agreeing probes that ends at the last layer)``. Hence
    ``depth = 0`` iff every probe agrees, and ``depth = L`` with ``settled = False`` iff
    the last probe disagrees (module docstring).

    Parameters
    ----------
    probe_preds : array_like of int, (L, Q)
        Prediction of the probe at each of L layers for each of Q examples (numpy or torch).
    final_pred : array_like of int, (Q,)
        The network's own prediction (argmax of its logits).

    Returns
    -------
    PredictionDepth
        ``depth`` (Q,) int64 in [0, L], ``settled`` (Q,) bool, ``probe_predictions``.

    Examples
    --------
    >>> probes = np.array([[0, 1, 2], [1, 1, 2], [1, 1, 0]])
    >>> result = prediction_depth(probes, np.array([1, 1, 2]))
    >>> result.depth.tolist(), result.settled.tolist()
    ([1, 0, 3], [True, True, False])
    """
    probe_preds, final_pred = _to_numpy(probe_preds), _to_numpy(final_pred)
    if probe_preds.ndim != 2 or final_pred.shape != probe_preds.shape[1:]:
        raise ConfigError(
            f"probe_preds {probe_preds.shape} and final_pred {final_pred.shape} must have "
            "shapes (L, Q) and (Q,)"
        )
    n_layers = probe_preds.shape[0]
    agree = probe_preds == final_pred[None, :]
    # agree_from_here[l] = all(agree[l:]): a reversed running AND over the layers.
    agree_from_here = np.logical_and.accumulate(agree[::-1], axis=0)[::-1]
    depth = (n_layers - agree_from_here.sum(axis=0)).astype(np.int64)
    return PredictionDepth(depth, depth < n_layers, probe_preds.astype(np.int64))


def depth_from_features(
    support_feats: Sequence[torch.Tensor],
    support_labels: torch.Tensor,
    query_feats: Sequence[torch.Tensor],
    final_pred,
    k: int = DEFAULT_K,
    num_classes: int | None = None,
    batch_size: int | None = None,
    support_ids: torch.Tensor | None = None,
    query_ids: torch.Tensor | None = None,
    device: str | torch.device | None = None,
) -> PredictionDepth:
    """Fit a k-NN probe per layer on the support set, apply it to the queries, take the depth.

    Parameters
    ----------
    support_feats : sequence of torch.Tensor
        L tensors (S, D_l): the support examples' representation at each probed layer
        (e.g. from :func:`collect_features` on training images).
    support_labels : torch.Tensor
        (S,) labels of the support examples.
    query_feats : sequence of torch.Tensor
        L tensors (Q, D_l): the same layers for the examples whose depth is wanted.
    final_pred : array_like of int, (Q,)
        The network's prediction for the queries.
    k, num_classes, batch_size, support_ids, query_ids
        As in :func:`knn_predict`; pass ids to exclude each query from its own probe
        when the queries are support examples.
    device : str or torch.device, optional
        Where the k-NN runs, one layer at a time; default the support tensors' device.

    Returns
    -------
    PredictionDepth
    """
    if len(support_feats) != len(query_feats) or len(support_feats) == 0:
        raise ConfigError(
            f"got {len(support_feats)} support and {len(query_feats)} query layers: "
            "expected the same number, at least one"
        )
    probes = []
    for support, query in zip(support_feats, query_feats):
        target = support.device if device is None else torch.device(device)
        predicted = knn_predict(
            support.to(target), torch.as_tensor(support_labels).to(target), query, k=k,
            num_classes=num_classes, batch_size=batch_size,
            support_ids=support_ids, query_ids=query_ids,
        )
        probes.append(predicted.cpu())
    return prediction_depth(torch.stack(probes), final_pred)


def collect_features(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    inputs: torch.Tensor,
    batch_size: int = 256,
    max_dim: int | None = None,
    out_device: str | torch.device = "cpu",
) -> list[torch.Tensor]:
    """The output of each block for every input, flattened: one (N, D_l) tensor per block.

    Forward hooks on ``blocks`` copy each block's output as the model runs on
    ``inputs`` in batches, in eval mode and without gradients (the model's mode is
    restored afterwards). Outputs are copied at once, so a later in-place operation
    (``ReLU(inplace=True)``) cannot change them. Put ``model`` itself last in
    ``blocks`` to collect the logits too (their argmax is the network's prediction).

    Parameters
    ----------
    model : torch.nn.Module
        Maps (B, C, H, W) floats to logits; inputs go to the device of its first
        parameter (CPU if it has none).
    blocks : sequence of torch.nn.Module
        Submodules, each run exactly once per forward pass (e.g.
        ``raystats.models.feature_blocks(model)``).
    inputs : torch.Tensor
        (N, C, H, W), preprocessed as the model expects.
    batch_size : int, default 256
    max_dim : int, optional
        Keeps k-NN affordable on wide conv maps: a (B, C, H, W) output with more than
        ``max_dim`` values per example is average-pooled (``adaptive_avg_pool2d``) to
        s × s with ``s = max(1, ⌊√(max_dim / C)⌋)``, so D = C·s² ≤ max_dim unless C alone
        exceeds it (then global average pooling, D = C). None (default) flattens every
        output as is, as in the study.
    out_device : str or torch.device, default "cpu"
        Where the collected features are kept.

    Returns
    -------
    list of torch.Tensor
        float32 (N, D_l), one per block, in the order of ``blocks``.
    """
    if len(blocks) == 0:
        raise ConfigError("blocks is empty: pass the modules after which to take representations")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    captured: list[list[torch.Tensor]] = [[] for _ in blocks]
    calls = [0] * len(blocks)

    def keep(index: int):
        def hook(module, args, output):
            calls[index] += 1
            captured[index].append(_flat_features(output, max_dim).to(out_device, torch.float32, copy=True))
        return hook

    handles = [block.register_forward_hook(keep(index)) for index, block in enumerate(blocks)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                expected = start // batch_size + 1
                model(inputs[start:start + batch_size].to(device))
                if any(count != expected for count in calls):
                    raise ConfigError(
                        f"blocks ran {calls} times for {expected} forward passes: each block "
                        "must run exactly once per forward pass"
                    )
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [torch.cat(parts) if parts else torch.empty(0) for parts in captured]


def _flat_features(output, max_dim: int | None) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise ConfigError(f"a block returned {type(output).__name__}: expected one tensor")
    output = output.detach()
    if max_dim is not None and output.ndim == 4 and output[0].numel() > max_dim:
        channels, height, width = output.shape[1:]
        side = max(1, math.isqrt(max_dim // channels))
        output = F.adaptive_avg_pool2d(output, (min(side, height), min(side, width)))
    return output.flatten(1)


def _check_knn(support_feats, support_labels, query_feats):
    if not (isinstance(support_feats, torch.Tensor) and isinstance(query_feats, torch.Tensor)):
        raise ConfigError("support_feats and query_feats must be torch tensors")
    if not support_feats.is_floating_point():
        support_feats = support_feats.float()
    support_labels = torch.as_tensor(support_labels, device=support_feats.device).long()
    if (
        support_feats.ndim != 2 or query_feats.ndim != 2
        or support_feats.shape[1] != query_feats.shape[1]
        or support_labels.shape != (len(support_feats),)
    ):
        raise ConfigError(
            f"support_feats {tuple(support_feats.shape)}, support_labels "
            f"{tuple(support_labels.shape)} and query_feats {tuple(query_feats.shape)} must "
            "have shapes (S, D), (S,) and (Q, D)"
        )
    return support_feats, support_labels, query_feats


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)
