"""Results across runs: one table of many `metrics.json` / `seeds_summary.json`
(`recipes/report.py`).

`collect_runs(root)` reads every `metrics.json` (one run of
`recipes/train.py`, `recipes/tune.py` or `train_seeds`) and every
`seeds_summary.json` under `root`, recursively. A seeds summary counts only
for the seeds whose own `seed_<s>/metrics.json` is not beside it (the two
hold the same run). `worker_<i>/` folders of multi-worker runs are skipped:
the chief's files are the run's.

`summarize_groups(runs, split)` makes one row per model x preset x data (or
the fields of `group_by`): for each metric the mean and sample standard
deviation (ddof=1) over the runs, and n. A seed that appears twice in one
row with the same metrics is one run found twice (kept once); with other
metrics it is two different runs under one name, which is an error that
names both files (add a field to `group_by`, e.g. `learning_rate`, to keep
them apart).

`markdown_table` and `csv_text` render the rows, in our metric names and
units (fractions, as `keras_msa.metrics` returns them) or, with
`paper_units=True`, in the names and units that papers and the reference
framework MMSA use: accuracies and F1 x100, MAE and Corr as they are.

Metric names, ours -> MMSA's (MMSA's `MetricsTop` result keys for
regression on MOSI/MOSEI and on SIMS):

| scale | ours (keras_msa.metrics) | MMSA | paper units |
| --- | --- | --- | --- |
| mosi, mosei | `acc2_has0` | `Has0_acc_2` | x100 |
| mosi, mosei | `f1_has0` | `Has0_F1_score` | x100 |
| mosi, mosei | `acc2_non0` | `Non0_acc_2` | x100 |
| mosi, mosei | `f1_non0` | `Non0_F1_score` | x100 |
| mosi, mosei | `acc5` | `Mult_acc_5` | x100 |
| mosi, mosei | `acc7` | `Mult_acc_7` | x100 |
| mosi, mosei | `mae` | `MAE` | x1 |
| mosi, mosei | `corr` | `Corr` | x1 |
| sims | `acc2` | `Mult_acc_2` | x100 |
| sims | `acc3` | `Mult_acc_3` | x100 |
| sims | `acc5` | `Mult_acc_5` | x100 |
| sims | `f1` | `F1_score` | x100 |
| sims | `mae` | `MAE` | x1 |
| sims | `corr` | `Corr` | x1 |

"Has0" counts a neutral (0) truth as non-negative over all samples; "Non0"
drops neutral truths first (docs/metrics.md). MMSA reports no 3-class accuracy
for MOSI/MOSEI, so our `acc3` there, the ordinal metrics (`qwk`,
`jump2plus`, `mean_abs_jump`) and the metrics of the other tasks (AVEC
`ccc`/`rmse`/`mae`, IEMOCAP `acc_<emotion>`/`f1_<emotion>`, UR-FUNNY
`acc`) keep our names and units in both modes.
"""

import csv
import io
import json
import os
import re

from keras_msa.data.errors import DataFormatError

METRICS_FILE = "metrics.json"
SUMMARY_FILE = "seeds_summary.json"
SPLITS = ("valid", "test")
DEFAULT_GROUP_BY = ("model", "preset", "data")

# (scales, ours, MMSA's, factor in paper units), in MMSA's column order.
MMSA_METRICS = (
    (("mosi", "mosei"), "acc2_has0", "Has0_acc_2", 100.0),
    (("mosi", "mosei"), "f1_has0", "Has0_F1_score", 100.0),
    (("mosi", "mosei"), "acc2_non0", "Non0_acc_2", 100.0),
    (("mosi", "mosei"), "f1_non0", "Non0_F1_score", 100.0),
    (("sims",), "acc2", "Mult_acc_2", 100.0),
    (("sims",), "acc3", "Mult_acc_3", 100.0),
    (("mosi", "mosei", "sims"), "acc5", "Mult_acc_5", 100.0),
    (("mosi", "mosei"), "acc7", "Mult_acc_7", 100.0),
    (("sims",), "f1", "F1_score", 100.0),
    (("mosi", "mosei", "sims"), "mae", "MAE", 1.0),
    (("mosi", "mosei", "sims"), "corr", "Corr", 1.0),
)

