"""Training loop: ``train(cfg, out_dir, resume=False) -> summary``.

One iteration (the paper's training step):

1. the next batch of keys ``(epoch, index)`` from :class:`~darkseg.engine.distributed.ShardedBatchSampler`;
   each sample of the dataset (built by :func:`darkseg.data.build.build_train_dataset`, sampled through
   :class:`darkseg.data.views.KeyedDataset`) is read, resized into the model's box (nearest), flipped,
   and - with ``synth`` and ``synth_device="workers"`` - turned into ``(clean, noisy)`` low-light
   renderings by :class:`darkseg.data.transforms.LowLightViews`. All per-sample randomness is re-seeded from
   ``(seed, epoch, index)`` just before the sample is built, so it does not depend on worker scheduling;
   with ``synth_device="device"`` the batch is synthesised in the main process on the training device
   (the GPU) with a generator seeded from ``(seed, iteration, rank)``;
2. the global torch RNG (RPN/RoI sampling) is re-seeded from ``(seed, iteration, rank)``;
3. lr from :class:`~darkseg.engine.schedule.StepWarmupSchedule` (x ``lr_mult`` per group);
4. loss: DSL ``model.forward_dsl(clean, noisy, targets)``, otherwise ``model(view, targets)`` with view =
   the noisy or clean rendering (``train.train_view``) or the sRGB image when there is no synthesis;
   the training loss is the sum of all loss-dict values;
5. backward (AMP ``GradScaler`` on CUDA), optional gradient clipping (global L2 norm), SGD step;
6. logs; a checkpoint every ``checkpoint_every`` iterations, every ``checkpoint_every_epochs`` epochs
   and at the end.

Because everything random is a function of ``(seed, epoch, index)`` or ``(seed, iteration, rank)``, and the
checkpoint stores weights, optimiser and scaler state and the iteration count, ``resume=True`` continues
exactly as an uninterrupted run (bit-identical on CPU with deterministic kernels).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from darkseg.config import ExperimentConfig, config_to_yaml
from darkseg.data.build import build_eval_dataset, build_train_dataset
from darkseg.data.views import SKIPPED_KEY, KeyedDataset
from darkseg.engine import distributed as du
from darkseg.engine.checkpointing import (
    LAST,
    copy_checkpoint,
    load_training_checkpoint,
    save_training_checkpoint,
)
from darkseg.engine.interrupt import GracefulStop, TrainingInterrupted
from darkseg.engine.logger import TrainLogger, truncate_logs
from darkseg.engine.schedule import StepWarmupSchedule, set_lr
from darkseg.errors import DarkSegError

__all__ = ["train", "Trainer", "TrainingError"]


class TrainingError(DarkSegError, RuntimeError):
    """Training cannot continue (non-finite loss, incompatible resume, ...); the message says why."""


# ----------------------------------------------------------------------------------------- model
class _Step(nn.Module):
    """The training forward as a module, so DistributedDataParallel sees every parameter use."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images, targets, noisy=None):
        if noisy is not None:
            return self.model.forward_dsl(images, noisy, targets)
        return self.model(images, targets)


