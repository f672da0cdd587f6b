"""Probe: does fine-tuning all-mpnet-base-v2 end to end (torch, CPU) imitate the teacher more closely than the
frozen encoders the job uses (mpnet-lr and the ensemble), with the same random training labels?

One split per dataset (seed 0): 2,400 uniform held-out documents, 2,000 random training labels from the rest.
Reported per student: accuracy vs the teacher on the held-out rows and the least escalation rate at which the
cascade agrees with the teacher at 0.90 / 0.95 / 0.98 there (threshold chosen on those rows: no guarantee, the
same for every student). CPU cost: ~5 training docs/s and ~16 inference docs/s for mpnet in torch on 2 cores,
so a fit on 2,000 labels (2 epochs) takes ~15 min.

    OPENBLAS_NUM_THREADS=1 python benchmarks/explore/label_finetune_probe.py mr_chatgpt ag_news
"""
import json
import sys
import time

import numpy as np
import torch
from _common import recorded
from tokenizers import Tokenizer
from transformers import AutoModel

from thrifty.cascade import agreement_curve
from thrifty.features import make_features
from thrifty.features.mpnet import mpnet_source
from thrifty.labelling.ensemble import Ensemble, ensemble_members


def oracle(P, T, t):
    thr, agree, esc = agreement_curve(P.max(1), P.argmax(1), T)
    ok = agree / len(T) >= t
    return round(float(esc[ok].min() / len(T)), 4)


def batches(tok, texts, idx):
    e = tok.encode_batch([texts[i] for i in idx])
    L = max(len(x.ids) for x in e)
    ids, m = torch.zeros((len(e), L), dtype=torch.long), torch.zeros((len(e), L), dtype=torch.long)
    for i, x in enumerate(e):
        ids[i, : len(x.ids)], m[i, : len(x.ids)] = torch.tensor(x.ids), 1
    return ids, m


def finetune(texts, train, y, test, k, epochs=2, lr=3e-5, bs=16):
    torch.manual_seed(0)
    src = mpnet_source()
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128)
    enc = AutoModel.from_pretrained(str(src), local_files_only=True, use_safetensors=True)
    head = torch.nn.Linear(enc.config.hidden_size, k)

    def logits(ids, m):
        h = enc(input_ids=ids, attention_mask=m).last_hidden_state
        mm = m.unsqueeze(-1).float()
        return head((h * mm).sum(1) / mm.sum(1))

    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * ((len(train) + bs - 1) // bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    gen = torch.Generator().manual_seed(0)
    enc.train()
    for _ in range(epochs):
        for b in torch.randperm(len(train), generator=gen).split(bs):
            b = b.numpy()
            loss = torch.nn.functional.cross_entropy(logits(*batches(tok, texts, train[b])), torch.tensor(y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    enc.eval()
    out = np.zeros((len(test), k))
    order = np.argsort([len(texts[i]) for i in test])
    with torch.no_grad():
        for s in range(0, len(order), 64):
            rows = order[s : s + 64]
            out[rows] = torch.softmax(logits(*batches(tok, texts, test[rows])), -1).double().numpy()
    return out


torch.set_num_threads(2)
for name in sys.argv[1:]:
    task, texts, T = recorded(name)
    k = task.n_labels
    rng = np.random.default_rng(0)
    ok = rng.permutation(np.flatnonzero(T >= 0))
    test, train = ok[:2400], ok[2400:4400]
    feats = make_features("mpnet").fit(texts)
    X = np.asarray(feats.transform(texts), dtype=np.float32)
    P = {"mpnet-lr": Ensemble(["mpnet-lr"], k, neighbours=0).fit(texts, train, T[train], first=(feats, X)).proba_[test],
         "ensemble": Ensemble(ensemble_members("mpnet-lr"), k).fit(texts, train, T[train], first=(feats, X)).proba_[test]}
    t0 = time.time()
    P["finetuned"] = finetune(texts, train, T[train], test, k)
    ft_s = time.time() - t0
    g = np.exp((np.log(P["ensemble"] + 1e-9) + np.log(P["finetuned"] + 1e-9)) / 2)
    P["ensemble x finetuned (geo. mean)"] = g / g.sum(1, keepdims=True)
    res = {s: {"accuracy": round(float((p.argmax(1) == T[test]).mean()), 4),
               **{f"escalation@{t}": oracle(p, T[test], t) for t in (0.9, 0.95, 0.98)}} for s, p in P.items()}
    print(name, json.dumps({"train": len(train), "test": len(test), "finetune_s": round(ft_s), **res}), flush=True)
