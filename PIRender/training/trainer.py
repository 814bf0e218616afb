"""PIRender's FaceTrainer recipe (upstream ``trainers/face_trainer.py`` + ``trainers/base.py``).

* generator init: conv/linear weights normal(0, gain 0.02), zero biases; EMA copy made from it;
* each step renders source->target and target->source in one batch of 2B;
* iterations < pretrain_warp_iteration: warp-only (editing net unused), loss = 2.5 * perceptual(warp);
  then: 4 * (perceptual + 250 * style)(fake) + 2.5 * perceptual(warp); at the switch a new optimizer
  replaces the old one; as upstream (``reset_trainer``), the StepLR schedule keeps stepping the
  discarded optimizer, so the rate stays at gen_optimizer.lr for the rest of training
  (``trainer.restart_lr_schedule``: restart the schedule with the optimizer instead);
* Adam(lr, betas (0.5, 0.999)), StepLR stepped every iteration; EMA decay 0.5 ** (32/10000).
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from common.dist import DistInfo
from PIRender.losses import PerceptualLoss, VGG19Features
from PIRender.models import FaceGenerator
from PIRender.training.config import TrainConfig, VGGLossConfig

log = logging.getLogger(__name__)


def init_weights(model: nn.Module, gain: float = 0.02) -> None:
    """Upstream ``weights_init('normal', gain)``: Conv*/Linear weights ~ N(0, gain), biases 0."""
    for m in model.modules():
        name = type(m).__name__
        if ("Conv" in name or "Linear" in name) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model, parameter by parameter (upstream ``accumulate``)."""
    src = dict(model.named_parameters())
    for k, p in ema.named_parameters():
        p.mul_(decay).add_(src[k].detach(), alpha=1 - decay)


def _perceptual(vgg: VGG19Features, c: VGGLossConfig) -> PerceptualLoss:
    return PerceptualLoss(vgg, c.layers, num_scales=c.num_scales, use_style_loss=c.use_style_loss,
                          style_to_perceptual=c.style_to_perceptual)


