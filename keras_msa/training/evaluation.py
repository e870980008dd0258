"""Prediction over a dataset and the paper metrics of its task."""

import numpy as np

TASKS = ("sentiment", "phq8", "emotions", "humor")


def infer_task(target_keys):
    """The task of a dataset from its target keys: `phq8` (AVEC 2019),
    `emotions` (IEMOCAP), `humor` (UR-FUNNY) or `sentiment` (MOSI/MOSEI/SIMS)."""
    for task in ("phq8", "emotions", "humor"):
        if task in target_keys:
            return task
    if "sentiment" in target_keys:
        return "sentiment"
    raise ValueError(
        f"No known target among {sorted(target_keys)}; expected one of {TASKS}."
    )


def monitor_for(task):
    """`(log key, mode)` that early stopping follows for `task`."""
    if task == "emotions":
        return "val_acc_mean", "max"
    if task == "humor":
        return "val_acc", "max"
    return "val_mae", "min"


def predict_dataset(model, dataset):
    """Runs `model` over `(inputs, targets)` batches; returns numpy
    `(predictions, targets)` dicts concatenated over the dataset."""
    preds, targets, _ = _run(model, dataset, with_losses=False)
    return preds, targets


def _run(model, dataset, with_losses):
    preds, targets = {}, {}
    loss_sums, count = {}, 0
    for batch in dataset:
        inputs, y = batch[0], batch[1]
        out = model(inputs, training=False)
        for k, v in out.items():
            preds.setdefault(k, []).append(np.asarray(v, dtype=np.float32))
        for k, v in y.items():
            targets.setdefault(k, []).append(np.asarray(v))
        if with_losses:
            # Weighted by the batch size, as Keras weights `loss`.
            n = int(np.asarray(next(iter(y.values()))).shape[0])
            total = float(model.compute_loss(inputs, y, out, training=False))
            loss_sums["loss"] = loss_sums.get("loss", 0.0) + total * n
            for name, value in model.loss_components.items():
                key = f"{name}_loss"
                loss_sums[key] = loss_sums.get(key, 0.0) + float(value) * n
            count += n
    losses = {k: v / max(1, count) for k, v in loss_sums.items()}
    return (
        {k: np.concatenate(v) for k, v in preds.items()},
        {k: np.concatenate(v) for k, v in targets.items()},
        losses,
    )


#: Suffix of the CH-SIMS ordinal metrics on 3 levels round(y) in {-1, 0, 1}
#: (`qwk_l3`, `jump2plus_l3`, `mean_abs_jump_l3`), reported beside the
#: 5-level ones (`qwk`, ...) when the scale is "sims".
SIMS_3_LEVEL_SUFFIX = "_l3"


def task_metrics(predictions, targets, scale="mosi"):
    """All metrics of the task the targets imply (docs/metrics.md), as floats.

    Sentiment: the regression metrics of `scale` and the ordinal ones; on
    CH-SIMS ("sims") the ordinal metrics come on both level sets of seed
    001: 5 levels (`qwk`, `jump2plus`, `mean_abs_jump`) and 3 levels (the
    same names + `_l3`). Humour: `humor` predictions `[N, 2]` (two logits,
    decided by argmax) or `[N]` / `[N, 1]` scores.
    """
    from keras_msa import metrics as M

    task = infer_task(targets)
    if task == "phq8":
        return M.avec_metrics(predictions["phq8"].reshape(-1), targets["phq8"].reshape(-1))
    if task == "emotions":
        return M.iemocap_metrics(predictions["emotions"], targets["emotions"])
    if task == "humor":
        humor = predictions["humor"]
        if not (humor.ndim == 2 and humor.shape[-1] == 2):
            humor = humor.reshape(-1)
        return M.humor_metrics(humor, targets["humor"].reshape(-1))
    p = predictions["sentiment"].reshape(-1)
    t = targets["sentiment"].reshape(-1)
    out = dict(M.regression_metrics(p, t, scale=scale))
    out.update(M.ordinal_metrics(p, t, scale=scale))
    if str(scale).lower() == "sims":
        three = M.ordinal_metrics(p, t, scale=scale, sims_levels=3)
        out.update({f"{k}{SIMS_3_LEVEL_SUFFIX}": v for k, v in three.items()})
    return {k: float(v) for k, v in out.items()}


def evaluate_model(model, dataset, scale="mosi", losses=False):
    """The task's metrics on `dataset`; with `losses=True` also the model's
    objective (`loss`) and each of its terms (`<term>_loss`, as
    `MSAModel.compute_loss` names them, evaluation mode), from the same pass."""
    if not losses:
        preds, targets = predict_dataset(model, dataset)
        return task_metrics(preds, targets, scale)
    preds, targets, loss_values = _run(model, dataset, with_losses=True)
    out = task_metrics(preds, targets, scale)
    out.update(loss_values)
    return out
