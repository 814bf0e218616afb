"""Re-split Deep3DFaceRecon coefficients into the vico feature files.

Replaces the original preprocess/rearrange_recon_coeffs.py. Every <name>.mat under
--input_folder (recursive; the sub-folders are flattened away as upstream) becomes
<output_folder>/<name>.bin = torch.save({'id.gamma.tex': (N,187), 'angle.exp.trans': (N,73)})
of numpy float32 arrays, built with common.coeffs.recon_to_vico:
angle.exp.trans = angle | exp | trans | crop (s, t0, t1 of transform_params),
id.gamma.tex = id | gamma | tex.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from common.progress import progress

from common.coeffs import recon_to_vico
from common.dataset import find_files
from common.io import RunReport, UserError, is_complete, run_cli, setup_logging
from common.cli import parser
from common.artifacts import load_recon_mat, save_video_feats

log = logging.getLogger("preprocess.rearrange_recon_coeffs")

EPILOG = """examples:
  python -m preprocess.rearrange_recon_coeffs --input_folder data/recons \\
      --output_folder data/features/video_feats
  # redo everything
  python -m preprocess.rearrange_recon_coeffs --input_folder data/recons \\
      --output_folder data/features/video_feats --overwrite
"""


@dataclass
class RearrangeConfig:
    """Resolved options of one run (saved in run.json)."""

    input_folder: str
    output_folder: str
    overwrite: bool = False


def convert_file(mat: Path, out: Path) -> None:
    """One recon .mat -> one vico .bin (atomic); UserError naming the file on bad input."""
    coeff, tp = load_recon_mat(mat)  # (N,257), (N,5)
    dyn, fixed = recon_to_vico(coeff, tp)  # (N,73), (N,187)
    save_video_feats(out, dyn, fixed)


def run(cfg: RearrangeConfig) -> int:
    mats = find_files(cfg.input_folder, (".mat",))
    if not mats:
        raise UserError(f"{cfg.input_folder}: no .mat files")
    out_dir = Path(cfg.output_folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = RunReport("preprocess.rearrange_recon_coeffs", cfg, out_dir)
    seen: dict[str, Path] = {}
    for mat in progress(mats, desc="rearrange coeffs", unit="file"):
        out = out_dir / f"{mat.stem}.bin"
        if mat.stem in seen:
            report.fail(mat, f"{mat}: same name as {seen[mat.stem]} (outputs are flattened)")
            continue
        seen[mat.stem] = mat
        if is_complete(out) and not cfg.overwrite:
            report.skip(mat.stem)
            continue
        try:
            convert_file(mat, out)
            report.ok(mat.stem, [out])
        except UserError as e:
            report.fail(mat.stem, e)
    report.write()
    return report.exit_code()


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("preprocess.rearrange_recon_coeffs", __doc__, EPILOG)
    p.add_argument("--input_folder", required=True, help="recon .mat files (searched recursively)")
    p.add_argument("--output_folder", required=True, help="where <name>.bin files go")
    p.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    a = p.parse_args(argv)
    setup_logging(a.verbose)
    return run(RearrangeConfig(a.input_folder, a.output_folder, a.overwrite))


if __name__ == "__main__":
    run_cli(main)
