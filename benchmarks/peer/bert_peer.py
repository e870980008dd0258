"""The PyTorch side of the peer benchmark for MMSA's BERT models: MISA,
SELF_MM, BERT_MAG and MMIM, timed in this process with a random BERT.

Runs with a Python that has `torch`, `transformers` and `MMSA==2.2.1`:

    /path/to/mmsa-venv/bin/python benchmarks/peer/bert_peer.py --model=misa \
        --dataset=mosi --lens=50,375,500 --json_out=/tmp/peer.json \
        --bert_config='{"num_hidden_layers": 2, "hidden_size": 16, ...}'

The model is built as MMSA's `run.py` builds it (`torch_peer.mmsa_config`:
`config_regression.json` for the model and dataset), except that its
`pretrained` BERT is a directory written, in a child process (so that its
memory is not this process's peak), by `tests/fixtures/mmsa/tiny_bert.py`'s
`make_tiny_bert` with `--bert_config` (transformers `BertConfig`
arguments; default bert-base-uncased's shape) and random weights. MMSA
hard-codes bert-base's width in two places, which a narrower BERT replaces
(reported under `settings["deviations"]`): MISA's `project_t` input
(`Linear(768, hidden_size)`) and Self-MM's `text_out` (768).

The timed training step is what MMSA's trainer for the model does per batch
with that config, calling the trainer's own methods where it has them:

* misa: `trains/singleTask/MISA.py`: MSE + diff_weight * `get_diff_loss()` +
  sim_weight * `get_cmd_loss()` + recon_weight * `get_recon_loss()` (the
  trainer object's methods), backward, `clip_grad_value_(grad_clip)`, Adam
  over every parameter at `learning_rate`; one optimizer step per
  `update_epochs` batches (gradients summed in between).
* self_mm: `trains/multiTask/SELF_MM.py`: the trainer's `weighted_loss` over
  M, T, A, V against its label memory, backward, then `update_labels` (an
  epoch after the first), `update_features`, `update_centers`; Adam over its
  five parameter groups (BERT with and without weight decay, audio LSTM,
  video LSTM, the rest, each with its config learning rate and weight
  decay); one optimizer step per `update_epochs` batches. The label memory
  has `train_samples` rows, started by the trainer's `init_labels`.
* mmim: `trains/singleTask/MMIM.py`'s two stages per batch, as in an epoch
  past its first batches (the memory of positive/negative pairs full, so
  the entropy term H is in): `-lld` backward, `clip_grad_norm_`, the MMILB
  Adam step; then L1 + alpha * nce - beta * lld - beta * H with the memory,
  backward, `clip_grad_norm_`, the main Adam (BERT group, other group, their
  learning rates and weight decays). MMSA runs the stages as two passes over
  the epoch; here each timed step is one batch of each (the same work per
  batch). The optimizers are built as the trainer's `do_train` builds them
  (its Xavier re-initialisation is skipped: the weights are random anyway).
* bert_mag: `trains/singleTask/BERT_MAG.py`: L1, backward, Adam at
  `learning_rate` with `weight_decay`, no clipping. The model is built by
  `tests/fixtures/mmsa/make_magbert_fixtures.py`'s `build` (MMSA's
  `BERT_MAG` module and forward; its `__init__` loads bert-base-uncased by
  name and needs two shims for transformers 5, which `build` supplies).

Inputs are what MMSA's data loader gives these models: text `[B, 3, L]`
(ids, mask, segments) as float, `[CLS] ... [SEP]` with every token real;
audio and vision at `--lens` with their full lengths (`audio_lengths`,
`vision_lengths`) for the unaligned models; BERT_MAG reads MMSA's aligned
data (`need_data_aligned`), so the harness gives every modality the text's
length.
"""

import argparse
import importlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "mmsa")
sys.path.insert(0, HERE)

import torch_peer  # noqa: E402

