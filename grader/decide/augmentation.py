"""Notebook 04 (augmentation): the test cells' checks, decided on the outputs they handed in.

random_affine is random, so its cell hands in raw outputs on fixed inputs (the digits of the notebook,
a vertical bar, a small dot) and this module measures them: the ink they keep, the angle of the bars,
the shift of the dots. The gains of augment (5 notebook seeds, 5 fresh ones) are measured by
grader/checks.py ("gain", "gain-fresh"), which trains again with the handed-in augment; these
functions check the rest of those cells (shapes, dtype, one random change per image).
"""

import torch

from grader.checks import mnist
from grader.decide import require
from mnistlab import data, train


def digits(seed):
    """The notebook's 10 digits (one per class) of data.subset(..., per_class=1, seed=seed), [10, 1, 28, 28]."""
    return next(train.batches(data.subset(mnist("train"), per_class=1, seed=seed), batch_size=10, device="cpu"))[0]


def images(got, name, shape, what):
    """The handed-in batch `name` as float32, after checking it has `shape` (what: the call, for the message)."""
    value = got[name]
    if not isinstance(value, torch.Tensor):
        require(False, f"{what} must return a tensor of shape {list(shape)}, got {value!r}")
    require(tuple(value.shape) == tuple(shape), f"{what} must keep the shape {list(shape)}, got {list(value.shape)}")
    return value.float()


def centre_of_mass(images):
    # (row, column) of the ink's centre of each image [B, 1, 28, 28], in pixels
    grid = torch.arange(28.0)
    mass = images.sum((1, 2, 3))
    return torch.stack([(images.sum(3).squeeze(1) * grid).sum(1) / mass, (images.sum(2).squeeze(1) * grid).sum(1) / mass], 1)


def orientation(images):
    # angle (degrees) of each image's main axis, from the second moments of its ink
    grid = torch.arange(28.0)
    w = images.squeeze(1)
    mass = w.sum((1, 2))
    r, c = grid.view(1, 28, 1), grid.view(1, 1, 28)
    mr, mc = (w * r).sum((1, 2)) / mass, (w * c).sum((1, 2)) / mass
    dr, dc = r - mr.view(-1, 1, 1), c - mc.view(-1, 1, 1)
    mrr, mcc, mrc = (w * dr * dr).sum((1, 2)) / mass, (w * dc * dc).sum((1, 2)) / mass, (w * dr * dc).sum((1, 2)) / mass
    return torch.rad2deg(0.5 * torch.atan2(2 * mrc, mrr - mcc))


def random_affine(got):
    """test_random_affine: same shape; the defaults change nothing; one random angle per image; rotations keep the
    ink; scale 0.5 keeps about 1/4 of it; degrees (not radians); shifts of at most 10%, drawn per image and axis."""
    x = digits(seed=1)
    out = images(got, "out", x.shape, "random_affine(x)")
    require((out - x).abs().max() < 1e-4, "with the default arguments random_affine must return x unchanged")

    copies = x[:1].repeat(16, 1, 1, 1)
    rotated = images(got, "rotated", copies.shape, "random_affine(x, degrees=30)")
    different = (rotated - rotated[:1]).flatten(1).abs().max(1).values > 0.1
    require(different.sum() >= 12, "each image must get its own random angle: 16 copies gave (almost) all the same output "
                                   f"({different.sum().item() + 1} different outputs)")
    ink = rotated.flatten(1).sum(1) / copies.flatten(1).sum(1)
    require(((ink > 0.9) & (ink < 1.1)).all(), "a rotation of a centred digit keeps its ink; the ink changed by factors "
                                               f"{ink.min():.2f}..{ink.max():.2f}")

    # zoom: scale 0.5 halves the digit's width and height, so it keeps about a quarter of its ink
    ink = images(got, "small_digits", x.shape, "random_affine(x, scale=(0.5, 0.5))").sum() / x.sum()
    require(0.18 < ink < 0.32, f"scale=(0.5, 0.5) must shrink the digits to half their size (about 1/4 of the ink), "
                               f"got {ink:.2f} of the ink: theta holds 1 / s")

    # degrees, not radians: a vertical bar rotated by at most 10 degrees stays within ~10 degrees of vertical
    angles = orientation(images(got, "bars", (200, 1, 28, 28), "random_affine(bars, degrees=10)"))
    require(angles.abs().max() < 12, f"degrees=10 rotated a bar by up to {angles.abs().max():.0f} degrees: "
                                     "convert degrees to radians")
    require(angles.abs().max() > 6 and angles.std() > 2, "degrees=10 must rotate by random angles up to 10 degrees")

    # translate: shifts up to 10% of 28 pixels = 2.8 pixels, each direction, each image its own
    dot = torch.zeros(200, 1, 28, 28)
    dot[:, :, 12:16, 12:16] = 1.0
    moved = centre_of_mass(images(got, "dots", dot.shape, "random_affine(dots, translate=0.1)")) - centre_of_mass(dot)
    require(moved.abs().max() < 3.3, f"translate=0.1 moved a dot by {moved.abs().max():.1f} pixels; at most 2.8 (10% of 28)")
    require(moved[:, 0].std() > 1.0 and moved[:, 1].std() > 1.0,
            "translate=0.1 must shift each image by its own random amount, in both directions")
    require(abs(torch.corrcoef(moved.T)[0, 1]) < 0.3, "the horizontal and vertical shifts must be drawn separately")


def augment(got):
    """test_augment (besides the gain, which grader/checks.py measures): 5 calls on 64 copies of one digit keep the
    shape, return float32, and at least one call changes the copies differently; one test accuracy per seed, 5 seeds."""
    shapes, dtypes = got["shapes"], got["dtypes"]
    shapes = shapes.tolist() if isinstance(shapes, torch.Tensor) else shapes  # a text: shapes of different lengths
    wrong = [shape for shape in shapes if shape != [64, 1, 28, 28]] if isinstance(shapes, list) else [shapes]
    require(not wrong, f"augment must keep the shape [64, 1, 28, 28], got {wrong[0] if wrong else None}")
    wrong = [dtype for dtype in dtypes if dtype != "torch.float32"]
    require(not wrong, f"augment must return floats (torch.float32), got {wrong[0] if wrong else None}")
    outs = images(got, "outs", (5, 64, 1, 28, 28), "augment")
    varied = [int((out - out[:1]).flatten(1).abs().max(1).values.gt(1e-3).sum()) for out in outs]
    require(max(varied) > 0, "augment must draw its random change image by image: in 5 calls on 64 copies of one digit, "
                             "every call changed all copies the same way (one draw for the whole batch: the batch trap of "
                             "part 3), or changed nothing")
    require(got["n_augmented"] == got["n_baseline"] == got["n_seeds"] >= 5, "one test accuracy per seed, 5 seeds")


def augment_fresh_seeds(got):
    """test_augment_fresh_seeds (besides the gain on fresh seeds, which grader/checks.py measures): the shape."""
    out = got["out"]
    shape = list(out.shape) if isinstance(out, torch.Tensor) else out
    require(shape == [4, 1, 28, 28], f"augment must return a batch of the shape it was given: [4, 1, 28, 28], got {shape}")


CELLS = {
    "test_random_affine": random_affine,
    "test_augment": augment,
    "test_augment_fresh_seeds": augment_fresh_seeds,
}
