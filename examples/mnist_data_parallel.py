"""Data-parallel training of the course's MNIST network on several processes or GPUs.

    784 → 64 (Sigmoid) → 16 (Tanh) → 10 (Softmax), cross-entropy, SGD — examples/mnist_mlp.py's
    network — with every MPI rank training on its part of each global batch:

    mpirun -n 2 python examples/mnist_data_parallel.py --device cpu --data-dir ../shared/data/mnist
    mpirun -n 4 python examples/mnist_data_parallel.py --device cuda --data-dir DIR   # 4 GPUs

``--batch-size`` is the GLOBAL batch: with N ranks each computes the gradient of batch/N examples,
the gradients are averaged (MPI on the CPU, NCCL between GPUs), and every rank applies the same
step, so the run matches one process with the same batch up to float rounding.  With ``--device
cuda`` each rank uses ``cuda:<its rank on the machine>``.  Only rank 0 prints.  Without mpirun it
runs as a single process.  Needs ``pip install "gpunn[dist]"`` (mpi4py and MPICH) for mpirun.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MNIST_DIR_HELP, load_mnist_or_split, load_or_exit, parser  # noqa: E402
from mnist_mlp import build  # noqa: E402  (the same network as the one-process example)

import gpunn  # noqa: E402
from gpunn import distributed as dist  # noqa: E402


def main(argv=None) -> dict:
    ap = parser(
        __doc__,
        MNIST_DIR_HELP,
        device_default="cpu",
        device_help="cpu, or cuda (each rank: cuda:<local rank>)",
    )
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64, help="the global batch, split over the ranks")
    ap.add_argument("--lr", type=float, default=0.5, help="SGD learning rate")
    ap.add_argument("--seed", type=int, default=0, help="the same on every rank (data order, weights)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    ap.add_argument("--checkpoint", default=None, help="checkpoint file (written by rank 0)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a collective may wait for the other ranks (default 300)",
    )
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    ctx = dist.init(timeout=args.timeout)
    say = print if ctx.is_main else (lambda *a, **k: None)
    # every rank loads the same data, mnist_mlp.py's
    (xtr, ttr), (xte, tte), what = load_or_exit(load_mnist_or_split, args.data_dir)
    if args.limit:
        xtr, ttr = xtr[: args.limit], ttr[: args.limit]
    net = build(dist.local_device(args.device), args.seed)
    per_rank = "/".join(str(s) for s in sorted(set(dist.shard_sizes(args.batch_size, ctx.world_size))))
    say(
        f"{net}\ndata: {what}; training on {len(xtr)} samples with {ctx.world_size} processes "
        f"(global batch {args.batch_size}, {per_rank} per rank)"
    )
    trainer = gpunn.Trainer(
        net,
        gpunn.optim.SGD(lr=args.lr),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        distributed=ctx,
        checkpoint_path=args.checkpoint,
    )
    start = time.perf_counter()
    history = trainer.fit(xtr, ttr, validation_data=(xte, tte))
    net.device.synchronize()
    seconds = time.perf_counter() - start
    say(
        f"{ctx.world_size} processes, device {net.device.name} on rank 0: test accuracy "
        f"{history['val_acc'][-1]:.4f} after {len(history['loss'])} epochs, wall time {seconds:.2f} s "
        f"({len(xtr) * len(history['loss']) / seconds:,.0f} samples/s)"
    )
    return {"test_acc": history["val_acc"][-1], "seconds": seconds, "history": history}


if __name__ == "__main__":
    main()
