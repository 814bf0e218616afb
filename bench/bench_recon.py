"""Deep3DFaceRecon stage throughput: the whole stage against the network alone.

On a small synthetic dataset (common.synthetic) this measures
  1. landmarks (dlib): frames/s detecting on every frame and on every N-th frame, and the mean
     landmark difference between the two (--detect_every);
  2. alignment: the upstream recipe (PIL resize of the whole frame, then crop) and ours;
  3. the network alone at several batch sizes (to choose the default);
  4. the whole reconstruction stage (decode, align, network, write .mat; in-process, model
     loaded beforehand) and the network alone on the same frames and batch size;
  5. the same two figures while another process keeps one core busy, with the torch threads the
     stage picks by default (common.dist.thread_count: $OMP_NUM_THREADS, else the CPUs this
     process may use): the stage must not fall apart on a shared machine (--skip_busy to skip);
  6. peak memory (max RSS of a child process running the stage's data path: decode, align,
     batching, collecting, writing) for a long video over a short one (--skip_memory to skip).
Weights are fill-rule weights (timing does not depend on their values). The last line prints
the ratio stage fps / network fps (goal >= 0.8) and, with one core busy, the same ratio
(goal >= 0.7).

  python -m bench.bench_recon                         # ~1-2 min on 2 CPU threads
  python -m bench.bench_recon --frames 240 --batch_size 8 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.media import pin_mmap_threshold
from common.artifacts import save_recon_mat
from common import dist
from common.faces import get_backend, track_landmarks
from common.media import VideoWriter, read_video
from common.smoke_weights import fill_state_dict
from Deep3DFaceRecon_pytorch import face_recon_videos as frv
from Deep3DFaceRecon_pytorch.data import align
from Deep3DFaceRecon_pytorch.data.keypoints import load_keypoints, save_keypoints
from Deep3DFaceRecon_pytorch.data.stream import VideoJob, iter_batches
from Deep3DFaceRecon_pytorch.models.recon_net import build_recon_net

NET = "deep3dfacerecon_reconnet_resnet50"


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _net_fps(net, crops: torch.Tensor, batch_size: int, device: torch.device, min_s: float = 0.0) -> float:
    """Frames/s of the network over ``crops`` in batches (repeated until ``min_s`` elapsed)."""
    with torch.inference_mode():
        net(crops[:batch_size].to(device))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while True:
            for i in range(0, len(crops), batch_size):
                net(crops[i:i + batch_size].to(device)).cpu()
                n += len(crops[i:i + batch_size])
            if time.perf_counter() - t0 >= min_s:
                break
        return n / (time.perf_counter() - t0)


def _landmarks(videos: list[Path], kp_dir: Path, detect_every: int) -> tuple[float, float, float]:
    backend = get_backend("dlib")
    t_all = t_sparse = 0.0
    diffs = []
    for v in videos:
        frames = read_video(v)
        dt, (lm1, f1) = _timed(lambda: track_landmarks(frames, backend, 1, return_found=True))
        t_all += dt
        dt, (lmn, fn) = _timed(lambda: track_landmarks(frames, backend, detect_every, return_found=True))
        t_sparse += dt
        both = f1 & fn
        diffs.append(np.linalg.norm(lm1[both] - lmn[both], axis=-1).reshape(-1))
        save_keypoints(kp_dir / (v.stem + ".txt"), lm1)
    n = sum(len(load_keypoints(kp_dir / (v.stem + ".txt"))) for v in videos)
    return n / t_all, n / t_sparse, float(np.concatenate(diffs).mean())


def _loop_video(src: Path, dst: Path, n: int) -> None:
    frames = read_video(src)
    with VideoWriter(dst, preset="ultrafast") as w:
        for i in range(0, n, len(frames)):
            w.write(frames[: min(len(frames), n - i)])


def _busy_core(seconds: float) -> subprocess.Popen:
    """Another process spinning on one core for ``seconds`` (it stops by itself)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _proc_status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(video: str, kp: str, out: str, batch_size: int) -> None:
    """The stage's data path on one video, network replaced by zeros; prints max RSS (MiB)."""
    pin_mmap_threshold()  # as face_recon_videos.main does
    start_mib = _proc_status_mib("VmRSS")
    jobs = [VideoJob("v", Path(video), Path(kp), Path(out))]
    rows = []
    for b in iter_batches(jobs, batch_size):
        rows.append((b.crops.shape[0], b.trans))
        assert not b.failed, b.failed
    n = sum(r[0] for r in rows)
    save_recon_mat(Path(out), np.zeros((n, 257), np.float32), np.concatenate([r[1] for r in rows]))
    # VmHWM, not getrusage: Linux carries ru_maxrss over from the parent across fork + exec.
    peak = _proc_status_mib("VmHWM")
    print(json.dumps({"frames": n, "maxrss_mib": peak, "growth_mib": peak - start_mib}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=80, help="frames in the stage run (2 videos) (default 80)")
    p.add_argument("--batch_size", type=int, default=0,
                   help="stage batch size (default 0: the CLI's automatic choice for the device)")
    p.add_argument("--sweep", default="1,4,16", help="batch sizes for the network-only sweep (default 1,4,16)")
    p.add_argument("--detect_every", type=int, default=5, help="sparse detection interval (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="alternating stage / network rounds (default 3)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--mem_frames", default="300,1800", help="short,long video for the memory ratio")
    p.add_argument("--skip_memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--skip_busy", action="store_true", help="skip the measurement with one core kept busy")
    p.add_argument("--_memory_child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a._memory_child:
        _memory_child(*a._memory_child, a.batch_size)
        return
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    a.batch_size = a.batch_size or frv.AUTO_BATCH.get(device.type, 1)
    from common.synthetic import generate

    with tempfile.TemporaryDirectory(prefix="bench_recon_") as tmp:
        tmp = Path(tmp)
        root = generate(tmp / "syn", pairs=1, frames=max(a.frames // 2, 30), seed=0)
        videos = sorted((Path(root) / "videos").rglob("*.mp4"))
        print(f"data: {len(videos)} synthetic videos, {a.frames // 2} frames each, 256x256; "
              f"torch threads {a.threads}, device {device}")

        fps1, fpsn, diff = _landmarks(videos, tmp / "kp", a.detect_every)
        print(f"landmarks dlib, detect every frame:   {fps1:7.1f} frames/s")
        print(f"landmarks dlib, detect every {a.detect_every}th:    {fpsn:7.1f} frames/s  "
              f"(x{fpsn / fps1:.2f}, mean landmark difference {diff:.3f} px)")

        frames = read_video(videos[0])[:60]
        lms = load_keypoints(tmp / "kp" / (videos[0].stem + ".txt"))
        tps = [align.solve_transform(lm, 256, 256) for lm in lms[: len(frames)]]
        t_ref, _ = _timed(lambda: [align.align_frame_reference(f, tp) for f, tp in zip(frames, tps)])
        t_fast, crops = _timed(lambda: [align.align_frame(f, tp) for f, tp in zip(frames, tps)])
        print(f"alignment upstream recipe (full resize): {len(frames) / t_ref:7.1f} frames/s")
        print(f"alignment ours (same pixels):            {len(frames) / t_fast:7.1f} frames/s")
        if device.type == "cuda":
            fr = torch.from_numpy(np.stack(frames)).to(device)
            tp_t = torch.from_numpy(np.stack(tps))
            align.align_batch_torch(fr, tp_t)
            torch.cuda.synchronize()
            t_gpu, out = _timed(lambda: (align.align_batch_torch(fr, tp_t), torch.cuda.synchronize())[0])
            ref = align.to_network_input(np.stack(crops)).to(device)
            d = (out - ref).abs() * 255
            print(f"alignment batched on {device}:          {len(frames) / t_gpu:7.1f} frames/s "
                  f"(vs PIL: max {d.max().item():.1f}, mean {d.mean().item():.4f} grey levels)")

        net = build_recon_net(fill_state_dict(NET), device)
        x = align.to_network_input(np.stack(crops))
        for bs in [int(s) for s in a.sweep.split(",") if s]:
            print(f"network alone, batch {bs:3d}:  {_net_fps(net, x, bs, device, min_s=3.0):7.1f} frames/s")

        cfg = frv.ReconConfig(input_dir=str(Path(root) / "videos"), keypoint_dir=str(tmp / "kp"),
                              output_dir=str(tmp / "rec"), batch_size=a.batch_size, device=a.device)
        info = dist.DistInfo(device=device)
        n_frames = sum(len(load_keypoints(tmp / "kp" / (v.stem + ".txt"))) for v in videos)
        xs = torch.cat([b.crops for b in iter_batches(frv.make_jobs(cfg), 64)])  # same frames
        # Stage and network alone in alternating rounds, best of each: on a shared machine
        # this keeps a burst of someone else's load from landing on one side only.
        stage_fps = net_fps = 0.0
        stage_cpu = net_cpu = 0.0
        for r in range(a.rounds):
            cfg.output_dir = str(tmp / f"rec{r}")
            c0, (t_stage, report) = time.process_time(), _timed(lambda: frv.run(cfg, info, net))
            assert not report.failures, report.failures
            stage_fps = max(stage_fps, n_frames / t_stage)
            stage_cpu = max(stage_cpu, n_frames / (time.process_time() - c0))
            c0 = time.process_time()
            net_fps = max(net_fps, _net_fps(net, xs, a.batch_size, device))
            net_cpu = max(net_cpu, n_frames / (time.process_time() - c0))
        print(f"stage (decode, align, network, write), batch {a.batch_size}: {stage_fps:7.1f} frames/s "
              f"({n_frames} frames, best of {a.rounds}; {stage_cpu:.1f} frames per CPU-second)")
        print(f"network alone on the same frames, batch {a.batch_size}:    {net_fps:7.1f} frames/s "
              f"({net_cpu:.1f} frames per CPU-second; CPU-time ratio {stage_cpu / net_cpu:.3f})")

        busy_ratio = None
        if not a.skip_busy:
            threads = dist.configure_threads()  # as the stage sets them when --threads is not given
            busy = _busy_core(600)
            try:
                time.sleep(0.5)
                stage_b = net_b = 0.0
                for r in range(a.rounds):
                    cfg.output_dir = str(tmp / f"busy{r}")
                    t_stage, report = _timed(lambda: frv.run(cfg, info, net))
                    assert not report.failures, report.failures
                    stage_b = max(stage_b, n_frames / t_stage)
                    net_b = max(net_b, _net_fps(net, xs, a.batch_size, device))
            finally:
                busy.kill()
                busy.wait()
                torch.set_num_threads(a.threads)
            busy_ratio = stage_b / net_b
            print(f"one core busy, {threads} torch thread(s): stage {stage_b:7.1f} frames/s, network alone "
                  f"{net_b:7.1f} frames/s, ratio {busy_ratio:.3f} (goal >= 0.7)")

        if not a.skip_memory:
            short, long_ = (int(s) for s in a.mem_frames.split(","))
            rss = {}
            for n in (short, long_):
                v = tmp / f"mem_{n}.mp4"
                _loop_video(videos[0], v, n)
                kp = tmp / f"mem_{n}.txt"
                save_keypoints(kp, np.resize(lms, (n, 68, 2)))
                env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
                r = subprocess.run([sys.executable, "-m", "bench.bench_recon", "--batch_size", str(a.batch_size),
                                    "--_memory_child", str(v), str(kp), str(tmp / f"mem_{n}.mat")],
                                   capture_output=True, text=True, env=env, check=True)
                rss[n] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"peak memory (data path): {short} frames {rss[short]['maxrss_mib']:.0f} MiB "
                  f"(+{rss[short]['growth_mib']:.0f} while running), {long_} frames "
                  f"{rss[long_]['maxrss_mib']:.0f} MiB (+{rss[long_]['growth_mib']:.0f}), "
                  f"ratio {rss[long_]['maxrss_mib'] / rss[short]['maxrss_mib']:.3f} (goal <= 1.2)")
    busy = "" if busy_ratio is None else f"; with one core busy: {busy_ratio:.3f} (goal >= 0.7)"
    print(f"stage/network fps ratio: {stage_fps / net_fps:.3f} (goal >= 0.8){busy}")


if __name__ == "__main__":
    main()
