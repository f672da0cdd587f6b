import sys, json
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import numpy as np
from end_to_end import run_variant, evaluate_variant
from thrifty.bench.datasets import load_dataset, make_bench_teacher
from thrifty.features import make_features
from thrifty.labelling.job import LabelConfig
feat = sys.argv[1]; vals = [int(x) for x in sys.argv[2].split(",")]; caps = [int(x) for x in sys.argv[3].split(",")]
for name in sys.argv[4:]:
    data = load_dataset(name)
    setup = make_bench_teacher("recorded", data, price_model="gpt-4o-mini")
    task, corpus = data.task, setup.corpus
    T = np.asarray([task.index(x) if x is not None else -1 for x in setup.answers])
    G = np.full(len(T), -1)
    f = make_features(feat); f.fit(corpus.texts); X = f.transform(corpus.texts)
    n = len(T); out = {}
    for nv in vals:
        if n - 400 - nv - max(caps) < 300: continue
        for seed in [0, 1, 2]:
            v = run_variant(task, setup.teacher, corpus.texts, X, T, G, seed, LabelConfig(audit_size=400, val_size=nv), "mraru", False, None, max(caps))
            for cap in caps:
                vv = dict(v, rounds=[r for r in v["rounds"] if r["n_train"] <= cap])
                for t in [0.95]:
                    e = evaluate_variant(vv, T, G, t, 0.1, 4, use_cap=True)
                    out.setdefault(f"val{nv} cap{cap} t{t}", []).append((round(e["escalation_rate_1e6"], 3), round(e["agreement"], 3)))
    print(name, feat, json.dumps({k: [round(float(np.mean([a for a, b in v])), 3), v] for k, v in out.items()}), flush=True)
