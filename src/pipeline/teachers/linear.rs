//! The linear family: the TF-IDF n-gram model with `[baseline]`'s settings (stage `baseline`,
//! the same fit as the baseline row). It reads text, so the synthetic sentences reach it with
//! their masked words left out (it has no mask token).

use super::{fit_and_label, Family, Member, Slot};
use crate::distill::augment::{self, Synthetic};
use crate::distill::TeacherLogits;
use crate::pipeline::context::Context;
use crate::pipeline::stages::baseline::{linear_name, Baseline, BaselineEvalStage, BaselineStage};
use crate::pipeline::stages::logits::{synthetic_ids, EvalLogits, Labeller};
use anyhow::Result;

pub struct Linear;

impl Family for Linear {
    fn member(&self, cx: &Context, data_key: &str, slot: &Slot) -> Result<Member> {
        let stage = BaselineStage {
            data_key: data_key.to_string(),
        };
        let (fitted, logits) = fit_and_label(cx, data_key, &stage, slot)?;
        let row = cx
            .run(&BaselineEvalStage {
                model_key: fitted.key.clone(),
                baseline: &fitted.value,
                key: slot.key(),
                label: slot.label(&linear_name(cx.r)),
            })?
            .value;
        Ok(Member::single(logits, row))
    }
}

/// Texts of the synthetic sentences as the linear model reads them: the masked words left out.
fn plain_text(s: &Synthetic) -> String {
    s.pieces
        .iter()
        .filter_map(|p| match p {
            augment::Piece::Word(w) => Some(w.as_str()),
            augment::Piece::Mask => None,
        })
        .collect()
}

/// The linear model's logits on (id, text) pairs.
fn linear_logits<'a>(
    b: &Baseline,
    items: impl Iterator<Item = (u32, &'a str)>,
    classes: usize,
) -> TeacherLogits {
    let (ids, texts): (Vec<u32>, Vec<&str>) = items.unzip();
    TeacherLogits::from_rows(classes, ids.into_iter().zip(b.model.logits(&texts)))
}

impl Labeller for Baseline {
    fn label(&self, cx: &Context, synthetic: &[Synthetic]) -> Result<TeacherLogits> {
        let data = cx.data()?;
        let plain: Vec<String> = synthetic.iter().map(plain_text).collect();
        let train = data.train.iter().map(|e| (e.id, e.text.as_str()));
        let made = synthetic_ids(synthetic).zip(plain.iter().map(String::as_str));
        Ok(linear_logits(self, train.chain(made), data.classes.len()))
    }

    fn label_eval(&self, cx: &Context) -> Result<EvalLogits> {
        let data = cx.data()?;
        let split = |v: &[crate::data::Example]| {
            linear_logits(
                self,
                v.iter().map(|e| (e.id, e.text.as_str())),
                data.classes.len(),
            )
        };
        Ok(EvalLogits {
            valid: split(&data.valid),
            test: split(&data.test),
        })
    }
}
