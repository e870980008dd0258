"""The PyTorch side of the TeCaFN peer benchmark: the authors' model, timed in this process.

Runs with a Python that has `torch`, `transformers` and `easydict` (their
code imports them), given a checkout of github.com/TheShy-Dream/MSA-TeCaFN:

    /path/to/venv/bin/python benchmarks/peer/tecafn_peer.py --src=/tmp/tecafn_src \
        --lens=50,375,500 --json_out=/tmp/peer.json

It builds their `MMIM` class (the TeCaFN model) with the defaults of their
own `config.py` (argument parser read with no arguments; feature sizes and
`n_class` set as their `main.py` sets them) and times what their `solver.py`
does per training batch: forward in train mode (replacement with hard
negatives, pair heads, CPC and MMILB terms), their loss `L1 + alpha*CPC -
beta*lld + gamma*(InfoNCE + bimodal InfoNCE) + theta*pair` with their
weights, backward, `clip_grad_norm_` at their `clip`, and Adam with their
main learning rate and weight decay over the parameters their main optimizer
holds (the MMILB parameters sit in a second optimizer that their training
never steps, so they are left out here too). Inference: eval mode under
`torch.no_grad()`, the prediction only.

Three run-time changes, none on disk: their BERT (`LanguageEmbeddingLayer`, a
hard-coded local path) is replaced by the identity on precomputed BERT
features, so both sides time the fusion network on the same `[B, T, 768]`
text features (keras_msa's TeCaFN reads features by default); and their
unconditional `.cuda()` calls are the identity, so it runs on the CPU; and
their LSTM encoder's output gets its batch axis back at batch 1 (their
`squeeze()` drops it and the CPC term then raises, so their model cannot
predict a single sample as published).

Prints one JSON object (and writes it to `--json_out`), with the keys
`benchmarks/peer/torch_peer.py` writes.
"""

import argparse
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_peer import _peak_rss_mb  # noqa: E402 - the shared timing, beside this file
from torch_peer import add_run_arguments  # noqa: E402
from torch_peer import time_model  # noqa: E402
from torch_peer import write_result  # noqa: E402

FEATURE_DIMS = {"mosi": (768, 5, 20), "mosei": (768, 74, 35)}


def their_config(get_args, dims, batch_size):
    """Their `config.get_args()` defaults, completed as their main.py does."""
    argv = sys.argv
    try:
        sys.argv = [argv[0]]
        hp = get_args()
    finally:
        sys.argv = argv
    hp.d_tin, hp.d_ain, hp.d_vin = dims[0], dims[1], dims[2]
    hp.n_class = 1
    hp.batch_size = batch_size
    return hp


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="checkout of TheShy-Dream/MSA-TeCaFN")
    parser.add_argument("--dataset", default="mosi", choices=sorted(FEATURE_DIMS))
    parser.add_argument("--lens", default="50,375,500", help="text,audio,vision steps")
    add_run_arguments(parser)
    opts = parser.parse_args()

    src = os.path.abspath(opts.src)
    if not os.path.isfile(os.path.join(src, "model.py")) or not os.path.isdir(os.path.join(src, "modules")):
        sys.exit(f"--src {src}: no model.py and modules/ there; expected a checkout of TheShy-Dream/MSA-TeCaFN.")
    sys.path.insert(0, src)
    import numpy as np
    import torch

    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    import config as their_config_module
    import model as their_model

    class BertFeatures(torch.nn.Module):
        """Stands in for their BERT: the text input already is BERT's output."""

        def __init__(self, hp):
            super().__init__()

        def forward(self, sentences, bert_sent, bert_sent_type, bert_sent_mask):
            return sentences

    their_model.LanguageEmbeddingLayer = BertFeatures
    import modules.encoders as their_encoders

    rnn_forward = their_encoders.RNNEncoder.forward

    def rnn_keep_batch(self, x, lengths):
        # Their `final_states[0].squeeze()` also drops the batch axis at batch
        # 1, and their CPC then fails; put it back so batch 1 runs.
        y = rnn_forward(self, x, lengths)
        return y.unsqueeze(0) if y.dim() == 1 else y

    their_encoders.RNNEncoder.forward = rnn_keep_batch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    np.random.seed(opts.seed)
    lens = [int(v) for v in opts.lens.split(",")]
    dims = [int(v) for v in opts.dims.split(",")] if opts.dims else list(FEATURE_DIMS[opts.dataset])
    hp = their_config(their_config_module.get_args, dims, opts.train_batch)
    net = their_model.MMIM(hp)
    params = sum(p.numel() for p in net.parameters())
    # Their solver: parameters named '*mi*' go to the MMILB optimizer, which
    # their training loop never steps.
    main_params = [p for name, p in net.named_parameters() if p.requires_grad and "mi" not in name]

    rng = np.random.default_rng(opts.seed)

    def batch(n):
        text = torch.tensor(rng.standard_normal((n, lens[0], dims[0])).astype("float32"))
        audio = torch.tensor(rng.standard_normal((lens[1], n, dims[1])).astype("float32"))
        vision = torch.tensor(rng.standard_normal((lens[2], n, dims[2])).astype("float32"))
        text_mask = torch.ones(n, lens[0], dtype=torch.long)
        return text, vision, audio, torch.full((n,), lens[2]), torch.full((n,), lens[1]), text_mask

    def forward(x, y=None, mem=None):
        text, vision, audio, v_len, a_len, text_mask = x
        return net(text, vision, audio, v_len, a_len, None, None, text_mask, y, mem)

    x_train = batch(opts.train_batch)
    y_train = torch.tensor(rng.uniform(-3, 3, (opts.train_batch, 1)).astype("float32"))
    optimizer = torch.optim.Adam(main_params, lr=hp.lr_main, weight_decay=hp.weight_decay_main)
    criterion = torch.nn.L1Loss()
    empty_memory = {"tv": None, "ta": None, "va": None}

    def train_step():
        net.zero_grad()
        lld, nce, preds, _, _, info_nce, cross_nce, ap_loss = forward(x_train, y_train, empty_memory)
        loss = (criterion(preds, y_train) + hp.alpha * nce - hp.beta * lld
                + hp.gamma * (info_nce + cross_nce) + hp.theta * ap_loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), hp.clip)
        optimizer.step()
        return loss.item()

    timings = time_model(net, train_step, lambda x: forward(x)[2].numpy(), batch, opts)

    settings = {k: v for k, v in sorted(vars(hp).items()) if isinstance(v, (int, float, str, bool))}
    settings["learning_rate"] = hp.lr_main
    result = {
        "side": "authors' TeCaFN (PyTorch)",
        "model": "tecafn",
        "dataset": opts.dataset,
        "lens": lens,
        "dims": dims,
        "params": int(params),
        "settings": settings,
        "train_batch": opts.train_batch,
        "batch_size": opts.batch_size,
        **timings,
        "peak_rss_mb": float(_peak_rss_mb()),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "threads": torch.get_num_threads(),
    }
    write_result(result, opts)


if __name__ == "__main__":
    main()
