#!/usr/bin/env python3
"""PyTorch twin of `kdrun bench`: the same workloads, shapes, inputs and timing policy, the same
table and the same JSON layout (compare the two with bench/compare.py).

Usage: python3 bench/pytorch_bench.py [--device cpu|cuda] [--threads N] [--out FILE.json]
                                      [--quick] [--only TEXT ...] [--bert hf|torch]

Models (mirroring kdrun's, not bench/../shared/bench/pytorch_reference.py where they differ):
- BERT: transformers' BertForSequenceClassification (`--bert hf`, the default when transformers is
  installed; attention implementation as transformers chooses, recorded in the JSON) or an
  equivalent built from torch.nn (`--bert torch`: post-LN nn.TransformerEncoder, GELU, eps 1e-12,
  tanh pooler). Dropout 0.1, vocab 21128 (bert-base-chinese), 512 positions, 5 classes.
- Student: kdrun's BiLSTM with the `tang` head: dropout(embedding) -> one bidirectional LSTM
  layer -> final forward and backward states -> Linear -> ReLU -> dropout -> Linear. (The
  reference script max-pools the LSTM outputs over time instead; rows here have no padding, so
  the final states are the packed-sequence ones.)
- Training step: forward, loss (teacher: cross-entropy; student: MSE to random teacher logits),
  backward, per-tensor gradient-norm clipping (as burn clips: each tensor by its own norm; 1.0
  teacher, 5.0 student), AdamW (eps 1e-8; weight decay 0.01 teacher, 0 student), then a device
  sync. Inference: eval mode, inference_mode, argmax read back to the host.
Inputs: random token ids uniform over 1..vocab (seed 0), every row full length (all-ones
attention masks), random labels; one batch made before timing and reused.
"""
import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 5
SEED = 0
DEFAULT_VOCAB = 4000
E5_VOCAB = 250037  # multilingual-e5-small (XLM-R pieces and specials)
INPUTS = ("random token ids (uniform over 1..vocab, seed 0), every row full length "
          "(all-ones attention masks, no padding); random labels; for the student "
          "random N(0,1) teacher logits")
# kdrun's Recipe::default() (= recipes/tnews.toml's sizes): teacher, student, data, report.
DEFAULT = dict(layers=2, hidden=128, heads=2, ffn=512, max_len=48, teacher_batch=64,
               emb=128, lstm_hidden=128, fc=200, student_batch=64, timing_batch=256,
               teacher_wd=0.01, teacher_clip=1.0, teacher_lr=5e-4,
               student_wd=0.0, student_clip=5.0, student_lr=2e-3, dropout=0.1)


# ---------------------------------------------------------------- models
class TorchBert(nn.Module):
    """BERT from torch.nn: word + position + token-type embeddings, LayerNorm, dropout, post-LN
    encoder layers (GELU), tanh pooler over the first token, dropout, linear head."""

    def __init__(self, vocab, hidden, layers, heads, ffn, positions=512, p=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(positions, hidden)
        self.seg = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(p)
        layer = nn.TransformerEncoderLayer(hidden, heads, ffn, p, activation="gelu",
                                           batch_first=True, layer_norm_eps=1e-12)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pool = nn.Linear(hidden, hidden)
        self.cls = nn.Linear(hidden, CLASSES)

    def forward(self, x, mask):
        t = torch.arange(x.shape[1], device=x.device)
        h = self.drop(self.ln(self.tok(x) + self.pos(t) + self.seg(torch.zeros_like(x))))
        h = self.enc(h, src_key_padding_mask=mask == 0)
        return self.cls(self.drop(torch.tanh(self.pool(h[:, 0]))))


class HfBert(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, ffn, positions=512, p=0.1):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification
        cfg = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=heads, intermediate_size=ffn,
                         max_position_embeddings=positions, hidden_dropout_prob=p,
                         attention_probs_dropout_prob=p, num_labels=CLASSES,
                         layer_norm_eps=1e-12, hidden_act="gelu")
        self.m = BertForSequenceClassification(cfg)

    def forward(self, x, mask):
        return self.m(input_ids=x, attention_mask=mask).logits


class BiLstm(nn.Module):
    """kdrun's student with the `tang` head."""

    def __init__(self, vocab, emb, hidden, fc, p=0.1):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, fc)
        self.out = nn.Linear(fc, CLASSES)
        self.drop = nn.Dropout(p)

    def forward(self, x, mask):
        _, (h, _) = self.lstm(self.drop(self.emb(x)))
        return self.out(self.drop(F.relu(self.fc(torch.cat([h[0], h[1]], 1)))))


def frozen_embeddings(model):
    """The embeddings (word, position, token type, their LayerNorm) frozen, as kdrun's
    `teacher.freeze = "embeddings"` does for a pretrained teacher."""
    emb = model.m.bert.embeddings if isinstance(model, HfBert) else \
        nn.ModuleList([model.tok, model.pos, model.seg, model.ln])
    for p in emb.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------- workloads
