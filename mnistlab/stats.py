"""Is a difference between two models real, or test-set noise? Paired tests over the test images.

Taught in 02 (SVM vs logistic regression) and used wherever two models are compared on the same
test images (03, 04, 05).

Two models scored on the *same* test images are paired: image by image, each is right or wrong.
Running more training seeds tells you how much the *training* varies, but every seed is scored on
the same test set, so "it points the same way on every seed" says nothing about how much the test
set itself could have favoured one model. These two functions measure that:

- `mcnemar(correct_a, correct_b)`: the exact McNemar test. Only the images where the models
  disagree count; under "no difference", each disagreement goes either way with probability 1/2.
- `paired_bootstrap(correct_a, correct_b)`: resample the test images with replacement and see
  how the accuracy difference moves: a confidence interval for it.

Both take boolean tensors (or lists): one entry per test image, True where the model was right,
e.g. `train.predict(model, test) == test.labels`.
"""

import math

import torch


def _paired(correct_a, correct_b):
    a, b = torch.as_tensor(correct_a, dtype=torch.bool), torch.as_tensor(correct_b, dtype=torch.bool)
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(f"pass one True/False per test image for each model, the same images in the same order; "
                         f"got shapes {list(a.shape)} and {list(b.shape)}")
    if len(a) == 0:
        raise ValueError("no test images: both lists are empty")
    return a, b


def mcnemar(correct_a, correct_b):
    """{"a_only", "b_only", "p_value"}: images only model A got right, only B got right, and the exact
    two-sided p-value of "the two models are equally accurate on images like these"."""
    a, b = _paired(correct_a, correct_b)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n, k = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p_value": min(1.0, 2 * tail)}


def paired_bootstrap(correct_a, correct_b, resamples=2000, seed=0):
    """{"difference", "low", "high"}: accuracy of A minus accuracy of B on the test images, and its 95%
    interval when the test images are resampled with replacement (both models on the same resample)."""
    a, b = _paired(correct_a, correct_b)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(a), (resamples, len(a)), generator=generator)
    differences = a.float()[index].mean(1) - b.float()[index].mean(1)
    low, high = torch.quantile(differences, torch.tensor([0.025, 0.975])).tolist()
    return {"difference": (a.float().mean() - b.float().mean()).item(), "low": low, "high": high}
