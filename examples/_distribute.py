"""`--strategy` for the examples: one place that builds a tf.distribute strategy or a Keras JAX
distribution from the command line.

    --strategy default         no distribution: one device (TensorFlow's default strategy)
    --strategy mirrored        every local GPU (tf.distribute.MirroredStrategy); on a machine
                               without GPUs, --cpu-replicas N splits the CPU into N devices
    --strategy multiworker     one worker of a cluster described by TF_CONFIG
                               (tf.distribute.MultiWorkerMirroredStrategy)
    --strategy tpu             a Cloud TPU (TPUClusterResolver; --tpu names it, empty for a TPU VM)
    --strategy data-parallel   JAX: keras.distribution.DataParallel over every device
    --strategy model-parallel  JAX: keras.distribution.ModelParallel, a (batch, model) mesh; the
                               layouts come from the example's layout map

What differs between them for Lookahead: nothing in the optimizer. The strategy decides where
the slow weights live (beside their variables, replicated or sharded like them), and every
replica syncs on the same step because the step counter is a replicated variable.
"""

import json
import os
import socket
import subprocess
import sys

TF_STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
JAX_STRATEGIES = ("data-parallel", "model-parallel")


def add_arguments(parser):
    parser.add_argument("--strategy", default="default", choices=TF_STRATEGIES + JAX_STRATEGIES,
                        help="how to distribute training (default: one device)")
    parser.add_argument("--cpu-replicas", type=int, default=0, metavar="N",
                        help="with --strategy mirrored on a machine without GPUs: split the CPU "
                             "into N logical devices (to try it out)")
    parser.add_argument("--tpu", default="",
                        help="with --strategy tpu: the TPU's name or grpc:// address "
                             "(empty: the TPU of this TPU VM)")
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the train step with XLA (on by default on a TPU)")
    parser.add_argument("--local-workers", type=int, default=0, metavar="N",
                        help="with --strategy multiworker: start an N-worker cluster on this "
                             "machine (to try it out)")


def add_custom_loop_argument(parser):
    parser.add_argument("--custom-loop", action="store_true",
                        help="train with strategy.run in the custom loop of examples/_loop.py, "
                             "under any TensorFlow strategy (always so under --strategy "
                             "multiworker, where Keras's fit cannot run: keras #20585)")


def _check_local_workers(args):
    if args.local_workers < 0:
        raise SystemExit(f"--local-workers {args.local_workers}: must be 0 or more")
    if args.local_workers and args.strategy != "multiworker":
        raise SystemExit("--local-workers: only with --strategy multiworker")