#: bert-base-uncased's shape (MMSA's MOSI/MOSEI configs' `pretrained`).
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                 hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 layer_norm_eps=1e-12, model_type="bert")
#: config key -> (module path under MMSA.models, class, trainer module path under MMSA.trains).
MODELS = {
    "misa": ("singleTask.MISA", "MISA", "singleTask.MISA"),
    "self_mm": ("multiTask.SELF_MM", "SELF_MM", "multiTask.SELF_MM"),
    "mmim": ("singleTask.MMIM", "MMIM", "singleTask.MMIM"),
    "bert_mag": ("singleTask.BERT_MAG", "BERT_MAG", "singleTask.BERT_MAG"),
}


#: What of each timed step is MMSA's trainer code called and what is written
#: here after it (printed with the settings).
STEP_NOTES = {
    "misa": "calls the MISA trainer's criterion, get_diff_loss, get_cmd_loss, get_recon_loss; Adam over "
            "trainable parameters, clip_grad_value_ and the update_epochs accumulation written after its do_train",
    "self_mm": "calls the SELF_MM trainer's init_labels (once), weighted_loss, update_labels (epoch 2), "
               "update_features, update_centers; the five-group Adam and the update_epochs accumulation written "
               "after its do_train",
    "mmim": "both stages per batch written after the MMIM trainer's train_mmilb and train_others at a batch "
            "past mem_size (memory full, H in), with its criterion; optimizers as its do_train builds them, "
            "without its Xavier re-initialisation and its per-epoch ReduceLROnPlateau; keras_msa's MMIM "
            "takes both stages' gradients in one step (stop-gradients): one forward where MMSA runs two",
    "bert_mag": "calls the BERT_MAG trainer's criterion; Adam(lr, weight_decay) as its do_train builds it",
}


def write_bert(directory, config, seed=0):
    """Writes a random BERT of `config` into `directory` in a child process."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from tiny_bert import make_tiny_bert; "
            "make_tiny_bert(sys.argv[2], seed=int(sys.argv[4]), config=json.loads(sys.argv[3]), perturb=False)")
    subprocess.run([sys.executable, "-c", code, FIXTURES, directory, json.dumps(config), str(seed)], check=True)


def load_classes(model):
    """MMSA's model class and trainer class, without MMSA's package `__init__`."""
    root = torch_peer._mmsa_root()
    for name, path in (("MMSA", ""), ("MMSA.models", "models"), ("MMSA.models.singleTask", "models/singleTask"),
                       ("MMSA.models.multiTask", "models/multiTask"), ("MMSA.trains", "trains"),
                       ("MMSA.trains.singleTask", "trains/singleTask"),
                       ("MMSA.trains.multiTask", "trains/multiTask")):
        torch_peer._register_package(name, os.path.join(root, path))
    module, cls, trainer = MODELS[model]
    model_class = getattr(importlib.import_module(f"MMSA.models.{module}"), cls)
    trainer_class = getattr(importlib.import_module(f"MMSA.trains.{trainer}"), cls)
    return model_class, trainer_class


def build(model, args, bert_dir):
    """MMSA's model over the BERT in `bert_dir`; returns (net, deviations)."""
    import torch

    deviations = []
    hidden = int(args.bert["hidden_size"])
    model_class, _ = load_classes(model)
    if model == "bert_mag":
        sys.path.insert(0, FIXTURES)
        from make_magbert_fixtures import build as build_magbert

        return build_magbert(bert_dir, args), deviations
    if model == "self_mm" and args.text_out != hidden:
        deviations.append(f"text_out {args.text_out} -> {hidden} (the BERT's width)")
        args.text_out = hidden
    net = model_class(args)
    if model == "misa" and hidden != 768:
        deviations.append(f"project_t Linear(768, {args.hidden_size}) -> Linear({hidden}, {args.hidden_size})")
        net.project_t.project_t = torch.nn.Linear(hidden, args.hidden_size)
    return net, deviations


