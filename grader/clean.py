"""Re-measure every accuracy check of one submission from its handed-in models (see grader/checks.py).

This runs in a process that never ran the student's code (a fresh child of the grading helper, sandboxed
like the notebook: no network, read-only files), on the grader's own copy of the data. What the student's
kernel left is only data: graphs of PyTorch operations and arrays of weights (mnistlab/handin.py loads them
without pickle and refuses anything else), plus the notebook's claim (what it measured, for comparison).

For each check the result says what the grader measured (`clean`), what the notebook said (`claimed`),
whether the threshold is met, and why not in words. Integrity flags (the submission needs a human look):
  - the notebook's figure and the grader's differ by more than results.TOLERANCE (e.g. a patched evaluate());
  - the notebook passed a check the grader cannot confirm (no model handed in, or a refused file);
  - the model does far better on the test images than on the images it could have trained on.
"""

import json
import math
import statistics
import warnings
from pathlib import Path

from grader.checks import checks_of
from grader.results import CheckResult

TEST_SET_MARGIN = 0.05  # test accuracy this far above the training images' accuracy: fit to the test set
POOL_SIZE = 2000  # training images scored for that comparison (evenly spaced; enough to see 5 points)
# A model that looks images up rather than recognising them. Measured (offline data; linear, 100-unit and
# 5000-unit MLPs, on MNIST and the letters): moving every test image by one pixel costs an honest model
# 4-9 points; an exact lookup of the test images falls to chance. A 1-nearest-neighbour lookup over the
# training *and* test images loses only 2-4 (the moved image's nearest stored image is still itself), but
# scores 100%, far above every reference run: that is flagged for a human instead.
SHIFT_MARGIN = 0.25  # accuracy lost on the test images moved by one pixel, beyond which the check fails
ABOVE_REFERENCE = 0.05  # accuracy above the best reference run (thresholds.json), beyond which it is flagged


def accuracy(run, ds, batch_size=500):
    """Fraction of `ds` that `run` (a function of a batch of images) classifies right."""
    import torch

    from mnistlab import train

    correct = 0
    with torch.no_grad():
        for x, y in train.batches(ds, batch_size=batch_size, device="cpu"):
            scores = run(x)
            if scores.shape != (len(y), len(ds.classes)):
                raise ValueError(f"the model gives outputs of shape {list(scores.shape)} for {len(y)} images; "
                                 f"expected [{len(y)}, {len(ds.classes)}] (one score per class)")
            correct += (scores.argmax(1) == y).sum().item()
    return correct / len(ds)


def shifted(ds):
    """The images of `ds` moved by one pixel (right, left, down, up in turn), the emptied edge a copy of the
    edge next to it (black on MNIST, white on inverted digits): images the student never had, which any
    classifier of digits still reads."""
    from mnistlab import data

    x, moved = ds.images, ds.images.clone()  # [N, H, W] or [N, C, H, W]: rows and columns are the last two
    way = [slice(i, None, 4) for i in range(4)]
    moved[way[0], ..., 1:] = x[way[0], ..., :-1]
    moved[way[1], ..., :-1] = x[way[1], ..., 1:]
    moved[way[2], ..., 1:, :] = x[way[2], ..., :-1, :]
    moved[way[3], ..., :-1, :] = x[way[3], ..., 1:, :]
    return data.derive(ds, "moved by one pixel", images=moved)


def best_reference(assignment, check, ds):
    """The highest figure of the reference solution's calibration runs on this kind of data, or None."""
    from mnistlab import thresholds

    entry = thresholds.TABLE.get((assignment, check), {}).get(thresholds.kind_of(ds.standin), {})
    figures = entry.get("figures") if entry.get("measured_by") else None  # published figures are not runs
    return max(figures) if figures else None


