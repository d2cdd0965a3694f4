#!/usr/bin/env python3
"""snl's PyTorch reference: the SNL authors' networks, masks and loss (docs/reference.md §1,
§2), for side-by-side benchmarks (`bench`) and the numerical parity fixtures of the Rust
tests (`fixture`). Not part of the product; needs `pip install torch safetensors`.

Networks, with the authors' `state_dict` names (docs/reference.md §2):
  resnet18, resnet34  CIFAR ResNet of BasicBlocks: stem conv1/bn1 (no activation unless
                      --stem-relu adds the mask `alpha0`), layer{1..4}.I.{conv1, bn1, alpha1,
                      conv2, bn2, alpha2, shortcut.0 (1x1 conv), shortcut.1 (BN)}, linear.
  wrn                 pre-activation WideResNet-depth-k (22-8 by default): conv1,
                      block{1..3}.layer.I.{bn1, alpha1, conv1, bn2, alpha2, conv2,
                      convShortcut}, bn1 (no activation unless --final-relu adds
                      `alpha_final`), fc.
Every mask is `<site>.alphas`, shape (1, C, H, W) per pixel or (1, C, 1, 1) per channel,
initialised to 1, applied as y = alphas * relu(x) + (1 - alphas) * x.

  torch_ref.py bench   [--arch resnet18|resnet34|wrn] [--width 64] [--batch 128] [--threads 2] [--runs 3] [--device cpu|cuda|cuda:N]
  torch_ref.py fixture OUT_DIR [--arch ...] [--width 8] [--batch 4] [--seed 0] [--granularity pixel|channel]

bench prints one JSON line per workload (snl_step, train_step, inference): the median
seconds of --runs timed runs after one warm-up, images per second and peak RSS.
fixture writes OUT_DIR/model.safetensors (random masks and BN state), batch.safetensors
(x, y) and expected.json (eval- and train-mode logits, the loss terms, each mask's gradient
sum, the ReLU count at eps 1e-2 and the mask total).
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-2  # a mask element counts as a kept ReLU when alphas > EPS
TEMPERATURE = 4.0  # distillation temperature
LASSO = 1e-5  # initial lambda of the L1 term over every mask element


class Mask(nn.Module):
    """The authors' LearnableAlpha: a gate between ReLU (1) and identity (0)."""

    def __init__(self, channels, side, granularity):
        super().__init__()
        per_pixel = granularity == "pixel"
        self.alphas = nn.Parameter(torch.ones(1, channels, side if per_pixel else 1, side if per_pixel else 1))

    def forward(self, x):
        return self.alphas * F.relu(x) + (1 - self.alphas) * x


