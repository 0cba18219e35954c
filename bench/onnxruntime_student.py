#!/usr/bin/env python3
"""Throughput of an exported kdrun student in onnxruntime, tokenization included, beside
`kdrun predict`'s: reads a file of sentences (one a line), tokenizes with the exported
tokenizer.json (`tokenizers`), sorts by length into batches of --batch-size (as kdrun does),
runs model.onnx, and prints sentences/s (best of --repeats passes) and the labels' agreement
with a `kdrun predict` JSON-lines output if given.

    python3 bench/onnxruntime_student.py EXPORT_DIR sentences.txt [--predictions p.jsonl]
"""
import argparse, json, time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("sentences")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--predictions")
    a = ap.parse_args()
    config = json.load(open(f"{a.folder}/config.json"))
    texts = [l.rstrip("\n") for l in open(a.sentences, encoding="utf-8") if l.strip()]
    tok = Tokenizer.from_file(f"{a.folder}/tokenizer.json")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    session = ort.InferenceSession(f"{a.folder}/model.onnx", opts, providers=["CPUExecutionProvider"])
    best, labels = None, None
    for _ in range(a.repeats):
        start = time.perf_counter()
        ids = [e.ids for e in tok.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = [None] * len(ids)
        for s in range(0, len(order), a.batch_size):
            rows = order[s:s + a.batch_size]
            width = max(len(ids[i]) for i in rows)
            x = np.zeros((len(rows), width), dtype=np.int64)
            m = np.zeros((len(rows), width), dtype=np.int64)
            for j, i in enumerate(rows):
                x[j, :len(ids[i])] = ids[i]
                m[j, :len(ids[i])] = 1
            logits = session.run(["logits"], {"input_ids": x, "attention_mask": m})[0]
            for j, i in enumerate(rows):
                out[i] = int(logits[j].argmax())
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
        labels = [config["classes"][k] for k in out]
    result = {"sentences": len(texts), "seconds": round(best, 4),
              "sentences_per_second": round(len(texts) / best, 1),
              "threads": a.threads, "batch_size": a.batch_size,
              "onnxruntime": ort.__version__}
    if a.predictions:
        kd = [json.loads(l)["label"] for l in open(a.predictions, encoding="utf-8")]
        result["same_labels_as_kdrun"] = sum(x == y for x, y in zip(kd, labels))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
