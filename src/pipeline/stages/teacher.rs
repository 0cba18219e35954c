//! Stages `pretrain` (further pre-training of the teacher's encoder: masked-LM, permutation-LM)
//! and `teacher`
//! (fine-tuning, from the pre-trained encoder, a checkpoint or scratch; exported as a Hugging
//! Face folder when `teacher.export`).

use super::super::context::Context;
use super::{load_record, read_json, save_model};
use crate::models::{PretrainModel, TeacherModel};
use crate::runtime::progress::note;
use crate::store::stage::{stage_key, Stage, StageWriter};
use crate::train::pretrain::{further_pretrain, PretrainReport};
use crate::train::{teacher, FitInfo};
use anyhow::Result;
use burn::module::Module;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// What a teacher stage keeps beside its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeacherMeta {
    fit: FitInfo,
    trainable: usize,
    pretrain: Option<PretrainReport>,
    notes: Vec<String>,
}

/// A fine-tuned teacher (in inference mode).
pub struct Teacher {
    pub model: TeacherModel,
    pub fit: FitInfo,
    /// Parameters fine-tuning changed (all but the frozen ones).
    pub trainable: usize,
    pub pretrain: Option<PretrainReport>,
    pub notes: Vec<String>,
}

impl Teacher {
    fn new(model: TeacherModel, meta: TeacherMeta) -> Self {
        Self {
            model,
            fit: meta.fit,
            trainable: meta.trainable,
            pretrain: meta.pretrain,
            notes: meta.notes,
        }
    }
}

/// Further pre-training of the teacher's encoder.
pub struct PretrainStage {
    pub data_key: String,
}

impl Stage<Context<'_>> for PretrainStage {
    type Output = (PretrainModel, PretrainReport);

    fn name(&self) -> &str {
        "pretrain"
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
        let t = &cx.r.teacher;
        Ok(json!({
            "arch": t.arch,
            "checkpoint": t.checkpoint,
            "checkpoint_sha256": checkpoint_hash(cx)?,
            "sizes": [t.layers, t.hidden, t.heads, t.intermediate()],
            "dropout": t.dropout,
            "pretrain": t.pretrain,
            "common": cx.common(),
        }))
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone()]
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Self::Output> {
        let r = cx.r;
        cx.ad.seed(r.runtime.seed);
        let setup = cx.setup()?;
        let (model, notes) = setup.pretrain_model(&cx.ad)?;
        for n in notes {
            note(&format!("pretrain: {n}"));
            cx.add_note(format!("pretrain: {n}"));
        }
        let (model, report) = further_pretrain(
            &r.teacher,
            r.data.max_len,
            r.runtime.seed,
            &setup.tokenizer,
            &cx.data()?.unlabeled,
            model,
            &cx.ad,
        )?;
        save_model(&model, &out.file("pretrained.bpk"))?;
        out.write_json("pretrain.json", &report)?;
        Ok((model, report))
    }

    fn load(&self, cx: &Context, dir: &Path) -> Result<Self::Output> {
        let model = load_record(
            cx.setup()?.config.init_pretrain(&cx.ad),
            &dir.join("pretrained.bpk"),
        )?;
        Ok((model, read_json(&dir.join("pretrain.json"))?))
    }
}

/// The fine-tuned teacher, further pre-trained first when `pretrain` is set.
pub struct TeacherStage {
    data_key: String,
    /// The pre-training stage and its key (an input of this stage's key).
    pretrain: Option<(PretrainStage, String)>,
}

impl TeacherStage {
    pub fn new(cx: &Context, data_key: &str, pretrained: bool) -> Result<Self> {
        let pretrain = if pretrained {
            let stage = PretrainStage {
                data_key: data_key.to_string(),
            };
            let (key, _, _) = stage_key(&stage, cx)?;
            Some((stage, key))
        } else {
            None
        };
        Ok(Self {
            data_key: data_key.to_string(),
            pretrain,
        })
    }

    fn pretrained(&self) -> bool {
        self.pretrain.is_some()
    }
}

/// sha256 of the checkpoint's weights, if the teacher starts from one.
fn checkpoint_hash(cx: &Context) -> Result<Option<String>> {
    if cx.r.teacher.checkpoint.as_os_str().is_empty() {
        return Ok(None);
    }
    match &cx.setup()?.checkpoint {
        Some(c) => Ok(Some(cx.hash(&c.weights_file)?)),
        None => Ok(None),
    }
}

impl Stage<Context<'_>> for TeacherStage {
    type Output = Teacher;

    fn name(&self) -> &str {
        "teacher"
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
        let mut teacher = serde_json::to_value(&cx.r.teacher)?;
        teacher["export"] = Value::Null;
        if !self.pretrained() {
            teacher["pretrain"] = Value::Null;
        }
        Ok(json!({
            "teacher": teacher,
            "checkpoint_sha256": checkpoint_hash(cx)?,
            "common": cx.common(),
        }))
    }

    fn inputs(&self) -> Vec<String> {
        let mut inputs = vec![self.data_key.clone()];
        inputs.extend(self.pretrain.as_ref().map(|(_, key)| key.clone()));
        inputs
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Teacher> {
        let r = cx.r;
        let t = &r.teacher;
        let setup = cx.setup()?;
        let mut notes = Vec::new();
        let mut pretrain_report = None;
        let start = if let Some((stage, _)) = &self.pretrain {
            let (pretrained, report) = cx.run(stage)?.value;
            pretrain_report = Some(report);
            // Seeded here, so the new head is the same whether pre-training ran now or not.
            cx.ad.seed(r.runtime.seed.wrapping_add(17));
            setup.classifier_over(pretrained, &cx.ad)?
        } else {
            cx.ad.seed(r.runtime.seed);
            let (model, ns) = setup.classifier(&cx.ad)?;
            notes.extend(ns.into_iter().map(|n| format!("teacher: {n}")));
            model
        };
        for n in &notes {
            note(n);
        }
        let (start, trainable) = teacher::apply_freeze(start, t.freeze)?;
        let stage_name = if self.pretrained() || !t.pretrain.enabled() {
            "teacher"
        } else {
            "teacher (no pretraining)"
        };
        let inputs = cx.teacher_inputs()?;
        let fitted = teacher::fine_tune(
            &teacher::fit_settings(stage_name, t.optim(), r.runtime.seed),
            start,
            &inputs.batcher,
            &inputs.train,
            &inputs.valid,
            &cx.ad,
        )?;
        save_model(&fitted.model, &out.file("teacher.bpk"))?;
        crate::files::write_atomic(
            &out.file("config.json"),
            serde_json::to_string_pretty(&setup.config)?.as_bytes(),
        )?;
        let meta = TeacherMeta {
            fit: fitted.info(),
            trainable,
            pretrain: pretrain_report,
            notes,
        };
        out.write_json("teacher.json", &meta)?;
        let model = fitted.model.valid();
        if t.export {
            let dir = out.file("teacher_hf");
            setup.config.export(&dir, &model)?;
            setup.tokenizer.save_hf(&dir, r.data.max_len)?;
        }
        Ok(Teacher::new(model, meta))
    }

    fn load(&self, cx: &Context, dir: &Path) -> Result<Teacher> {
        let meta: TeacherMeta = read_json(&dir.join("teacher.json"))?;
        let model = load_record(
            cx.setup()?.config.init_classifier(&cx.compute.device),
            &dir.join("teacher.bpk"),
        )?;
        Ok(Teacher::new(model, meta))
    }
}
