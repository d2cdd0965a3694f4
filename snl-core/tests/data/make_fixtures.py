#!/usr/bin/env python3
"""Golden numbers from PyTorch for snl-core's tests. Regenerate with
    python3 snl-core/tests/data/make_fixtures.py snl-core/tests/data/core.safetensors
(PyTorch 2.15, safetensors 0.8). Everything in float32; seeds fixed.
"""
import sys
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}

# Masked activation y = a * relu(x) + (1 - a) * x (the authors' LearnableAlpha), pixel and
# channel masks, alphas deliberately outside [0, 1] too; gradients for an upstream g.
x = torch.randn(2, 3, 4, 5)
x[0, 0, 0, 0] = 0.0  # relu's kink: PyTorch's gradient there is 0
g = torch.randn(2, 3, 4, 5)
out["mask.x"] = x.clone()
out["mask.g"] = g.clone()
for name, shape in (("pixel", (1, 3, 4, 5)), ("channel", (1, 3, 1, 1))):
    a = (torch.rand(shape) * 2.0 - 0.5).requires_grad_()
    xi = x.clone().requires_grad_()
    y = a * F.relu(xi) + (1 - a) * xi
    (y * g).sum().backward()
    out[f"mask.{name}.alphas"] = a.detach()
    out[f"mask.{name}.y"] = y.detach()
    out[f"mask.{name}.dx"] = xi.grad
    out[f"mask.{name}.dalphas"] = a.grad

# Losses: cross-entropy, KD at T = 4 (kl_div batchmean * T^2), lasso over two masks.
s = torch.randn(6, 10) * 3
t = torch.randn(6, 10) * 3
y = torch.randint(0, 10, (6,))
out["loss.student"], out["loss.teacher"], out["loss.labels"] = s, t, y
out["loss.ce"] = F.cross_entropy(s, y).reshape(1)
out["loss.kd_t4"] = (F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") * 16).reshape(1)
out["loss.kd_t1"] = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean").reshape(1)
out["loss.lasso"] = (out["mask.pixel.alphas"].abs().sum() + out["mask.channel.alphas"].abs().sum()).reshape(1)

# Optimizers: three steps on loss_k = sum(p * g_k) (so grad = g_k), p after each step.
p0 = torch.randn(5, 7)
grads = [torch.randn(5, 7) for _ in range(3)]
out["optim.p0"] = p0
for k, gk in enumerate(grads):
    out[f"optim.g{k}"] = gk
settings = {
    "adam": lambda p: torch.optim.Adam([p], lr=1e-3),
    "adam_wd": lambda p: torch.optim.Adam([p], lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    "sgd": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=5e-4),
    "sgd_nesterov": lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True),
    "sgd_plain": lambda p: torch.optim.SGD([p], lr=0.1),
}
for name, make in settings.items():
    p = p0.clone().requires_grad_()
    opt = make(p)
    for k, gk in enumerate(grads):
        opt.zero_grad()
        (p * gk).sum().backward()
        opt.step()
        out[f"optim.{name}.p{k + 1}"] = p.detach().clone()

# Learning-rate schedules, stepped once per epoch.
def lrs(sched_fn, epochs):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = sched_fn(opt)
    values = []
    for _ in range(epochs):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(values, dtype=torch.float64)

out["lr.cosine_10"] = lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10), 10)
out["lr.multistep_80_120"] = lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [80, 120], 0.1), 160)

save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[1])
print(f"wrote {sys.argv[1]}: {len(out)} tensors")
