//! Stage `logits`: a teacher's logits on the transfer set — the training split and, with
//! `distill.augment`, Tang et al.'s synthetic sentences (kept with the teacher's labels as
//! `transfer_set.csv`). Stored as safetensors (`teacher_logits.safetensors`), bit-exact. Any
//! kind of teacher labels it ([`Labeller`]: a transformer, the linear model, a BiLSTM); an
//! ensemble's member also keeps its logits on the validation and test splits, which the
//! ensemble's stage (`ensemble`) combines like the transfer set's.

use super::super::context::Context;
use super::baseline::Baseline;
use super::student::Student;
use super::teacher::Teacher;
use super::textgcn::TextGcnOutput;
use super::{read_json, SYNTHETIC_IDS};
use crate::data::batch::Encoded;
use crate::distill::augment::{self, AugmentRates, PosPool, Synthetic};
use crate::distill::TeacherLogits;
use crate::recipe::Combine;
use crate::runtime::progress::note;
use crate::store::stage::{Stage, StageWriter};
use anyhow::Result;
use serde_json::{json, Value};
use std::path::Path;

const LOGITS_FILE: &str = "teacher_logits.safetensors";
const VALID_FILE: &str = "valid_logits.safetensors";
const TEST_FILE: &str = "test_logits.safetensors";

/// The teacher's logits by example id, and the synthetic examples (empty without augmentation);
/// for an ensemble's member and the ensemble, also the validation and test splits'.
pub struct Logits {
    pub logits: TeacherLogits,
    pub synthetic: Vec<Synthetic>,
    pub eval: Option<EvalLogits>,
}

/// Logits on the validation and test splits, by example id.
pub struct EvalLogits {
    pub valid: TeacherLogits,
    pub test: TeacherLogits,
}

