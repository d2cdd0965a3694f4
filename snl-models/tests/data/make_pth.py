"""PyTorch-format checkpoints for the loading tests, from the resnet18_w4_channel fixture:
an authors'-style `{'arch', 'state_dict', 'optimizer'}` .pth.tar, the same with
DataParallel's `module.` prefixes, and a bare state_dict .pth."""
import torch
from safetensors.torch import load_file

sd = load_file("resnet18_w4_channel/model.safetensors")
torch.save({"arch": "resnet18_in", "state_dict": sd, "optimizer": {}}, "resnet18_w4.pth.tar")
torch.save({"arch": "resnet18_in", "state_dict": {"module." + k: v for k, v in sd.items()}, "optimizer": {}},
           "resnet18_w4_module.pth.tar")
torch.save(sd, "resnet18_w4_bare.pth")
print("wrote resnet18_w4.pth.tar, resnet18_w4_module.pth.tar, resnet18_w4_bare.pth")
