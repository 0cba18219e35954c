//! Stages `student` (the BiLSTM trained alone on the hard labels) and `distilled` (the same
//! student, same initialization and batch order, trained on the transfer set against the
//! teacher's logits). The vectors' coverage is kept with each, for the report.

use super::super::context::{Common, Context};
use super::logits::Logits;
use super::{load_record, read_json, save_model, SYNTHETIC_IDS};
use crate::data::batch::Encoded;
use crate::data::vectors::Coverage;
use crate::distill::DistillLoss;
use crate::models::BiLstmClassifier;
use crate::recipe::{DistillSection, SoftTargets, StudentSection};
use crate::store::stage::{Stage, StageWriter};
use crate::train::student::{bilstm_config, fit_settings, train_student};
use crate::train::FitInfo;
use anyhow::Result;
use burn::module::Module;
use serde::Serialize;
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
    fn transfer_set(&self, cx: &Context, max_len: usize) -> Result<Vec<Encoded>> {
        let mut items = cx.student_inputs()?.train.clone();
        if let Some((logits, _)) = &self.teacher {
            let vocab = cx.student_vocab()?;
            items.extend(logits.synthetic.iter().enumerate().map(|(i, s)| {
                let id = SYNTHETIC_IDS + i as u32;
                Encoded {
                    id,
                    tokens: vocab.encode_pieces(&s.pieces, max_len),
                    label: logits.logits.argmax(id).unwrap_or(0),
                }
            }));
        }
        Ok(items)
    }
}

/// What a student's training depends on besides the data (and, distilled, the teacher's logits).
#[derive(Debug, Clone, Serialize)]
pub struct StudentSpec {
    pub student: StudentSection,
    /// sha256 of `student.vectors` (none without vectors).
    pub vectors_sha256: Option<String>,
    pub common: Common,
    /// The distilled student's loss and transfer set (none for the student alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillSection>,
    /// What the soft loss compares: `distill.targets`, else the teacher's default. Not written
    /// into the key: the default follows from the teacher's kind, whose logits stage is an input.
    #[serde(skip)]
    pub soft_targets: SoftTargets,
}

impl Stage<Context<'_>> for StudentStage<'_> {
    type Output = Student;
    type Spec = StudentSpec;

    fn name(&self) -> &str {
        if self.teacher.is_some() {
            "distilled"
        } else {
            "student"
        }
    }

    fn spec(&self, cx: &Context) -> Result<StudentSpec> {
        let r = cx.r;
        let vectors = &r.student.vectors;
        let vectors_sha256 = if vectors.as_os_str().is_empty() {
            None
        } else {
            Some(cx.hash(vectors)?)
        };
        Ok(StudentSpec {
            student: r.student.clone(),
            vectors_sha256,
            common: cx.common(),
            distill: self.teacher.as_ref().map(|_| r.distill.clone()),
            soft_targets: r.soft_targets(),
        })
    }

    fn inputs(&self) -> Vec<String> {
        let mut inputs = vec![self.data_key.clone()];
        inputs.extend(self.teacher.as_ref().map(|(_, key)| key.clone()));
        inputs
    }

    fn compute(&self, cx: &Context, spec: &StudentSpec, out: &StageWriter) -> Result<Student> {
        let (init, coverage) = cx.student_init()?;
        let (loss, logits) = match (&self.teacher, &spec.distill) {
            (Some((l, _)), Some(distill)) => (
                DistillLoss::new(distill, spec.soft_targets),
                Some(&l.logits),
            ),
            _ => (DistillLoss::hard_only(), None),
        };
        let inputs = cx.student_inputs()?;
        let fitted = train_student(
            &spec.student,
            &fit_settings(self.name(), spec.student.optim(), spec.common.seed),
            init,
            &inputs.batcher,
            &self.transfer_set(cx, spec.common.max_len)?,
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
