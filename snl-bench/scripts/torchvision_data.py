#!/usr/bin/env python3
"""torchvision's ImageFolder DataLoader over the CIFAR-10 image folder, as the yardstick of
snl-data's pipeline (`cargo bench -p snl-bench --bench data`): random crop with 4-pixel
padding, horizontal flip, normalise, batches of 128. Prints images/s per worker count.

    python3 snl-bench/scripts/torchvision_data.py [DATA_DIR] [--batches 80]
"""
import argparse, json, time
import torch
from torchvision import datasets, transforms

p = argparse.ArgumentParser()
p.add_argument("data", nargs="?", default="../shared/data/cifar10-jpeg/train")
p.add_argument("--batches", type=int, default=80)
a = p.parse_args()
torch.set_num_threads(2)
tf = transforms.Compose([
    transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
    transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
])
ds = datasets.ImageFolder(a.data, transform=tf)
for workers in (0, 2):
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker spawn) not timed
    t = time.perf_counter()
    n = 0
    for _ in range(a.batches):
        x, _ = next(it)
        n += x.shape[0]
    dt = time.perf_counter() - t
    print(json.dumps({"impl": "torchvision", "workers": workers, "batch": 128, "images": n,
                      "images_per_s": round(n / dt, 1)}))