def conv3x3(cin, cout, stride):
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv1 -> bn1 -> alpha1 -> conv2 -> bn2 -> (+ shortcut) -> alpha2; `side` is the output's."""

    def __init__(self, cin, cout, stride, side, granularity):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.alpha1 = Mask(cout, side, granularity)
        self.conv2 = conv3x3(cout, cout, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.alpha2 = Mask(cout, side, granularity)
        projection = stride != 1 or cin != cout
        layers = [nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)] if projection else []
        self.shortcut = nn.Sequential(*layers)

    def forward(self, x):
        y = self.alpha1(self.bn1(self.conv1(x)))
        return self.alpha2(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
    BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}

    def __init__(self, arch="resnet18", classes=10, width=64, image=32, stem_relu=False, granularity="pixel"):
        super().__init__()
        self.conv1 = conv3x3(3, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.alpha0 = Mask(width, image, granularity) if stem_relu else None
        cin, side = width, image
        for stage, count in enumerate(self.BLOCKS[arch]):
            cout, stride = width << stage, 1 if stage == 0 else 2
            side = (side - 1) // stride + 1  # a 3x3 convolution with padding 1
            blocks = [BasicBlock(cin if b == 0 else cout, cout, stride if b == 0 else 1, side, granularity)
                      for b in range(count)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            cin = cout
        self.linear = nn.Linear(cin, classes)

    def forward(self, x):
        y = self.bn1(self.conv1(x))
        if self.alpha0 is not None:
            y = self.alpha0(y)
        y = self.layer4(self.layer3(self.layer2(self.layer1(y))))
        return self.linear(F.adaptive_avg_pool2d(y, 1).flatten(1))


class WideBlock(nn.Module):
    """bn1 -> alpha1 -> conv1 -> bn2 -> alpha2 -> conv2, plus the raw input, or
    convShortcut of the activated input when the shape changes; `side` is the input's."""

    def __init__(self, cin, cout, stride, side, granularity):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.alpha1 = Mask(cin, side, granularity)
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.alpha2 = Mask(cout, (side - 1) // stride + 1, granularity)
        self.conv2 = conv3x3(cout, cout, 1)
        same = cin == cout and stride == 1
        self.convShortcut = None if same else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        a = self.alpha1(self.bn1(x))
        y = self.conv2(self.alpha2(self.bn2(self.conv1(a))))
        return y + (x if self.convShortcut is None else self.convShortcut(a))


class WideResNet(nn.Module):
    def __init__(self, depth=22, k=8, classes=10, image=32, granularity="pixel", final_relu=False):
        super().__init__()
        assert depth >= 10 and (depth - 4) % 6 == 0, "WRN depth must be 6n + 4, n >= 1"
        widths = (16, 16 * k, 32 * k, 64 * k)
        self.conv1 = conv3x3(3, widths[0], 1)
        side = image
        for group in range(3):
            stride = 1 if group == 0 else 2
            blocks = []
            for b in range((depth - 4) // 6):
                s = stride if b == 0 else 1
                blocks.append(WideBlock(widths[group] if b == 0 else widths[group + 1], widths[group + 1], s, side,
                                        granularity))
                side = (side - 1) // s + 1
            holder = nn.Module()
            holder.layer = nn.Sequential(*blocks)  # `blockG.layer.I.*`, the authors' nesting
            self.add_module(f"block{group + 1}", holder)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.alpha_final = Mask(widths[3], side, granularity) if final_relu else None
        self.fc = nn.Linear(widths[3], classes)

    def forward(self, x):
        y = self.block3.layer(self.block2.layer(self.block1.layer(self.conv1(x))))
        y = self.bn1(y)
        if self.alpha_final is not None:
            y = self.alpha_final(y)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


def build(a):
    """The network a parsed command line (or any object with the same fields) describes."""
    if a.arch == "wrn":
        return WideResNet(a.depth, a.k, a.classes, a.image, a.granularity, a.final_relu)
    return ResNet(a.arch, a.classes, a.width, a.image, a.stem_relu, a.granularity)


def mask_params(model):
    return [(n, p) for n, p in model.named_parameters() if n.endswith("alphas")]


def kept_relus(model):
    return sum(int((p > EPS).sum()) for _, p in mask_params(model))


def distillation(student, teacher):
    """KL(student || teacher) at temperature T, batch mean, times T^2 (the authors' KD)."""
    t = TEMPERATURE
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean") * t * t


def lasso(model):
    return sum(p.abs().sum() for _, p in mask_params(model))


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    teacher = build(a).eval().to(device)
    student = build(a).to(device)
    student.load_state_dict(teacher.state_dict())
    x = torch.randn(a.batch, 3, a.image, a.image).to(device)
    y = torch.randint(0, a.classes, (a.batch,)).to(device)

    def sync():  # a GPU step is timed until its queued kernels have finished
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    adam = torch.optim.Adam(student.parameters(), lr=1e-3)
    sgd = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

    def snl_step():  # Algorithm 1's search step: CE + KD + lambda * L1, Adam
        logits = student(x)
        with torch.no_grad():
            target = teacher(x)
        loss = F.cross_entropy(logits, y) + distillation(logits, target) + LASSO * lasso(student)
        adam.zero_grad()
        loss.backward()
        adam.step()

    def train_step():  # a baseline training step: CE, SGD
        loss = F.cross_entropy(student(x), y)
        sgd.zero_grad()
        loss.backward()
        sgd.step()

    def inference():
        with torch.no_grad():
            teacher(x)

    for name, step in (("snl_step", snl_step), ("train_step", train_step), ("inference", inference)):
        step()  # warm-up
        sync()
        seconds = []
        for _ in range(a.runs):
            start = time.perf_counter()
            step()
            sync()
            seconds.append(time.perf_counter() - start)
        median = sorted(seconds)[len(seconds) // 2]
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        print(json.dumps({"impl": "pytorch", "workload": name, "arch": a.arch, "width": a.width,
                          "batch": a.batch, "threads": a.threads, "device": a.device,
                          "median_s": round(median, 4),
                          "images_per_s": round(a.batch / median, 2), "peak_rss_mib": peak}), flush=True)


def fixture(a):
    from safetensors.torch import save_file

    torch.manual_seed(a.seed)
    model = build(a)
    with torch.no_grad():  # state away from the defaults, so that every term is exercised
        for _, p in mask_params(model):
            p.copy_(torch.rand_like(p))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    os.makedirs(a.out, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(a.out, "model.safetensors"))
    x = torch.randn(a.batch, 3, a.image, a.image)
    y = torch.randint(0, a.classes, (a.batch,))
    save_file({"x": x, "y": y}, os.path.join(a.out, "batch.safetensors"))

    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    model.train()  # batch statistics; updates the running ones after the save above
    train_logits = model(x)
    ce = F.cross_entropy(train_logits, y)
    kd = distillation(train_logits, eval_logits)
    l1 = lasso(model)
    loss = ce + kd + LASSO * l1
    loss.backward()
    expected = {
        "arch": a.arch, "width": a.width, "image": a.image, "classes": a.classes,
        "stem_relu": a.stem_relu, "final_relu": a.final_relu, "depth": a.depth, "k": a.k,
        "granularity": a.granularity,
        "relu_count_eps_0.01": kept_relus(model),
        "relu_total": sum(p.numel() for _, p in mask_params(model)),
        "eval_logits": eval_logits.tolist(), "train_logits": train_logits.tolist(),
        "cross_entropy": ce.item(), "kd_t4": kd.item(), "lasso": l1.item(), "loss_lambda_1e-5": loss.item(),
        "mask_grad_sums": {n: p.grad.sum().item() for n, p in mask_params(model)},
        "bn_momentum": 0.1, "bn_eps": 1e-5,
    }
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"wrote {a.out}: relu_total={expected['relu_total']}")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["bench", "fixture"])
    p.add_argument("out", nargs="?", help="fixture: the folder to write")
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "wrn"])
    p.add_argument("--width", type=int, default=64, help="ResNet base width")
    p.add_argument("--depth", type=int, default=22, help="WRN depth")
    p.add_argument("--k", type=int, default=8, help="WRN widen factor")
    p.add_argument("--image", type=int, default=32, help="input side length")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--stem-relu", action="store_true", help="ResNet: a mask after the stem (alpha0)")
    p.add_argument("--final-relu", action="store_true", help="WRN: a mask after the final BN (alpha_final)")
    p.add_argument("--granularity", default="pixel", choices=["pixel", "channel"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="bench: cpu, cuda or cuda:N")
    a = p.parse_args(argv)
    if a.cmd == "fixture" and not a.out:
        p.error("fixture needs OUT_DIR")
    return a


def main(argv=None):
    a = parse(sys.argv[1:] if argv is None else argv)
    bench(a) if a.cmd == "bench" else fixture(a)


if __name__ == "__main__":
    main()
