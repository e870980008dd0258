"""Small files in the real layouts of the pickle formats, for tests and
examples (no real data: random values with fixed seeds)."""

import pickle

import numpy as np


def mmsa_arrays(n=(6, 3, 4), seq=8, dims=(16, 5, 20), aligned=True, sims=False, seed=0,
                audio_len=12, vision_len=10, neg_inf=0):
    """`{train, valid, test}` dict in MMSA's layout (see `keras_msa.data.mmsa`).

    Text, audio and vision are zero after each example's valid length; with
    `neg_inf` > 0 that many audio values (inside the valid span) are -inf.
    """
    rng = np.random.default_rng(seed)
    lo, hi = (-1.0, 1.0) if sims else (-3.0, 3.0)
    out = {}
    for split, count in zip(("train", "valid", "test"), n):
        t_len = rng.integers(3, seq + 1, size=count)
        text = rng.standard_normal((count, seq, dims[0])).astype(np.float32)
        bert = np.zeros((count, 3, seq), np.float64)  # MMSA stores them as floats
        for i, length in enumerate(t_len):
            text[i, length:] = 0
            bert[i, 0, :length] = rng.integers(100, 30000, size=length)
            bert[i, 0, 0], bert[i, 0, length - 1] = 101, 102
            bert[i, 1, :length] = 1
        a_steps, v_steps = (seq, seq) if aligned else (audio_len, vision_len)
        a_len = t_len if aligned else rng.integers(1, a_steps + 1, size=count)
        v_len = t_len if aligned else rng.integers(1, v_steps + 1, size=count)
        audio = rng.standard_normal((count, a_steps, dims[1])).astype(np.float32)
        vision = rng.standard_normal((count, v_steps, dims[2])).astype(np.float32)
        for i in range(count):
            audio[i, a_len[i]:] = 0
            vision[i, v_len[i]:] = 0
        labels = np.round(rng.uniform(lo, hi, size=count), 1).astype(np.float32)
        d = {
            "raw_text": np.array([f"{split} words {i} é" for i in range(count)], dtype=object),
            "audio": audio,
            "vision": vision,
            "id": np.array([f"vid{split}{i // 2}$_${i % 2}" for i in range(count)], dtype=object),
            "text": text,
            "text_bert": bert,
            "annotations": np.array(["Positive" if y > 0 else "Negative" for y in labels], dtype=object),
            "classification_labels": (labels > 0).astype(np.float32),
            "regression_labels": labels,
        }
        if not aligned:
            d["audio_lengths"] = [int(x) for x in a_len]
            d["vision_lengths"] = [int(x) for x in v_len]
        if sims:
            for s in "TAV":
                d[f"regression_labels_{s}"] = np.round(rng.uniform(lo, hi, size=count), 1).astype(np.float32)
        out[split] = d
    for k in range(neg_inf):
        out["train"]["audio"][k % n[0], 0, k % dims[1]] = -np.inf
    return out


def mult_arrays(n=(6, 3, 4), seq=8, dims=(12, 5, 20), kind="mosi", seed=0, with_ids=True):
    """`{train, valid, test}` dict in MulT's layout (front zero-padded)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, count in zip(("train", "valid", "test"), n):
        lengths = rng.integers(2, seq + 1, size=count)
        arrays = []
        for d in dims:
            x = rng.standard_normal((count, seq, d)).astype(np.float32)
            for i, length in enumerate(lengths):
                x[i, : seq - length] = 0
            arrays.append(x)
        if kind == "iemocap":
            on = rng.integers(0, 2, size=(count, 4))
            labels = np.stack([1 - on, on], axis=-1).astype(np.float32)
        elif kind == "urfunny":
            labels = rng.integers(0, 2, size=(count, 1)).astype(np.float32)
        else:
            labels = np.round(rng.uniform(-3, 3, size=(count, 1, 1)), 2).astype(np.float32)
        d = {"text": arrays[0], "audio": arrays[1], "vision": arrays[2], "labels": labels}
        if with_ids:
            d["id"] = np.array([[f"v{split}{i}", str(i)] for i in range(count)])
        out[split] = d
    return out


def write_pickle(obj, path, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return str(path)
