#!/usr/bin/env python3
"""One private inference of an snl model in SPU (Cheetah 2PC, semi-honest), per variant.

The network is built in JAX from the weights `snl export` writes (PyTorch names, binarized
masks, snl metadata), in the spirit of torch_snl.py. Both parties run in this process, one
in-memory link each (SPU's simulator pattern); the input and the weights are secret, the
masks (which positions stay ReLUs) are public. Each measured run happens in a child process
whose log holds SPU's per-party `Link details: total send bytes B, ... send actions A`.

Variants at batch 1: all_relu (every mask 1), masked (a*relu(x) + (1-a)*x, `a` a public
constant), compact (ReLU on the gathered kept positions only, scattered back), one_relu
(compact with a single kept ReLU: what a session pays once, however few ReLUs it keeps),
and identity (no ReLU at all): bytes_relu = bytes_total - identity's bytes_total.
Each variant runs two inferences in one session: the first pays the session's one-time
setup (keys, OT), the `warm_*` fields are the next one's, what each later query costs.

With --onnx (the same model from `snl export --format onnx`), it is first run in onnxruntime:
its logits must match --expect within 1e-4, and the elements entering its Relu ops must be
exactly the kept ReLUs.

    python pi_cost.py --weights W.safetensors --input X.safetensors --expect L.safetensors \
        [--onnx M.onnx] --model NAME --out results/pi-cost/NAME.json
"""
import argparse, json, os, re, struct, subprocess, sys, time

import numpy as np

VARIANTS = ["identity", "all_relu", "masked", "compact", "one_relu"]
DTYPES = {"F32": np.float32, "I64": np.int64, "U8": np.uint8, "U32": np.uint32}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], DTYPES[t["dtype"]]).reshape(t["shape"])
    return out, meta


def fold(w, sd, bn):
    """Eval-mode BatchNorm `bn` folded into conv weight `w` (or alone when w is None)."""
    scale = sd[bn + ".weight"] / np.sqrt(sd[bn + ".running_var"] + 1e-5)
    shift = sd[bn + ".bias"] - sd[bn + ".running_mean"] * scale
    return (None if w is None else w * scale[:, None, None, None]), shift, scale


def plan(sd, meta):
    """The network as (op, ...) steps over PyTorch names: conv, affine, act, add, head."""
    steps, params = [], {}

    def conv(x, prefix, bn, stride):
        w, b = sd[prefix + ".weight"], None
        if bn:
            w, b, _ = fold(w, sd, bn)
        params[prefix + ".w"], params[prefix + ".b"] = w, b
        steps.append(("conv", x, prefix, stride))
        return prefix

    def affine(x, bn):
        _, shift, scale = fold(None, sd, bn)
        params[bn + ".scale"], params[bn + ".shift"] = scale, shift
        steps.append(("affine", x, bn))
        return bn

    def act(x, site):
        steps.append(("act", x, site))
        return site

    def add(a, b, name):
        steps.append(("add", a, b, name))
        return name

    arch, extra = meta["arch"], meta.get("extra_activation") == "true"
    stem = int(meta.get("stem_stride", 1))
    if arch.startswith("resnet"):
        blocks = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[arch]
        x = conv("input", "conv1", "bn1", stem)
        if extra:
            x = act(x, "alpha0")
        for s, n in enumerate(blocks):
            for b in range(n):
                p, stride = f"layer{s + 1}.{b}", 2 if s > 0 and b == 0 else 1
                o = act(conv(x, p + ".conv1", p + ".bn1", stride), p + ".alpha1")
                o = conv(o, p + ".conv2", p + ".bn2", 1)
                r = conv(x, p + ".shortcut.0", p + ".shortcut.1", stride) if p + ".shortcut.0.weight" in sd else x
                x = act(add(o, r, p + ".add"), p + ".alpha2")
        head = "linear"
    else:
        per = (int(arch.split("-")[1]) - 4) // 6
        x = conv("input", "conv1", None, stem)
        for g in range(3):
            for b in range(per):
                p, stride = f"block{g + 1}.layer.{b}", 2 if g > 0 and b == 0 else 1
                o = act(affine(x, p + ".bn1"), p + ".alpha1")
                out = act(conv(o, p + ".conv1", p + ".bn2", stride), p + ".alpha2")
                out = conv(out, p + ".conv2", None, 1)
                r = conv(o, p + ".convShortcut", None, stride) if p + ".convShortcut.weight" in sd else x
                x = add(out, r, p + ".add")
        x = affine(x, "bn1")
        if extra:
            x = act(x, "alpha_final")
        head = "fc"
    params["head.w"], params["head.b"] = sd[head + ".weight"], sd[head + ".bias"]
    steps.append(("head", x))
    return steps, {k: v for k, v in params.items() if v is not None}


