//! Stage `logits`: the teacher's logits on the transfer set — the training split and, with
//! `distill.augment`, Tang et al.'s synthetic sentences (kept with the teacher's labels as
//! `transfer_set.csv`). Stored as safetensors (`teacher_logits.safetensors`), bit-exact.

use super::super::context::Context;
use super::teacher::Teacher;
use super::{read_json, SYNTHETIC_IDS};
use crate::data::batch::Encoded;
use crate::distill::augment::{self, AugmentRates, PosPool, Synthetic};
use crate::distill::TeacherLogits;
use crate::store::stage::{Stage, StageWriter};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

const LOGITS_FILE: &str = "teacher_logits.safetensors";

/// The teacher's logits by example id, and the synthetic examples (empty without augmentation).
pub struct Logits {
    pub logits: TeacherLogits,
    pub synthetic: Vec<Synthetic>,
}

pub struct LogitsStage<'t> {
    pub data_key: String,
    pub teacher_key: String,
    pub teacher: &'t Teacher,
}

impl Stage<Context<'_>> for LogitsStage<'_> {
    type Output = Logits;

    fn name(&self) -> &str {
        "logits"
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
        let a = &cx.r.distill.augment;
        Ok(json!({
            "augment": if a.n_iter > 0 { serde_json::to_value(a)? } else { Value::Null },
            "common": cx.common(),
        }))
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone(), self.teacher_key.clone()]
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Logits> {
        let r = cx.r;
        let a = &r.distill.augment;
        let inputs = cx.teacher_inputs()?;
        let device = &cx.compute.device;
        let model = &self.teacher.model;
        let mut logits =
            TeacherLogits::compute(model, &inputs.batcher, &inputs.train, 256, device)?;
        let mut synthetic = Vec::new();
        if a.n_iter > 0 {
            let tagged: Vec<(u32, augment::Tagged)> = cx
                .data()?
                .train
                .iter()
                .map(|e| (e.id, augment::tag(&e.text, r.data.lowercase)))
                .collect();
            let pool = PosPool::build(tagged.iter().map(|(_, t)| t));
            use rand::SeedableRng;
            let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(r.runtime.seed ^ 0x0a06_0e17);
            let rates = AugmentRates {
                p_mask: a.p_mask,
                p_pos: a.p_pos,
                p_ng: a.p_ng,
            };
            synthetic = augment::transfer_set(&tagged, &pool, rates, a.n_iter, &mut rng);
            let tokenizer = &cx.setup()?.tokenizer;
            let items = synthetic
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    Ok(Encoded {
                        id: SYNTHETIC_IDS + i as u32,
                        tokens: tokenizer.encode_pieces(&s.pieces, r.data.max_len)?,
                        label: 0,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            logits.extend(TeacherLogits::compute(
                model,
                &inputs.batcher,
                &items,
                256,
                device,
            )?);
            write_transfer_set(&synthetic, &logits, &out.file("transfer_set.csv"))?;
        }
        logits.save(&out.file(LOGITS_FILE))?;
        out.write_json("synthetic.json", &synthetic)?;
        Ok(Logits { logits, synthetic })
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<Logits> {
        Ok(Logits {
            logits: TeacherLogits::load(&dir.join(LOGITS_FILE))?,
            synthetic: read_json(&dir.join("synthetic.json"))?,
        })
    }
}

/// The synthetic sentences with the teacher's labels, for a reader of the stage folder.
fn write_transfer_set(synthetic: &[Synthetic], logits: &TeacherLogits, path: &Path) -> Result<()> {
    use polars::prelude::{CsvWriter, SerWriter};
    let ids: Vec<u32> = (0..synthetic.len())
        .map(|i| SYNTHETIC_IDS + i as u32)
        .collect();
    let mut table = polars::df!(
        "id" => &ids,
        "source" => synthetic.iter().map(|s| s.source).collect::<Vec<_>>(),
        "teacher_label" => ids.iter().map(|&id| logits.argmax(id).unwrap_or(0) as u32).collect::<Vec<_>>(),
        "text" => synthetic.iter().map(|s| augment::render(&s.pieces)).collect::<Vec<_>>(),
    )?;
    let mut f = std::fs::File::create(path)?;
    CsvWriter::new(&mut f).finish(&mut table)?;
    Ok(())
}
