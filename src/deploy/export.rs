//! `kdrun export`: a run's model as a folder another runtime loads. The student: `model.onnx`,
//! `tokenizer.json` (its ids exactly), `config.json` (sizes, classes in order, `max_len`, the
//! token unit) and a README with the ten lines that run it in onnxruntime. A BERT teacher: its
//! Hugging Face folder (transformers loads it) with `model.onnx` beside it. The folder is
//! written under a temporary name and moved into place whole.

use super::onnx::{bert, graph, student};
use super::run::{Loaded, ModelChoice, Run};
use crate::files::write_atomic;
use crate::models::{TeacherConfig, TeacherModel};
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The export formats.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Onnx,
}

/// The file that marks a folder as kdrun's export (so a new export may replace it).
const MARKER: &str = "kdrun-export.json";

/// Export `which` of `run` into `out` (created; a previous kdrun export there is replaced).
pub fn export(
    run: &Run,
    which: ModelChoice,
    format: Format,
    out: &Path,
    device: &Device,
) -> Result<PathBuf> {
    let Format::Onnx = format;
    if out.exists() && !out.join(MARKER).is_file() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
        if !empty {
            bail!(
                "{} exists and is not a kdrun export: name a new folder (an earlier export is replaced)",
                out.display()
            );
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = crate::files::temp_name(out);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let written = write_folder(run, which, &tmp, device);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move {} into place", out.display()))?;
    Ok(out.to_path_buf())
}

fn write_folder(run: &Run, which: ModelChoice, dir: &Path, device: &Device) -> Result<()> {
    let classes = run.class_names();
    let meta = [
        ("classes", serde_json::to_string(&classes)?),
        ("kdrun_run", run.dir.display().to_string()),
        ("kdrun_model", which.name().to_string()),
    ];
    match run.model(which, device)? {
        Loaded::Student(model, vocab, max_len) => {
            let onnx = student::bilstm_classifier(&model, &meta)?;
            graph::save(&onnx, &dir.join("model.onnx"))?;
            let tokenizer = crate::data::tokenizer_json::student_tokenizer_json(&vocab, max_len);
            write_atomic(&dir.join("tokenizer.json"), serde_json::to_string_pretty(&tokenizer)?.as_bytes())?;
            vocab.save(&dir.join("vocab.txt"))?;
            let s = &run.recipe.student;
            let config = json!({
                "architecture": "bilstm",
                "model": which.name(),
                "vocab_size": vocab.len(),
                "embedding_dim": s.embedding_dim,
                "hidden": s.hidden,
                "head": s.head,
                "fc_hidden": s.fc_hidden,
                "input": s.input,
                "classes": classes,
                "max_len": max_len,
                "tokens": match vocab { crate::data::StudentVocab::Chars(_) => "char", crate::data::StudentVocab::Words(_) => "word" },
                "lowercase": run.recipe.data.lowercase,
                "pad_id": crate::data::vocab::PAD,
                "unk_id": crate::data::vocab::UNK,
                "inputs": ["input_ids", "attention_mask"],
                "outputs": ["logits"],
                "padding": "right",
            });
            write_atomic(&dir.join("config.json"), serde_json::to_string_pretty(&config)?.as_bytes())?;
            write_atomic(&dir.join("README.md"), student_readme(run, which, &vocab).as_bytes())?;
        }
        Loaded::Teacher(model, tokenizer, max_len, config) => {
            let (TeacherConfig::Bert(c), TeacherModel::Bert(m)) = (config.as_ref(), model.as_ref()) else {
                bail!(
                    "an XLNet teacher cannot be exported to ONNX by kdrun (its two-stream relative attention is not written as an ONNX graph); its Hugging Face folder is in the run's teacher stage (teacher_hf/, with teacher.export = true)"
                );
            };
            let tensors = m.hf_tensors(c.family())?;
            let onnx = bert::bert_classifier(c, &tensors)?;
            graph::save(&onnx, &dir.join("model.onnx"))?;
            config.export(dir, &model)?;
            tokenizer.save_hf(dir, max_len)?;
            write_atomic(&dir.join("README.md"), teacher_readme(run).as_bytes())?;
        }
        Loaded::Baseline(_) => bail!(
            "the baseline is a TF-IDF linear model, not exported to ONNX; export the distilled student, the student or a BERT teacher"
        ),
    }
    let marker = json!({
        "run": run.dir.display().to_string(),
        "model": which.name(),
        "format": "onnx",
        "kdrun_version": crate::build_info::VERSION,
    });
    write_atomic(
        &dir.join(MARKER),
        serde_json::to_string_pretty(&marker)?.as_bytes(),
    )?;
    Ok(())
}

fn student_readme(run: &Run, which: ModelChoice, vocab: &crate::data::StudentVocab) -> String {
    let words = matches!(vocab, crate::data::StudentVocab::Words(_));
    let cut = if words {
        "\nThe student reads jieba words: `tokenizer.json` splits on spaces, so cut the text first\n\
         (normalized as kdrun does: full-width ASCII to half-width, whitespace dropped{lower}) with\n\
         `\" \".join(jieba.cut(text, HMM=True))`.\n"
            .replace("{lower}", if run.recipe.data.lowercase { ", lower-cased" } else { "" })
    } else {
        String::new()
    };
    format!(
        "# kdrun {which} student (ONNX)\n\n\
         Exported by kdrun {version} from the run `{run}`: a one-layer BiLSTM (Tang et al. 2019) over\n\
         {unit}s, classes in `config.json` (`classes`, in logit order). Inputs `input_ids` and\n\
         `attention_mask` (int64, `[batch, sequence]`, padded on the right with id 0); output\n\
         `logits` (`[batch, classes]`). `tokenizer.json` gives the ids kdrun gives (truncated to\n\
         {max_len} tokens).\n{cut}\n\
         ```python\n\
         import json, numpy as np, onnxruntime as ort\n\
         from tokenizers import Tokenizer\n\
         config = json.load(open(\"config.json\"))\n\
         tokenizer = Tokenizer.from_file(\"tokenizer.json\")\n\
         tokenizer.enable_padding(pad_id=config[\"pad_id\"], pad_token=\"[PAD]\")\n\
         session = ort.InferenceSession(\"model.onnx\")\n\
         batch = tokenizer.encode_batch([\"华为发布新款折叠屏手机\", \"湖人队主场击败勇士\"])\n\
         feeds = {{\"input_ids\": np.array([e.ids for e in batch], dtype=np.int64),\n\
                  \"attention_mask\": np.array([e.attention_mask for e in batch], dtype=np.int64)}}\n\
         logits = session.run([\"logits\"], feeds)[0]\n\
         print([config[\"classes\"][i] for i in logits.argmax(axis=1)])\n\
         ```\n\n\
         An empty text gives no ids here (kdrun reads it as one `[UNK]`): give the model text.\n",
        which = which.name(),
        version = crate::build_info::VERSION,
        run = run.dir.display(),
        unit = vocab.unit(),
        max_len = run.recipe.data.max_len,
    )
}

fn teacher_readme(run: &Run) -> String {
    format!(
        "# kdrun BERT teacher (Hugging Face folder + ONNX)\n\n\
         Exported by kdrun {version} from the run `{run}`. transformers loads this folder\n\
         (`AutoModelForSequenceClassification.from_pretrained(\".\")`, `AutoTokenizer` likewise);\n\
         `model.onnx` is the same model for onnxruntime: inputs `input_ids`, `attention_mask`,\n\
         `token_type_ids` (int64, `[batch, sequence]`), output `logits`; the classes are\n\
         `config.json`'s `id2label`.\n\n\
         ```python\n\
         import numpy as np, onnxruntime as ort\n\
         from transformers import AutoConfig, AutoTokenizer\n\
         config, tokenizer = AutoConfig.from_pretrained(\".\"), AutoTokenizer.from_pretrained(\".\")\n\
         session = ort.InferenceSession(\"model.onnx\")\n\
         batch = tokenizer([\"华为发布新款折叠屏手机\"], padding=True, return_tensors=\"np\")\n\
         feeds = {{k: batch[k].astype(np.int64) for k in (\"input_ids\", \"attention_mask\", \"token_type_ids\")}}\n\
         logits = session.run([\"logits\"], feeds)[0]\n\
         print([config.id2label[i] for i in logits.argmax(axis=1)])\n\
         ```\n",
        version = crate::build_info::VERSION,
        run = run.dir.display(),
    )
}

/// The exports a finished run's `[export]` asks for, into `<run>/export/<model>-<format>`.
pub fn export_run(
    run: &Run,
    models: &[ModelChoice],
    formats: &[crate::recipe::ExportFormat],
    device: &Device,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for &m in models {
        for &f in formats {
            let (format, name) = match f {
                crate::recipe::ExportFormat::Onnx => (Format::Onnx, "onnx"),
            };
            let dir = run.dir.join("export").join(format!("{}-{name}", m.name()));
            out.push(
                export(run, m, format, &dir, device).map_err(|e| {
                    anyhow!("export.models: exporting the {} model: {e:#}", m.name())
                })?,
            );
        }
    }
    Ok(out)
}