def train_step_fn(model, net, trainer, args, batch):
    """The per-batch training step of MMSA's trainer for `model` (see the
    module docstring); returns a function of no arguments."""
    import torch

    text, audio, vision, lengths, labels, indexes = batch
    params = [p for p in net.parameters() if p.requires_grad]
    state = {"left": args.get("update_epochs", 1)}

    def accumulate(loss, optimizer, clip=None):
        # zero_grad at the start of an accumulation, step after update_epochs batches.
        if state["left"] == args.get("update_epochs", 1):
            optimizer.zero_grad()
        state["left"] -= 1
        loss.backward()
        if clip is not None:
            clip()
        if not state["left"]:
            optimizer.step()
            state["left"] = args.get("update_epochs", 1)
        return float(loss.detach())

    if model == "misa":
        trainer.model = type("AMIO", (), {"Model": net})()  # get_*_loss read trainer.model.Model
        optimizer = torch.optim.Adam(params, lr=args.learning_rate)

        def step():
            pred = net(text, audio, vision)["M"]
            loss = (trainer.criterion(pred, labels) + args.diff_weight * trainer.get_diff_loss()
                    + args.sim_weight * (trainer.get_cmd_loss() if args.use_cmd_sim else trainer.get_domain_loss())
                    + args.recon_weight * trainer.get_recon_loss())
            clip = None
            if args.grad_clip != -1.0:
                clip = lambda: torch.nn.utils.clip_grad_value_(params, args.grad_clip)  # noqa: E731
            return accumulate(loss, optimizer, clip)

        return step, optimizer

    if model == "self_mm":
        no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
        bert = list(net.text_model.named_parameters())
        groups = [
            {"params": [p for n, p in bert if not any(nd in n for nd in no_decay)],
             "weight_decay": args.weight_decay_bert, "lr": args.learning_rate_bert},
            {"params": [p for n, p in bert if any(nd in n for nd in no_decay)],
             "weight_decay": 0.0, "lr": args.learning_rate_bert},
            {"params": list(net.audio_model.parameters()), "weight_decay": args.weight_decay_audio,
             "lr": args.learning_rate_audio},
            {"params": list(net.video_model.parameters()), "weight_decay": args.weight_decay_video,
             "lr": args.learning_rate_video},
            {"params": [p for n, p in net.named_parameters() if not n.startswith(
                ("text_model", "audio_model", "video_model"))],
             "weight_decay": args.weight_decay_other, "lr": args.learning_rate_other},
        ]
        optimizer = torch.optim.Adam(groups)
        trainer.init_labels(indexes, labels.view(-1))
        epoch = 2  # past the first epoch: update_labels runs

        def step():
            out = net(text, (audio, lengths[0]), (vision, lengths[1]))
            loss = 0.0
            for m in trainer.args.tasks:
                mode = trainer.name_map[m]
                loss = loss + trainer.weighted_loss(out[m], trainer.label_map[mode][indexes], indexes=indexes,
                                                    mode=mode)
            value = accumulate(loss, optimizer)
            f = [out[f"Feature_{k}"].detach() for k in "ftav"]
            trainer.update_labels(*f, epoch, indexes, out)
            trainer.update_features(*f, indexes)
            trainer.update_centers()
            return value

        return step, optimizer

    if model == "mmim":
        mmilb, main, bert = [], [], []
        for name, p in net.named_parameters():
            if p.requires_grad:
                (bert if "bert" in name else mmilb if "mi" in name else main).append(p)
        optim = getattr(torch.optim, args.optim)
        opt_mmilb = optim(mmilb, lr=args.lr_mmilb, weight_decay=args.weight_decay_mmilb)
        opt_main = optim([{"params": bert, "weight_decay": args.weight_decay_bert, "lr": args.lr_bert},
                          {"params": main, "weight_decay": args.weight_decay_main, "lr": args.lr_main}])
        a, v = (audio, lengths[0]), (vision, lengths[1])
        with torch.no_grad():  # the memory of an earlier batch (mem_size 1)
            pn = net(text, a, v, y=labels, mem={"tv": None, "ta": None, "va": None})["pn_dic"]
        mem = {p: {"pos": [pn[p]["pos"]], "neg": [pn[p]["neg"]]} for p in ("tv", "ta")}
        mem["va"] = None

        def step():
            net.zero_grad()
            loss = -net(text, a, v)["lld"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
            opt_mmilb.step()
            net.zero_grad()
            out = net(text, a, v, y=labels, mem=mem)
            for p in ("tv", "ta"):
                mem[p]["pos"][0], mem[p]["neg"][0] = out["pn_dic"][p]["pos"].detach(), out["pn_dic"][p]["neg"].detach()
            loss = trainer.criterion(out["M"], labels)
            if args.contrast:
                loss = loss + args.alpha * out["nce"] - args.beta * out["lld"]
            loss = loss - args.beta * out["H"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
            opt_main.step()
            return float(loss.detach())

        return step, opt_main

    # bert_mag
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    def step():
        optimizer.zero_grad()
        loss = trainer.criterion(net(text, audio, vision)["M"], labels)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--dataset", default="mosi", choices=sorted(torch_peer.FEATURE_DIMS))
    parser.add_argument("--lens", default="50,375,500", help="text,audio,vision steps")
    parser.add_argument("--bert_config", default="{}",
                        help="JSON transformers BertConfig arguments over bert-base-uncased's shape")
    torch_peer.add_run_arguments(parser)
    opts = parser.parse_args()

    import tempfile

    import numpy as np
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    lens = [int(v) for v in opts.lens.split(",")]
    dims = [int(v) for v in opts.dims.split(",")] if opts.dims else list(torch_peer.FEATURE_DIMS[opts.dataset])
    bert = {**BERT_BASE, **json.loads(opts.bert_config)}
    dims[0] = int(bert["hidden_size"])
    args = torch_peer.mmsa_config(opts.model, opts.dataset, lens, dims)
    args.update(use_bert=True, bert=bert)
    _, trainer_class = load_classes(opts.model)
    with tempfile.TemporaryDirectory() as bert_dir:
        write_bert(bert_dir, bert, seed=opts.seed)
        args.pretrained = bert_dir
        torch.manual_seed(opts.seed)
        net, deviations = build(opts.model, args, bert_dir)
    trainer = trainer_class(args)
    params = sum(p.numel() for p in net.parameters())

    rng = np.random.default_rng(opts.seed)

    def batch(n):
        ids = rng.integers(5, bert["vocab_size"], (n, lens[0]))
        ids[:, 0], ids[:, -1] = 2, 3
        text = np.stack([ids, np.ones_like(ids), np.zeros_like(ids)], axis=1).astype("float32")
        audio = rng.standard_normal((n, lens[1], dims[1])).astype("float32")
        vision = rng.standard_normal((n, lens[2], dims[2])).astype("float32")
        lengths = (torch.full((n,), lens[1]), torch.full((n,), lens[2]))
        return torch.tensor(text), torch.tensor(audio), torch.tensor(vision), lengths

    def forward(x):
        text, audio, vision, lengths = x
        if opts.model in ("self_mm", "mmim"):
            return net(text, (audio, lengths[0]), (vision, lengths[1]))["M"]
        return net(text, audio, vision)["M"]

    text, audio, vision, lengths = batch(opts.train_batch)
    labels = torch.tensor(rng.uniform(-3, 3, (opts.train_batch, 1)).astype("float32"))
    indexes = torch.arange(opts.train_batch) % int(args.get("train_samples", opts.train_batch))
    train_step, _ = train_step_fn(opts.model, net, trainer, args, (text, audio, vision, lengths, labels, indexes))
    timings = torch_peer.time_model(net, train_step, lambda x: forward(x).numpy(), batch, opts)

    settings = {k: args[k] for k in sorted(args) if k not in ("featurePath", "pretrained", "bert")}
    settings.update(bert=json.dumps({k: bert[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                                           "intermediate_size", "vocab_size",
                                                           "max_position_embeddings")}),
                    deviations=deviations or None, train_step=STEP_NOTES[opts.model])
    trainable = int(sum(p.numel() for p in net.parameters() if p.requires_grad))
    result = torch_peer.mmsa_result(opts, lens, dims, params, settings, timings, trainable_params=trainable)
    torch_peer.write_result(result, opts)


if __name__ == "__main__":
    main()