def main(script, parse_args, run, argv=None, cluster_argv=lambda args: ()):
    """An example's entry point: parses `argv` (default: the command line) and returns
    `run(args)`; with --local-workers N it starts N copies of `script` as a cluster instead
    (their arguments: `argv` less --local-workers, plus `cluster_argv(args)`). `script` is a
    file (an example, `__file__`) or a module run with `python -m` from the repository root
    (a benchmark harness, `__spec__.name`)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    _check_local_workers(args)
    if not args.local_workers:
        return run(args)
    _launch_local_cluster(args.local_workers, argv, script, cluster_argv(args))
    return None


def _launch_local_cluster(workers, argv, script, extra_argv):
    """Runs `workers` copies of `script` as one MultiWorkerMirroredStrategy cluster on
    127.0.0.1 and waits for them."""
    socks = [socket.socket() for _ in range(workers)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    for s in socks:
        s.close()
    child_argv = [a for a in argv if not a.startswith("--local-workers")]
    if "--local-workers" in argv:  # the "--local-workers N" form
        i = argv.index("--local-workers")
        child_argv = argv[:i] + argv[i + 2:]
    child_argv += list(extra_argv)
    procs = []
    for task in range(workers):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": task}}))
        target = [os.path.abspath(script)] if script.endswith(".py") else ["-m", script]
        procs.append(subprocess.Popen([sys.executable, *target, *child_argv], env=env))
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(codes):
        raise SystemExit(f"workers exited with {codes}")


class Distribution:
    """What an example needs from the chosen strategy, on either backend.

    `scope()` is where the model and optimizer are built; `replicas` is the number of model
    replicas a global batch is split over; `tf_strategy` is the tf.distribute strategy (None on
    JAX); `is_chief` says whether this process writes results; `custom_loop` whether to train
    with examples/_loop.py instead of `fit` (--custom-loop, and always under multiworker).
    """

    def __init__(self, name, tf_strategy=None, jax_distribution=None, replicas=1, is_chief=True,
                 custom_loop=False):
        self.name = name
        self.tf_strategy = tf_strategy
        self.jax_distribution = jax_distribution
        self.replicas = replicas
        self.is_chief = is_chief
        self.custom_loop = custom_loop or name == "multiworker"

    def scope(self):
        if self.tf_strategy is not None:
            return self.tf_strategy.scope()
        if self.jax_distribution is not None:
            return self.jax_distribution.scope()
        import contextlib

        return contextlib.nullcontext()


def make(args, layout_map=None, global_batch=None):
    """The Distribution that `args.strategy` asks for; call it before any other TF/JAX work.

    `layout_map(mesh)` returns a keras.distribution.LayoutMap for --strategy model-parallel.
    `global_batch`, if given, is checked to split evenly over the replicas.
    """
    _check_local_workers(args)
    dist = _make(args, layout_map)
    dist.custom_loop = dist.custom_loop or getattr(args, "custom_loop", False)
    if global_batch is not None and global_batch % dist.replicas:
        raise SystemExit(f"--batch-size {global_batch}: must be divisible by the "
                         f"{dist.replicas} replicas of --strategy {args.strategy}")
    return dist


def _make(args, layout_map):
    import keras

    backend = keras.backend.backend()
    name = args.strategy
    if name in JAX_STRATEGIES and backend != "jax":
        raise SystemExit(f"--strategy {name} is JAX's keras.distribution: run with "
                         f"KERAS_BACKEND=jax (the backend now is {backend!r})")
    if name in TF_STRATEGIES[1:] and backend != "tensorflow":
        raise SystemExit(f"--strategy {name} is a tf.distribute strategy: run with "
                         f"KERAS_BACKEND=tensorflow (the backend now is {backend!r}), or use "
                         f"--strategy data-parallel / model-parallel on JAX")
    if getattr(args, "custom_loop", False) and backend != "tensorflow":
        raise SystemExit(f"--custom-loop: the loop is TensorFlow's (tf.distribute): run with "
                         f"KERAS_BACKEND=tensorflow (the backend now is {backend!r})")
    if args.cpu_replicas and name != "mirrored":
        raise SystemExit(f"--cpu-replicas {args.cpu_replicas}: only with --strategy mirrored")
    if args.cpu_replicas < 0:
        raise SystemExit(f"--cpu-replicas {args.cpu_replicas}: must be 0 or more")

    if name in JAX_STRATEGIES:
        import jax

        devices = jax.devices()
        if name == "data-parallel":
            dist = keras.distribution.DataParallel(devices=devices)
        else:
            if layout_map is None:
                raise SystemExit("--strategy model-parallel: this example has no layout map")
            mesh = keras.distribution.DeviceMesh((1, len(devices)), ["batch", "model"], devices)
            dist = keras.distribution.ModelParallel(layout_map=layout_map(mesh),
                                                    batch_dim_name="batch")
        keras.distribution.set_distribution(dist)
        # model-parallel: one data replica (the mesh's batch axis has size 1)
        replicas = len(devices) if name == "data-parallel" else 1
        return Distribution(name, jax_distribution=dist, replicas=replicas)

    import tensorflow as tf

    if name == "default":
        return Distribution(name, tf_strategy=tf.distribute.get_strategy())
    if name == "mirrored":
        devices = None
        if not tf.config.list_physical_devices("GPU") and args.cpu_replicas:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas)
            devices = [f"/cpu:{i}" for i in range(args.cpu_replicas)]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution(name, tf_strategy=strategy, replicas=strategy.num_replicas_in_sync)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("--strategy multiworker: set TF_CONFIG to describe the cluster, or "
                             "start one on this machine with --local-workers N")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = strategy.cluster_resolver
        chief = resolver.task_type in ("chief", None) or (
            resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())
        return Distribution(name, tf_strategy=strategy,
                            replicas=strategy.num_replicas_in_sync, is_chief=chief)
    # tpu
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    args.jit_compile = True  # TPUs only run compiled programs
    return Distribution(name, tf_strategy=strategy, replicas=strategy.num_replicas_in_sync)