def workloads(gpu, quick, bert_cls):
    bert_infer, lstm_infer = (512, 1024) if gpu else (256, 256)
    d = DEFAULT
    teacher_opt = dict(lr=d["teacher_lr"], wd=d["teacher_wd"], clip=d["teacher_clip"])
    student_opt = dict(lr=d["student_lr"], wd=d["student_wd"], clip=d["student_clip"])
    fams = [
        ("bert-base", "BERT-base: 12 layers, 768 hidden, 12 heads, FFN 3072, vocab 21128",
         "teacher", lambda: bert_cls(21128, 768, 12, 12, 3072), 21128, 32, 64, bert_infer),
        ("bert-small", "BERT-small: 4 layers, 256 hidden, 4 heads, FFN 1024, vocab 21128",
         "teacher", lambda: bert_cls(21128, 256, 4, 4, 1024), 21128, 32, 64, bert_infer),
        ("e5-small", "multilingual-e5-small's shape: BERT 12 layers, 384 hidden, 12 heads, "
         "FFN 1536, vocab 250037, embeddings frozen", "teacher",
         lambda: frozen_embeddings(bert_cls(E5_VOCAB, 384, 12, 12, 1536)), E5_VOCAB, 32, 32,
         bert_infer),
        ("bilstm-ref", "BiLSTM (Tang): 300-d embedding, vocab 50000, 150 hidden ×2, ReLU 200",
         "student", lambda: BiLstm(50000, 300, 150, 200), 50000, 32, 64, lstm_infer),
        ("default-bert", f"default recipe's BERT: {d['layers']} layers, {d['hidden']} hidden, "
         f"{d['heads']} heads, FFN {d['ffn']}, vocab {DEFAULT_VOCAB}", "teacher",
         lambda: bert_cls(DEFAULT_VOCAB, d["hidden"], d["layers"], d["heads"], d["ffn"],
                          positions=d["max_len"]),
         DEFAULT_VOCAB, d["max_len"], d["teacher_batch"], d["timing_batch"]),
        ("default-bilstm", f"default recipe's BiLSTM: {d['emb']}-d embedding, vocab "
         f"{DEFAULT_VOCAB}, {d['lstm_hidden']} hidden ×2, ReLU {d['fc']}", "student",
         lambda: BiLstm(DEFAULT_VOCAB, d["emb"], d["lstm_hidden"], d["fc"]),
         DEFAULT_VOCAB, d["max_len"], d["student_batch"], d["timing_batch"]),
    ]
    out = []
    for fam, desc, role, make, vocab, tokens, train_b, infer_b in fams:
        for task, b in (("train", train_b), ("infer", infer_b)):
            out.append(dict(name=f"{fam}/{task}", model=desc, role=role, make=make, vocab=vocab,
                            task=task, batch=min(b, 8) if quick else b, tokens=tokens,
                            opt=teacher_opt if role == "teacher" else student_opt))
    return out


def policy(gpu, quick):
    if quick:
        return dict(warmup_min=1, warmup_max=1, min_iters=1, max_iters=1, budget_s=0.0)
    if gpu:
        return dict(warmup_min=3, warmup_max=15, min_iters=10, max_iters=50, budget_s=15.0)
    return dict(warmup_min=1, warmup_max=1, min_iters=3, max_iters=20, budget_s=15.0)


def measure(pol, f):
    def timed():
        t = time.perf_counter()
        f()
        return (time.perf_counter() - t) * 1e3
    warm = []
    while len(warm) < pol["warmup_max"]:
        warm.append(timed())
        n = len(warm)
        if n >= max(pol["warmup_min"], 2) and abs(warm[-1] - warm[-2]) <= 0.1 * warm[-2]:
            break
    times, start = [], time.perf_counter()
    while len(times) < max(pol["max_iters"], 1):
        times.append(timed())
        if len(times) >= pol["min_iters"] and time.perf_counter() - start >= pol["budget_s"]:
            break
    return warm, times


