"""Training on one device, several devices or several machines with
TensorFlow's own distribution engine, and the custom training loop.

`make_strategy("default" | "mirrored" | "multi_worker")` returns the
`tf.distribute` strategy; models are built and compiled inside its scope.
Keras 3's `fit` does not run under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585), so `CustomLoop` trains there instead. It optimises
exactly what `fit` optimises, `model.compute_loss(x, y, y_pred,
training=True)` (which already adds `model.losses`), applies the gradients
with the model's own (compiled) optimizer, sets `model.set_epoch(epoch)` at
each epoch start, and drives the same Keras callbacks. It also checkpoints
every N steps and resumes mid-epoch (`keras_msa.training.checkpointing`), so
the runner uses it whenever checkpoints are asked for.

Launching on several machines: every machine runs the same command with its
own `TF_CONFIG` (same `cluster`, its own `task.index`), e.g. on machine 0

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python recipes/train.py --strategy=multi_worker --model=lfdnn \\
        --output_dir=runs/lfdnn_mw

and `"index": 1` on machine 1. Worker 0 is the chief: it writes
`<output_dir>/model.keras`, `metrics.json` and `history.csv`; worker `i > 0`
writes the same files under `<output_dir>/worker_<i>/` (on a shared file
system they do not collide). `--batch_size` is the global batch, split over
all replicas.
"""

import json
import math
import os

import keras
import numpy as np

STRATEGIES = ("default", "mirrored", "multi_worker")


