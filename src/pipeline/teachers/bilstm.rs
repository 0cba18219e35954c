//! The BiLSTM family: the student's model with `[student]`'s settings trained on the hard
//! labels (stage `student`, the same fit as the "student alone" row).

use super::{fit_and_label, Family, Member, Slot};
use crate::data::batch::Encoded;
use crate::distill::augment::Synthetic;
use crate::distill::TeacherLogits;
use crate::pipeline::context::Context;
use crate::pipeline::stages::eval::{EvalStage, Reads};
use crate::pipeline::stages::logits::{synthetic_ids, EvalLogits, Labeller};
use crate::pipeline::stages::student::{Student, StudentStage};
use anyhow::Result;

pub struct Bilstm;

impl Family for Bilstm {
    fn member(&self, cx: &Context, data_key: &str, slot: &Slot) -> Result<Member> {
        let r = cx.r;
        let stage = StudentStage {
            data_key: data_key.to_string(),
            teacher: None,
        };
        let (fitted, logits) = fit_and_label(cx, data_key, &stage, slot)?;
        let kind = if r.student.vectors.as_os_str().is_empty() {
            "BiLSTM"
        } else {
            "BiLSTM with pretrained vectors"
        };
        let row = cx
            .run(&EvalStage {
                model_key: fitted.key.clone(),
                model: &fitted.value.model,
                reads: Reads::Student,
                fit: &fitted.value.fit,
                trainable: fitted.value.trainable(r.student.freeze_vectors),
                key: &slot.key(),
                label: &slot.label(kind),
            })?
            .value;
        Ok(Member::single(logits, row))
    }
}

impl Labeller for Student {
    fn label(&self, cx: &Context, synthetic: &[Synthetic]) -> Result<TeacherLogits> {
        let inputs = cx.student_inputs()?;
        let vocab = cx.student_vocab()?;
        let mut items = inputs.train.clone();
        items.extend(
            synthetic
                .iter()
                .zip(synthetic_ids(synthetic))
                .map(|(p, id)| Encoded {
                    id,
                    tokens: vocab.encode_pieces(&p.pieces, cx.r.data.max_len),
                    label: 0,
                }),
        );
        TeacherLogits::compute(
            &self.model,
            &inputs.batcher,
            &items,
            256,
            &cx.compute.device,
        )
    }

    fn label_eval(&self, cx: &Context) -> Result<EvalLogits> {
        let device = &cx.compute.device;
        let i = cx.student_inputs()?;
        Ok(EvalLogits {
            valid: TeacherLogits::compute(&self.model, &i.batcher, &i.valid, 256, device)?,
            test: TeacherLogits::compute(&self.model, &i.batcher, &i.test, 256, device)?,
        })
    }
}