class FaceTrainer:
    """Holds net_G (DDP-wrapped under torchrun), net_G_ema, opt_G, sch_G and the losses."""

    def __init__(self, cfg: TrainConfig, vgg: VGG19Features, info: DistInfo):
        self.cfg, self.info = cfg, info
        self.device = info.device
        net = FaceGenerator(cfg.model).to(self.device)
        init_weights(net, cfg.trainer.init_gain)
        self.net_G_module = net
        self.net_G_ema = copy.deepcopy(net).eval().requires_grad_(False)
        # Warp-only iterations leave the editing net without gradients: DDP must allow that.
        self.net_G: nn.Module = DDP(net, find_unused_parameters=True) if info.distributed else net
        self.loss_warp = _perceptual(vgg.to(self.device), cfg.trainer.vgg_param_warp)
        self.loss_final = _perceptual(vgg.to(self.device), cfg.trainer.vgg_param_final)
        self._share_targets = (cfg.trainer.vgg_param_warp.layers == cfg.trainer.vgg_param_final.layers
                               and cfg.trainer.vgg_param_warp.num_scales == cfg.trainer.vgg_param_final.num_scales)
        self.opt_G, self.sch_G = self._make_optimizer()

    def _make_optimizer(self) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
        o = self.cfg.gen_optimizer
        opt = torch.optim.Adam(self.net_G_module.parameters(), lr=o.lr, betas=(o.adam_beta1, o.adam_beta2))
        sch = torch.optim.lr_scheduler.StepLR(opt, step_size=o.lr_policy.step_size, gamma=o.lr_policy.gamma)
        return opt, sch

    def stage(self, iteration: int) -> str:
        return "gen" if iteration >= self.cfg.trainer.pretrain_warp_iteration else "warp"

    def start_of_iteration(self, iteration: int) -> None:
        if iteration == self.cfg.trainer.pretrain_warp_iteration and iteration > 0:
            if self.cfg.trainer.restart_lr_schedule:
                log.info("iteration %d: warp warm-up done; restarting optimizer and schedule", iteration)
                self.opt_G, self.sch_G = self._make_optimizer()
            else:
                log.info("iteration %d: warp warm-up done; new optimizer, its rate stays %g (the schedule "
                         "steps the old one, as the original)", iteration, self.cfg.gen_optimizer.lr)
                self.opt_G, _ = self._make_optimizer()

    def _detach_schedule(self, sch_state: dict | None) -> None:
        """After the switch in the original mode: the schedule drives an optimizer of its own."""
        o = self.cfg.gen_optimizer
        shadow = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=o.lr)
        self.sch_G = torch.optim.lr_scheduler.StepLR(shadow, step_size=o.lr_policy.step_size, gamma=o.lr_policy.gamma)
        if sch_state:
            self.sch_G.load_state_dict(sch_state)
            shadow.param_groups[0]["lr"] = self.sch_G.get_last_lr()[0]

    def step(self, batch: dict[str, torch.Tensor], iteration: int) -> dict[str, float]:
        """One optimisation step; returns the weighted losses (floats)."""
        self.start_of_iteration(iteration)
        stage = self.stage(iteration)
        d = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        # (2B, ...): source->target and target->source
        image = torch.cat([d["source_image"], d["target_image"]], 0)
        semantic = torch.cat([d["target_semantics"], d["source_semantics"]], 0)
        gt = torch.cat([d["target_image"], d["source_image"]], 0)
        self.net_G.train()
        out = self.net_G(image, semantic, stage)
        w = self.cfg.trainer.loss_weight
        targets = self.loss_warp.target_features(gt)
        losses: dict[str, torch.Tensor] = {}
        if stage == "gen":
            final_targets = targets if self._share_targets else None
            losses["perceptual_final"] = w.weight_perceptual_final * self.loss_final(out["fake_image"], gt, final_targets)
        losses["perceptual_warp"] = w.weight_perceptual_warp * self.loss_warp(out["warp_image"], gt, targets)
        total = sum(losses.values())
        self.opt_G.zero_grad(set_to_none=True)
        total.backward()
        self.opt_G.step()
        self.sch_G.step()  # iteration mode
        accumulate(self.net_G_ema, self.net_G_module, self.cfg.trainer.ema_decay)
        result = {k: float(v.detach()) for k, v in losses.items()}
        result["total_loss"] = float(total.detach())
        return result

    def state_dict(self, epoch: int, iteration: int) -> dict[str, Any]:
        """The original checkpoint layout (+ our resolved config)."""
        return {
            "net_G": self.net_G.state_dict(),  # 'module.' keys under DDP, as upstream
            "net_G_ema": self.net_G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "sch_G": self.sch_G.state_dict(),
            "current_epoch": epoch,
            "current_iteration": iteration,
            "config": self.cfg.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> tuple[int, int]:
        """Restore from a checkpoint (ours or the released one); returns (epoch, iteration)."""
        sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state["net_G"].items()}
        self.net_G_module.load_state_dict(sd, strict=True)
        self.net_G_ema.load_state_dict(state["net_G_ema"], strict=True)
        if state.get("opt_G", {}).get("state"):
            self.opt_G.load_state_dict(state["opt_G"])
            self.sch_G.load_state_dict(state["sch_G"])
        else:  # the released file has no optimizer state
            log.warning("checkpoint has no optimizer state; starting Adam and the schedule afresh")
        iteration = int(state.get("current_iteration", 0))
        if iteration > self.cfg.trainer.pretrain_warp_iteration and not self.cfg.trainer.restart_lr_schedule:
            self._detach_schedule(state.get("sch_G") if state.get("opt_G", {}).get("state") else None)
        return int(state.get("current_epoch", 0)), iteration
