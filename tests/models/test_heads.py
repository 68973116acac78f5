"""The aspect-head network and its triplet accuracy, against a loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mess_kedro.models.heads import AspectHeadNet, triplet_order_accuracy


def test_the_head_weights_layers_by_a_softmax_and_outputs_unit_vectors():
    torch.manual_seed(0)
    head = AspectHeadNet([3, 5], hidden=8, out_dim=4)
    assert torch.allclose(head.weights(), torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        head.logits.copy_(torch.tensor([0.0, float(np.log(3.0))]))
    assert torch.allclose(head.weights(), torch.tensor([0.25, 0.75]))
    layers = [torch.randn(6, 3), torch.randn(6, 5)]
    out = head(layers)
    assert out.shape == (6, 4) and torch.allclose(out.norm(dim=1), torch.ones(6))
    by_hand = head.mlp(torch.cat([0.5 * layers[0], 0.75**0.5 * layers[1]], dim=1))
    assert torch.allclose(out, torch.nn.functional.normalize(by_hand, dim=1))


def test_triplet_order_accuracy_matches_a_loop():
    rng = np.random.default_rng(0)
    vectors = torch.as_tensor(rng.normal(size=(10, 3)))
    triplets = torch.as_tensor(rng.integers(0, 10, size=(40, 3)))
    expected = np.mean(
        [float(vectors[a] @ vectors[p]) > float(vectors[a] @ vectors[n]) for a, p, n in triplets.tolist()]
    )
    assert triplet_order_accuracy(vectors, triplets) == pytest.approx(expected)