/// The model that labels the transfer set.
#[derive(Clone, Copy)]
pub enum Labeller<'t> {
    Transformer(&'t Teacher),
    Linear(&'t Baseline),
    Bilstm(&'t Student),
    /// TextGCN's stored document logits (transductive: no synthetic sentences).
    TextGcn(&'t TextGcnOutput),
}

pub struct LogitsStage<'t> {
    pub data_key: String,
    pub teacher_key: String,
    pub teacher: Labeller<'t>,
    /// Also the validation and test splits' logits (an ensemble's member).
    pub eval: bool,
}

/// Texts of the synthetic sentences as the linear model reads them: the masked words left out
/// (it has no mask token).
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

impl LogitsStage<'_> {
    /// The labeller's logits on the training split, then on the synthetic sentences.
    fn label(&self, cx: &Context, synthetic: &[Synthetic]) -> Result<TeacherLogits> {
        let r = cx.r;
        let device = &cx.compute.device;
        let synthetic_ids = (0..synthetic.len()).map(|i| SYNTHETIC_IDS + i as u32);
        Ok(match self.teacher {
            Labeller::Transformer(t) => {
                let inputs = cx.teacher_inputs()?;
                let mut logits =
                    TeacherLogits::compute(&t.model, &inputs.batcher, &inputs.train, 256, device)?;
                if !synthetic.is_empty() {
                    let tokenizer = &cx.setup()?.tokenizer;
                    let items = synthetic
                        .iter()
                        .zip(synthetic_ids)
                        .map(|(s, id)| {
                            Ok(Encoded {
                                id,
                                tokens: tokenizer.encode_pieces(&s.pieces, r.data.max_len)?,
                                label: 0,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    logits.extend(TeacherLogits::compute(
                        &t.model,
                        &inputs.batcher,
                        &items,
                        256,
                        device,
                    )?);
                }
                logits
            }
            Labeller::Linear(b) => {
                let data = cx.data()?;
                let plain: Vec<String> = synthetic.iter().map(plain_text).collect();
                let train = data.train.iter().map(|e| (e.id, e.text.as_str()));
                let made = synthetic_ids.zip(plain.iter().map(String::as_str));
                linear_logits(b, train.chain(made), data.classes.len())
            }
            Labeller::Bilstm(s) => {
                let inputs = cx.student_inputs()?;
                let vocab = cx.student_vocab()?;
                let mut items = inputs.train.clone();
                items.extend(synthetic.iter().zip(synthetic_ids).map(|(p, id)| Encoded {
                    id,
                    tokens: vocab.encode_pieces(&p.pieces, r.data.max_len),
                    label: 0,
                }));
                TeacherLogits::compute(&s.model, &inputs.batcher, &items, 256, device)?
            }
            // Transductive: the training documents only (an ensemble's other members label the
            // synthetic sentences; a lone TextGCN teacher with them is refused by validation).
            Labeller::TextGcn(g) => g.logits.train.clone(),
        })
    }

    /// The labeller's logits on the validation and test splits.
    fn eval_logits(&self, cx: &Context) -> Result<EvalLogits> {
        let device = &cx.compute.device;
        let data = cx.data()?;
        Ok(match self.teacher {
            Labeller::Transformer(t) => {
                let i = cx.teacher_inputs()?;
                EvalLogits {
                    valid: TeacherLogits::compute(&t.model, &i.batcher, &i.valid, 256, device)?,
                    test: TeacherLogits::compute(&t.model, &i.batcher, &i.test, 256, device)?,
                }
            }
            Labeller::Linear(b) => {
                let split = |v: &[crate::data::Example]| {
                    linear_logits(
                        b,
                        v.iter().map(|e| (e.id, e.text.as_str())),
                        data.classes.len(),
                    )
                };
                EvalLogits {
                    valid: split(&data.valid),
                    test: split(&data.test),
                }
            }
            Labeller::Bilstm(s) => {
                let i = cx.student_inputs()?;
                EvalLogits {
                    valid: TeacherLogits::compute(&s.model, &i.batcher, &i.valid, 256, device)?,
                    test: TeacherLogits::compute(&s.model, &i.batcher, &i.test, 256, device)?,
                }
            }
            Labeller::TextGcn(g) => EvalLogits {
                valid: g.logits.valid.clone(),
                test: g.logits.test.clone(),
            },
        })
    }
}

/// Tang et al.'s synthetic sentences for the recipe (none without `distill.augment`): drawn from
/// the seed alone, so every teacher of an ensemble labels the same sentences.
fn synthetic(cx: &Context) -> Result<Vec<Synthetic>> {
    let r = cx.r;
    let a = &r.distill.augment;
    if a.n_iter == 0 {
        return Ok(Vec::new());
    }
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
    Ok(augment::transfer_set(
        &tagged, &pool, rates, a.n_iter, &mut rng,
    ))
}

/// Write a stage's logits (and the transfer set's table with the teacher's labels).
fn save_logits(logits: &Logits, out: &StageWriter) -> Result<()> {
    if !logits.synthetic.is_empty() {
        write_transfer_set(
            &logits.synthetic,
            &logits.logits,
            &out.file("transfer_set.csv"),
        )?;
    }
    logits.logits.save(&out.file(LOGITS_FILE))?;
    out.write_json("synthetic.json", &logits.synthetic)?;
    if let Some(e) = &logits.eval {
        e.valid.save(&out.file(VALID_FILE))?;
        e.test.save(&out.file(TEST_FILE))?;
    }
    Ok(())
}

fn load_logits(dir: &Path, eval: bool) -> Result<Logits> {
    Ok(Logits {
        logits: TeacherLogits::load(&dir.join(LOGITS_FILE))?,
        synthetic: read_json(&dir.join("synthetic.json"))?,
        eval: if eval {
            Some(EvalLogits {
                valid: TeacherLogits::load(&dir.join(VALID_FILE))?,
                test: TeacherLogits::load(&dir.join(TEST_FILE))?,
            })
        } else {
            None
        },
    })
}

impl Stage<Context<'_>> for LogitsStage<'_> {
    type Output = Logits;

    fn name(&self) -> &str {
        "logits"
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
        let a = &cx.r.distill.augment;
        let mut settings = json!({
            "augment": if a.n_iter > 0 { serde_json::to_value(a)? } else { Value::Null },
            "common": cx.common(),
        });
        if self.eval {
            settings["eval"] = Value::Bool(true);
        }
        Ok(settings)
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone(), self.teacher_key.clone()]
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Logits> {
        let synthetic = match self.teacher {
            Labeller::TextGcn(_) => Vec::new(),
            _ => synthetic(cx)?,
        };
        let logits = Logits {
            logits: self.label(cx, &synthetic)?,
            synthetic,
            eval: if self.eval {
                Some(self.eval_logits(cx)?)
            } else {
                None
            },
        };
        save_logits(&logits, out)?;
        Ok(logits)
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<Logits> {
        load_logits(dir, self.eval)
    }
}

/// Stage `ensemble`: the members' logits combined (weighted mean of logits or of
/// log-probabilities) on the transfer set and on the validation and test splits, each member's
/// first divided by its temperature fitted on the validation split (with `calibrate`; kept in
/// `ensemble.json`). Keyed by the weights, the combination and `calibrate`; its inputs are the
/// members' `logits` stages.
pub struct EnsembleStage<'l> {
    /// Each member's logits stage key, logits and weight.
    pub members: Vec<(String, &'l Logits, f64)>,
    pub combine: Combine,
    pub calibrate: bool,
}

/// What the ensemble stage fitted.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct EnsembleFit {
    /// Each member's temperature (1 without calibration).
    pub temperatures: Vec<f64>,
}

impl Stage<Context<'_>> for EnsembleStage<'_> {
    type Output = Logits;

    fn name(&self) -> &str {
        "ensemble"
    }

    fn settings(&self, _cx: &Context) -> Result<Value> {
        Ok(json!({
            "weights": self.members.iter().map(|(_, _, w)| *w).collect::<Vec<_>>(),
            "combine": self.combine,
            "calibrate": self.calibrate,
        }))
    }

    fn inputs(&self) -> Vec<String> {
        self.members.iter().map(|(k, _, _)| k.clone()).collect()
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<Logits> {
        let log_probs = self.combine == Combine::LogProbs;
        let missing = || anyhow::anyhow!("an ensemble member without evaluation logits");
        let valid: Vec<(u32, usize)> = cx.data()?.valid.iter().map(|e| (e.id, e.label)).collect();
        let mut temperatures = Vec::with_capacity(self.members.len());
        for (i, (_, l, _)) in self.members.iter().enumerate() {
            let t = if self.calibrate {
                l.eval
                    .as_ref()
                    .ok_or_else(missing)?
                    .valid
                    .fit_temperature(&valid)?
            } else {
                1.0
            };
            note(&format!("ensemble: member {} temperature {t:.3}", i + 1));
            temperatures.push(t);
        }
        // Each member's logits of one kind, divided by its temperature, and its weight.
        // Each member's logits of one kind, divided by its temperature, and its weight; on the
        // transfer set, each row from the members that have it (`all`: every member has every
        // row, as on the validation and test splits).
        let scaled =
            |f: &dyn Fn(&Logits) -> Option<&TeacherLogits>, all: bool| -> Result<TeacherLogits> {
                let parts = self
                    .members
                    .iter()
                    .zip(&temperatures)
                    .map(|((_, l, w), t)| Ok((f(l).ok_or_else(missing)?.scaled(*t), *w)))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<(&TeacherLogits, f64)> = parts.iter().map(|(l, w)| (l, *w)).collect();
                if all {
                    TeacherLogits::combine(&refs, log_probs)
                } else {
                    TeacherLogits::combine_available(&refs, log_probs)
                }
            };
        // The synthetic sentences: every member that labels any draws the same ones.
        let synthetic = self
            .members
            .iter()
            .map(|(_, l, _)| &l.synthetic)
            .max_by_key(|s| s.len())
            .cloned()
            .unwrap_or_default();
        let logits = Logits {
            logits: scaled(&|l| Some(&l.logits), false)?,
            synthetic,
            eval: Some(EvalLogits {
                valid: scaled(&|l| l.eval.as_ref().map(|e| &e.valid), true)?,
                test: scaled(&|l| l.eval.as_ref().map(|e| &e.test), true)?,
            }),
        };
        save_logits(&logits, out)?;
        out.write_json("ensemble.json", &EnsembleFit { temperatures })?;
        Ok(logits)
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<Logits> {
        load_logits(dir, true)
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