def forward(steps, masks, variant, params, x):
    """The network on `x` (JAX); `masks[site]` is the public 0/1 mask, alphas-shaped."""
    import jax.numpy as jnp
    from jax import lax

    env = {"input": x}
    for step in steps:
        if step[0] == "conv":
            _, src, p, s = step
            w = params[p + ".w"]
            pad = w.shape[2] // 2
            y = lax.conv_general_dilated(env[src], w, (s, s), [(pad, pad)] * 2)
            env[p] = y + params[p + ".b"][None, :, None, None] if p + ".b" in params else y
        elif step[0] == "affine":
            _, src, bn = step
            env[bn] = env[src] * params[bn + ".scale"][None, :, None, None] + params[bn + ".shift"][None, :, None, None]
        elif step[0] == "add":
            env[step[3]] = env[step[1]] + env[step[2]]
        elif step[0] == "act":
            _, src, site = step
            env[site] = activation(env[src], np.broadcast_to(masks[site], (1,) + env[src].shape[1:]), variant, jnp)
        else:
            pooled = env[step[1]].mean(axis=(2, 3))
            return pooled @ params["head.w"].T + params["head.b"]


def activation(x, mask, variant, jnp):
    if variant == "identity" or (variant == "compact" and not mask.any()):
        return x
    if variant == "all_relu" or (variant == "compact" and mask.all()):
        return jnp.maximum(x, 0)
    if variant == "masked":
        a = mask.astype(np.float32)
        return a * jnp.maximum(x, 0) + (1 - a) * x
    kept = np.flatnonzero(mask.reshape(-1))  # public: the linearized architecture
    flat = x.reshape(x.shape[0], -1)
    return flat.at[:, kept].set(jnp.maximum(flat[:, kept], 0)).reshape(x.shape)


def one_kept(steps, masks):
    """The masks with one ReLU kept: the first position of the first site, all else linear."""
    first = next(step[2] for step in steps if step[0] == "act")
    out = {site: np.zeros_like(m) for site, m in masks.items()}
    out[first].reshape(-1)[0] = True
    return out


def load(args):
    sd, meta = read_safetensors(args.weights)
    steps, params = plan(sd, meta)
    masks = {k[: -len(".alphas")]: v.astype(bool) for k, v in sd.items() if k.endswith(".alphas")}
    x = read_safetensors(args.input)[0]["x"].astype(np.float32)
    return steps, params, masks, meta, x


