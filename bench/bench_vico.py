"""vico training throughput: our step against a step written the original way.

Both steps train the same model on the same realistic batches: windows of the original
sampler (spec 3.1, time_size 90: 30-90 frames) drawn at random from clips of random length,
so the lengths in a batch usually differ. The original step pads each sample in a Python loop,
packs the batch with pack_padded_sequence (enforce_sorted=False), masks the prediction sample
by sample and takes the padding-inclusive loss means (spec 3.3). Ours pads with pad_sequence,
runs the LSTM unpacked (the fused kernel for any length mix; the bidirectional speaker runs
layer by layer with per-sample time reversal) and computes the loss vectorised. Before timing,
the losses of the two steps are compared on every batch with the same weights (dropout off,
``mean='padded'`` so both are the original loss); they must agree to 1e-5.

  python -m bench.bench_vico                          # both tasks, batch 4, 2 threads
  python -m bench.bench_vico --equal                  # plus all-90-frame batches
  python -m bench.bench_vico --task speaker --steps 60 --device cuda --threads 8

Figures: training samples per second; the last line prints the speed-up (the smaller of the
tasks' ratios on mixed-length batches).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from vico.data import WindowDataset, collate
from vico.data.features import ClipFeatures
from vico.losses import DEFAULT_WEIGHTS, GROUPS, TERM_NAMES, vico_loss
from vico.models import CONFIGS, build_model


def make_clips(n_clips: int, seed: int) -> list[ClipFeatures]:
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_clips):
        n = int(rng.integers(100, 400))
        f = lambda d: rng.standard_normal((n, d)).astype(np.float32)  # noqa: E731
        clips.append(ClipFeatures(f"c{i}", f(45), {"speaker": f(73), "listener": f(73)}, {}, {}))
    return clips


def batches(ds: WindowDataset, n: int, bs: int, seed: int, equal: bool) -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    full = [i for i, (_, s, e) in enumerate(ds.index) if e - s == 90]
    pool = full if equal else range(len(ds))
    return [[ds[int(j)] for j in rng.choice(pool, bs)] for _ in range(n)]


# ---- the original way (spec 3.1 / 3.3) ---------------------------------------------------------
def original_collate(items: list[dict]) -> dict:
    b, t = len(items), max(len(it["audio"]) for it in items)
    audio, driven = torch.zeros(b, t, items[0]["audio"].shape[1]), torch.zeros(b, t, 73)
    target = torch.zeros(b, t - 1, 73)
    lengths = []
    for i, it in enumerate(items):
        n = len(it["audio"])
        audio[i, :n] = it["audio"]
        driven[i, :n] = it["driven"]
        target[i, : n - 1] = it["target"]
        lengths.append(n)
    return {"audio": audio, "driven": driven, "init": torch.stack([it["init"] for it in items]),
            "target": target, "lengths": torch.tensor(lengths)}


def original_loss(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    pred = pred.clone()
    for i in range(pred.shape[0]):
        pred[i, int(lengths[i]) - 1:] = 0
    tgt = torch.zeros_like(pred)
    tgt[:, : target.shape[1]] = target
    losses = {}
    start = 0
    for name, d in GROUPS:
        p, g = pred[..., start:start + d], tgt[..., start:start + d]
        start += d
        losses[f"loss_{name}"] = F.pairwise_distance(p.reshape(-1, d), g.reshape(-1, d)).mean()
        dp, dg = p[:, 1:] - p[:, :-1], g[:, 1:] - g[:, :-1]
        losses[f"loss_{name}_spiky"] = F.pairwise_distance(dp.reshape(-1, d), dg.reshape(-1, d)).mean()
    return sum(DEFAULT_WEIGHTS[k] * losses[k] for k in TERM_NAMES)


def original_step(model, opt, items, device):
    b = original_collate(items)
    pred = model(b["audio"].to(device), b["driven"].to(device), b["init"].to(device), b["lengths"], packed=True)
    loss = original_loss(pred, b["target"].to(device), b["lengths"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def our_step(model, opt, items, device, mean="frames"):
    b = collate(items)
    pred = model(b["audio"].to(device), b["driven"].to(device), b["init"].to(device), b["lengths"])
    loss, _ = vico_loss(pred, b["target"].to(device), b["lengths"], mean=mean)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


# -------------------------------------------------------------------------------------------------
def check_losses(task: str, bs: list[list[dict]], device) -> float:
    """Largest relative difference between the two steps' losses (same weights, no dropout)."""
    torch.manual_seed(0)
    m = build_model(CONFIGS[f"baseline_{task}"]).to(device).eval()
    worst = 0.0
    with torch.no_grad():
        for items in bs:
            a, b = original_collate(items), collate(items)
            lo = original_loss(m(a["audio"].to(device), a["driven"].to(device), a["init"].to(device), a["lengths"],
                                 packed=True), a["target"].to(device), a["lengths"])
            ln = vico_loss(m(b["audio"].to(device), b["driven"].to(device), b["init"].to(device), b["lengths"]),
                           b["target"].to(device), b["lengths"], mean="padded")[0]
            worst = max(worst, abs(float(lo) - float(ln)) / abs(float(lo)))
    return worst


def throughput(step, task: str, bs: list[list[dict]], warmup: int, device) -> float:
    torch.manual_seed(0)
    m = build_model(CONFIGS[f"baseline_{task}"]).to(device).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05)
    for items in bs[:warmup]:
        step(m, opt, items, device)
    sync(device)
    t0 = time.perf_counter()
    for items in bs[warmup:]:
        step(m, opt, items, device)
    sync(device)
    return sum(len(x) for x in bs[warmup:]) / (time.perf_counter() - t0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["listener", "speaker", "both"], default="both")
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--equal", action="store_true", help="also measure batches of equal (90-frame) windows")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many interleaved runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ds_clips = make_clips(40, seed=0)
    tasks = ["listener", "speaker"] if args.task == "both" else [args.task]
    ratios = []
    print(f"device {device}, {args.threads} threads, batch {args.batch_size}, {args.steps} timed steps, "
          f"best of {args.repeats}")
    print(f"{'task':9s} {'batches':8s} {'original':>10s} {'ours':>10s} {'ratio':>7s}  (samples/s)")
    for task in tasks:
        ds = WindowDataset(ds_clips, task, 90)
        for equal in (False, True) if args.equal else (False,):
            bs = batches(ds, args.steps + args.warmup, args.batch_size, seed=1, equal=equal)
            diff = check_losses(task, bs, device)
            if diff > 1e-5:
                raise SystemExit(f"{task}: losses differ (relative {diff:.2e})")
            o = n = 0.0
            for _ in range(args.repeats):  # interleaved, best of: other load on the machine hits both alike
                o = max(o, throughput(original_step, task, bs, args.warmup, device))
                n = max(n, throughput(our_step, task, bs, args.warmup, device))
            kind = "equal-90" if equal else "mixed"
            mixed = sum(len({len(i["audio"]) for i in b}) > 1 for b in bs) / len(bs)
            print(f"{task:9s} {kind:8s} {o:10.1f} {n:10.1f} {n / o:6.2f}x  "
                  f"(loss rel. diff {diff:.1e}; {mixed:.0%} of batches mixed)")
            if not equal:
                ratios.append(n / o)
    print(f"speed-up of our training step on mixed-length batches (min over {', '.join(tasks)}): {min(ratios):.2f}x")


if __name__ == "__main__":
    main()
