"""How fast is mnistlab.train.fit? One epoch of a linear softmax on Fashion-MNIST (60,000 x 784),
batch 64, timed three ways in one run:

  dataloader  the usual idiom: torchvision.datasets.FashionMNIST(transform=ToTensor()) + DataLoader
              (every image goes uint8 -> PIL image -> float tensor in Python, one at a time)
  fit         mnistlab.train.fit(epochs=1): the whole dataset is one in-memory tensor
  bare        the same in-memory loop as fit with no bookkeeping at all: index, /255, forward,
              loss, backward, step (the fastest this loop can be; fit's overhead is the difference)

The three are interleaved and repeated, and each keeps its best epoch, so a busy machine hurts
them alike (the ratios are what to compare between machines, not the seconds). Targets: fit at least 15x faster than the DataLoader idiom, and at most 1.15x the bare
loop.

    MNISTLAB_DATA_SOURCE=offline python bench/bench_train.py [--repeats 3] [--threads 1]
"""

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import FashionMNIST
from torchvision.transforms import ToTensor

from mnistlab import data, train

TARGET_VS_DATALOADER = 15.0  # fit must be at least this many times faster than the DataLoader idiom
TARGET_VS_BARE = 1.15  # and take at most this many times the bare loop's epoch


def linear_softmax():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def epoch_dataloader(model, optimizer, loader, device):
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def epoch_fit(model, optimizer, ds, device):
    train.fit(model, ds, optimizer=optimizer, epochs=1, batch_size=64, device=device, quiet=True)


def epoch_bare(model, optimizer, images, labels):
    order = torch.randperm(len(labels)).to(images.device)
    for start in range(0, len(labels), 64):
        index = order[start : start + 64]
        x = images.index_select(0, index).float() / 255  # images[index], the fast way (as fit does)
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def timed(run, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of epochs to time (the best counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady timings)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: mnistlab's choice)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else train.default_device()

    ds = data.load("fashion-mnist", "train")
    print(f"data: {ds}")
    # The DataLoader idiom reads the same IDX files through torchvision. The offline stand-in
    # unpacked them under data_dir()/offline; downloaded ones live in data_dir() itself.
    root = data.data_dir() / "offline" if ds.standin else data.data_dir()
    loader = DataLoader(FashionMNIST(root, train=True, transform=ToTensor()), batch_size=64, shuffle=True)
    images, labels = ds.images.unsqueeze(1).to(device), ds.labels.to(device)  # [N, 1, 28, 28]

    models = {name: linear_softmax().to(device) for name in ("dataloader", "fit", "bare")}
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=0.1) for name, model in models.items()}
    runs = {
        "dataloader": lambda: epoch_dataloader(models["dataloader"], optimizers["dataloader"], loader, device),
        "fit": lambda: epoch_fit(models["fit"], optimizers["fit"], ds, device),
        "bare": lambda: epoch_bare(models["bare"], optimizers["bare"], images, labels),
    }
    # Each round: one DataLoader epoch, then fit and bare in turn, three epochs each (they are
    # cheap, and their ratio needs the most precision).
    order = ["dataloader"] + ["fit", "bare"] * 3
    times = {name: [] for name in runs}
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, {args.repeats} rounds of {order}")
    for repeat in range(args.repeats):
        this_round = {name: [] for name in runs}
        for name in order:
            this_round[name].append(timed(runs[name], device))
        for name, seconds in this_round.items():
            times[name] += seconds
        print(f"  round {repeat + 1}, best epoch: " + ", ".join(f"{name} {min(t):.3f} s" for name, t in this_round.items()),
              flush=True)

    best = {name: min(t) for name, t in times.items()}
    print("\nbest epoch (60,000 images, batch 64):")
    for name, seconds in best.items():
        print(f"  {name:10s} {seconds:7.3f} s   ({len(ds) / seconds:9,.0f} images/s)")
    speedup = best["dataloader"] / best["fit"]
    overhead = best["fit"] / best["bare"]
    print(f"\nfit vs DataLoader idiom: {speedup:5.1f}x faster   (target >= {TARGET_VS_DATALOADER:g}x: "
          f"{'met' if speedup >= TARGET_VS_DATALOADER else 'MISSED'})")
    print(f"fit vs bare loop:        {overhead:5.2f}x the time (target <= {TARGET_VS_BARE:g}x: "
          f"{'met' if overhead <= TARGET_VS_BARE else 'MISSED'})")


if __name__ == "__main__":
    main()
