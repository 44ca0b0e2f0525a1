"""mnistlab.stats (paired tests over test images) and data.split_validation."""

import pytest
import torch

from mnistlab import data, stats


def test_mcnemar_counts_only_the_disagreements_and_gives_the_exact_p_value():
    a = torch.tensor([True] * 10 + [False] * 2 + [True] * 50 + [False] * 30)
    b = torch.tensor([False] * 10 + [True] * 2 + [True] * 50 + [False] * 30)
    result = stats.mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (10, 2)
    assert result["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)  # binomial(12, 1/2), two-sided
    assert stats.mcnemar(a, a)["p_value"] == 1.0  # no disagreement: no evidence of a difference


def test_paired_bootstrap_interval_contains_the_difference_and_shrinks_to_it_when_certain():
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(1000, generator=generator) < 0.9
    b = torch.rand(1000, generator=generator) < 0.85
    result = stats.paired_bootstrap(a, b)
    assert result["low"] < result["difference"] < result["high"]
    assert result["difference"] == pytest.approx(a.float().mean() - b.float().mean())
    assert 0.01 < result["high"] - result["low"] < 0.1
    same = stats.paired_bootstrap(a, a)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}


@pytest.mark.parametrize("a, b, match", [([True, False], [True], "same images in the same order"),
                                         ([], [], "no test images")])
def test_unpaired_inputs_are_refused_with_what_to_pass(a, b, match):
    with pytest.raises(ValueError, match=match):
        stats.mcnemar(a, b)


def test_split_validation_is_stratified_disjoint_and_complete():
    labels = torch.arange(10).repeat_interleave(20)
    images = torch.arange(200, dtype=torch.int64).reshape(200, 1, 1).expand(200, 28, 28).to(torch.uint8)
    ds = data.Dataset(images, labels, [str(d) for d in range(10)], "toy")
    train, val = data.split_validation(ds, per_class=5, seed=3)
    assert len(train) == 150 and len(val) == 50
    assert torch.bincount(val.labels).tolist() == [5] * 10
    ids_train, ids_val = set(train.images[:, 0, 0].tolist()), set(val.images[:, 0, 0].tolist())
    assert not ids_train & ids_val and len(ids_train | ids_val) == 200
    assert "validation 5/class seed 3" in val.source and "held out" in train.source
    assert torch.equal(data.split_validation(ds, fraction=0.25, seed=3)[1].labels, val.labels)  # 0.25 * 20 = 5
    with pytest.raises(ValueError, match="either per_class"):
        data.split_validation(ds)
    with pytest.raises(ValueError, match="leaves no training image"):
        data.split_validation(ds, per_class=20)