def _init_weights(model: nn.Module, path: str, log) -> None:
    from darkseg.models import (
        CheckpointError,
        UnsafeCheckpointError,
        load_torchvision_state_dict,
        read_checkpoint,
    )

    try:
        ckpt = read_checkpoint(path)
    except UnsafeCheckpointError:
        raise
    except CheckpointError:
        report = load_torchvision_state_dict(model, path)
        log(f"init_from {path} (torchvision weights): {report}")
        return
    own = model.state_dict()
    sd = {k: v for k, v in ckpt["state_dict"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(sd, strict=False)
    log(f"init_from {path}: {len(sd)}/{len(own)} tensors loaded (others keep their initialisation)")


#: the files every run writes into its folder (epoch checkpoints, evaluation results and TensorBoard's
#: event file come on top, depending on the settings)
RUN_FILES = ("config.yaml", "log.jsonl", "log.csv", LAST, "final.pth", "summary.json")


def _config_inputs(cfg: ExperimentConfig) -> list[str]:
    """The files and folders a run reads by the config: datasets, ``train.init_from``, a camera profile
    file (a packaged camera name is no path and is left out)."""
    sets = [cfg.data.train, *([cfg.data.val] if cfg.data.val is not None else [])]
    paths = [p for ds in sets for p in (ds.image_dir, ds.ann_file)]
    paths.append(cfg.train.init_from)
    if cfg.synth is not None:
        paths.append(cfg.synth.camera)
    return [p for p in paths if p and os.path.exists(p)]


def _synthesizer(cfg: ExperimentConfig):
    """A ``LowLightSynthesizer`` of ``cfg.synth``, or None without synthesis."""
    if cfg.synth is None:
        return None
    from darkseg.synth import LowLightSynthesizer

    return LowLightSynthesizer(cfg.synth)


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [
        {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
        for t in targets
    ]


# --------------------------------------------------------------------------------------- trainer
class Trainer:
    """Builds everything for a run (model, data, optimiser, schedule, logs); :meth:`run` trains.

    ``model`` is the bare detector (not the DDP wrapper); after :meth:`run` it holds the final weights.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        out_dir: str | Path,
        resume: bool = False,
        progress: bool = True,
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike] = (),
    ) -> None:
        from darkseg.engine.runfolder import check_run_folder
        from darkseg.models import build_model, param_groups
        from darkseg.utils.outputs import check_paths
        from darkseg.utils.runtime import keep_freed_memory, seed_everything

        self.cfg, self.out_dir, self.resume = cfg, Path(out_dir), resume
        t = cfg.train
        self.dist = du.init_distributed(t.device)
        self.device = self.dist.device
        self.rank, self.world = self.dist.rank, self.dist.world_size
        self.main = self.rank == 0
        # every rank checks before rank 0 writes anything into the folder; a refused folder fails fast,
        # an overwritten one is cleared only once the model and the data have been set up
        check_paths("train", [*inputs, *_config_inputs(cfg)], folders=[self.out_dir])
        self.record = check_run_folder(self.out_dir, "train", resume, overwrite, resumable=True)
        du.barrier()
        seed_everything(t.seed, deterministic=t.deterministic)
        if self.device.type == "cpu":
            # Denormal floats (tiny activations/gradients of small random-init models) slow CPU kernels
            # down by large factors; flushing them to zero is the usual fix (process-wide setting).
            torch.set_flush_denormal(True)
            # glibc would unmap and page-fault every large tensor again at each step (DSL: 2.2x -> 2.0x)
            keep_freed_memory()
        self.amp = self.device.type == "cuda" and t.amp in ("auto", True)
        # "device": batched synthesis in the main process on the training device (meant for CUDA)
        self.synth_on_device = cfg.synth is not None and t.synth_device == "device"
        self.progress = progress and self.main

        # model (same initial weights on every rank: built right after seeding; DDP also broadcasts)
        self.model = build_model(cfg.model)
        if t.init_from and not resume:
            _init_weights(self.model, t.init_from, self._print)
        self.model.to(self.device)
        self.model.train()

        # data: both datasets are built (every annotation checked, every image file found) before the
        # first iteration, so a broken val file does not surface only at the first evaluation
        synth = _synthesizer(cfg)  # stateless: the training and the evaluation views share it
        self.dataset = build_train_dataset(
            cfg.data,
            cfg.model.class_names,
            cfg.model.min_size,
            cfg.model.max_size,
            synthesizer=None if self.synth_on_device else synth,
        )
        self.eval_dataset = None
        if self.main:
            self.eval_dataset = build_eval_dataset(cfg.data, cfg.model.class_names, synth, seed=t.seed)
        if self.eval_dataset is not None:
            from darkseg.engine.evaluate import check_ground_truth

            ds = self.eval_dataset
            check_ground_truth(ds.coco, img_ids=ds.ids, cat_ids=ds.category_ids)
        self.keyed = KeyedDataset(self.dataset, t.seed, skip_unreadable=True)
        self.unreadable: dict[str, str] = {}  # file -> message, for the skip report
        probe = du.ShardedBatchSampler(len(self.keyed), t.batch_size, self.world, self.rank, t.seed)
        self.iters_per_epoch = probe.iters_per_epoch
        self.total_iters = t.max_iters if t.max_iters is not None else t.epochs * self.iters_per_epoch
        self.synthesizer = synth if self.synth_on_device else None

        # optimiser, schedule, AMP
        self.optimizer = torch.optim.SGD(
            param_groups(self.model, t.lr, t.weight_decay, t.lr_mult),
            lr=t.lr,
            momentum=t.momentum,
            weight_decay=t.weight_decay,
        )
        self.schedule = StepWarmupSchedule(
            base_lr=t.lr,
            lr_steps=tuple(t.lr_steps),
            gamma=t.gamma,
            unit=t.lr_step_unit,
            iters_per_epoch=self.iters_per_epoch,
            warmup_iters=t.warmup_iters,
            warmup_ratio=t.warmup_ratio,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        # resume
        self.start_iter = 0
        planned = self._planned_outputs()
        self.record.check(planned)  # a file of that name the job did not write: refused before any write
        if resume:
            self._load_resume()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.main:
            from darkseg.utils.io import atomic_open

            self._tidy_out_dir(overwrite, planned)
            self.record.claim(planned)
            with atomic_open(self.out_dir / "config.yaml", "w") as fh:
                fh.write(config_to_yaml(cfg))
        du.barrier()

    # ------------------------------------------------------------------ helpers
    def _print(self, text: str) -> None:
        if self.main:
            print(text, flush=True)

    def _planned_outputs(self) -> list[str]:
        """Every file this run may write into the run folder (TensorBoard's event file aside: its name
        is known only once it exists, and the logger records it then)."""
        t, ipe = self.cfg.train, self.iters_per_epoch
        names = list(RUN_FILES)
        if t.keep_epoch_checkpoints and t.checkpoint_every_epochs:
            step = t.checkpoint_every_epochs
            names += [f"epoch_{e}.pth" for e in range(step, self.total_iters // ipe + 1, step)]
        if self.cfg.data.val is not None:
            if t.eval_every:
                names += [
                    f"results_iter_{i}.json" for i in range(t.eval_every, self.total_iters, t.eval_every)
                ]
            if t.eval_at_end:
                names.append("results_final.json")
        return names

    def _tidy_out_dir(self, overwrite: bool, planned: list[str]) -> None:
        """Remove a killed run's temporary files and, with ``overwrite``, the previous run's files (those
        the folder's record lists as written by ``train``; nothing else)."""
        for p in self.record.remove_stale_temporaries(planned):
            self._print(f"removed {p} (temporary file of an interrupted write)")
        if overwrite:
            removed = self.record.remove_recorded()
            if removed:
                self._print(
                    f"--overwrite: removed {len(removed)} file(s) of the previous run in {self.out_dir}"
                )

    def _state(self, iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "epoch": iteration // self.iters_per_epoch,
            "epoch_batch": iteration % self.iters_per_epoch,
            "iters_per_epoch": self.iters_per_epoch,
            "world_size": self.world,
            "config": self.cfg.to_dict(),
        }

    def _load_resume(self) -> None:
        path = self.out_dir / LAST
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: nothing to resume (no {LAST} in {self.out_dir}); start a new run without --resume "
                "(with --overwrite if the folder holds logs of a run that never wrote a checkpoint)"
            )
        from darkseg.models import read_checkpoint

        head = read_checkpoint(path, map_location="cpu")
        saved = head.get("config", {})
        if saved.get("model") != self.cfg.to_dict()["model"]:
            raise TrainingError(f"{path}: the checkpoint's model config differs from the current one")
        for key in ("iters_per_epoch", "world_size"):
            now = self.iters_per_epoch if key == "iters_per_epoch" else self.world
            if int(head.get(key, now)) != now:
                raise TrainingError(
                    f"{path}: {key} was {head[key]} but is {now} now (dataset, batch size or process count "
                    "changed); an exact resume needs the same; start a new run with train.init_from instead"
                )
        del head
        ckpt = load_training_checkpoint(path, self.model, self.optimizer, self.scaler, map_location="cpu")
        # optimizer.load_state_dict casts state to the params' device; keep it explicit for CUDA runs
        for st in self.optimizer.state.values():
            for k, v in st.items():
                if torch.is_tensor(v) and k != "step":
                    st[k] = v.to(self.device)
        self.start_iter = int(ckpt["iteration"])
        self._print(f"resumed from {path} at iteration {self.start_iter}")

    def _account_unreadable(self, batch: tuple, logger: TrainLogger) -> None:
        """Take the skipped-image notes out of the batch's targets, warn once per file, enforce the cap.

        Raises:
            TrainingError: more distinct unreadable files than ``train.max_unreadable_images``.
        """
        cap = self.cfg.train.max_unreadable_images
        for target in batch[-1]:
            for msg in target.pop(SKIPPED_KEY, []):
                name = msg.split(": ", 1)[0]
                if name in self.unreadable:
                    continue
                self.unreadable[name] = msg
                if len(self.unreadable) > cap:
                    raise TrainingError(
                        f"{msg}; {len(self.unreadable)} unreadable training image(s), more than "
                        f"train.max_unreadable_images={cap}: fix or remove them"
                    )
                note = f"warning: skipped unreadable training image ({len(self.unreadable)}/{cap}): {msg}"
                if self.main:
                    logger.write(note)
                else:
                    print(f"[rank {self.rank}] {note}", file=sys.stderr, flush=True)

    def _check_finite_weights(self, iteration: int) -> None:
        """Raise ``TrainingError`` before a checkpoint would replace good weights by NaN/inf ones."""
        from darkseg.models import CheckpointError, check_finite_weights

        try:
            check_finite_weights(self.model.state_dict(), f"weights after iteration {iteration}")
        except CheckpointError as exc:
            raise TrainingError(
                f"{exc}; not written, {self.out_dir / LAST} keeps the last finite checkpoint; lower "
                "train.lr or enable train.grad_clip"
            ) from None

    def _save(self, iteration: int, epoch_end: bool) -> None:
        if self.main:
            self._check_finite_weights(iteration)
            last = self.out_dir / LAST
            save_training_checkpoint(last, self.model, self.optimizer, self.scaler, self._state(iteration))
            if epoch_end and self.cfg.train.keep_epoch_checkpoints:
                copy_checkpoint(last, self.out_dir / f"epoch_{iteration // self.iters_per_epoch}.pth")
        du.barrier()

    def evaluate(self, iteration: int | None = None) -> dict[str, Any] | None:
        """Evaluate the current weights on ``data.val`` (rank 0; others wait). Returns the result dict."""
        result = None
        if self.main and self.cfg.data.val is not None:
            from darkseg.engine.evaluate import evaluate_model

            name = "final" if iteration is None else f"iter_{iteration}"
            result = evaluate_model(
                self.model,
                self.eval_dataset,
                device=self.device,
                results_file=self.out_dir / f"results_{name}.json",
                progress=self.progress,
            )
            self.model.train()
        du.barrier()
        return result

    def batches(self):
        """The training batches from the current position (``start_iter``) on, as :meth:`run` reads them:
        ``(images, targets)`` lists, or ``(clean, noisy, targets)`` with synthesis in the data workers."""
        t = self.cfg.train
        epoch, pos = divmod(self.start_iter, self.iters_per_epoch)
        sampler = du.ShardedBatchSampler(
            len(self.keyed), t.batch_size, self.world, self.rank, t.seed, start_epoch=epoch, start_batch=pos
        )
        from darkseg.data.loader import collate_fn

        loader = torch.utils.data.DataLoader(
            self.keyed,
            batch_sampler=sampler,
            collate_fn=collate_fn,
            num_workers=t.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        return iter(loader)

    def losses(self, batch: tuple, iteration: int, step: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The loss dict of one training forward on ``batch`` (one item of :meth:`batches`, or a
        ``(clean, noisy, targets)`` triple given directly); the training loss is the sum of its values.

        What :meth:`run` does at ``iteration``, without the backward pass and the optimiser step:
        batches of sRGB images are turned into views on the device when ``synth_device="device"``, then
        ``forward_dsl`` (``train.dsl``) or the model's forward on the ``train_view``. ``step``: the
        (possibly DistributedDataParallel-wrapped) training module; default: the bare model.
        """
        t, dev = self.cfg.train, self.device
        step = _Step(self.model) if step is None else step
        if len(batch) == 3:  # (clean, noisy, targets) from LowLightViews
            clean, noisy, targets = batch
            clean = [x.to(dev, non_blocking=True) for x in clean]
            noisy = [x.to(dev, non_blocking=True) for x in noisy]
            targets = _to_device(targets, dev)
        else:
            images, targets = batch
            images = [x.to(dev, non_blocking=True) for x in images]
            if self.synthesizer is not None:
                from darkseg.data.transforms import low_light_batch

                g = torch.Generator(device=dev).manual_seed(du.mix_seed(t.seed, iteration, self.rank, 0x5E))
                clean, noisy, targets = low_light_batch(self.synthesizer, images, targets, g)
                targets = _to_device(targets, dev)
            else:
                return step(images, _to_device(targets, dev))
        if t.dsl:
            return step(clean, targets, noisy)
        return step(noisy if t.train_view == "noisy" else clean, targets)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train from ``start_iter`` to the configured length; returns the summary dict."""
        t = self.cfg.train
        step: nn.Module = _Step(self.model)
        if self.world > 1:
            step = nn.parallel.DistributedDataParallel(
                step,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=t.find_unused_parameters,
            )
        if self.main and self.start_iter > 0:
            truncate_logs(self.out_dir, self.start_iter)
        logger = TrainLogger(
            self.out_dir,
            self.total_iters,
            self.start_iter,
            enabled=self.main,
            progress=self.progress,
            record=self.record,
        )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        history: list[float] = []
        evals: dict[int, Any] = {}
        t0 = time.perf_counter()
        it = self.start_iter
        batches = self.batches() if it < self.total_iters else None
        last_saved = self.start_iter if self.resume else -1
        final_eval = None
        stop = GracefulStop()  # SIGINT/SIGTERM: finish the iteration, checkpoint, stop
        try:
            stop.install()
            while it < self.total_iters:
                torch.manual_seed(du.mix_seed(t.seed, it, self.rank, 0x7A11))
                batch = next(batches)
                self._account_unreadable(batch, logger)
                lr = set_lr(self.optimizer, self.schedule, it)
                t_it = time.perf_counter()
                with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                    losses = self.losses(batch, it, step)
                total = sum(losses.values())
                if not torch.isfinite(total):
                    vals = {k: float(v) for k, v in losses.items()}
                    raise TrainingError(
                        f"non-finite loss at iteration {it + 1}: {vals} (lr {lr:.3g}); "
                        "lower train.lr, enable train.grad_clip, or check the data"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                parts = {}
                if t.log_grad_parts and (it + 1) % t.log_every == 0:
                    parts = _part_grad_norms(losses, params, t.log_grad_parts, self.world)
                self.scaler.scale(total).backward()
                self.scaler.unscale_(self.optimizer)  # no-op without AMP
                if t.grad_clip is not None:  # the norm before clipping
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, t.grad_clip))
                else:
                    grad_norm = float(_total_norm(params))
                self.scaler.step(self.optimizer)
                self.scaler.update()
                it += 1

                logged = du.reduce_loss_dict(losses)
                loss_val = sum(logged.values())
                history.append(loss_val)
                rec = {
                    "iter": it,
                    "epoch": (it - 1) // self.iters_per_epoch + 1,
                    "lr": lr,
                    "loss": loss_val,
                    **logged,
                    "time": time.perf_counter() - t_it,
                }
                rec["grad_norm"] = grad_norm
                rec.update(parts)
                logger.log_iter(rec, show=(it % t.log_every == 0 or it == self.total_iters))
                if not self.progress and self.main and it % t.log_every == 0:
                    print(f"iter {it}/{self.total_iters} lr {lr:.3e} loss {loss_val:.4f}", flush=True)

                epoch_end = it % self.iters_per_epoch == 0
                if epoch_end and t.checkpoint_every_epochs:
                    epoch_end = (it // self.iters_per_epoch) % t.checkpoint_every_epochs == 0
                else:
                    epoch_end = False
                periodic = bool(t.checkpoint_every) and it % t.checkpoint_every == 0
                if epoch_end or periodic or it == self.total_iters:
                    self._save(it, epoch_end)
                    last_saved = it
                if t.eval_every and it % t.eval_every == 0 and it < self.total_iters:
                    res = self.evaluate(it)
                    if res is not None:
                        evals[it] = res["metrics"]
                        logger.log_eval(it, res["metrics"])
                if it < self.total_iters and stop.requested(self.device):
                    if last_saved != it:
                        self._save(it, False)
                    raise TrainingInterrupted(stop.signame, it, str(self.out_dir / LAST))
            del batches  # stops DataLoader workers
            elapsed = time.perf_counter() - t0
            if last_saved != it:
                self._save(it, False)
            final = self.out_dir / "final.pth"
            if self.main:
                from darkseg.models import save_checkpoint

                self._check_finite_weights(it)
                save_checkpoint(final, self.model, extra={"iteration": it, "config": self.cfg.to_dict()})
            if t.eval_at_end:
                final_eval = self.evaluate(None)
                if final_eval is not None:
                    logger.log_eval(it, final_eval["metrics"])
        finally:
            stop.restore()
            logger.close()
        summary = self._summary(it, history, elapsed, evals, final_eval, final)
        if self.main:
            from darkseg.utils.io import atomic_write_json

            atomic_write_json(self.out_dir / "summary.json", summary, indent=2)
            self._print(_format_summary(summary))
        return summary

    def _summary(self, it, history, elapsed, evals, final_eval, final) -> dict[str, Any]:
        k = max(1, min(10, len(history) // 4)) if history else 0
        done = it - self.start_iter
        return {
            "name": self.cfg.name,
            "out_dir": str(self.out_dir),
            "iterations": it,
            "iterations_this_run": done,
            "iters_per_epoch": self.iters_per_epoch,
            "epochs": it / self.iters_per_epoch,
            "world_size": self.world,
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "amp": self.amp,
            "resumed_from": self.start_iter if self.resume else None,
            "seconds": elapsed,
            "seconds_per_iter": elapsed / done if done else None,
            "loss_first": float(sum(history[:k]) / k) if history else None,
            "loss_last": float(sum(history[-k:]) / k) if history else None,
            "loss_window": k,
            "final_lr": self.schedule.lr(max(it - 1, 0)),
            "checkpoint": str(self.out_dir / LAST),
            "final_model": str(final),
            "unreadable_images": sorted(self.unreadable),
            "eval_history": {str(k_): v for k_, v in evals.items()},
            "eval": None if final_eval is None else final_eval["metrics"],
            "eval_per_class": None if final_eval is None else final_eval["per_class"],
        }


def _total_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``params`` (0 when none has a gradient)."""
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


def _part_grad_norms(
    losses: dict[str, torch.Tensor], params: list[torch.Tensor], names: list[str], world: int
) -> dict[str, float]:
    """``{"grad_norm_<name>": global L2 norm of d loss[name] / d params}`` for the named loss terms of
    this iteration (``train.log_grad_parts``): one extra backward pass per term, the graph kept for the
    step's own backward. Terms missing from ``losses`` are skipped (e.g. ``loss_dsl`` without DSL)."""
    if world > 1:
        raise TrainingError("train.log_grad_parts works in single-process training only")
    out: dict[str, float] = {}
    for name in names:
        if name not in losses or not losses[name].requires_grad:
            continue
        grads = torch.autograd.grad(losses[name], params, retain_graph=True, allow_unused=True)
        found = [g for g in grads if g is not None]
        out[f"grad_norm_{name}"] = float(torch.nn.utils.get_total_norm(found)) if found else 0.0
    return out


def _format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"== {s['name']}: {s['iterations']} iterations ({s['epochs']:.2f} epochs) on {s['device']}"
        f" x{s['world_size']} in {s['seconds']:.1f} s"
    ]
    if s["loss_first"] is not None:
        lines.append(
            f"   loss: first {s['loss_window']} iters {s['loss_first']:.4f} -> last "
            f"{s['loss_window']} iters {s['loss_last']:.4f}"
        )
    if s["eval"]:
        from darkseg.engine.evaluate import format_metrics

        lines.append(format_metrics(s["eval"]))
    if s.get("unreadable_images"):
        lines.append(
            f"   skipped {len(s['unreadable_images'])} unreadable image(s): "
            + ", ".join(s["unreadable_images"])
        )
    lines.append(f"   checkpoint: {s['checkpoint']}  final model: {s['final_model']}")
    return "\n".join(lines)


def train(
    cfg: ExperimentConfig,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    """Train ``cfg`` into ``out_dir`` (default ``cfg.output_dir``); ``resume`` continues ``out_dir/last.pth``.

    A folder that already holds a run (files the folder's record lists as written by ``train``) is
    refused with :class:`darkseg.errors.RunFolderError` unless ``resume`` continues it or ``overwrite``
    replaces it (the files the previous run wrote are removed first; other files stay). An output folder
    that is or contains an input (the config's data, ``train.init_from``, a camera profile, ``inputs``:
    e.g. the config file), the file-system root, or one holding a file of a name the run writes
    (``config.yaml``, ``last.pth``, ...) that no ``train`` run wrote is refused before anything is
    written (:class:`darkseg.errors.OutputError`; :mod:`darkseg.utils.outputs`).

    Runs as one process, or as one of ``torchrun``'s processes (DDP). Returns the summary dict (also
    written to ``out_dir/summary.json``): iterations, timing, first/last mean loss, final AP, paths.
    """
    out = out_dir if out_dir is not None else cfg.output_dir
    if out is None:
        raise ValueError("train: no output folder (pass out_dir / --out or set output_dir in the config)")
    trainer = Trainer(cfg, out, resume=resume, progress=progress, overwrite=overwrite, inputs=inputs)
    return trainer.run()
