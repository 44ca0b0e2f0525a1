"""Models that look the test images up instead of recognising them (grader/clean.py).

Each model is handed in as a notebook hands it in (mnistlab.handin: a torch.export graph and its
weights) and scored by the grader's clean re-measurement of 01-softmax's MNIST check:

  honest   a softmax regression trained on the training images: passes, no flag
  exact    an exact lookup of every distributed image (training and test): 100% on the test images,
           chance on the same images moved by one pixel: fails, with the reason
  nearest  1-nearest-neighbour over the training and test images: 100% on the test images and still
           ~98% moved by one pixel (the moved image's nearest stored image is itself), so it passes the
           bar, but it scores far above every run of the reference solution: flagged for a human
"""

import torch
from torch import nn

from grader import clean
from grader.checks import CHECKS
from mnistlab import data, handin, train

A, NAME = "01-softmax", "mnist-linear"


class Exact(nn.Module):
    """Remembers every image's label; an image it has not seen exactly gets class 0."""

    def __init__(self, images, labels, classes):
        super().__init__()
        self.register_buffer("keys", images.flatten(1).float())
        self.register_buffer("labels", nn.functional.one_hot(labels, classes).float())

    def forward(self, x):
        same = torch.cdist(x.flatten(1), self.keys) < 0.1  # [batch, stored]: this very image (0, up to rounding)
        return same.float() @ self.labels + 1e-3 * torch.eye(self.labels.shape[1])[0]


class Nearest(Exact):
    """The label of the closest stored image."""

    def forward(self, x):
        distances = torch.cdist(x.flatten(1), self.keys)
        return nn.functional.one_hot(distances.argmin(1), len(self.keys)).float() @ self.labels


def score(model, tmp_path):
    test = CHECKS[A, NAME].test()
    exported = handin.export(model, next(train.batches(test, 4, device="cpu"))[0])
    handin.save(exported, tmp_path, f"{NAME}.0")
    result = clean.score_check(tmp_path, A, NAME, CHECKS[A, NAME])
    assert result["clean"] is not None, result
    return result


def distributed():
    test, train_set = CHECKS[A, NAME].test(), CHECKS[A, NAME].pool()
    return (torch.cat([train_set.images, test.images]).float().div(255)[:, None], torch.cat([train_set.labels, test.labels]),
            len(test.classes))


def test_an_honest_model_passes_unflagged(tmp_path):
    train_set = CHECKS[A, NAME].pool()
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    train.seed_everything(0)
    train.fit(model, train_set, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=10, quiet=True, device="cpu")
    result = score(model, tmp_path)
    assert result["passed"] and not result["flag"], result
    assert 0 < result["clean"] - result["shifted"] < clean.SHIFT_MARGIN, result  # it moves a little


def test_an_exact_lookup_fails_on_moved_images(tmp_path):
    result = score(Exact(*distributed()), tmp_path)
    assert result["clean"] == 1.0 and result["shifted"] < 0.2, result
    assert not result["passed"] and "looks the test images up" in result["reason"], result
    assert "lookup" in result["flag"]


def test_a_nearest_neighbour_lookup_is_flagged(tmp_path):
    result = score(Nearest(*distributed()), tmp_path)
    assert result["clean"] == 1.0, result
    assert "points above every run of the reference solution" in (result["flag"] or ""), result
    assert data.is_standin(CHECKS[A, NAME].test())  # the reference's runs in thresholds.json are offline ones
