"""Calibrate the graded "gain" check of notebook 04-augmentation (mnistlab/thresholds.py).

    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_04_augmentation.py
    MNISTLAB_DATA_SOURCE=offline python bench/calibrate_04_augmentation.py --sets 0 100 --arms blur reference

For each set of 5 seeds (0-4 are the notebook's; 100-104 the hidden test's "fresh" ones; 200-204 and
300-304 more fresh sets) it trains the notebook's model once per seed and augmentation, exactly as the
notebook's reference training does, and prints each augmentation's gain in test accuracy over no
augmentation: per seed (paired: same 150 images, same initial weights), and the mean with its standard
error, against the threshold. The reference augmentation must pass on every set with margin; every
broken variant must fail on every set.

The training and the augmentations below are copies of the notebook's (keep them in sync).
"""

import argparse
import math
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("MNISTLAB_QUIET", "1")
import torch  # noqa: E402
import torchvision.transforms.v2 as v2  # noqa: E402
from torch import nn  # noqa: E402

from bench_augment import random_affine  # noqa: E402  (the notebook's exercise 1, batched per image)
from mnistlab import data, thresholds, train  # noqa: E402

EPOCHS, BATCH_SIZE, LR, MOMENTUM = 30, 32, 0.05, 0.9  # the notebook's: notebook 03's 150-image runs, tuned SGD


def hidden_layer_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 5000), nn.ReLU(), nn.Linear(5000, 10))


def run(full_train, test, augment, seed):
    """Test accuracy of the model trained on the 150-image subset of `seed`, with `augment` (or None)."""
    small = data.subset(full_train, per_class=15, seed=seed)
    train.seed_everything(seed)
    model = hidden_layer_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    train.fit(model, small, optimizer=optimizer, epochs=EPOCHS, batch_size=BATCH_SIZE, augment=augment, quiet=True)
    return train.evaluate(model, test)[1]


BLUR = v2.GaussianBlur(kernel_size=9, sigma=(0.1, 5.0))

ARMS = {
    "reference": lambda x: random_affine(x, degrees=10, translate=0.05, scale=(0.9, 1.1)),  # the notebook's solution
    "blur": lambda x: torch.stack([BLUR(image) for image in x]),  # the notebook's given blur
    "identity": lambda x: x,
    "vertical-flip": lambda x: x.flip(-2),  # upside down: a 6 looks like a 9 would, mirrored
    "rotate-180": lambda x: x.flip(-2, -1),  # a 6 becomes a 9
    "too-strong": lambda x: random_affine(x, degrees=60, translate=0.2, scale=(0.6, 1.4)),
    "one-draw-per-batch": v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),  # the batch trap
}


def mean_se(values):
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def main():
    global EPOCHS, BATCH_SIZE, LR, MOMENTUM
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", type=int, nargs="+", default=[0, 100, 200, 300], help="first seed of each set of 5")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="to explore other trainings (the notebook's is the default)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--momentum", type=float, default=MOMENTUM)
    args = parser.parse_args()
    EPOCHS, BATCH_SIZE, LR, MOMENTUM = args.epochs, args.batch_size, args.lr, args.momentum
    torch.set_num_threads(1)  # many short runs on a shared machine
    warnings.filterwarnings("ignore")
    full_train, test = data.load("mnist"), data.load("mnist", "test")
    minimum = thresholds.threshold("04-augmentation", "gain", test)
    print(f"{test.source}; {EPOCHS} epochs, batch {BATCH_SIZE}, lr {LR}, momentum {MOMENTUM}; gain threshold {minimum:+.1%} (mean over 5 seeds)")
    for first in args.sets:
        seeds = list(range(first, first + 5))
        start = time.perf_counter()
        baseline = [run(full_train, test, None, seed) for seed in seeds]
        mean, se = mean_se(baseline)
        print(f"\nseeds {seeds}: no augmentation {mean:.1%} ± {se:.1%} (SE)   per seed: "
              + " ".join(f"{a:.1%}" for a in baseline), flush=True)
        for name in args.arms:
            accs = [run(full_train, test, ARMS[name], seed) for seed in seeds]
            gains = [a - b for a, b in zip(accs, baseline)]
            mean, se = mean_se(gains)
            verdict = "PASS" if mean >= minimum else "fail"
            print(f"  {name:19s} accuracy {statistics.mean(accs):.1%}  gain {mean:+.1%} ± {se:.1%} (SE) {verdict}   "
                  "per seed: " + " ".join(f"{g:+.1%}" for g in gains), flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