# Our column order when nothing is renamed: the headline metrics first.
OUR_ORDER = ("mae", "corr", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc7", "acc5", "acc3", "acc2", "f1")

_WORKER_DIR = re.compile(r"worker_\d+")


def mmsa_name(metric, scale):
    """`(MMSA's name, factor)` of our `metric` on `scale`, or `None` when MMSA
    has no such metric."""
    for scales, ours, theirs, factor in MMSA_METRICS:
        if metric == ours and scale in scales:
            return theirs, factor
    return None


def mapping_markdown():
    """The mapping table of the module docstring, built from `MMSA_METRICS`."""
    lines = ["| scale | ours (keras_msa.metrics) | MMSA | paper units |", "| --- | --- | --- | --- |"]
    for group in (("mosi", "mosei"), ("sims",)):
        for scales, ours, theirs, factor in MMSA_METRICS:
            if set(group) <= set(scales):
                lines.append(f"| {', '.join(group)} | `{ours}` | `{theirs}` | x{factor:g} |")
    return "\n".join(lines)


def _infer_scale(metric_names):
    if "acc2_has0" in metric_names:
        return "mosi"
    if {"acc2", "f1", "mae"} <= set(metric_names):
        return "sims"
    return None


def _read_json(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); the run that "
                              f"wrote it may have been interrupted or the file edited by hand", path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataFormatError(f"cannot be read ({e})", path=path) from None
    if not isinstance(data, dict):
        raise DataFormatError(f"expected a JSON object; got {type(data).__name__}", path=path)
    return data


def _check_metrics(path, split, metrics):
    if not isinstance(metrics, dict):
        raise DataFormatError(f"expected an object of metric values; got {type(metrics).__name__}",
                              path=path, key=split)
    for name, value in metrics.items():
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
        if not ok:
            raise DataFormatError(f"expected a number (or null); got {value!r}", path=path, key=f"{split}.{name}")
    return {k: (None if v is None else float(v)) for k, v in metrics.items()}


def _run_from_metrics(path, data):
    if not isinstance(data.get("model"), str):
        raise DataFormatError("has no 'model' name: not a metrics.json written by keras_msa's runner",
                              path=path, key="model")
    splits = {s: _check_metrics(path, s, data[s]) for s in SPLITS if s in data}
    if not splits:
        raise DataFormatError(f"holds none of the splits {list(SPLITS)}", path=path)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    return {"source": path, "model": data["model"], "preset": data.get("preset"), "data": data.get("data"),
            "scale": data.get("scale"), "seed": data.get("seed"), "config": config, "splits": splits}


def _runs_from_summary(path, data, found):
    """The per-seed runs a seeds summary holds, less those whose own
    metrics.json was found."""
    if not isinstance(data.get("model"), str):
        raise DataFormatError("has no 'model' name: not a seeds_summary.json written by keras_msa's runner",
                              path=path, key="model")
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise DataFormatError(f"expected a non-empty list of seeds; got {seeds!r}", path=path, key="seeds")
    runs = [{"source": f"{path}[seed={s}]", "model": data["model"], "preset": data.get("preset"),
             "data": data.get("data"), "scale": data.get("scale"), "seed": s, "config": {}, "splits": {}}
            for s in seeds]
    for split in SPLITS:
        if split not in data:
            continue
        if not isinstance(data[split], dict):
            raise DataFormatError(f"expected an object of metric summaries; got {type(data[split]).__name__}",
                                  path=path, key=split)
        for name, stats in data[split].items():
            values = stats.get("values") if isinstance(stats, dict) else None
            if not isinstance(values, list) or len(values) != len(seeds):
                raise DataFormatError(f"expected 'values', one per seed ({len(seeds)}); got {values!r}",
                                      path=path, key=f"{split}.{name}.values")
            for run, value in zip(runs, values):
                run["splits"].setdefault(split, {})[name] = _check_metrics(path, split, {name: value})[name]
    base = os.path.dirname(path)
    return [r for r in runs
            if os.path.realpath(os.path.join(base, f"seed_{r['seed']}", METRICS_FILE)) not in found]


def collect_runs(root):
    """Every run under `root` (see the module docstring), in path order.

    Raises `FileNotFoundError` when `root` is not a directory, `ValueError`
    when it holds no run, and `DataFormatError` naming the file (and key)
    that cannot be read."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--runs={root}: not a directory (expected a folder of run directories, "
                                f"e.g. runs/).")
    metrics_paths, summary_paths = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        if METRICS_FILE in filenames or SUMMARY_FILE in filenames:
            dirnames[:] = [d for d in dirnames if not _WORKER_DIR.fullmatch(d)]
        dirnames.sort()
        if METRICS_FILE in filenames:
            metrics_paths.append(os.path.join(dirpath, METRICS_FILE))
        if SUMMARY_FILE in filenames:
            summary_paths.append(os.path.join(dirpath, SUMMARY_FILE))
    if not metrics_paths and not summary_paths:
        raise ValueError(f"--runs={root}: no {METRICS_FILE} or {SUMMARY_FILE} under it (searched recursively). "
                         f"Train first, e.g. recipes/train.py --output_dir={os.path.join(root, 'lfdnn')}.")
    runs = [_run_from_metrics(p, _read_json(p)) for p in sorted(metrics_paths)]
    found = {os.path.realpath(p) for p in metrics_paths}
    for p in sorted(summary_paths):
        runs += _runs_from_summary(p, _read_json(p), found)
    return runs


def _group_value(run, field):
    if field in ("model", "preset", "data", "scale", "seed"):
        return run.get(field)
    return run["config"].get(field)


def _key_text(value):
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def summarize_groups(runs, split="test", group_by=DEFAULT_GROUP_BY):
    """One row per distinct `group_by` values over the runs that have
    `split`: `{"group": {field: value}, "scale", "n", "seeds", "sources",
    "metrics": {name: [values]}}`, rows sorted by their group's text."""
    rows = {}
    for run in runs:
        if split not in run["splits"]:
            continue
        key = tuple(_key_text(_group_value(run, f)) for f in group_by)
        row = rows.setdefault(key, {"group": {f: _group_value(run, f) for f in group_by}, "scale": None,
                                    "runs": []})
        twin = next((r for r in row["runs"] if r["seed"] is not None and r["seed"] == run["seed"]), None)
        if twin is not None:
            if twin["splits"][split] == run["splits"][split]:
                continue
            raise ValueError(
                f"Seed {run['seed']} appears twice in the row {dict(zip(group_by, key))} with different "
                f"{split} metrics: {twin['source']} and {run['source']}. Add the field that tells them apart "
                f"to --group_by (e.g. --group_by={','.join(group_by)},learning_rate) or narrow --runs.")
        row["runs"].append(run)
    if not rows:
        raise ValueError(f"No run has a '{split}' split (--split); the runs found hold "
                         f"{sorted({s for r in runs for s in r['splits']})}.")
    out = []
    for key in sorted(rows):
        row = rows[key]
        names = []
        for run in row["runs"]:
            names += [n for n in run["splits"][split] if n not in names]
        scales = {r["scale"] for r in row["runs"] if r["scale"]} or {_infer_scale(names)}
        out.append({
            "group": row["group"],
            "scale": sorted(s for s in scales if s)[0] if any(scales) else None,
            "n": len(row["runs"]),
            "seeds": [r["seed"] for r in row["runs"]],
            "sources": [r["source"] for r in row["runs"]],
            "metrics": {n: [r["splits"][split].get(n) for r in row["runs"]] for n in names},
        })
    return out


def _columns(rows, paper_units):
    """`[(column name, {row index: (our name, factor)})]` in display order."""
    columns = {}
    for i, row in enumerate(rows):
        for name in row["metrics"]:
            mapped = mmsa_name(name, row["scale"]) if paper_units else None
            column, factor = mapped if mapped else (name, 1.0)
            columns.setdefault(column, {})[i] = (name, factor)
    if paper_units:
        order = [theirs for _, _, theirs, _ in MMSA_METRICS]
    else:
        order = list(OUR_ORDER)
    rank = {c: i for i, c in enumerate(order)}
    first_seen = {c: i for i, c in enumerate(columns)}
    return sorted(columns.items(), key=lambda kv: (rank.get(kv[0], len(rank)), first_seen[kv[0]]))


def _stats(values, factor):
    from keras_msa.training.statistics import summarize

    return summarize([None if v is None else v * factor for v in values])


def table_rows(rows, paper_units=False):
    """`(header, [[cell stats]])`: per row and column the `summarize` dict of
    the scaled values (or `None` where the row lacks the metric)."""
    columns = _columns(rows, paper_units)
    cells = []
    for i, row in enumerate(rows):
        line = []
        for _, per_row in columns:
            if i not in per_row:
                line.append(None)
                continue
            name, factor = per_row[i]
            line.append(dict(_stats(row["metrics"][name], factor), factor=factor))
        cells.append(line)
    return [c for c, _ in columns], cells


def _fmt(stats, n_runs, digits, paper_units):
    if stats is None or stats["mean"] is None:
        return ""
    d = 2 if paper_units and stats["factor"] != 1.0 else digits
    text = f"{stats['mean']:.{d}f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.{d}f}"
    if stats["n"] != n_runs:
        text += f" (n={stats['n']})"
    return text


def markdown_table(rows, split="test", paper_units=False, digits=4, group_by=DEFAULT_GROUP_BY):
    """The rows as a Markdown table (mean ± std, n) with the runs of each
    row listed under it."""
    header, cells = table_rows(rows, paper_units)
    units = ("MMSA names; accuracies and F1 x100, MAE and Corr as fractions" if paper_units
             else "keras_msa metric names; fractions")
    lines = [f"Results on the {split} split: mean ± sample std (ddof=1) over n runs ({units}).", ""]
    lines.append("| " + " | ".join(list(group_by) + ["n"] + header) + " |")
    lines.append("|" + "---|" * (len(group_by) + 1 + len(header)))
    for row, line in zip(rows, cells):
        group = [_key_text(row["group"][f]) for f in group_by]
        values = [_fmt(s, row["n"], digits, paper_units) for s in line]
        lines.append("| " + " | ".join(group + [str(row["n"])] + values) + " |")
    lines += ["", "Runs of each row:", ""]
    for row in rows:
        group = " / ".join(_key_text(row["group"][f]) for f in group_by)
        seeds = ", ".join(_key_text(s) for s in row["seeds"])
        lines.append(f"- {group} (seeds {seeds}): " + ", ".join(row["sources"]))
    return "\n".join(lines) + "\n"


def csv_text(rows, split="test", paper_units=False, group_by=DEFAULT_GROUP_BY):
    """The rows as CSV: the group fields, split, n, seeds, then
    `<metric>_mean`, `<metric>_std` (empty when n < 2) and `<metric>_n` per
    metric, at full precision, then the source files."""
    header, cells = table_rows(rows, paper_units)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fields = list(group_by) + ["split", "n", "seeds"]
    for column in header:
        fields += [f"{column}_mean", f"{column}_std", f"{column}_n"]
    writer.writerow(fields + ["sources"])
    for row, line in zip(rows, cells):
        values = ["" if row["group"][f] is None else _key_text(row["group"][f]) for f in group_by]
        values += [split, row["n"], ";".join(_key_text(s) for s in row["seeds"])]
        for stats in line:
            if stats is None:
                values += ["", "", 0]
            else:
                values += ["" if stats["mean"] is None else repr(stats["mean"]),
                           "" if stats["std"] is None else repr(stats["std"]), stats["n"]]
        writer.writerow(values + [";".join(row["sources"])])
    return out.getvalue()


def write_report(runs_dir, output="report", split="test", paper_units=False, digits=4,
                 group_by=DEFAULT_GROUP_BY):
    """Collects the runs under `runs_dir` and writes `<output>.md` and
    `<output>.csv` (atomically); returns `(markdown, csv, rows)`."""
    from keras_msa.utils.files import atomic_write_text

    group_by = tuple(group_by)
    _check_group_by(group_by)
    rows = summarize_groups(collect_runs(runs_dir), split=split, group_by=group_by)
    md = markdown_table(rows, split, paper_units, digits, group_by)
    table = csv_text(rows, split, paper_units, group_by)
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    atomic_write_text(f"{output}.md", md)
    atomic_write_text(f"{output}.csv", table)
    return md, table, rows


def _check_group_by(group_by):
    import dataclasses

    from keras_msa.training.runner import TrainConfig

    allowed = set(DEFAULT_GROUP_BY) | {"scale", "seed"} | {f.name for f in dataclasses.fields(TrainConfig)}
    allowed -= {"output_dir", "verbose"}
    if not group_by:
        raise ValueError("--group_by needs at least one field, e.g. model,preset,data.")
    unknown = [f for f in group_by if f not in allowed]
    if unknown:
        raise ValueError(f"--group_by: unknown field(s) {unknown}; expected fields of a run: "
                         f"{sorted(allowed)}.")
