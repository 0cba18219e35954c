//! The transformer family (BERT, XLNet; `models::TeacherConfig`): stages `pretrain` and
//! `teacher`, and with `teacher.pretrain.compare` the teacher without further pre-training beside
//! it; it labels through its tokenizer.

use super::{Family, Member, Slot};
use crate::data::batch::Encoded;
use crate::data::TextEncoder;
use crate::distill::augment::Synthetic;
use crate::distill::TeacherLogits;
use crate::models::TeacherConfig;
use crate::pipeline::context::Context;
use crate::pipeline::stages::eval::{EvalStage, Reads};
use crate::pipeline::stages::logits::{synthetic_ids, EvalLogits, Labeller, LogitsStage};
use crate::pipeline::stages::teacher::{Teacher, TeacherStage};
use crate::recipe::Recipe;
use crate::runtime::progress::note;
use anyhow::Result;

pub struct Transformer;

impl Family for Transformer {
    fn member(&self, cx: &Context, data_key: &str, slot: &Slot) -> Result<Member> {
        let t = &cx.r.teacher;
        let pretrain = t.pretrain.enabled();
        let teacher = cx.run(&TeacherStage::new(cx, data_key, pretrain)?)?;
        if !teacher.reused && t.export {
            note(&format!(
                "teacher: saved as a Hugging Face folder in {}",
                teacher.dir.join("teacher_hf").display()
            ));
        }
        // The teacher without further pre-training beside it (a lone teacher only).
        let compare = if pretrain && t.pretrain.compare && slot.index.is_none() {
            Some(cx.run(&TeacherStage::new(cx, data_key, false)?)?)
        } else {
            None
        };
        let logits = cx.run(&LogitsStage {
            data_key: data_key.to_string(),
            teacher_key: teacher.key.clone(),
            teacher: &teacher.value,
            eval: slot.eval(),
        })?;
        let setup = cx.setup()?;
        let mut evals = vec![(
            &teacher,
            slot.key(),
            slot.label(&transformer_kind(cx.r, &setup.config, pretrain)),
        )];
        if let Some(b) = &compare {
            evals.push((
                b,
                "teacher_base".to_string(),
                slot.label(&transformer_kind(cx.r, &setup.config, false)),
            ));
        }
        let mut rows = Vec::new();
        for (stage, key, label) in evals {
            rows.push(
                cx.run(&EvalStage {
                    model_key: stage.key.clone(),
                    model: &stage.value.model,
                    reads: Reads::Teacher,
                    fit: &stage.value.fit,
                    trainable: stage.value.trainable,
                    key: &key,
                    label: &label,
                })?
                .value,
            );
        }
        Ok(Member {
            logits: logits.value,
            logits_key: logits.key,
            rows,
            notes: teacher.value.notes.clone(),
            pretrain: teacher.value.pretrain.clone(),
            vocab_size: setup.tokenizer.vocab_size(),
        })
    }
}

impl Labeller for Teacher {
    fn label(&self, cx: &Context, synthetic: &[Synthetic]) -> Result<TeacherLogits> {
        let device = &cx.compute.device;
        let inputs = cx.teacher_inputs()?;
        let mut logits =
            TeacherLogits::compute(&self.model, &inputs.batcher, &inputs.train, 256, device)?;
        if !synthetic.is_empty() {
            let tokenizer = &cx.setup()?.tokenizer;
            let items = synthetic
                .iter()
                .zip(synthetic_ids(synthetic))
                .map(|(s, id)| {
                    Ok(Encoded {
                        id,
                        tokens: tokenizer.encode_pieces(&s.pieces, cx.r.data.max_len)?,
                        label: 0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            logits.extend(TeacherLogits::compute(
                &self.model,
                &inputs.batcher,
                &items,
                256,
                device,
            )?);
        }
        Ok(logits)
    }

    fn label_eval(&self, cx: &Context) -> Result<EvalLogits> {
        let device = &cx.compute.device;
        let i = cx.teacher_inputs()?;
        Ok(EvalLogits {
            valid: TeacherLogits::compute(&self.model, &i.batcher, &i.valid, 256, device)?,
            test: TeacherLogits::compute(&self.model, &i.batcher, &i.test, 256, device)?,
        })
    }
}

/// A transformer teacher in words: its architecture and pre-training objective (from the seam,
/// `models::TeacherConfig`), from a checkpoint or not, further pre-trained or not ("BERT + MLM").
pub fn transformer_kind(r: &Recipe, config: &TeacherConfig, pretrained: bool) -> String {
    let arch = config.arch_name();
    let origin = if r.teacher.checkpoint.as_os_str().is_empty() {
        arch.to_string()
    } else {
        format!("{arch} checkpoint")
    };
    let objective = config.pretrain_name();
    match (pretrained, r.teacher.pretrain.enabled()) {
        (true, _) => format!("{origin} + {objective}"),
        (false, true) => format!("{origin}, no {objective}"),
        (false, false) => origin,
    }
}
