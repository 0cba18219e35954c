//! Stages `student` (the BiLSTM trained alone on the hard labels) and `distilled` (the same
//! student, same initialization and batch order, trained on the transfer set against the
//! teacher's logits). The vectors' coverage is kept with each, for the report.

use super::super::context::Context;
use super::logits::Logits;
use super::{load_record, read_json, save_model, SYNTHETIC_IDS};
use crate::data::batch::Encoded;
use crate::data::vectors::Coverage;
use crate::distill::DistillLoss;
use crate::models::BiLstmClassifier;
use crate::store::stage::{Stage, StageWriter};
use crate::train::student::{bilstm_config, fit_settings, train_student};
use crate::train::FitInfo;
use anyhow::Result;
use burn::module::Module;
use serde_json::{json, Value};
use std::path::Path;

/// A trained student (in inference mode).
pub struct Student {
    pub model: BiLstmClassifier,
    pub fit: FitInfo,
    pub coverage: Option<Coverage>,
}

impl Student {
    /// Parameters training changed (the embeddings stay fixed with `student.freeze_vectors`).
    pub fn trainable(&self, frozen_embeddings: bool) -> usize {
        let all = self.model.num_params();
        if frozen_embeddings {
            all - self.model.embedding.num_params()
        } else {
            all
        }
    }
}

/// A student stage: `student` without a teacher, `distilled` with one.
pub struct StudentStage<'l> {
    pub data_key: String,
    /// The teacher's logits and their stage's key, for the distilled student.
    pub teacher: Option<(&'l Logits, String)>,
}

impl StudentStage<'_> {
    /// Training examples: the training split, plus the synthetic ones (labelled by the teacher)
    /// for the distilled student.
    fn transfer_set(&self, cx: &Context) -> Result<Vec<Encoded>> {
        let mut items = cx.student_inputs()?.train.clone();
        if let Some((logits, _)) = &self.teacher {
            let vocab = cx.student_vocab()?;
            items.extend(logits.synthetic.iter().enumerate().map(|(i, s)| {
                let id = SYNTHETIC_IDS + i as u32;
                Encoded {
                    id,
                    tokens: vocab.encode_pieces(&s.pieces, cx.r.data.max_len),
                    label: logits.logits.argmax(id).unwrap_or(0),
                }
            }));
        }
        Ok(items)
    }
}

impl Stage<Context<'_>> for StudentStage<'_> {
    type Output = Student;

    fn name(&self) -> &str {
        if self.teacher.is_some() {
            "distilled"
        } else {
            "student"
        }
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
        let r = cx.r;
        let vectors = &r.student.vectors;
        let vectors_sha256 = if vectors.as_os_str().is_empty() {
            None
        } else {
            Some(cx.hash(vectors)?)
        };
        let mut settings = json!({
            "student": r.student,
            "vectors_sha256": vectors_sha256,
            "common": cx.common(),
        });
        if self.teacher.is_some() {
            settings["distill"] = serde_json::to_value(&r.distill)?;
        }
        Ok(settings)
    }

    fn inputs(&self) -> Vec<String> {
        let mut inputs = vec![self.data_key.clone()];
        inputs.extend(self.teacher.as_ref().map(|(_, key)| key.clone()));
        inputs
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Student> {
        let (init, coverage) = cx.student_init()?;
        let (loss, logits) = match &self.teacher {
            Some((l, _)) => (
                DistillLoss::new(&cx.r.distill, cx.r.soft_targets()),
                Some(&l.logits),
            ),
            None => (DistillLoss::hard_only(), None),
        };
        let inputs = cx.student_inputs()?;
        let fitted = train_student(
            &cx.r.student,
            &fit_settings(self.name(), cx.r.student.optim(), cx.r.runtime.seed),
            init,
            &inputs.batcher,
            &self.transfer_set(cx)?,
            &inputs.valid,
            &cx.ad,
            loss,
            logits,
        )?;
        save_model(&fitted.model, &out.file("student.bpk"))?;
        out.write_json("fit.json", &fitted.info())?;
        out.write_json("coverage.json", coverage)?;
        Ok(Student {
            model: fitted.model.valid(),
            fit: fitted.info(),
            coverage: *coverage,
        })
    }

    fn load(&self, cx: &Context, dir: &Path) -> Result<Student> {
        // The weights come from the stage, so the model is built without its vectors.
        let config = bilstm_config(
            &cx.r.student,
            cx.student_vocab()?.len(),
            cx.data()?.classes.len(),
        );
        Ok(Student {
            model: load_record(config.init(&cx.compute.device), &dir.join("student.bpk"))?,
            fit: read_json(&dir.join("fit.json"))?,
            coverage: read_json(&dir.join("coverage.json"))?,
        })
    }
}
