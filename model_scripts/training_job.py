"""One training job from data to model directory: the epochs, early stopping, resume, outputs."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from training_checkpoints import (
    CHECKPOINT_FILE,
    TrainingState,
    ensure_checkpoint_dir,
    load_checkpoint,
    save_checkpoint,
)
from training_cluster import Cluster, broadcast_buffers, set_compute_threads
from training_data import load_job_data
from training_export import export_onnx, save_model_dir, write_evaluation, write_summary
from training_loop import debugger_hook, evaluate, set_hook_mode, train_one_epoch
from training_model import (
    build_model,
    choose_precision,
    cpu_state_dict,
    freeze_except,
    make_optimizer,
    make_scheduler,
    set_train_mode,
    trainable_stages,
)
from training_telemetry import PhaseTimer, print_metrics

logger = logging.getLogger("train")


@dataclass
class JobOutcome:
    metrics: dict[str, float]
    model: nn.Module  # the best weights, unwrapped from DDP


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def run(args: argparse.Namespace, cluster: Cluster, timer: PhaseTimer) -> JobOutcome:
    seed_everything(args.seed)
    # Denormal floats make CPU convolutions 10x slower here (measured); flushing them costs no accuracy.
    torch.set_flush_denormal(True)
    precision = choose_precision(args.amp, cluster.use_cuda)
    threads = set_compute_threads(cluster)
    test_root = args.test if args.test.is_dir() else None
    timer.begin()
    with timer.phase("data"):
        data = load_job_data(
            args.train,
            args.valid,
            test_root,
            args.image_size,
            args.batch_size,
            cluster,
            args.seed,
            args.cache_memory_mb,
        )
    logger.info(
        "%d classes, %d/%d/%d train/valid/test images, precision %s, %d threads, world_size=%d rank=%d",
        len(data.classes),
        len(data.train.labels),
        len(data.valid.labels),
        len(data.test.labels) if data.test else 0,
        precision.name,
        threads,
        cluster.world_size,
        cluster.rank,
    )

    model = build_model(len(data.classes), args.pretrained)
    stages = trainable_stages(args.unfreeze, args.pretrained)
    freeze_except(model, stages)
    model = model.to(cluster.device, memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    scheduler = make_scheduler(optimizer, max(1, args.epochs * len(data.train)), args.warmup_fraction)
    scaler = torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None

    checkpoint_dir = ensure_checkpoint_dir(args.checkpoint_dir)
    checkpoint = checkpoint_dir / CHECKPOINT_FILE if checkpoint_dir else None
    bundle = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    state = (load_checkpoint(checkpoint, bundle, data.classes) if checkpoint else None) or TrainingState()

    training_model: nn.Module = model
    if cluster.distributed:
        # DDP broadcasts rank 0's weights at construction: every rank starts from the same model.
        training_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[cluster.local_rank] if cluster.use_cuda else None
        )
    hook = debugger_hook(model, criterion)

    for epoch in range(state.next_epoch, args.epochs):
        if state.stopped_early:
            break
        set_train_mode(training_model, stages)
        set_hook_mode(hook, training=True)
        started = time.perf_counter()
        with timer.phase("train"):
            train_loss, seen = train_one_epoch(
                training_model,
                data.train.epoch(epoch),
                criterion,
                optimizer,
                scheduler,
                scaler,
                precision,
                cluster,
            )
        images_per_sec = seen * cluster.world_size / (time.perf_counter() - started)
        broadcast_buffers(model, cluster)
        set_hook_mode(hook, training=False)
        with timer.phase("evaluate"):
            # The unwrapped model: DDP's forward would sync buffers, and ranks' eval shards differ in size.
            valid = evaluate(model, data.valid, precision, cluster, len(data.classes))
        valid_loss, valid_accuracy = valid.loss, valid.accuracy
        state.next_epoch = epoch + 1
        if valid_accuracy > state.best_accuracy:
            state.best_accuracy, state.best_epoch = valid_accuracy, epoch
            state.epochs_without_improvement = 0
            state.best_weights = cpu_state_dict(model)
        else:
            state.epochs_without_improvement += 1
        state.stopped_early = state.epochs_without_improvement >= args.patience
        if cluster.is_main:
            print_metrics(
                epoch=epoch + 1,
                train_loss=train_loss,
                valid_loss=valid_loss,
                valid_accuracy=valid_accuracy,
                images_per_sec=images_per_sec,
            )
            if checkpoint:
                with timer.phase("checkpoint"):
                    save_checkpoint(checkpoint, state, bundle, data.classes)
        if state.stopped_early:
            logger.info("early stopping: no better valid accuracy for %d epochs", args.patience)
    logger.info(
        "rank=%d world_size=%d trained_images_last_epoch_this_rank=%d",
        cluster.rank,
        cluster.world_size,
        data.train.images_per_epoch,
    )

    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
        logger.info("restored the best weights (epoch %d)", state.best_epoch + 1)
    final = {"best_valid_accuracy": max(state.best_accuracy, 0.0)}
    test = None
    if data.test is not None:
        with timer.phase("evaluate"):
            test = evaluate(model, data.test, precision, cluster, len(data.classes))
        final["test_loss"], final["test_accuracy"] = test.loss, test.accuracy
    else:
        logger.warning("no test channel at %s: skipping test metrics", args.test)
    if cluster.is_main:
        print_metrics(**final)
        model = model.cpu().float().eval()
        with timer.phase("save"):
            save_model_dir(args.model_dir, cpu_state_dict(model), data.classes, args.image_size)
            write_summary(args, final)
            if test is not None:
                write_evaluation(args.output_data_dir, data.classes, test)
        if args.export_onnx:
            with timer.phase("export"):
                export_onnx(model, data.train_folder.paths, args.model_dir, args.image_size)
        else:
            logger.info("--export-onnx false: no model.int8.onnx (this job's model is not served)")
    return JobOutcome(final, model)
