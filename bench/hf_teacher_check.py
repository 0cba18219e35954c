#!/usr/bin/env python3
"""A run's exported teacher in transformers: the labels it gives every test sentence, against the
labels kdrun's report gives (results.json), and its accuracy.

usage: python3 bench/hf_teacher_check.py HF_FOLDER RESULTS_JSON [--max-len 48] [--threads 2]

HF_FOLDER: the teacher's Hugging Face folder (the teacher stage's `teacher_hf/`, or an export's
`teacher-onnx/`); RESULTS_JSON: the run's results.json (test texts, labels, kdrun's predictions).
"""
import argparse, json, time
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("folder"); ap.add_argument("results")
ap.add_argument("--max-len", type=int, default=48); ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
r = json.load(open(a.results))
kdrun = next(m for m in r["models"] if m["key"] == "teacher")["predictions"]
tok = AutoTokenizer.from_pretrained(a.folder)
model = AutoModelForSequenceClassification.from_pretrained(a.folder).eval()
texts, labels = r["test_texts"], r["test_labels"]
ours, t0 = [], time.time()
with torch.inference_mode():
    for i in range(0, len(texts), 128):
        enc = tok(texts[i:i + 128], padding=True, truncation=True, max_length=a.max_len, return_tensors="pt")
        ours += model(**enc).logits.argmax(-1).tolist()
print(json.dumps({
    "class": type(model).__name__, "tokenizer": type(tok).__name__, "sentences": len(texts),
    "labels_differing_from_kdrun": sum(x != y for x, y in zip(ours, kdrun)),
    "accuracy_transformers": sum(x == y for x, y in zip(ours, labels)) / len(labels),
    "accuracy_kdrun": sum(x == y for x, y in zip(kdrun, labels)) / len(labels),
    "seconds": round(time.time() - t0, 1)}))
