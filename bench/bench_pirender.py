"""PIRender rendering throughput: the whole inference command against the network alone.

Baseline: the generator's forward pass alone (batches of --batch_size frames, driving windows
and source already tensors), frames per second. Measured: ``python -m PIRender.inference`` run
as a subprocess on an LMDB holding the same frames (LMDB read, windows, network, clamp/uint8,
H.264 encode, AAC mux, run.json), frames per second of its rendering loop as it logs it (the
one-off start-up, imports and checkpoint load are printed separately). Weights are fill-rule
smoke-test weights in the released layout (same cost as the real ones). The last line prints
``command / network`` (goal >= 0.9).

  python -m bench.bench_pirender                       # 24 frames at 256 px, batch 8
  python -m bench.bench_pirender --frames 60 --batch_size 4 --device cuda
  python -m bench.bench_pirender --precision_check     # + bf16-autocast vs fp32 output difference
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def _make_lmdb(root: Path, n: int, size: int) -> Path:
    from scipy.io import savemat

    from common.media import write_video, write_wav
    from PIRender.prepare_vox_lmdb import PrepareConfig, prepare

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.stack([np.stack([(xx + 3 * t) % 256, (yy + 2 * t) % 256, np.full_like(xx, 120)], -1)
                       for t in range(n)]).astype(np.uint8)
    write_video(root / "videos" / "bench.speaker.mp4", frames)
    coeff = (0.1 * rng.standard_normal((n, 257))).astype(np.float32)
    tp = np.tile([[size, size, 3.0, 110.0, 120.0]], (n, 1))
    (root / "recons").mkdir(parents=True)
    savemat(root / "recons" / "bench.speaker.mat", {"coeff": coeff, "transform_params": tp})
    write_wav(root / "audios" / "bench.wav", 0.2 * np.sin(np.arange(int(n / 30 * 44100)) * 0.05), 44100)
    report = prepare(PrepareConfig(str(root / "videos"), str(root / "recons"), str(root / "lmdb"), sizes=(size,),
                                   n_worker=1))
    assert not report.failures, report.failures
    return root / "lmdb"


def _network_fps(model, windows: np.ndarray, source: torch.Tensor, batch: int, device: torch.device,
                 precision: str) -> float:
    from PIRender.engine.render import Renderer

    r = Renderer(model, device, batch, precision, channels_last=device.type == "cuda")
    w = torch.from_numpy(windows)
    r.render_tensors(source.expand(min(batch, len(w)), -1, -1, -1), w[:batch])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(0, len(w), batch):
        wb = w[s:s + batch]
        out = r.render_tensors(source.expand(len(wb), -1, -1, -1), wb)
        out.cpu()
    return len(w) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=24, help="frames rendered per measurement")
    p.add_argument("--size", type=int, default=256, help="image size")
    p.add_argument("--batch_size", type=int, default=8, help="frames per generator call")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="network precision (both runs)")
    p.add_argument("--precision_check", action="store_true", help="also print max |bf16 - fp32| on 2 frames")
    a = p.parse_args()
    torch.set_flush_denormal(True)  # as the CLI does
    device = torch.device(a.device)

    from common.smoke_weights import make_smoke_checkpoint
    from PIRender.data.vox_lmdb import VoxLMDB, image_to_tensor_array
    from PIRender.engine.checkpoint import load_generator
    from PIRender.engine.render import driving_windows

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lmdb = _make_lmdb(root, a.frames, a.size)
        ckpt = make_smoke_checkpoint("pirender_face_generator", root / "w" / "face.pt")
        with VoxLMDB(lmdb, a.size) as db:
            windows = driving_windows(db.coeffs("bench.speaker"))
            source = torch.from_numpy(image_to_tensor_array(db.frame("bench.speaker", 0)[None])).to(device)
        model = load_generator(ckpt, device).model
        print(f"{a.frames} frames at {a.size} px, batch {a.batch_size}, {device}, {a.precision}, "
              f"torch threads {torch.get_num_threads()}")
        net1 = _network_fps(model, windows, source, a.batch_size, device, a.precision)
        print(f"network only:           {net1:.3f} frames/s")

        cmd = [sys.executable, "-m", "PIRender.inference", "--input", str(lmdb), "--size", str(a.size),
               "--checkpoint", str(ckpt), "--output_dir", str(root / "out"), "--batch_size", str(a.batch_size),
               "--device", a.device, "--audio_dir", str(root / "audios"), "--precision", a.precision]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(f"inference failed:\n{r.stderr}")
        m = re.search(r"(\d+) frames in ([\d.]+) s", r.stderr)
        loop_s = float(m.group(2))
        cmd_fps = int(m.group(1)) / loop_s
        print(f"inference command loop: {cmd_fps:.3f} frames/s (LMDB, windows, network, encode, mux)")
        print(f"inference command wall: {wall:.1f} s incl. {wall - loop_s:.1f} s start-up + checkpoint load")
        net2 = _network_fps(model, windows, source, a.batch_size, device, a.precision)
        net = (net1 + net2) / 2
        print(f"network only (again):   {net2:.3f} frames/s; mean {net:.3f}")
        if a.precision_check:
            from PIRender.engine.render import Renderer

            w = torch.from_numpy(windows[:2])
            src = source.expand(2, -1, -1, -1)
            ref = Renderer(model, device, 2, "fp32").render_tensors(src, w)
            bf = Renderer(model, device, 2, "bf16").render_tensors(src, w)
            d = (bf - ref).abs()
            print(f"bf16 autocast vs fp32 on {device}: max |diff| {float(d.max()):.4f}, mean {float(d.mean()):.5f} "
                  f"(images in [-1, 1]; 1 grey level = {2 / 255:.4f})")
    print(f"pirender inference command / network-only frames/s: {cmd_fps / net:.3f}")


if __name__ == "__main__":
    main()