def configure_logical_cpus(n):
    """Splits the first physical CPU into `n` logical devices (so that
    `MirroredStrategy` can be exercised without GPUs). Must run before
    TensorFlow initialises its devices (before any op runs)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))]
    )


def make_strategy(name="default"):
    """The `tf.distribute` strategy called `name`.

    * `default`: the default (single-device) strategy.
    * `mirrored`: `MirroredStrategy` over all GPUs, or over all logical CPU
      devices when there is no GPU.
    * `multi_worker`: `MultiWorkerMirroredStrategy`, cluster from `TF_CONFIG`.
    """
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL (MirroredStrategy's GPU default) does not reduce on CPUs.
        return tf.distribute.MirroredStrategy(
            devices=cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "multi_worker":
        tf_config = os.environ.get("TF_CONFIG")
        if not tf_config:
            raise ValueError(
                "--strategy=multi_worker needs TF_CONFIG (the cluster and this "
                "worker's task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                "[\"host0:12345\", \"host1:12345\"]}, \"task\": {\"type\": "
                "\"worker\", \"index\": 0}}'."
            )
        try:
            json.loads(tf_config)
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy '{name}'; expected one of {STRATEGIES}.")


def worker_info(strategy):
    """`(task_index, is_chief)` of this process in `strategy`'s cluster
    (`(0, True)` outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0, True
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    spec = resolver.cluster_spec().as_dict()
    if "chief" in spec:
        return task_id, task_type == "chief"
    return task_id, task_type == "worker" and task_id == 0


def epoch_seed(seed, epoch):
    """The shuffle seed of one epoch: a pure function of (seed, epoch), so a
    resumed run reads the same order as an uninterrupted one (tf.data also
    mixes in TensorFlow's global seed, which the runner sets from the same
    `--seed`)."""
    return int((int(seed) * 1_000_003 + 7919 * (int(epoch) + 1)) % (2**31 - 1))


class CustomLoop:
    """The training loop for any `tf.distribute` strategy (the only one that
    works under `MultiWorkerMirroredStrategy`), with resumable checkpoints.

    Each step runs `model(x, training=True)` and `model.compute_loss(x, y,
    y_pred, training=True)` on every replica; the loss is divided by the
    number of replicas because Keras optimizers sum gradients over replicas
    (the sum is then the gradient of the global batch's mean loss, as on one
    device), multiplied by the dynamic loss scale when the optimizer is a
    `LossScaleOptimizer`, and the gradients go to `model.optimizer`.

    Args:
        model: a compiled `MSAModel`, built inside `strategy.scope()`.
        strategy: the `tf.distribute` strategy (default strategy if `None`).
        jit_compile: compile the step with XLA (single replica only).
        run_eagerly: run the step eagerly, without `tf.function` (debugging,
            or models whose graph takes longer to trace than a few steps to
            run). Defaults to `model.run_eagerly` (`compile(run_eagerly=...)`).

    Example:

    >>> import keras
    >>> from keras_msa.models import LFDNN
    >>> from keras_msa.testing import tiny_synthetic
    >>> data = tiny_synthetic(train=64, valid=16, test=16)
    >>> model = LFDNN(hidden_dims={"text": 8, "audio": 4, "vision": 4}, fusion_dim=8)
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> loop = CustomLoop(model)
    >>> base = data["train"].to_tf_dataset(1).unbatch()
    >>> history = loop.fit(lambda epoch: base.batch(16), steps_per_epoch=4, epochs=2)
    >>> len(history)
    2
    """

    def __init__(self, model, strategy=None, jit_compile=False, run_eagerly=None):
        import tensorflow as tf

        if getattr(model, "optimizer", None) is None:
            raise ValueError("CustomLoop needs a compiled model (model.compile(optimizer=...)).")
        self.model = model
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.run_eagerly = bool(model.run_eagerly if run_eagerly is None else run_eagerly)
        self.jit_compile = bool(jit_compile) and self.replicas == 1 and not self.run_eagerly
        with self.strategy.scope():
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
        self._train_fn = self._make_train_fn()
        self._trace_key = self._model_trace_key()

    def _model_trace_key(self):
        trace_key = getattr(self.model, "trace_key", None)
        return trace_key() if callable(trace_key) else None

    def _retrace_if_changed(self):
        """Rebuilds the compiled step when the model's Python state changed
        what it computes (M3SA's key choice): the traced graph would keep
        running, and updating, the old branches."""
        key = self._model_trace_key()
        if key != self._trace_key:
            self._train_fn = self._make_train_fn()
            self._trace_key = key

    def _replica_step(self, x, y):
        import tensorflow as tf

        model, optimizer = self.model, self.model.optimizer
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(x, y, y_pred, training=True)
            scaled = optimizer.scale_loss(loss / float(self.replicas))
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        # The named terms of this step's objective (compute_loss sets them
        # while the step is traced), logged per epoch as `<term>_loss`.
        return loss, dict(getattr(model, "loss_components", {}) or {})

    def _make_train_fn(self):
        import tensorflow as tf

        strategy = self.strategy
        if self.jit_compile:
            step = tf.function(self._replica_step, jit_compile=True)
        else:
            step = self._replica_step

        @tf.function(autograph=True)
        def train_fn(iterator):
            batch = next(iterator)
            per_replica = strategy.run(step, args=(batch[0], batch[1]))
            return tf.nest.map_structure(
                lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None), per_replica
            )

        return train_fn.python_function if self.run_eagerly else train_fn

    def distribute(self, dataset):
        """`dataset` (batched with the global batch size) split over replicas."""
        import tensorflow as tf

        if self.replicas == 1 and isinstance(self.strategy, type(tf.distribute.get_strategy())):
            return dataset
        options = tf.data.Options()
        # DATA sharding works for in-memory and file-backed data alike: every
        # worker keeps its slice of each global batch, so all of them take
        # the same number of steps.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

    # ------------------------------------------------------------------ state
    def _callback_state(self, callbacks):
        arrays, meta = {}, {}
        for i, cb in enumerate(callbacks):
            if hasattr(cb, "checkpoint_state"):
                meta[str(i)] = cb.checkpoint_state()
            elif type(cb).__name__ == "BestWeights":
                trace_key = getattr(cb, "trace_key", None)
                meta[str(i)] = {"best": cb.best, "best_epoch": cb.best_epoch, "wait": cb.wait,
                                "has_weights": cb.best_weights is not None,
                                "trace_key": trace_key if isinstance(trace_key, (str, type(None))) else None}
                if cb.best_weights is not None:
                    for j, w in enumerate(cb.best_weights):
                        arrays[f"callback/{i}/{j}"] = np.asarray(w)
            elif type(cb).__name__ == "HistoryCSV":
                meta[str(i)] = {"rows": cb.rows}
            elif type(cb).__name__ == "ValidationMetrics":
                meta[str(i)] = {"last": cb.last}
        return arrays, meta

    def _restore_callback_state(self, callbacks, arrays, meta):
        for i, cb in enumerate(callbacks):
            state = meta.get(str(i))
            if state is None:
                continue
            if hasattr(cb, "restore_checkpoint_state"):
                cb.restore_checkpoint_state(state)
            elif type(cb).__name__ == "BestWeights":
                cb.best, cb.best_epoch, cb.wait = state["best"], state["best_epoch"], state["wait"]
                if "trace_key" in state:
                    cb.trace_key = state["trace_key"]
                if state["has_weights"]:
                    n = sum(1 for k in arrays if k.startswith(f"callback/{i}/"))
                    cb.best_weights = [arrays[f"callback/{i}/{j}"] for j in range(n)]
            elif type(cb).__name__ == "HistoryCSV":
                cb.rows = list(state["rows"])
            elif type(cb).__name__ == "ValidationMetrics":
                cb.last = state["last"]

    def save_checkpoint(self, checkpoints, position, callbacks, fingerprint=None):
        from keras_msa.training import checkpointing as C

        arrays, model_paths = C.variables_to_arrays("model", self.model.variables)
        opt_arrays, opt_paths = C.variables_to_arrays("optimizer", self.model.optimizer.variables)
        arrays.update(opt_arrays)
        rng_arrays, rng_meta = C.capture_rng_state()
        arrays.update(rng_arrays)
        cb_arrays, cb_meta = self._callback_state(callbacks)
        arrays.update(cb_arrays)
        meta = dict(position)
        model_state = self.model.checkpoint_state() if hasattr(self.model, "checkpoint_state") else {}
        meta.update(
            model_paths=model_paths, optimizer_paths=opt_paths, rng=rng_meta,
            callbacks=cb_meta, fingerprint=fingerprint, model_state=model_state,
        )
        return checkpoints.save(position["global_step"], arrays, meta)

    def restore_checkpoint(self, path, callbacks, fingerprint=None):
        """Loads a checkpoint into the model, optimizer, RNGs and callbacks;
        returns its position dict (epoch, step_in_epoch, global_step, ...)."""
        from keras_msa.training import checkpointing as C

        arrays, meta = C.CheckpointDirectory.load(path)
        if fingerprint is not None and meta.get("fingerprint") not in (None, fingerprint):
            changed = sorted(
                k for k in set(fingerprint) | set(meta["fingerprint"])
                if fingerprint.get(k) != meta["fingerprint"].get(k)
            )
            raise ValueError(
                f"{path} was written by a run with a different configuration "
                f"(differs in: {', '.join(changed)}). Resume with the same command, "
                f"or use a new --output_dir."
            )
        with self.strategy.scope():
            C.assign_from_arrays("model", self.model.variables, arrays, meta["model_paths"], "model")
            C.assign_from_arrays("optimizer", self.model.optimizer.variables, arrays,
                                 meta["optimizer_paths"], "optimizer")
        if meta.get("model_state") and hasattr(self.model, "restore_checkpoint_state"):
            # E.g. M3SA's chosen key: the unchosen branches freeze again.
            self.model.restore_checkpoint_state(meta["model_state"])
        C.restore_rng_state(arrays, meta["rng"])
        self._restore_callback_state(callbacks, arrays, meta["callbacks"])
        position = {k: meta[k] for k in ("epoch", "step_in_epoch", "global_step", "loss_sum",
                                         "loss_count", "stopped")}
        # Checkpoints written before the terms were logged have none.
        position["term_sums"] = dict(meta.get("term_sums") or {})
        return position

    # ------------------------------------------------------------------- fit
    def fit(self, make_dataset, steps_per_epoch, epochs, callbacks=(), checkpoints=None,
            checkpoint_every_steps=0, fingerprint=None, verbose=0):
        """Trains for `epochs` epochs of `steps_per_epoch` batches.

        Args:
            make_dataset: `fn(epoch) -> tf.data.Dataset` of `(inputs,
                targets)` global batches; the same epoch must give the same
                order (this is how a resumed run finds its data position).
            steps_per_epoch: batches per epoch.
            epochs: total epochs (a resumed run continues up to it).
            callbacks: Keras callbacks (early stopping, validation, history).
            checkpoints: a `CheckpointDirectory`, or `None` for no checkpoints.
                When it holds a checkpoint, training resumes from it.
            checkpoint_every_steps: also checkpoint every N global steps (an
                epoch-end checkpoint is always written when `checkpoints` is set).
            fingerprint: JSON-able dict of the run's configuration; resuming
                from a checkpoint with another fingerprint raises.
            verbose: 1 prints one line per epoch.

        Returns:
            The list of per-epoch logs (loss and what callbacks added).
        """
        model = self.model
        callbacks = list(callbacks)
        cb_list = keras.callbacks.CallbackList(
            callbacks, add_history=False, add_progbar=False, model=model,
            epochs=epochs, steps=steps_per_epoch, verbose=0,
        )
        position = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "loss_sum": 0.0,
                    "loss_count": 0, "term_sums": {}, "stopped": False}
        if checkpoints is not None and checkpoints.latest():
            position = self.restore_checkpoint(checkpoints.latest(), callbacks, fingerprint)
            if verbose:
                print(f"Resumed from {checkpoints.latest()} at epoch {position['epoch'] + 1}, "
                      f"step {position['step_in_epoch']}.", flush=True)
        model.stop_training = bool(position["stopped"])
        history = []
        cb_list.on_train_begin()
        epoch = position["epoch"]
        global_step = position["global_step"]
        while epoch < epochs and not model.stop_training:
            start_step = position["step_in_epoch"] if epoch == position["epoch"] else 0
            loss_sum = position["loss_sum"] if start_step else 0.0
            loss_count = position["loss_count"] if start_step else 0
            term_sums = dict(position["term_sums"]) if start_step else {}
            model.set_epoch(epoch)
            self._retrace_if_changed()
            cb_list.on_epoch_begin(epoch)
            dataset = make_dataset(epoch)
            if start_step:
                dataset = dataset.skip(start_step)
            iterator = iter(self.distribute(dataset))
            for step in range(start_step, steps_per_epoch):
                cb_list.on_train_batch_begin(step)
                loss, terms = self._train_fn(iterator)
                loss = float(loss)
                loss_sum += loss
                loss_count += 1
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value)
                global_step += 1
                cb_list.on_train_batch_end(step, {"loss": loss_sum / loss_count})
                if (checkpoints is not None and checkpoint_every_steps
                        and global_step % checkpoint_every_steps == 0 and step + 1 < steps_per_epoch):
                    self.save_checkpoint(checkpoints, {
                        "epoch": epoch, "step_in_epoch": step + 1, "global_step": global_step,
                        "loss_sum": loss_sum, "loss_count": loss_count, "term_sums": term_sums,
                        "stopped": False,
                    }, callbacks, fingerprint)
            logs = {"loss": loss_sum / max(1, loss_count)}
            # Means over the same steps as `loss`, so they sum to it.
            logs.update({f"{name}_loss": total / max(1, loss_count) for name, total in term_sums.items()})
            cb_list.on_epoch_end(epoch, logs)
            history.append(dict(logs))
            if verbose:
                shown = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items() if isinstance(v, float))
                print(f"Epoch {epoch + 1}/{epochs} - {shown}", flush=True)
            epoch += 1
            if checkpoints is not None:
                self.save_checkpoint(checkpoints, {
                    "epoch": epoch, "step_in_epoch": 0, "global_step": global_step,
                    "loss_sum": 0.0, "loss_count": 0, "term_sums": {},
                    "stopped": bool(model.stop_training),
                }, callbacks, fingerprint)
        cb_list.on_train_end()
        return history


def steps_for(num_examples, batch_size, drop_remainder):
    """Batches per epoch of `num_examples` in batches of `batch_size`."""
    if drop_remainder:
        steps = num_examples // batch_size
        if steps == 0:
            raise ValueError(
                f"{num_examples} training examples are fewer than one global batch "
                f"({batch_size}); lower --batch_size."
            )
        return steps
    return int(math.ceil(num_examples / batch_size))