def measure(args):
    """One variant in SPU; prints a JSON line. Each party's runtime logs its link statistics."""
    import threading
    import jax.numpy as jnp
    import spu.libspu as libspu
    import spu.utils.frontend as spu_fe
    from spu import api as spu_api

    steps, params, masks, _, x = load(args)
    variant = args.measure
    if variant == "one_relu":
        masks, variant = one_kept(steps, masks), "compact"
    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.CHEETAH, field=libspu.FieldType.FM64)
    config.enable_pphlo_profile = True
    flat = [np.asarray(v) for v in params.values()] + [x]
    names = [f"in{i}" for i in range(len(flat))]
    keys = list(params)

    def net(*a):
        return forward(steps, masks, variant, dict(zip(keys, a[:-1])), a[-1])

    secret = [libspu.Visibility.VIS_SECRET] * len(flat)
    exe, _ = spu_fe.compile(spu_fe.Kind.JAX, net, flat, {}, names, secret, lambda out: ["logits"])
    io = spu_api.Io(2, config)
    shares = [io.make_shares(v, libspu.Visibility.VIS_SECRET) for v in flat]
    desc = libspu.link.Desc()
    for rank in range(2):
        desc.add_party(f"id_{rank}", f"thread_{rank}")
    outs, seconds, barrier = [None, None], [0.0, 0.0], threading.Barrier(2)

    def party(rank):
        rt = spu_api.Runtime(libspu.link.create_mem(desc, rank), libspu.RuntimeConfig(config))
        for name, share in zip(names, shares):
            rt.set_var(name, share[rank])
        for run in range(2):  # the first inference of a session, then the next one
            barrier.wait()
            start = time.time()
            rt.run(exe)
            barrier.wait()
            seconds[run] = time.time() - start
        outs[rank] = rt.get_var("logits")

    threads = [threading.Thread(target=party, args=(r,)) for r in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if any(o is None for o in outs):
        sys.exit("pi_cost: a party failed")
    out = np.asarray(io.reconstruct(outs))
    print("RESULT " + json.dumps({"seconds": seconds, "logits": out.reshape(-1).tolist()}), flush=True)


def check_onnx(path, x, want, kept):
    """The exported ONNX model in onnxruntime: logits, and the elements its Relu ops take."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    relu_inputs = [n.input[0] for n in model.graph.node if n.op_type == "Relu"]
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in relu_inputs)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = session.run(["logits"] + relu_inputs, {"input": x})
    err = float(np.abs(outs[0] - want).max() / max(np.abs(want).max(), 1e-12))
    relus = sum(o.size for o in outs[1:])
    print(f"onnxruntime {ort.__version__}: {path}: max relative difference {err:.2e} to snl predict, "
          f"{relus} elements enter its {len(relu_inputs)} Relu ops (kept: {kept})", file=sys.stderr)
    if err > 1e-4:
        sys.exit(f"pi_cost: onnxruntime's logits differ from snl predict's ({err:.2e} > 1e-4)")
    if relus != kept:
        sys.exit(f"pi_cost: {relus} elements enter the ONNX model's Relu ops, not the {kept} kept ReLUs")


LINK = re.compile(r"Link details: total send bytes (\d+), recv bytes (\d+), send actions (\d+)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ["--weights", "--input"]:
        ap.add_argument(flag, required=True)
    ap.add_argument("--expect", help="snl predict's logits for --input (checked in plaintext)")
    ap.add_argument("--onnx", help="the model as `snl export --format onnx` wrote it (checked in onnxruntime)")
    ap.add_argument("--model", default="model")
    ap.add_argument("--out")
    ap.add_argument("--variants", default=",".join(VARIANTS[1:]))
    ap.add_argument("--measure", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        return measure(args)
    import jax.numpy as jnp
    import spu

    steps, params, masks, meta, x = load(args)
    plain = np.asarray(forward(steps, masks, "masked", {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x)))
    if args.expect:
        want = read_safetensors(args.expect)[0]["logits"]
        err = float(np.abs(plain - want).max() / max(np.abs(want).max(), 1e-12))
        print(f"plaintext JAX vs snl predict: max relative difference {err:.2e}", file=sys.stderr)
        if err > 1e-4:
            sys.exit(f"pi_cost: the JAX network does not match snl predict ({err:.2e} > 1e-4)")
    total, kept = int(meta["relu_total"]), int(meta["relu_count"])
    if args.onnx:
        if not args.expect:
            sys.exit("pi_cost: --onnx needs --expect (snl predict's logits)")
        check_onnx(args.onnx, x, read_safetensors(args.expect)[0]["logits"], kept)
    rows, base = [], None
    for variant in ["identity"] + [v for v in args.variants.split(",") if v != "identity"]:
        print(f"measuring {args.model} {variant} in SPU {spu.__version__} (Cheetah) ...", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--weights", args.weights, "--input", args.input, "--measure", variant]
        p = subprocess.run(cmd, capture_output=True, text=True)
        log = p.stdout + p.stderr
        links = [tuple(map(int, m)) for m in LINK.findall(log)]
        result = [json.loads(l[7:]) for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        if p.returncode != 0 or not links or not result:
            sys.exit(f"pi_cost: the {variant} run failed (exit {p.returncode}):\n{log[-3000:]}")
        if len(links) != 4:
            sys.exit(f"pi_cost: the {variant} run logged {len(links)} link lines, not 2 parties x 2 inferences")
        spu_logits = np.array(result[0]["logits"])
        # Each party logs its link after each inference: the first two lines are the first.
        first, warm = links[:2], links[2:]
        sent, warm_sent = sum(l[0] for l in first), sum(l[0] for l in warm)
        row = {"variant": variant, "engine": f"spu {spu.__version__}", "protocol": "cheetah", "model": args.model,
               "relus_total": total, "relus_kept": {"identity": 0, "all_relu": total, "one_relu": 1}.get(variant, kept),
               "bytes_total": sent, "bytes_relu": 0 if base is None else sent - base[0],
               "rounds": max(l[2] for l in first), "seconds": round(result[0]["seconds"][0], 2),
               "warm_bytes_total": warm_sent, "warm_bytes_relu": 0 if base is None else warm_sent - base[1],
               "warm_rounds": max(l[2] for l in warm), "warm_seconds": round(result[0]["seconds"][1], 2)}
        if variant != "identity":
            plain = ("compact", one_kept(steps, masks)) if variant == "one_relu" else (variant, masks)
            want = np.asarray(forward(steps, plain[1], plain[0], params, x)).reshape(-1)
            row["max_abs_error"] = float(np.abs(spu_logits - want).max())
            scale = float(np.abs(want).max()) or 1.0
            if row["max_abs_error"] > 0.01 * scale:
                print(f"pi_cost: warning: {variant}'s secure logits differ from plaintext by "
                      f"{row['max_abs_error']:.4g} (largest logit {scale:.4g}): its bytes are "
                      "those of a run that did not compute the same network exactly", file=sys.stderr)
        if base is None:
            base = (sent, warm_sent)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(f"{'':<19}{'first inference of a session':>34}   {'next inference':>26}")
    print(f"{'variant':<9} {'kept':>9} {'MB sent':>9} {'MB relu':>9} {'rounds':>7} {'s':>7}"
          f"   {'MB sent':>9} {'MB relu':>9} {'rounds':>7} {'s':>7}")
    for r in rows:
        print(f"{r['variant']:<9} {r['relus_kept']:>9} {r['bytes_total'] / 1e6:>9.2f} {r['bytes_relu'] / 1e6:>9.2f} "
              f"{r['rounds']:>7} {r['seconds']:>7}   {r['warm_bytes_total'] / 1e6:>9.2f} "
              f"{r['warm_bytes_relu'] / 1e6:>9.2f} {r['warm_rounds']:>7} {r['warm_seconds']:>7}")
    if args.out:
        # Written whole, then linked into place: never a truncated file, never over another.
        tmp = f"{args.out}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
            f.write("\n")
        try:
            os.link(tmp, args.out)
        finally:
            os.unlink(tmp)


if __name__ == "__main__":
    main()
