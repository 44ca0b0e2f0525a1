"""grader/decide/augmentation.py: notebook 04's test cells decided from values handed in here, in Python.

No notebook runs: each test hands in (mnistlab.course.hand_in) what the cell's hidden code hands in, made
with a correct random_affine / augment or with a typical mistake, and checks the clean verdict.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as v2

from grader.decide import decide
from grader.decide.augmentation import CELLS, digits
from mnistlab import course


@pytest.fixture
def verdict(hand_in_folder):
    """verdict(cell, **values): hand `values` in for `cell` (as the grader's run of the notebook would), then decide it."""
    def run(cell, **values):
        if values:
            course.hand_in(cell, **values)
        return decide(str(hand_in_folder), cell, CELLS[cell])

    return run


def affine(mistake=None):
    """The notebook's random_affine (its solution), or the same with one typical mistake."""

    def random_affine(x, degrees=0.0, translate=0.0, scale=(1.0, 1.0)):
        n = 1 if mistake == "one draw per batch" else len(x)
        angle = torch.empty(n).uniform_(-degrees, degrees)
        if mistake != "degrees as radians":
            angle = angle * math.pi / 180
        zoom = torch.empty(n).uniform_(*scale)
        reach = translate if mistake == "half the shift" else 2 * translate
        shift = torch.empty(n, 2).uniform_(-reach, reach)
        if mistake == "one shift for both axes":
            shift[:, 1] = shift[:, 0]
        if mistake == "theta holds s":
            zoom = 1 / zoom
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        theta = theta.expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, align_corners=mistake == "align_corners mismatch")
        return out.squeeze(1) if mistake == "drops the channel" else out

    return random_affine


def random_affine_outputs(random_affine):
    """What test_random_affine hands in: its visible part's outputs, then its hidden part's."""
    torch.manual_seed(0)
    x = digits(seed=1)
    out = random_affine(x)
    rotated = random_affine(x[:1].repeat(16, 1, 1, 1), degrees=30)
    torch.manual_seed(1)
    small_digits = random_affine(x, scale=(0.5, 0.5))
    bar = torch.zeros(200, 1, 28, 28)
    bar[:, :, 4:24, 13:15] = 1.0
    bars = random_affine(bar, degrees=10)
    dot = torch.zeros(200, 1, 28, 28)
    dot[:, :, 12:16, 12:16] = 1.0
    dots = random_affine(dot, translate=0.1)
    return dict(out=out, rotated=rotated, small_digits=small_digits, bars=bars, dots=dots)


def test_random_affine_passes_for_the_solution(verdict):
    result = verdict("test_random_affine", **random_affine_outputs(affine()))
    assert result["passed"], result["reason"]


@pytest.mark.parametrize("mistake, words", [
    ("degrees as radians", "convert degrees to radians"),
    ("theta holds s", "theta holds 1 / s"),
    ("one draw per batch", "each image must get its own random angle"),
    ("one shift for both axes", "drawn separately"),
    ("half the shift", "its own random amount, in both directions"),
    ("align_corners mismatch", "must return x unchanged"),
    ("drops the channel", "must keep the shape [10, 1, 28, 28], got [10, 28, 28]"),
])
def test_random_affine_fails_for_a_typical_mistake(verdict, mistake, words):
    result = verdict("test_random_affine", **random_affine_outputs(affine(mistake)))
    assert not result["passed"] and words in result["reason"], (mistake, result["reason"])


def test_random_affine_fails_for_a_rotation_that_loses_ink(verdict):
    outputs = random_affine_outputs(affine())
    outputs["rotated"] = outputs["rotated"] * 0.8
    result = verdict("test_random_affine", **outputs)
    assert not result["passed"] and "keeps its ink" in result["reason"]


def test_random_affine_fails_when_a_value_is_missing(verdict):
    outputs = random_affine_outputs(affine())
    del outputs["dots"]
    result = verdict("test_random_affine", **outputs)
    assert not result["passed"] and "did not hand in `dots`" in result["reason"]


def augment_outputs(augment, seeds=5):
    """What test_augment hands in (after its check_gain)."""
    torch.manual_seed(0)
    copies = digits(seed=2)[:1].repeat(64, 1, 1, 1)
    outs = [augment(copies) for _ in range(5)]
    return dict(outs=outs, shapes=[list(out.shape) for out in outs], dtypes=[str(out.dtype) for out in outs],
                n_augmented=seeds, n_baseline=seeds, n_seeds=seeds)


def solution_augment(x):
    return affine()(x, degrees=10, translate=0.05, scale=(0.9, 1.1))


def test_augment_passes_for_the_solution(verdict):
    result = verdict("test_augment", **augment_outputs(solution_augment))
    assert result["passed"], result["reason"]


@pytest.mark.parametrize("augment, seeds, words", [
    (v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)), 5, "the batch trap"),
    (lambda x: x, 5, "or changed nothing"),
    (lambda x: solution_augment(x).double(), 5, "must return floats (torch.float32), got torch.float64"),
    (lambda x: solution_augment(x).squeeze(1), 5, "must keep the shape [64, 1, 28, 28], got [64, 28, 28]"),
    (solution_augment, 3, "5 seeds"),
])
def test_augment_fails_for_a_typical_mistake(verdict, augment, seeds, words):
    result = verdict("test_augment", **augment_outputs(augment, seeds))
    assert not result["passed"] and words in result["reason"], result["reason"]


def test_augment_fresh_seeds_checks_the_shape(verdict):
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert verdict("test_augment_fresh_seeds", out=solution_augment(x))["passed"]


@pytest.mark.parametrize("out, words", [(torch.rand(4, 28, 28), "got [4, 28, 28]"), (None, "got <unsaved NoneType>")])
def test_augment_fresh_seeds_fails_for_a_wrong_shape(verdict, out, words):
    result = verdict("test_augment_fresh_seeds", out=out)
    assert not result["passed"] and words in result["reason"], result["reason"]


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_nothing_handed_in_fails(verdict, cell):
    result = verdict(cell)
    assert not result["passed"] and "nothing was handed in" in result["reason"]


def test_every_test_cell_of_the_notebook_with_asserts_is_decided():
    import nbformat

    path = Path(__file__).resolve().parent.parent / "source" / "04-augmentation" / "04-augmentation.ipynb"
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert {c.metadata["nbgrader"]["grade_id"] for c in cells if "assert" in c.source} == set(CELLS)
