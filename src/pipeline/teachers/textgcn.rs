//! The TextGCN family: `[textgcn]`'s settings (stage `textgcn`, the same fit as the TextGCN
//! row). Transductive: it labels the documents of its graph only — its stored logits — and no
//! synthetic sentence (a lone TextGCN teacher with an augmented transfer set is refused by
//! validation; in an ensemble the other members label them).

use super::{fit_and_label, Family, Member, Slot};
use crate::distill::augment::Synthetic;
use crate::distill::TeacherLogits;
use crate::pipeline::context::Context;
use crate::pipeline::stages::logits::{EvalLogits, Labeller};
use crate::pipeline::stages::textgcn::{textgcn_label, TextGcnOutput, TextGcnStage};
use anyhow::Result;

pub struct TextGcn;

impl Family for TextGcn {
    fn member(&self, cx: &Context, data_key: &str, slot: &Slot) -> Result<Member> {
        let stage = TextGcnStage {
            data_key: data_key.to_string(),
            teacher: None,
        };
        let (fitted, logits) = fit_and_label(cx, data_key, &stage, slot)?;
        let mut row = fitted.value.result.clone();
        row.key = slot.key();
        row.label = slot.label(&textgcn_label(&cx.r.textgcn));
        Ok(Member::single(logits, row))
    }
}

impl Labeller for TextGcnOutput {
    fn label(&self, _cx: &Context, _synthetic: &[Synthetic]) -> Result<TeacherLogits> {
        Ok(self.logits.train.clone())
    }

    fn label_eval(&self, _cx: &Context) -> Result<EvalLogits> {
        Ok(EvalLogits {
            valid: self.logits.valid.clone(),
            test: self.logits.test.clone(),
        })
    }

    fn transductive(&self) -> bool {
        true
    }
}
