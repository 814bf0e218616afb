"""Run under torchrun by test_common_dist.py: exercises common.dist on every rank."""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from common import dist
from common.io import RunReport


def main(out: Path, n_items: int) -> None:
    info = dist.init_dist("cpu")
    mine = dist.shard(list(range(n_items)), info)
    total = dist.all_reduce_sum(torch.tensor([float(info.rank + 1), 10.0]), info)
    scalar = dist.all_reduce_sum(float(len(mine)), info)
    arr = dist.all_reduce_sum(np.array([info.rank, 1.0]), info)
    gathered = dist.gather_objects({"rank": info.rank, "items": mine}, info)
    token = dist.broadcast_object("from-rank-0" if info.is_main else None, info)
    report = RunReport("worker", {"n": n_items}, out)
    for i in mine:
        report.ok(f"item{i:02d}")
    if info.rank == info.world_size - 1:
        report.fail("bad-item", "broken on the last rank")
    code = dist.finish_report(report, info)
    codes = dist.gather_objects(code, info)
    dist.barrier(info)
    if info.is_main:
        (out / "result.json").write_text(json.dumps({
            "world": info.world_size, "tensor": total.tolist(), "scalar": scalar, "array": arr.tolist(),
            "gathered": gathered, "token": token, "codes": codes}))
    dist.cleanup(info)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
