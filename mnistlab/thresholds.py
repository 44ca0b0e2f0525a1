"""The accuracy thresholds of every graded check: one table for the whole course.

Keyed by (assignment, check) and by the data actually used: "full" (torchvision's datasets) or
"offline" (the stand-ins of mnistlab.standins, used by CI). Each value was set by measurement:
the reference solution passes on each of 5 seeds with margin and the known-broken variants fail.
Where the full datasets could not be run here, the "full" value comes from published figures with
a margin, and the comment beside it says so.
"""

from mnistlab.data import is_standin

TABLE = {
    # ---- 01-softmax
    # Measured with bench/calibrate_01_softmax.py (offline, seeds 0-4, reference and broken variants); each
    # "offline" value is thresholds.rule of the reference's 5 seeds (mean - 3 sd, rounded down to half a point).
    # Softmax regression on MNIST with the student's loop, SGD lr 0.1, batch 64, 10 epochs (3 on full data):
    # reference 0.905 0.898 0.904 0.906 0.898 (0.902 +- 0.004) -> rule 0.890. Broken, all below: no zero_grad()
    # 0.849-0.878 (also caught exactly by the loop's hidden test), lr 0.001 0.713-0.757, one batch per epoch
    # 0.667-0.733, no optimizer.step() 0.07-0.18. "full": not measured here (no download); published ~92% for
    # softmax regression on full MNIST (TensorFlow's "MNIST for ML beginners"), minus 4 points for 3 epochs.
    ("01-softmax", "mnist-linear"): {"offline": 0.89, "full": 0.88},
    # Softmax regression (26 outputs) on the fixed letters, train.fit, SGD lr 0.2, batch 64, 6 epochs (2 on
    # full data). Letters stand-in v5 (pinned fonts, test fonts unseen in training, as EMNIST's test writers):
    # reference 0.650 0.647 0.606 0.640 0.641 (0.637 +- 0.018) -> rule 0.580 (seeds 0-19: 0.606-0.663).
    # Broken, all below: 27 outputs on labels 1..26 scored against 0..25 0.026-0.030, lr 0.002 0.453-0.464
    # (seeds 0-9: at most 0.471), no optimizer.step() 0.028-0.041; labels not shifted with 26 outputs:
    # train.fit raises. A fix_letters without the transpose costs a linear model nothing (a fixed pixel
    # permutation): accuracy cannot tell it apart; the exercise's hidden tests catch it. "full": not measured
    # here (no download); the EMNIST paper's linear classifier reports 55.78% on letters (Cohen et al. 2017,
    # "EMNIST: an extension of MNIST to handwritten letters"), minus about 6 points. The broken variants were
    # not measured on full data.
    ("01-softmax", "letters-linear"): {"offline": 0.58, "full": 0.50},
    # ---- 02-svm-vs-logistic
    # Linear model on 150 images (15/class), SGD lr 0.1, batch 32, 100 epochs; test accuracy. The rule
    # (thresholds.rule) over bench/calibrate_02_svm_vs_logistic.py --part rule, offline data, the graded figures
    # measured as `grader calibrate` does (initialisation seeds shifted by 1000 k, k = 0..4; subsets fixed):
    #   SVM one model (subset 0, test-ex1-svm) 0.773 0.793 0.775 0.780 0.792 -> rule 0.750; mean of the 5 seeds'
    #     models (test-ex5-seeds) 0.779-0.784 -> 0.775. One threshold per check: the lower, 0.750.
    #   logistic one model 0.787 0.802 0.788 0.793 0.795 -> 0.770; mean of 5 0.789-0.793 -> 0.785: 0.770.
    #   (Seeds 0-4 varying subset AND initialisation, as the notebook's part 4: SVM 0.769-0.786 -> 0.755,
    #   logistic 0.785-0.796 -> 0.775.)
    #   Broken (seeds 0-4): leftover weight_decay=10 0.10-0.19, lr=1e-4 0.10-0.30, NLLLoss on raw scores
    #   0.37-0.62, MSELoss on one-hot 0.68-0.72: fail. Softmax before CrossEntropyLoss 0.758-0.779 passes the
    #   logistic check on 2 of 5 seeds: accuracy cannot tell it apart; the cell's loss check (train loss < 0.5;
    #   it ends at 1.6) and its hidden test (outputs that sum to 1) catch it.
    # "full": not measured here (no download possible). From published figures with margin: the
    #   purely supervised baselines trained on 100 MNIST labels and tested on the official test set
    #   reach 74-77% (Kingma et al. 2014, Table 1, N=100: NN 25.8% error, CNN 23.0%; quoted from
    #   memory of the paper, not re-checked here). We train on 150 labels, and the offline
    #   measurement is 77-80%. 0.65 leaves about 9 points below those figures; on full data it
    #   catches the collapsed runs (10-30%), not the near misses, which the notebook's loss checks catch.
    ("02-svm-vs-logistic", "svm"): {"offline": 0.75, "full": 0.65},
    ("02-svm-vs-logistic", "logistic"): {"offline": 0.77, "full": 0.65},
    # ---- 03-hidden-layer
    # Measured with bench/calibrate_03_hidden_layer.py (offline, seeds 0-4, reference and broken variants).
    # 150 images, 5000 hidden units, 30 epochs: train accuracy 100% on 5/5 seeds (SVM and logistic heads);
    # broken: ReLU after the last layer 47-80%, lr 100x too small 41-63%. "no ReLU" also fits 100% (a linear
    # model fits 150 images): exercise 1's structural test catches it. "full": the 150 images are real digits either way.
    ("03-hidden-layer", "150-hidden-train"): {"offline": 0.99, "full": 0.99},
    # Test: reference SVM 79.2-80.7%, logistic 79.3-81.3% (the linear models: 77.3-79.6%); broken: ReLU after the
    # last layer <= 68.6%, lr too small <= 49.4%. "full": no published figure for 150 images; they are real digits
    # either way (drawn from 60,000, tested on 10,000), so the offline figure with a wider margin (not measured).
    ("03-hidden-layer", "150-hidden-test"): {"offline": 0.76, "full": 0.72},
    # All the training data (offline: 4,000 images, 20 epochs). Linear: reference 90.3-91.3%, lr 100x too small
    # 81.3-82.8%. "full": a published run gives 0.92 (linear / two-layer / tuned: 0.92 / 0.97 / 0.98), minus 2 points.
    ("03-hidden-layer", "linear-test"): {"offline": 0.88, "full": 0.90},
    # Two-layer (100 units): reference 92.3-92.5%; no ReLU 88.8-89.9%, lr too small 70.2-75.1%, ReLU after the
    # last layer 64.8-92.9% (2/5 seeds pass: caught by exercise 1's structural test). "full": published 0.97, minus 2.
    ("03-hidden-layer", "two-layer-test"): {"offline": 0.91, "full": 0.95},
    # Tuned (256 units, lr 0.05, momentum 0.9): reference 94.4-95.3%; no ReLU <= 88.1%, ReLU after the last layer
    # <= 86.1%, lr too small <= 88.5%; the untuned two-layer <= 92.5% fails too. "full": published 0.98, minus 1.5.
    ("03-hidden-layer", "tuned-test"): {"offline": 0.93, "full": 0.965},
    # ---- 04-augmentation
    # "gain" is not an accuracy but a difference of accuracies: the minimum mean over 5 seeds of (test accuracy with
    # the student's augment - without), paired seed by seed (same 150 images, same initial weights); 0.02 = 2 points.
    # The assignment's goal is 1 point, but the mean of 5 seeds has a standard error of 0.4-0.9 points, and blur (a
    # small effect: +0.8 over the 20 seeds below) reached +1.3 and +1.1 on two sets of 5: 2 points keeps it out. bench/calibrate_04_augmentation.py,
    # offline, 30 epochs, gain mean ± SE on the seed sets 0-4 / 100-104 (the hidden test's) / 200-204 / 300-304:
    #   reference random_affine(10 degrees, 5%, 0.9-1.1)  +4.7 ± 0.8 / +4.4 ± 0.4 / +5.3 ± 0.6 / +5.6 ± 0.4  pass
    #   one draw per batch (v2 on the batch, the trap)      - / +4.5 ± 0.6 / - / -  (passes: the trap costs no accuracy
    #     here; the visible test rejects it as not per-image)
    #   blur (given: 9x9, sigma 0.1-5)                   +1.3 ± 0.4 / +0.5 ± 0.7 / +0.4 ± 0.9 / +1.1 ± 0.5  fail
    #   identity 0.0 / vertical flip -59.8 / rotate 180 -61.0 / too strong (60 degrees, 20%, 0.6-1.4) -39.6 (set 100)  fail
    # "full": not measurable here (no full MNIST offline); the same 2 points: the stand-in's digits are real MNIST
    # digits and the 150-image training is the same, and 10,000 test images only lower the noise.
    ("04-augmentation", "gain"): {"offline": 0.02, "full": 0.02},
    # ---- 05-pitfalls
    # Both by the rule (mean - 3 sd of the reference over seeds 0-4, rounded down to half a point), measured with
    # bench/calibrate_05_pitfalls.py (its numbers equal the notebook's tables: same seeds, offline data, one CPU
    # thread). With the full MNIST the notebook trains on a stratified 4,000-digit subset (400/class) and tests on
    # 2,000 (200/class); the stand-in is itself 5,000 real MNIST digits, so "full" takes the offline value (not run
    # on the full data here).
    # negative-mlp: fixed 784-200-100-10 (standardised inputs, no output ReLU) on inverted MNIST, SGD lr 0.1,
    # batch 64, 5 epochs. Reference 0.896 0.910 0.907 0.894 0.901 (mean 0.902, sd 0.007: rule 0.88; seed 2024,
    # the hidden test's, 0.908). Broken: published (output ReLU, raw inputs) 0.207-0.485; no output ReLU only
    # 0.267-0.622; published at lr 0.01 0.388-0.492: all fail. 1 - x instead of standardising (not what the
    # exercise asks) 0.868-0.892 passes 2 of 5. Standardised with the output ReLU kept 0.820-0.905 passes 3 of 5:
    # the hidden structure test catches the ReLU.
    ("05-pitfalls", "negative-mlp"): {"offline": 0.88, "full": 0.88},
    # colored-cnn: fixed CNN (the post's Keras model ported: padding 1, ReLU after each conv, raw scores out,
    # Keras' Glorot-uniform init and RMSprop lr 1e-3 rho 0.9 eps 1e-7, batches of 12, 1 epoch on 1,000 colored
    # digits). Reference 0.815 0.754 0.816 0.830 0.856 (mean 0.814, sd 0.038: rule 0.70; seed 2024 0.834).
    # Broken: published (no conv activation, ReLU on scores) 0.336-0.534 and conv ReLU with the score ReLU kept
    # 0.270-0.412 fail. Fixed + nn.Softmax before CrossEntropyLoss 0.670-0.804 passes 3 of 5 and raw scores
    # without conv ReLU 0.796-0.864 passes all: accuracy cannot tell these apart from the reference after 84
    # steps; the hidden structure test catches both (softmax-like scores; no ReLU between the convolutions).
    ("05-pitfalls", "colored-cnn"): {"offline": 0.70, "full": 0.70},
}


