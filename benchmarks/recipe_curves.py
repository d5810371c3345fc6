"""Pretraining recipe experiments (issue 10): one run, held-out MLM/SOP accuracy every
`eval_every` steps, written as JSON lines to OUT/NAME.jsonl. The data and the step are
minialbert's (PretrainingStream, split_documents, the tiny preset, adamw-torch).

    python benchmarks/recipe_curves.py H_V1000_lr2e-3 steps=1200 lr=2e-3 warmup=100 V=1000

key=val overrides: corpus (full|numpy|stdlib), V, T, B, steps, lr, warmup, opt, wd, preset,
drop (dropout), eval_every, n_eval, seed, ngram, held (held-out fraction), E/H/L/I/NH (shape),
maxpred (masked positions per sequence), short (short_seq_prob), sopw (weight of the SOP loss:
its gradient is scaled by sopw, the MLM's is not), device (cpu|gpu: the curves per step are the
same arithmetic, so a GPU sweeps recipes meant for the CPU), docs (a JSON list of documents to
use instead of reading the installed packages: the same corpus on another machine; default
$RECIPE_DOCS).
OUT is $RECIPE_OUT (default runs/recipes).
"""
import hashlib
import json
import os
import sys
import time

import numpy as np
from minialbert.data import load_default_corpus, create_pretraining_examples
from minialbert.data.pretraining import PretrainingStream, tokenize_documents, collate
from minialbert.data.heldout import split_documents
from minialbert.tokenizer import Tokenizer
from minialbert.config import AlbertConfig
from minialbert.heads import AlbertForPreTraining
from minialbert import optim
from minialbert.optim import make_optimizer
from minialbert.step import pretraining_stats
from minialbert.backend import get_array_module, to_device
from minialbert.train import evaluate_pretraining, model_inputs, PretrainConfig

a = dict(corpus="full", V=3000, T=64, B=32, steps=1500, lr=1e-3, warmup=50, opt="adamw-torch", wd=0.01,
         preset="tiny", drop=0.0, eval_every=100, n_eval=512, seed=0, ngram=3, held=0.03, E=0, H=0, L=0, I=0, NH=0,
         dupe=0, sched="linear", maxpred=20, short=0.1, sopw=1.0, device="cpu", docs=os.environ.get("RECIPE_DOCS", ""))
name = sys.argv[1]
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1); a[k] = type(a[k])(v) if not isinstance(a[k], str) else v
OUT = os.environ.get("RECIPE_OUT", "runs/recipes")
os.makedirs(OUT, exist_ok=True)
out = f"{OUT}/{name}.jsonl"
if a["docs"]:
    docs = json.load(open(a["docs"]))
else:
    docs = load_default_corpus(include_numpy=a["corpus"] != "stdlib",
                               packages=("numpy",) if a["corpus"] == "numpy" else None)
train_docs, held_docs = split_documents(docs, a["held"], seed=0)
tk = hashlib.sha256(f"v2{a['corpus']}{a['V']}{a['held']}".encode()).hexdigest()[:10]
tokf = f"{OUT}/tok-{tk}.model"
t0 = time.perf_counter()
if os.path.exists(tokf):
    tok = Tokenizer(tokf)
else:
    tok = Tokenizer.train(train_docs, vocab_size=a["V"]); tok.save(tokf)
ttok = time.perf_counter() - t0
td = tokenize_documents(train_docs, tok)
held = create_pretraining_examples(held_docs, tok, max_seq_length=a["T"], seed=1, max_ngram=a["ngram"],
                                   max_predictions_per_seq=a["maxpred"])[:a["n_eval"]]
if a["dupe"]:
    from minialbert.data import ExampleLoader
    ex = create_pretraining_examples(td, tok, max_seq_length=a["T"], seed=0, dupe_factor=a["dupe"], max_ngram=a["ngram"])
    stream = ExampleLoader(ex, a["B"], seed=0, epochs=None, max_seq_length=a["T"], max_predictions_per_seq=20, pad_id=tok.pad_id)
    ntrain = len(ex)