def every_nth(ds, size):
    """About `size` images of `ds`, evenly spaced (all of them when it is small)."""
    from mnistlab import data

    step = max(1, len(ds) // size)
    return data.derive(ds, images=ds.images[::step], labels=ds.labels[::step])


def trained_accuracy(seed, augment=None):
    """Notebook 04's recipe (150 images, 784-5000-10, SGD momentum, 30 epochs): test accuracy for one seed."""
    import torch
    from torch import nn

    from grader.checks import mnist
    from mnistlab import data, train

    small = data.subset(mnist("train"), per_class=15, seed=seed)
    train.seed_everything(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 5000), nn.ReLU(), nn.Linear(5000, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train.fit(model, small, optimizer=optimizer, epochs=30, batch_size=32, augment=augment, quiet=True, device="cpu")
    return train.evaluate(model, mnist("test"), device="cpu")[1]


def read_claim(folder, name):
    """What the notebook said it measured, or None. Only numbers and plain findings are kept."""
    path = Path(folder, f"{name}.claim.json")
    try:
        claim = json.loads(path.read_text())
        claimed = float(claim["claimed"])
        findings = claim.get("findings")
        return {"claimed": claimed if math.isfinite(claimed) else None, "data": str(claim.get("data", "")),
                "models": int(claim.get("models", 1)),
                "findings": findings if isinstance(findings, list) else None}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_models(folder, name, count):
    from grader import handin

    return [handin.load(folder, f"{name}.{i}") for i in range(max(1, min(count, 20)))]


def baselines(assignment):
    """{seed: test accuracy without augmentation} for every "gain" check: the same for every student,
    so the coordinator computes them once per run and sends them with each job."""
    seeds = sorted({seed for check in checks_of(assignment).values() if check.kind == "gain" for seed in check.seeds})
    return {seed: trained_accuracy(seed) for seed in seeds}


def score_check(folder, assignment, name, check, without=None):
    """One check's result (see the module docstring), as JSON (grader/results.py: CheckResult)."""
    from grader import handin
    from mnistlab import thresholds

    handin_name = check.handin or name
    test = check.test()
    result = CheckResult(name=name, cell=check.cell, kind=check.kind,
                         threshold=thresholds.threshold(assignment, check.threshold, test))
    claim = read_claim(folder, handin_name)
    flags = []
    if claim and handin_name == name:
        result.claimed, result.findings = claim["claimed"], claim["findings"]
        if claim["data"] != test.source:
            flags.append(f"{name}: the notebook measured it on {claim['data'][:80]!r}, not on {test.source!r}")
    try:
        models = load_models(folder, handin_name, claim["models"] if claim else 1)
    except FileNotFoundError:
        result.reason = ("no model was handed in: the check's cell did not run to its end "
                         "(it raised an error, e.g. the model could not be exported, or it was deleted)")
        return result.to_json()
    except handin.UnsafeArtifact as error:
        result.reason = f"the handed-in model was refused: {error}"
        result.flag = "; ".join(flags + [f"{name}: handed-in file refused ({error})"])
        return result.to_json()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if check.kind == "gain":
                without = without or {}
                gains = [trained_accuracy(seed, models[0]) - (without.get(seed) or trained_accuracy(seed))
                         for seed in check.seeds]
                result.clean = statistics.mean(gains)
            else:
                result.clean = statistics.mean(accuracy(m, test) for m in models)
                if check.pool:
                    pool = every_nth(check.pool(), POOL_SIZE)
                    result.pool = statistics.mean(accuracy(m, pool) for m in models)
                    moved = shifted(test)
                    result.shifted = statistics.mean(accuracy(m, moved) for m in models)
        except Exception as error:  # a graph that does not run on the grader's data
            result.reason = f"the handed-in model does not run on the test images: {type(error).__name__}: {str(error)[:300]}"
            result.flag = "; ".join(flags) or None
            return result.to_json()

    result.passed = result.clean >= result.threshold
    if not result.passed:
        result.reason = f"the grader measured {result.shown('clean')}, below the threshold {result.shown('threshold')}"
    if result.pool is not None and result.clean - result.pool > TEST_SET_MARGIN:
        result.passed = False
        result.reason = (f"the model scores {result.clean:.1%} on the test images but only {result.pool:.1%} "
                         "on the training images: it was fit to the test set, which a test must never see")
        flags.append(f"{name}: trained on the test set? test {result.clean:.1%} vs training images {result.pool:.1%}")
    if result.shifted is not None and result.clean - result.shifted > SHIFT_MARGIN:
        result.passed = False
        result.reason = (f"the model scores {result.clean:.1%} on the test images but only {result.shifted:.1%} on "
                         "the same images moved by one pixel: it looks the test images up instead of recognising them")
        flags.append(f"{name}: a lookup of the test images? {result.clean:.1%}, moved by one pixel {result.shifted:.1%}")
    best = best_reference(assignment, check.threshold, test) if check.pool else None
    if best is not None and result.clean > best + ABOVE_REFERENCE:
        flags.append(f"{name}: {result.clean:.1%}, {100 * (result.clean - best):.0f} points above every run of the "
                     f"reference solution (best {best:.1%}): has the model seen the test images?")
    if result.claimed is not None and not result.agrees():
        flags.append(f"{name}: the notebook measured {result.shown('claimed')}, the grader {result.shown('clean')}")
    result.flag = "; ".join(flags) or None
    return result.to_json()


def score_submission(folder, assignment, without=None, cells=None, decided=None):
    """Every check of `assignment` scored from the hand-in folder: a list of results (see score_check), then
    every test cell decided from the values it handed in (grader/decide).

    without: {seed: accuracy} of the runs without augmentation (see baselines), if already known.
    cells: the grade cells of the assignment's notebook (checks of other cells are skipped).
    decided: the cells whose master hands values in (grader/rescore.py: handed_in_cells); default: all known."""
    import torch

    from grader import decide

    torch.set_num_threads(1)
    without = {int(seed): acc for seed, acc in (without or {}).items()}
    return [score_check(folder, assignment, name, check, without) for name, check in sorted(checks_of(assignment).items())
            if cells is None or check.cell in cells] + decide.decide_submission(folder, assignment, decided)


def warm_data(assignment):
    """Build every dataset the checks use once, so that their caches exist before the sandboxes need them."""
    for check in checks_of(assignment).values():
        check.test()
        if check.pool:
            check.pool()
