"""Naive PR-curve oracle, written from the spec (tensorboard-format.md 1.5), independent
of tbfast: one Python loop over the samples, NumPy scalars for the per-dtype products.

Bucket of p: floor(p * (T-1)), product in the prediction's dtype as NumPy computes it
after torch's make_np (float32 stays float32; bfloat16 becomes float16 first). Where the
float16 product cannot resolve the thresholds (T-1 > 2048) tbfast's documented rule is
the float32 product; the oracle follows it. Bad values are counted per kind and skipped,
in the order: weight, class index, logits of the row, label, prediction.
"""

import math

import numpy as np

KINDS = ("nan_pred", "range_pred", "logit", "label", "index", "weight")


def bucket(p, dtype, t):
    """p: a float holding the exact prediction value; dtype: its dtype name."""
    if dtype == "float64":
        return int(math.floor(float(p) * (t - 1)))
    if dtype in ("float16", "bfloat16") and t - 1 <= 2048:
        h = np.float16(p)  # torch: bf16 -> fp16; exact for fp16 values
        return int(math.floor(float(h * np.float16(t - 1))))
    return int(math.floor(float(np.float32(p) * np.float32(t - 1))))


def _label01(v):
    if v == 0:
        return 0
    if v == 1:
        return 1
    return None


def curves(preds, labels, t, weights=None, dtype="float32", label_index=False, prob="probs"):
    """preds: 2-D list/array [N, C] of floats (exact values); labels: [N] class indices
    when label_index, else [N, C] numbers; weights: None or [N]; prob: 'probs',
    'softmax' or 'sigmoid'. Returns (data [C, 6, T] float64 ndarray, bad counts dict)."""
    arr = np.asarray(preds, dtype=np.float64)
    n, c_count = arr.shape
    preds = [list(map(float, row)) for row in arr]
    idx = -1
    tp_b = [[0.0] * t for _ in range(c_count)]
    fp_b = [[0.0] * t for _ in range(c_count)]
    bad = dict.fromkeys(KINDS, 0)
    for r in range(n):
        w = 1.0 if weights is None else float(weights[r])
        if not (w >= 0 and math.isfinite(w)):
            bad["weight"] += 1
            continue
        row = preds[r]
        if label_index:
            idx = int(labels[r])
            if not 0 <= idx < c_count:
                bad["index"] += 1
                continue
        if prob == "softmax":
            if not all(math.isfinite(v) for v in row):
                bad["logit"] += sum(not math.isfinite(v) for v in row)
                continue
            m = max(row)
            ex = [math.exp(v - m) for v in row]
            total = 0.0
            for e in ex:
                total += e
        for c in range(c_count):
            lab = (1 if c == idx else 0) if label_index else _label01(labels[r][c])
            if lab is None:
                bad["label"] += 1
                continue
            v = row[c]
            if prob == "probs":
                if math.isnan(v):
                    bad["nan_pred"] += 1
                    continue
                if not 0 <= v <= 1:
                    bad["range_pred"] += 1
                    continue
                b = bucket(v, dtype, t)
            elif prob == "softmax":
                b = int(math.floor((ex[c] / total) * (t - 1)))
            else:
                if not math.isfinite(v):
                    bad["logit"] += 1
                    continue
                b = int(math.floor((1.0 / (1.0 + math.exp(-v))) * (t - 1)))
            if lab:
                tp_b[c][b] += w
            else:
                fp_b[c][b] += w
    data = np.zeros((c_count, 6, t))
    for c in range(c_count):
        tp, fp = [0.0] * t, [0.0] * t
        acc_tp = acc_fp = 0.0
        for i in range(t - 1, -1, -1):
            acc_tp += tp_b[c][i]
            acc_fp += fp_b[c][i]
            tp[i], fp[i] = acc_tp, acc_fp
        for i in range(t):
            tn = fp[0] - fp[i]
            fn = tp[0] - tp[i]
            data[c, :, i] = (tp[i], fp[i], tn, fn, tp[i] / max(1e-7, tp[i] + fp[i]), tp[i] / max(1e-7, tp[i] + fn))
    return data, bad


def binary_curve(preds, labels, t, weights=None, dtype="float32"):
    """Flattened binary curve: data [6, T] and bad counts."""
    p = np.asarray(preds, dtype=np.float64).reshape(-1, 1)
    lab = np.asarray(labels, dtype=np.float64).reshape(-1, 1)
    data, bad = curves(p, lab, t, weights, dtype)
    return data[0], bad