def clip_per_tensor(params, max_norm):
    """burn's GradientClipping::Norm: each gradient tensor scaled by min(1, max / its own norm)."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack(torch._foreach_norm(grads))
    coefs = (max_norm / (norms + torch.finfo(torch.float32).tiny)).clamp(max=1.0)
    for g, c in zip(grads, coefs.unbind()):
        g.mul_(c)


def run_workload(w, pol, dev, sync):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randint(1, w["vocab"], (w["batch"], w["tokens"]), generator=gen).to(dev)
    y = torch.randint(0, CLASSES, (w["batch"],), generator=gen).to(dev)
    mask = torch.ones_like(x)
    model = w["make"]().to(dev)
    params = sum(p.numel() for p in model.parameters())
    o = w["opt"]
    if w["task"] == "train":
        model.train()
        ps = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(ps, lr=o["lr"], weight_decay=o["wd"], eps=1e-8)
        soft = torch.randn(w["batch"], CLASSES, generator=gen).to(dev)

        def step():
            logits = model(x, mask)
            loss = F.cross_entropy(logits, y) if w["role"] == "teacher" else F.mse_loss(logits, soft)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_per_tensor(ps, o["clip"])
            opt.step()
            sync()
        what = ("forward (dropout 0.1) + " + ("cross-entropy" if w["role"] == "teacher" else
                "MSE to teacher logits") + f" + backward + AdamW (weight decay {o['wd']}, "
                f"grad-norm clip {o['clip']} per tensor)")
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x, mask).argmax(1).tolist()
        what = "forward in inference mode, argmax read back"
    warm, times = measure(pol, step)
    med = statistics.median(times)
    del model
    return dict(name=w["name"], model=w["model"], task=w["task"], batch=w["batch"],
                tokens=w["tokens"], shape=f"{w['batch']} × {w['tokens']}", params=params,
                step=what, warmup_ms=warm, iterations_ms=times, median_ms=med,
                samples_per_s=w["batch"] / (med / 1e3))


def machine():
    def field(path, key):
        try:
            for line in open(path):
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None
    mem = field("/proc/meminfo", "MemTotal")
    return dict(cpu=field("/proc/cpuinfo", "model name") or platform.machine(),
                cores=os.cpu_count() or 1,
                memory_gib=round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else 0.0,
                os=f"{platform.system().lower()} {platform.machine()}",
                hostname=socket.gethostname())


def table(r):
    out = [f"{r['tool']}: {r['framework']} on {r['backend']} — {r['adapter']}, "
           f"{r['threads']} threads" + ("; --quick: smoke test, not a measurement" if r["quick"] else "")]
    out.append(f"{'workload':<22} {'shape':>10} {'warm-up ms':>14} {'median ms':>12} {'iters':>6} {'samples/s':>12}")
    for w in r["workloads"]:
        wm = w["warmup_ms"]
        warm = "-" if not wm else f"{wm[0]:.1f}" if len(wm) == 1 else f"{wm[0]:.1f} (+{len(wm) - 1})"
        out.append(f"{w['name']:<22} {w['shape']:>10} {warm:>14} {w['median_ms']:>12.1f} "
                   f"{len(w['iterations_ms']):>6} {w['samples_per_s']:>12.1f}")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: one warm-up and one timed iteration, batches of at most 8")
    ap.add_argument("--only", action="append", default=[],
                    help="run only workloads whose name contains this (repeatable)")
    ap.add_argument("--bert", choices=["hf", "torch"], default=None,
                    help="BERT from transformers (default if installed) or from torch.nn")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    bert_kind = a.bert
    transformers_version = None
    try:
        import transformers
        transformers_version = transformers.__version__
    except ImportError:
        if bert_kind == "hf":
            sys.exit("error: --bert hf needs transformers (pip install transformers)")
    if bert_kind is None:
        bert_kind = "hf" if transformers_version else "torch"
    bert_cls = HfBert if bert_kind == "hf" else TorchBert
    gpu = a.device == "cuda"
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    pol = policy(gpu, a.quick)
    chosen = [w for w in workloads(gpu, a.quick, bert_cls)
              if not a.only or any(o in w["name"] for o in a.only)]
    if not chosen:
        sys.exit(f"error: no workload matches --only {', '.join(a.only)}")
    framework = f"torch {torch.__version__}"
    if bert_kind == "hf":
        attn = HfBert(64, 16, 1, 2, 32).m.config._attn_implementation
        framework += f", transformers {transformers_version} (BertForSequenceClassification, attention {attn})"
    else:
        framework += ", BERT from torch.nn.TransformerEncoder"
    results = []
    for i, w in enumerate(chosen):
        print(f"bench [{i + 1}/{len(chosen)}] {w['name']} ({w['batch']} × {w['tokens']}) …",
              file=sys.stderr, flush=True)
        r = run_workload(w, pol, dev, sync)
        print(f"  warm-up {', '.join(f'{t:.0f}' for t in r['warmup_ms'])} ms; median "
              f"{r['median_ms']:.1f} ms of {len(r['iterations_ms'])} iterations, "
              f"{r['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
        results.append(r)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                                check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        commit = None
    m = machine()
    report = dict(
        tool="pytorch", version=torch.__version__, commit=commit, framework=framework,
        date=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), machine=m,
        backend=f"cuda (torch)" if gpu else "cpu (torch)",
        adapter=torch.cuda.get_device_name(0) if gpu else m["cpu"],
        threads=torch.get_num_threads(), quick=a.quick, inputs=INPUTS, policy=pol,
        workloads=results)
    print(table(report))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
        print(f"results: {a.out}")


if __name__ == "__main__":
    main()
