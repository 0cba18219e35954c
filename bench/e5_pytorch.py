#!/usr/bin/env python3
"""PyTorch twin of recipes/tnews-e5.toml's teacher: the same e5-small folder, the same rows (the
run's data stage `splits.json`), the same fine-tune as kdrun's teacher stage, timed on this machine.

usage: python3 bench/e5_pytorch.py SPLITS_JSON [--data DIR] [--model DIR] [--threads N] [--seed S]
                                   [--out FILE.json]

What it mirrors (src/train/mod.rs, src/pipeline/stages/teacher.rs):
- transformers' BertForSequenceClassification from the folder, a new 5-class head; the whole
  embeddings module frozen (word, position, token type, LayerNorm: kdrun's `freeze = "embeddings"`).
- AdamW (lr 5e-5, eps 1e-8, weight decay 0.01 on every trainable tensor), each parameter tensor's
  gradient clipped to norm 1.0 on its own (as burn clips), linear warm-up over 10 % of the steps
  then linear decay to 0; 2 epochs of batch 32; inputs truncated to 48 tokens.
- kdrun's batches: each epoch shuffles the rows, sorts pools of 50 batches by length, cuts them
  into batches and shuffles the batches (less padding than random batches).
- After each epoch: accuracy on the validation rows; the best epoch's weights are tested.
Timed: the training loop (validation excluded) and inference on the test split (batch 256).
"""
import argparse, copy, json, os, random, time
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

ap = argparse.ArgumentParser()
ap.add_argument("splits")
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../data/tnews"))
ap.add_argument("--model", default=os.path.expanduser("~/.cache/kdrun/multilingual-e5-small"))
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--epochs", type=int, default=2)
ap.add_argument("--out")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed); random.seed(a.seed)

splits = json.load(open(a.splits))
label_of = {c["label"]: i for i, c in enumerate(splits["classes"])}
def rows(path):
    return [json.loads(l) for l in open(path, encoding="utf-8")]
train_rows, test_rows = rows(os.path.join(a.data, "train.json")), rows(os.path.join(a.data, "dev.json"))
def pick(src, ids):
    out = []
    for i in ids:
        r = src[i]
        out.append((r["sentence"], label_of[r["label"]]))
    return out
train, valid, test = pick(train_rows, splits["train"]), pick(train_rows, splits["valid"]), pick(test_rows, splits["test"])

tok = AutoTokenizer.from_pretrained(a.model)
model = BertForSequenceClassification.from_pretrained(a.model, num_labels=len(label_of))
for p in model.bert.embeddings.parameters():
    p.requires_grad_(False)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=5e-5, eps=1e-8, weight_decay=0.01)
bs, max_len = 32, 48
steps = a.epochs * ((len(train) + bs - 1) // bs)
warm = round(0.1 * steps)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
enc = lambda texts: tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
lengths = [len(tok(s, truncation=True, max_length=max_len)["input_ids"]) for s, _ in train]

def order():
    idx = list(range(len(train))); random.shuffle(idx)
    batches = []
    for p in range(0, len(idx), bs * 50):
        pool = sorted(idx[p:p + bs * 50], key=lambda i: lengths[i])
        batches += [pool[i:i + bs] for i in range(0, len(pool), bs)]
    random.shuffle(batches)
    return batches

def accuracy(data):
    model.eval(); correct = 0
    with torch.inference_mode():
        for i in range(0, len(data), 256):
            b = data[i:i + 256]
            correct += (model(**enc([s for s, _ in b])).logits.argmax(-1) == torch.tensor([y for _, y in b])).sum().item()
    model.train()
    return correct / len(data)

train_s, best, history = 0.0, None, []
for ep in range(a.epochs):
    model.train(); t0 = time.time()
    for batch in order():
        b = [train[i] for i in batch]
        out = model(**enc([s for s, _ in b]), labels=torch.tensor([y for _, y in b]))
        out.loss.backward()
        for p in params:
            torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step(); sched.step(); opt.zero_grad()
    train_s += time.time() - t0
    acc = accuracy(valid)
    history.append({"epoch": ep + 1, "valid_accuracy": acc, "seconds": round(time.time() - t0, 1)})
    print(json.dumps(history[-1]), flush=True)
    if best is None or acc > best[1]:
        best = (copy.deepcopy(model.state_dict()), acc, ep + 1)
model.load_state_dict(best[0])
t1 = time.time(); test_acc = accuracy(test); infer_s = time.time() - t1
res = {"torch": torch.__version__, "threads": a.threads, "seed": a.seed, "train_rows": len(train),
       "valid_rows": len(valid), "test_rows": len(test), "best_epoch": best[2], "valid_accuracy": best[1],
       "test_accuracy": test_acc, "train_s": round(train_s, 1), "test_inference_s": round(infer_s, 1),
       "test_sentences_per_s": round(len(test) / infer_s, 1), "history": history}
print(json.dumps(res), flush=True)
if a.out:
    json.dump(res, open(a.out, "w"), indent=1)