RULE = "threshold = mean - 3 standard deviations of the reference's figure over the seeds, rounded down to half a point"


def kind_of(source):
    """"offline" for a stand-in's `.source`, "full" for torchvision's datasets: the table's two columns."""
    return "full" if source.startswith("torchvision") else "offline"


def rule(figures):
    """The course's one rule for a threshold: the mean of the reference solution's checked figure
    over the calibration runs (one per seed, at least 3) minus 3 standard deviations, rounded down
    to half a point. Never moved after looking at a broken variant: a broken variant that passes
    is caught by another test, or the notebook says that accuracy cannot tell it apart."""
    import math
    import statistics

    figures = [float(f) for f in figures]
    if len(figures) < 3:
        raise ValueError(f"the rule needs the reference's figure on at least 3 seeds, got {len(figures)}")
    value = statistics.mean(figures) - 3 * statistics.stdev(figures)
    return math.floor(value * 200 + 1e-9) / 200


def threshold(assignment, check, ds):
    """The minimum accuracy for `check` of `assignment`, for the data `ds` actually is."""
    kind = "offline" if is_standin(ds) else "full"
    try:
        return TABLE[assignment, check][kind]
    except KeyError:
        known = sorted(check for (a, check) in TABLE if a == assignment)
        raise KeyError(f"no threshold for {assignment}/{check} ({kind} data); known checks: {known}") from None
