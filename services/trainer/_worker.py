"""The training worker: one process per GPU (or CPU slot), started by torchrun.

    python -m torch.distributed.run --nproc_per_node=N ... \\
        -m syllabus.services.trainer._worker /work/<model_id>/spec.json

It reads the job spec (local paths; it never touches the bus or the store), joins the
process group (NCCL on GPUs, gloo on CPUs), fine-tunes a transformers causal LM on
``train.jsonl`` with the loss on the answer tokens only (``_data``), evaluates on
``eval.jsonl``, writes checkpoints to ``<out>/checkpoints/step-<n>/`` and the final model
to ``<out>/final/``. It reports to the service with JSON lines on stdout, prefixed with
``MARKER``: ``rank`` (each process, at start), ``start`` and ``progress`` (rank 0; with the
evaluation loss at evaluation steps),
``checkpoint`` (rank 0, after the folder is complete), ``warning``, ``done`` (rank 0, with
the metrics and every rank's share of the work) and ``error`` (any rank, before it exits
non-zero).

* DDP by default; FSDP (``fully_shard`` on every decoder layer and the root) as an option;
* bf16 autocast on GPUs that support it (FSDP: a bf16 mixed-precision policy);
* gradient checkpointing as an option; LoRA through peft, merged into the saved model
  (``lora_adapter="keep"`` also saves the adapter);
* AdamW, a cosine, linear or constant schedule with linear warm-up;
* the loss of an optimizer step is the mean over all the step's answer tokens, across its
  micro-batches (gradient accumulation) and processes (``_data.step_loss``);
* the data order is a pure function of (seed, epoch, world size), and RNG states are
  checkpointed, so a resumed job continues exactly where the saved step left off; a
  checkpoint only resumes with the world size that saved it (the service and
  ``_checkpoint.load_checkpoint`` refuse another one).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ._config import MARKER, JobSpec

__all__ = ["emit", "main", "micro_batches"]


def emit(event: str, **fields: Any) -> None:
    print(MARKER + json.dumps({"event": event, **fields}, default=float), flush=True)


def micro_batches(n: int, *, epoch: int, seed: int, rank: int, world: int, batch_size: int,
                  grad_accum: int) -> list[list[int]]:
    """This rank's micro-batches (sample indices) for one epoch: a seeded permutation,
    wrapped round to fill the last optimizer step, dealt out rank by rank."""
    import torch

    per_step = world * batch_size * grad_accum
    steps = max(1, math.ceil(n / per_step))
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    need = steps * per_step
    perm = (perm * math.ceil(need / n))[:need]
    mine = perm[rank::world]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def _autocast(device, enabled: bool):
    import torch

    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _takes_logit_mask(model) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` as a boolean position mask
    (transformers' ``slice_logits_to_keep``, 5.x): then the loss needs only the answer
    positions' logits."""
    import inspect

    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    if "logits_to_keep" not in inspect.signature(model.forward).parameters \
            or "boolean" not in (slice_logits_to_keep.__doc__ or ""):
        return False
    try:  # a few models slice logits_to_keep themselves, without the mask form
        return "slice_logits_to_keep(" in inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False


def _find_layers(model) -> list:
    names = set(getattr(model, "_no_split_modules", None) or [])
    base = model
    while not names and hasattr(base, "base_model") and base.base_model is not base:
        base = base.base_model
        names = set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