else:
    stream = PretrainingStream(td, tok, a["B"], a["T"], seed=a["seed"], max_ngram=a["ngram"],
                               max_predictions_per_seq=a["maxpred"], short_seq_prob=a["short"])
    ntrain = len(stream.pairs(0))
ov = dict(vocab_size=tok.vocab_size, hidden_dropout_prob=a["drop"], attention_probs_dropout_prob=a["drop"],
          max_position_embeddings=max(a["T"], 128))
for k, f in (("E", "embedding_size"), ("H", "hidden_size"), ("L", "num_hidden_layers"), ("I", "intermediate_size"), ("NH", "num_attention_heads")):
    if a[k]: ov[f] = a[k]
mc = AlbertConfig.from_preset(a["preset"], **ov)
model = AlbertForPreTraining(mc, seed=a["seed"])
if a["device"] != "cpu":
    model.to(a["device"])
opt = make_optimizer(a["opt"], model, lr=a["lr"], weight_decay=a["wd"])
cfg = PretrainConfig(seq_len=a["T"])
from minialbert.backend import Random
droot = Random(a["seed"], device=a["device"]).fork(2)
f = open(out, "w")
f.write(json.dumps({"args": a, "train_examples_epoch0": ntrain, "held": len(held), "held_docs": len(held_docs), "tok_s": ttok, "params": model.num_parameters()}) + "\n")
ev = evaluate_pretraining(model, held, cfg); ev["step"] = 0; f.write(json.dumps(ev) + "\n"); f.flush()
acc = dict(mc=0, mn=0, sc=0, sn=0, t=0.0, loss=0.0, k=0)
for step in range(a["steps"]):
    t1 = time.perf_counter()
    lr = optim.lr_at(step, a["lr"], a["warmup"], a["steps"])
    if a["sched"] == "const":
        lr = a["lr"] * min(1.0, step / max(a["warmup"], 1))
    model.zero_grad()
    batch = next(stream)
    model.rng = droot.fork(step, 0)
    o = model.forward(**model_inputs(batch, "sop"))
    if a["sopw"] != 1.0:   # d(mlm + w*sop): add (w-1) * dsop/dlogits = (w-1) * (softmax - onehot) / B
        xp = get_array_module(o.sop_logits)
        z = o.sop_logits - o.sop_logits.max(axis=1, keepdims=True)
        p = xp.exp(z); p /= p.sum(axis=1, keepdims=True)
        lab = to_device(np.asarray(batch["sentence_order_label"]), a["device"])
        p[xp.arange(len(lab)), lab] -= 1.0
        model.backward({"loss": 1.0, "sop_logits": (a["sopw"] - 1.0) * p / len(lab)})
    else:
        model.backward()
    _, _, mc, sc = pretraining_stats(o, batch)
    mn, sn = int((batch["labels"] != -100).sum()), len(batch["input_ids"])
    optim.clip_grad_norm(model.grads, 1.0)
    opt.step(model.grads, lr)
    acc["t"] += time.perf_counter() - t1
    acc["mc"] += mc; acc["mn"] += mn; acc["sc"] += sc; acc["sn"] += sn; acc["loss"] += float(o.loss); acc["k"] += 1
    if (step + 1) % a["eval_every"] == 0 or step + 1 == a["steps"]:
        rec = {"step": step + 1, "train_mlm": acc["mc"] / acc["mn"], "train_sop": acc["sc"] / max(acc["sn"], 1),
               "loss": acc["loss"] / acc["k"], "step_s": acc["t"] / acc["k"], "lr": lr, "load": os.getloadavg()[0],
               "epoch": getattr(stream, "epoch", None)}
        rec.update(evaluate_pretraining(model, held, cfg))
        f.write(json.dumps(rec) + "\n"); f.flush()
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()}), flush=True)
        acc = dict(mc=0, mn=0, sc=0, sn=0, t=0.0, loss=0.0, k=0)
