"""Writes small valid inputs for every fuzz target into corpus/<target>/ (run from fuzz/).

Standard library only, except the `pth` seeds, which need PyTorch (skipped without it), and
the JPEG seeds, taken from ../../shared/data/cifar10-jpeg when that folder exists.
Each seed reaches its parser's success path, so a run starts from real coverage.
"""

import gzip
import io
import json
import os
import struct
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

CORPUS = Path("corpus")


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors(tensors, metadata):
    """tensors: [(name, dtype, shape, bytes)]."""
    header, blob = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def png(width, height, color_type, depth, pixel, interlace=0, palette=None):
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = bytes(pixel) * width
    assert len(row) == width * channels * depth // 8 or depth < 8
    raw = b"".join(b"\x00" + row for _ in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace))
    if palette is not None:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pngs():
    return {
        "rgb8.png": png(4, 3, 2, 8, [10, 200, 30]),
        "grey8.png": png(3, 3, 0, 8, [77]),
        "greya8.png": png(2, 2, 4, 8, [77, 255]),
        "rgba8.png": png(2, 3, 6, 8, [1, 2, 3, 128]),
        "rgb16.png": png(2, 2, 2, 16, [0, 10, 1, 200, 2, 30]),
        "palette.png": png(3, 2, 3, 8, [1], palette=bytes([0, 0, 0, 255, 0, 0])),
    }


def jpegs(limit=4):
    root = Path("../../shared/data/cifar10-jpeg/test")
    if not root.is_dir():
        return {}
    files = sorted(root.glob("*/*.jpg"))[:limit]
    return {f"{f.parent.name}-{f.name}": f.read_bytes() for f in files}


def checkpoint_seeds():
    f32 = struct.pack("<6f", 0.5, -1.0, 2.0, 0.0, 3.5, -0.25)
    i64 = struct.pack("<q", 7)
    meta = {"arch": "resnet18", "classes": "10", "width": "4", "image_size": "32",
            "stem_stride": "1", "granularity": "pixel", "extra_activation": "false"}
    put("checkpoint", "resnet-meta", safetensors([("conv1.weight", "F32", [2, 3], f32),
                                                  ("bn1.num_batches_tracked", "I64", [], i64)], meta))
    wrn = {"arch": "wrn-16-2", "classes": "100", "granularity": "channel", "extra_activation": "true"}
    put("checkpoint", "wrn-meta", safetensors([("fc.weight", "F16", [2, 2], b"\x00\x3c" * 4),
                                               ("m", "BF16", [3], b"\x80\x3f" * 3)], wrn))
    put("checkpoint", "no-meta", safetensors([("x", "U8", [2, 2], b"\x01\x02\x03\x04")], None))


def cifar_seeds():
    rec10 = bytes([3]) + bytes(range(256)) * 12
    rec100 = bytes([5, 42]) + bytes(range(256)) * 12
    put("cifar", "ten-records", b"\x00" + rec10 * 2)
    put("cifar", "hundred-fine-records", b"\x01" + rec100 * 2)
    put("cifar", "hundred-coarse-records", b"\x02" + rec100)

    def tar_gz(members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    names10 = "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    put("cifar", "ten-test-tgz", b"\x08" + tar_gz([("cifar-10-batches-bin/batches.meta.txt", names10.encode()),
                                                   ("cifar-10-batches-bin/test_batch.bin", rec10)]))
    train = [(f"cifar-10-batches-bin/data_batch_{i}.bin", rec10) for i in range(1, 6)]
    put("cifar", "ten-train-tgz", b"\x0c" + tar_gz(train))
    put("cifar", "hundred-test-tgz", b"\x09" + tar_gz([("cifar-100-binary/test.bin", rec100)]))


def tiny_seeds(image):
    put("tiny", "text", b"n02\nn01\n\x00val_0.JPEG\tn01\t0\t0\t1\t1\nval_1.JPEG\tn02\t0\t0\t2\t2\n")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "n01\nn02\n")
        z.writestr("tiny-imagenet-200/val/val_annotations.txt", "val_0.png\tn01\t0\t0\t1\t1\nval_1.png\tn02\t0\t0\t1\t1\n")
        for i in range(2):
            z.writestr(f"tiny-imagenet-200/val/images/val_{i}.png", image)
        for w in ["n01", "n02"]:
            z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_0.png", image)
    put("tiny", "zip", buf.getvalue())


def pth_seeds():
    try:
        import torch
    except ImportError:
        print("no torch: skipping the pth seeds", file=sys.stderr)
        return
    from collections import OrderedDict

    torch.manual_seed(0)
    sd = OrderedDict()
    sd["conv1.weight"] = torch.randn(2, 1, 3, 3)
    sd["bn1.num_batches_tracked"] = torch.tensor(3)
    sd["fc.bias"] = torch.randn(3).half()
    sd["fc.weight.t"] = torch.randn(3, 2).t()  # not contiguous (Fortran order)
    base = torch.arange(6.0)
    sd["view"] = base[2:5]  # shares a storage, at an offset
    sd["base"] = base
    for name, obj in [
        ("bare", sd),
        ("authors", {"arch": "resnet18_in", "state_dict": sd, "optimizer": {"lr": 0.1}}),
        ("module", OrderedDict((f"module.{k}", v) for k, v in sd.items())),
    ]:
        buf = io.BytesIO()
        torch.save(obj, buf)
        put("pth", name, buf.getvalue())


def main():
    os.chdir(Path(__file__).resolve().parent)
    images = pngs()
    images.update(jpegs())
    for name, data in images.items():
        put("image", name, data)
    checkpoint_seeds()
    cifar_seeds()
    tiny_seeds(images["rgb8.png"])
    pth_seeds()


if __name__ == "__main__":
    main()