class Trainer:
    def __init__(self, spec: JobSpec) -> None:
        import torch
        import torch.distributed as dist

        self.spec = spec
        self.hp = spec.hp
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if spec.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        p = self.hp.precision
        self.bf16 = self.device.type == "cuda" and (
            p == "bf16" or (p == "auto" and torch.cuda.is_bf16_supported()))
        if p == "bf16" and self.device.type != "cuda":
            emit("warning", message="precision=bf16 needs a GPU; training in fp32 on the CPU")
        emit("rank", rank=self.rank, world_size=self.world, local_rank=self.local_rank,
             backend=spec.backend, device=str(self.device), host=socket.gethostname(),
             pid=os.getpid())

    # --- set-up ------------------------------------------------------------------------

    def load_data(self) -> None:
        from transformers import AutoTokenizer

        from ._data import encode_examples, load_examples

        spec = self.spec
        self.tokenizer = AutoTokenizer.from_pretrained(spec.base_model, local_files_only=True)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        train = load_examples(spec.train_file)
        if not train:
            raise ValueError(f"{spec.train_file.name} has no rows")
        self.train = encode_examples(self.tokenizer, train, max_seq_len=self.hp.max_seq_len)
        self.multitask = self.train.multitask
        evals = load_examples(spec.eval_file) if spec.eval_file else []
        self.eval = encode_examples(self.tokenizer, evals, max_seq_len=self.hp.max_seq_len,
                                    multitask=self.multitask)
        if not self.train.samples:
            raise ValueError(f"no row of {spec.train_file.name} keeps an answer token within "
                             f"max_seq_len={self.hp.max_seq_len}: {self.train.skipped[:3]}")
        if self.rank == 0:
            for data, name in ((self.train, "train"), (self.eval, "eval")):
                if data.skipped:
                    emit("warning", message=f"{len(data.skipped)} {name} rows skipped: "
                         f"{'; '.join(data.skipped[:5])}")
                if data.truncated:
                    emit("warning", message=f"{data.truncated} {name} rows cut to "
                         f"max_seq_len={self.hp.max_seq_len}")
        hp = self.hp
        per_step = self.world * hp.batch_size * hp.grad_accum
        self.steps_per_epoch = max(1, math.ceil(len(self.train.samples) / per_step))
        self.total_steps = hp.max_steps or max(1, math.ceil(hp.epochs * self.steps_per_epoch))
        self.warmup = hp.warmup(self.total_steps)  # fails the job when it is too long

    def build_model(self) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel
        from transformers import AutoModelForCausalLM, get_scheduler

        spec, hp = self.spec, self.hp
        torch.manual_seed(hp.seed)
        model = AutoModelForCausalLM.from_pretrained(spec.base_model, local_files_only=True,
                                                     dtype=torch.float32)
        model.config.use_cache = False
        # logits only where an answer token is predicted (``answer_mask``): the LM head over
        # a large vocabulary is most of a small model's compute (Gemma 3 270M: 168M of its
        # 268M parameters), and the other positions carry no loss. Measured on 2 CPU
        # cores, LoRA on Gemma 3 270M through this worker (2 gloo processes): 23 tokens/s
        # with every position's logits, 50 with the answer positions' only, the same loss.
        self.answer_logits = _takes_logit_mask(model)
        if hp.gradient_checkpointing:
            kwargs = {"use_reentrant": False}  # RNG states preserved: same dropout masks
            if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        if spec.method == "lora":
            from peft import get_peft_model

            model = get_peft_model(model, self.lora_config())
        # the decoder layers that will recompute their activations in the backward pass
        # (reported in the start event: what the model really does, not what was asked)
        layers = _find_layers(model)
        if any(hasattr(m, "gradient_checkpointing") for m in layers):
            self.checkpointed_layers = sum(bool(m.gradient_checkpointing) for m in layers)
        else:  # older transformers keep the flag on the decoder stack only
            self.checkpointed_layers = len(layers) * any(
                getattr(m, "gradient_checkpointing", False) is True for m in model.modules())
        model.to(self.device)
        self.unwrapped = model
        if hp.strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
                if self.bf16 else MixedPrecisionPolicy()
            for layer in _find_layers(model):
                fully_shard(layer, mp_policy=mp)
            fully_shard(model, mp_policy=mp)
            self.model = model
            self.autocast = False  # the policy casts
        else:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            # buffers (rotary tables) are the same on every rank: no broadcast per forward
            self.model = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
            self.autocast = self.bf16
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=hp.lr(spec.method))
        name = {"cosine": "cosine", "linear": "linear",
                "constant": "constant_with_warmup"}[hp.schedule]
        self.scheduler = get_scheduler(name, self.optimizer, num_warmup_steps=self.warmup,
                                       num_training_steps=self.total_steps)
        self.trainable = sum(p.numel() for p in params)
        self.parameters = sum(p.numel() for p in self.unwrapped.parameters())

    def lora_config(self):
        from peft import LoraConfig

        hp = self.hp
        return LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                          target_modules=hp.lora_target_modules, task_type="CAUSAL_LM")

    # --- steps -------------------------------------------------------------------------

    def _batch(self, samples: list[int], data) -> dict:
        from ._data import collate

        batch = collate([data.samples[i] for i in samples], self.tokenizer.pad_token_id)
        return {k: v.to(self.device) for k, v in batch.items()}

    def _loss(self, batch: dict):
        from ._data import answer_mask, multitask_loss

        kept = answer_mask(batch["labels"]) if self.answer_logits else None
        with _autocast(self.device, self.autocast):
            out = self.model(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"],
                             **({"logits_to_keep": kept} if kept is not None else {}))
        return multitask_loss(out.logits, batch["labels"], batch["task"], alpha=self.hp.alpha,
                              multitask=self.multitask, kept=kept)

    def _sync(self, enabled: bool):
        if self.hp.strategy == "fsdp":
            self.model.set_requires_gradient_sync(enabled)
            return nullcontext()
        return nullcontext() if enabled else self.model.no_sync()

    def evaluate(self) -> dict[str, float] | None:
        import torch
        import torch.distributed as dist

        from ._data import combine

        if not self.eval.samples:
            return None
        self.model.eval()
        keys = ("ce_predict", "tok_predict", "ce_explain", "tok_explain")
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        mine = list(range(self.rank, len(self.eval.samples), self.world))
        bs = self.hp.batch_size
        # every rank runs the same number of forwards (FSDP gathers weights in each one); a
        # rank out of samples runs a stand-in batch and discards it
        rounds = math.ceil(math.ceil(len(self.eval.samples) / self.world) / bs)
        with torch.no_grad():
            for r in range(rounds):
                part = mine[r * bs:(r + 1) * bs]
                _, sums = self._loss(self._batch(part or [0], self.eval))
                if part:
                    totals += torch.stack([sums[k].double() for k in keys])
        dist.all_reduce(totals)
        self.model.train()
        return combine(dict(zip(keys, totals.tolist(), strict=True)), alpha=self.hp.alpha,
                       multitask=self.multitask)

    def run(self) -> None:
        import torch
        import torch.distributed as dist

        from ._checkpoint import load_checkpoint, save_checkpoint
        from ._data import answer_counts, step_loss

        spec, hp = self.spec, self.hp
        lora = spec.method == "lora"
        step, history, tokens_seen = 0, [], 0
        if spec.resume_from is not None:
            state = load_checkpoint(spec.resume_from, model=self.model,
                                    optimizer=self.optimizer, scheduler=self.scheduler,
                                    trainable_only=lora)
            step, history = int(state["step"]), list(state.get("history", []))
            tokens_seen = int(state.get("tokens", 0))
            if self.rank == 0:
                emit("resumed", step=step)
        resumed_from = step
        if self.rank == 0:
            emit("start", total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                 train_samples=len(self.train.samples), eval_samples=len(self.eval.samples),
                 parameters=self.parameters, trainable_parameters=self.trainable,
                 multitask=self.multitask, world_size=self.world, start_step=step,
                 bf16=self.bf16, strategy=hp.strategy,
                 checkpointed_layers=self.checkpointed_layers)
        self.model.train()
        my_samples, my_tokens = 0, 0
        window = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss sum, n, tokens
        t_window = time.perf_counter()
        t_start = t_window
        window_time = 0.0  # training seconds in the window before its last checkpoint
        run_tokens, train_time = 0, 0.0  # training time: no evaluation, no checkpoints
        epoch_cache: dict[int, list[list[int]]] = {}
        eval_metrics: dict[str, float] | None = None
        while step < self.total_steps:
            epoch, k = divmod(step, self.steps_per_epoch)
            if epoch not in epoch_cache:
                epoch_cache.clear()
                epoch_cache[epoch] = micro_batches(
                    len(self.train.samples), epoch=epoch, seed=hp.seed, rank=self.rank,
                    world=self.world, batch_size=hp.batch_size, grad_accum=hp.grad_accum)
            mbs = epoch_cache[epoch][k * hp.grad_accum:(k + 1) * hp.grad_accum]
            # the step's answer tokens over every micro-batch and process, counted before
            # the forwards: each micro-batch's summed cross-entropy is divided by them
            # (no host sync: the counts stay on the device)
            batches = [self._batch(mb, self.train) for mb in mbs]
            counts = sum(answer_counts(b["labels"], b["task"]) for b in batches)
            dist.all_reduce(counts)
            for j, (mb, batch) in enumerate(zip(mbs, batches, strict=True)):
                with self._sync(j == len(mbs) - 1):
                    _, sums = self._loss(batch)
                    share = step_loss(sums, counts, alpha=hp.alpha, multitask=self.multitask)
                    # DDP and FSDP average gradients over the processes: undo that, the
                    # share is already a part of the global mean
                    (share * self.world).backward()
                window[0] += share.detach().double()
                window[2] += batch["attention_mask"].sum()
                my_samples += len(mb)
            if hp.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), hp.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            step += 1
            window[1] += 1
            last = step == self.total_steps
            do_eval = bool(hp.eval_every and step % hp.eval_every == 0) or last
            do_log = step == resumed_from + 1 or step % hp.log_every == 0 or last or do_eval
            evaluated = None
            if do_log:
                local = window.clone()
                dist.all_reduce(window)
                totals = window.tolist()  # waits for the device: the window's work is done
                # training time only: a checkpoint inside the window is not counted
                elapsed = max(window_time + time.perf_counter() - t_window, 1e-9)
                my_tokens += int(local[2].item())
                # every process adds its share of each step's loss and 1 per step
                loss_avg = totals[0] * self.world / max(totals[1], 1)
                window_tokens = int(totals[2])
                run_tokens += window_tokens
                train_time += elapsed
                tps = window_tokens / elapsed
                history.append([step, round(loss_avg, 6)])
            if do_eval:
                evaluated = self.evaluate()
                eval_metrics = evaluated or eval_metrics
            if do_log:
                if self.rank == 0:
                    mem = torch.cuda.max_memory_allocated(self.device) \
                        if self.device.type == "cuda" else None
                    emit("progress", step=step, total_steps=self.total_steps,
                         epoch=round(step / self.steps_per_epoch, 4), loss=loss_avg,
                         eval_loss=evaluated["loss"] if evaluated else None,
                         eval_metrics=evaluated,
                         learning_rate=self.scheduler.get_last_lr()[0],
                         tokens_per_second=tps, gpu_memory_bytes=mem,
                         window_tokens=window_tokens, window_seconds=elapsed)
                window.zero_()
                window_time = 0.0
                t_window = time.perf_counter()  # evaluation time is not training time
            if hp.checkpoint_every and step % hp.checkpoint_every == 0 and not last:
                if not do_log:  # the window goes on after the checkpoint: keep its time
                    window_time += time.perf_counter() - t_window
                folder = spec.out_dir / "checkpoints" / f"step-{step}"
                save_checkpoint(folder, model=self.model, optimizer=self.optimizer,
                                scheduler=self.scheduler, trainable_only=lora,
                                state={"step": step, "epoch": step / self.steps_per_epoch,
                                       "total_steps": self.total_steps, "seed": hp.seed,
                                       "world_size": self.world, "history": history,
                                       "tokens": tokens_seen + run_tokens})
                if self.rank == 0:
                    emit("checkpoint", step=step, path=str(folder))
                t_window = time.perf_counter()
        wall_seconds = time.perf_counter() - t_start
        # every rank's share of the work (NCCL gathers device tensors only)
        shares = torch.tensor([self.rank, my_samples, my_tokens], dtype=torch.long,
                              device=self.device)
        gathered = [torch.zeros(3, dtype=torch.long, device=self.device)
                    for _ in range(self.world)]
        dist.all_gather(gathered, shares)
        final = self.save_final()
        if self.rank == 0:
            metrics = {
                "steps": float(step), "resumed_from": float(resumed_from),
                "train_loss_first": history[0][1] if history else math.nan,
                "train_loss_last": history[-1][1] if history else math.nan,
                "tokens": float(tokens_seen + run_tokens),
                "tokens_per_second": run_tokens / train_time if train_time else 0.0,
                "train_seconds": train_time, "wall_seconds": wall_seconds, "world_size": float(self.world),
                "parameters": float(self.parameters),
                "trainable_parameters": float(self.trainable),
            }
            if eval_metrics:
                metrics.update({("eval_" + k if k != "loss" else "eval_loss"): v
                                for k, v in eval_metrics.items()})
            emit("done", path=str(final), metrics=metrics, history=history,
                 ranks=[{"rank": int(r), "samples": int(s), "tokens": int(t)}
                        for r, s, t in (g.cpu().tolist() for g in gathered)])

    def save_final(self) -> Path:
        """Collective: gather the trained weights; rank 0 saves a plain Hugging Face model
        (for LoRA merged into a fresh copy of the base, plus adapter/ when kept)."""
        import torch
        import torch.distributed as dist
        from torch.distributed.checkpoint.state_dict import get_model_state_dict
        from transformers import AutoModelForCausalLM

        from ._checkpoint import _options

        lora = self.spec.method == "lora"
        sd = get_model_state_dict(self.model, options=_options(trainable_only=lora))
        out = self.spec.out_dir / "final"
        if self.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            fresh = AutoModelForCausalLM.from_pretrained(self.spec.base_model,
                                                         local_files_only=True)
            if lora:
                from peft import get_peft_model

                fresh = get_peft_model(fresh, self.lora_config())
            result = fresh.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()},
                                           strict=False)
            if result.unexpected_keys:
                raise RuntimeError(f"trained weights do not fit the base model: unexpected "
                                   f"{result.unexpected_keys[:5]}")
            if lora:
                if self.hp.lora_adapter == "keep":
                    fresh.save_pretrained(out / "adapter")
                fresh = fresh.merge_and_unload()
            fresh.config.use_cache = True
            fresh.save_pretrained(out)
            if not getattr(self.tokenizer, "chat_template", None):
                # trained on the plain template: save it as the model's chat template, so a
                # server renders the prompts the model learnt
                from ._data import plain_chat_template

                self.tokenizer.chat_template = plain_chat_template()
            self.tokenizer.save_pretrained(out)
        dist.barrier()
        return out


def main(argv: list[str] | None = None) -> int:
    import torch.distributed as dist

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m syllabus.services.trainer._worker SPEC.json", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    spec = JobSpec.model_validate_json(Path(argv[0]).read_text())
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per rank is noise in the service log
    if spec.backend == "nccl":
        import torch

        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group(backend=spec.backend)
    try:
        trainer = Trainer(spec)
        trainer.load_data()
        trainer.build_model()
        trainer.run()
    except Exception as exc:
        # no destroy_process_group here: the other ranks may sit in a collective; torchrun
        # stops them when this one exits non-zero
        emit("error", rank=int(os.environ.get("RANK", "0")),
             message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        sys.stdout.flush()
        return 1
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
