//! Stages `pretrain` (further pre-training of the teacher's encoder: masked-LM, permutation-LM)
//! and `teacher`
//! (fine-tuning, from the pre-trained encoder, a checkpoint or scratch; exported as a Hugging
//! Face folder when `teacher.export`).

use super::super::context::{Common, Context};
use super::{load_record, read_json, save_model};
use crate::models::{PretrainModel, TeacherModel};
use crate::recipe::{PretrainSection, TeacherArch, TeacherSection};
use crate::runtime::progress::note;
use crate::store::stage::{stage_key, Stage, StageWriter};
use crate::train::pretrain::{further_pretrain, PretrainReport};
use crate::train::{teacher, FitInfo};
use anyhow::Result;
use burn::module::Module;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

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

/// What further pre-training depends on besides the data: the encoder's architecture, sizes
/// and starting weights, `[teacher.pretrain]`.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainSpec {
    pub arch: TeacherArch,
    pub checkpoint: PathBuf,
    pub checkpoint_sha256: Option<String>,
    /// Layers, hidden size, heads, feed-forward size.
    pub sizes: [usize; 4],
    pub dropout: f64,
    pub pretrain: PretrainSection,
    pub common: Common,
}

impl Stage<Context<'_>> for PretrainStage {
    type Output = (PretrainModel, PretrainReport);
    type Spec = PretrainSpec;

    fn name(&self) -> &str {
        "pretrain"
    }

    fn spec(&self, cx: &Context) -> Result<PretrainSpec> {
        let t = &cx.r.teacher;
        Ok(PretrainSpec {
            arch: t.arch,
            checkpoint: t.checkpoint.clone(),
            checkpoint_sha256: checkpoint_hash(cx)?,
            sizes: [t.layers, t.hidden, t.heads, t.intermediate()],
            dropout: t.dropout,
            pretrain: t.pretrain.clone(),
            common: cx.common(),
        })
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone()]
    }

    fn compute(
        &self,
        cx: &Context,
        spec: &PretrainSpec,
        out: &StageWriter,
    ) -> Result<Self::Output> {
        cx.ad.seed(spec.common.seed);
        let setup = cx.setup()?;
        let (model, notes) = setup.pretrain_model(&cx.ad)?;
        for n in notes {
            note(&format!("pretrain: {n}"));
            cx.add_note(format!("pretrain: {n}"));
        }
        let (model, report) = further_pretrain(
            &spec.pretrain,
            spec.arch,
            spec.common.max_len,
            spec.common.seed,
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

/// What fine-tuning depends on besides the data (and the further pre-trained encoder, an
/// input when pre-training ran).
#[derive(Debug, Clone)]
pub struct TeacherSpec {
    pub teacher: TeacherSection,
    /// Fine-tuned from the further pre-trained encoder.
    pub pretrained: bool,
    pub checkpoint_sha256: Option<String>,
    pub common: Common,
}

/// The key holds `[teacher]` without `export` (it only adds files; `kdrun export` writes a
/// stored teacher's) and without `pretrain` unless pre-training ran (its stage's key then
/// covers it).
impl Serialize for TeacherSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let mut teacher = serde_json::to_value(&self.teacher).map_err(S::Error::custom)?;
        teacher["export"] = Value::Null;
        if !self.pretrained {
            teacher["pretrain"] = Value::Null;
        }
        let mut m = s.serialize_struct("TeacherSpec", 3)?;
        m.serialize_field("teacher", &teacher)?;
        m.serialize_field("checkpoint_sha256", &self.checkpoint_sha256)?;
        m.serialize_field("common", &self.common)?;
        m.end()
    }
}

impl Stage<Context<'_>> for TeacherStage {
    type Output = Teacher;
    type Spec = TeacherSpec;

    fn name(&self) -> &str {
        "teacher"
    }

    fn spec(&self, cx: &Context) -> Result<TeacherSpec> {
        Ok(TeacherSpec {
            teacher: cx.r.teacher.clone(),
            pretrained: self.pretrained(),
            checkpoint_sha256: checkpoint_hash(cx)?,
            common: cx.common(),
        })
    }

    fn inputs(&self) -> Vec<String> {
        let mut inputs = vec![self.data_key.clone()];
        inputs.extend(self.pretrain.as_ref().map(|(_, key)| key.clone()));
        inputs
    }

    fn compute(&self, cx: &Context, spec: &TeacherSpec, out: &StageWriter) -> Result<Teacher> {
        let t = &spec.teacher;
        let seed = spec.common.seed;
        let setup = cx.setup()?;
        let mut notes = Vec::new();
        let mut pretrain_report = None;
        let start = if let Some((stage, _)) = &self.pretrain {
            let (pretrained, report) = cx.run(stage)?.value;
            pretrain_report = Some(report);
            // Seeded here, so the new head is the same whether pre-training ran now or not.
            cx.ad.seed(seed.wrapping_add(17));
            setup.classifier_over(pretrained, &cx.ad)?
        } else {
            cx.ad.seed(seed);
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
            &teacher::fit_settings(stage_name, t.optim(), seed),
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
            setup.tokenizer.save_hf(&dir, spec.common.max_len)?;
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
