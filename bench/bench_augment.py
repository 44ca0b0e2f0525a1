"""Augmenting one PIL image at a time vs one batched tensor operation (notebook 04-augmentation, part 4).

    MNISTLAB_DATA_SOURCE=offline python bench/bench_augment.py [--images 150] [--repeats 5]

The same random affine change (rotation up to 10 degrees, shift up to 5%, zoom 0.9..1.1) three ways:
  pil_one_at_a_time     what a DataLoader over torchvision.datasets.MNIST(transform=...) does: every image
                        becomes a PIL image and is transformed on its own, then converted to a tensor
  tensor_one_at_a_time  the same torchvision transform called on each image tensor (right, still a Python loop)
  tensor_batch          one random 2x3 matrix per image, applied to the whole batch at once with
                        F.affine_grid + F.grid_sample (the notebook's random_affine)
(torchvision's transform called once on the whole batch is fast too, but draws one change for the whole
batch: the notebook's "batch trap".) Prints the fastest of a few runs of each and the ratios, all measured
in this one run.
"""

import argparse
import math
import time

import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as v2
from PIL import Image

from mnistlab import data


def random_affine(x, degrees=0.0, translate=0.0, scale=(1.0, 1.0)):
    """A random rotation, shift and zoom per image of the batch x [B, 1, 28, 28] (the notebook's exercise 1)."""
    n = len(x)
    angle = torch.empty(n, device=x.device).uniform_(-degrees, degrees) * math.pi / 180
    zoom = torch.empty(n, device=x.device).uniform_(*scale)
    shift = torch.empty(n, 2, device=x.device).uniform_(-2 * translate, 2 * translate)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def best_time(f, repeats):
    """The fastest of `repeats` runs of f(), in seconds, after one warm-up run."""
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=150, help="how many images to augment (150: the notebook's training set)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    ds = data.load("mnist")
    images = ds.images[: args.images]  # uint8 [N, 28, 28], as a Dataset stores them
    batch = images.unsqueeze(1).float() / 255  # what train.fit hands to augment
    settings = dict(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1))
    pil_pipeline = v2.Compose([v2.RandomAffine(**settings), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    tensor_transform = v2.RandomAffine(**settings)

    ways = {
        "pil_one_at_a_time": lambda: torch.stack([pil_pipeline(Image.fromarray(image.numpy())) for image in images]),
        "tensor_one_at_a_time": lambda: torch.stack([tensor_transform(image) for image in batch]),
        "tensor_batch": lambda: random_affine(batch, degrees=10, translate=0.05, scale=(0.9, 1.1)),
    }
    for f in ways.values():  # all three give a float batch of the same shape
        assert f().shape == batch.shape
    print(f"{ds.source}: {len(images)} images, torch {torch.__version__}, {torch.get_num_threads()} threads")
    seconds = {name: best_time(f, args.repeats) for name, f in ways.items()}
    for name, s in seconds.items():
        print(f"{name:22s} {1000 * s:8.2f} ms   {seconds['pil_one_at_a_time'] / s:6.1f} x faster than PIL one at a time")
    print(f"ratio PIL one at a time / tensor batch: {seconds['pil_one_at_a_time'] / seconds['tensor_batch']:.0f}")


if __name__ == "__main__":
    main()
