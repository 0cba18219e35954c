//! Stage `logits`: a teacher's logits on the transfer set — the training split and, with
//! `distill.augment`, Tang et al.'s synthetic sentences (kept with the teacher's labels as
//! `transfer_set.csv`). Stored as safetensors (`teacher_logits.safetensors`), bit-exact. Any
//! kind of teacher labels it (a [`Labeller`]: a transformer, the linear model, a BiLSTM, TextGCN); an
//! ensemble's member also keeps its logits on the validation and test splits, which the
//! ensemble's stage (`ensemble`) combines like the transfer set's.

use super::super::context::{Common, Context};
use super::{read_json, SYNTHETIC_IDS};
use crate::distill::augment::{self, AugmentRates, PosPool, Synthetic};
use crate::distill::TeacherLogits;
use crate::recipe::{AugmentSection, Combine};
use crate::runtime::progress::note;
use crate::store::stage::{Stage, StageWriter};
use anyhow::Result;
use serde::Serialize;
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

/// A teacher as the logits stage sees it: it labels the training split and the synthetic
/// sentences of the transfer set, and the validation and test splits (an ensemble's member).
/// Each teacher family implements it for its fitted model (`pipeline::teachers`).
pub trait Labeller {
    /// Logits on the training split, then on `synthetic` (ids from [`SYNTHETIC_IDS`] on, in
    /// order).
    fn label(&self, cx: &Context, synthetic: &[Synthetic]) -> Result<TeacherLogits>;

    /// Logits on the validation and test splits.
    fn label_eval(&self, cx: &Context) -> Result<EvalLogits>;

    /// Transductive (TextGCN): it labels the documents of its graph only, so the stage draws
    /// no synthetic sentences for it (an ensemble's other members label them).
    fn transductive(&self) -> bool {
        false
    }
}

pub struct LogitsStage<'t> {
    pub data_key: String,
    pub teacher_key: String,
    pub teacher: &'t dyn Labeller,
    /// Also the validation and test splits' logits (an ensemble's member).
    pub eval: bool,
}

/// The ids of `synthetic`'s sentences, in order.
pub fn synthetic_ids(synthetic: &[Synthetic]) -> impl Iterator<Item = u32> {
    (0..synthetic.len()).map(|i| SYNTHETIC_IDS + i as u32)
}

/// What a teacher's logits on the transfer set depend on besides the teacher and the data.
#[derive(Debug, Clone, Serialize)]
pub struct LogitsSpec {
    /// `distill.augment` (none while `n_iter` is 0).
    pub augment: Option<AugmentSection>,
    pub common: Common,
    /// Also the validation and test splits' logits (an ensemble's member).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub eval: bool,
}

/// Tang et al.'s synthetic sentences (none without `distill.augment`): drawn from the seed
/// alone, so every teacher of an ensemble labels the same sentences.
fn synthetic(cx: &Context, spec: &LogitsSpec) -> Result<Vec<Synthetic>> {
    let Some(a) = &spec.augment else {
        return Ok(Vec::new());
    };
    let lowercase = spec.common.lowercase;
    let tagged: Vec<(u32, augment::Tagged)> = cx
        .data()?
        .train
        .iter()
        .map(|e| (e.id, augment::tag(&e.text, lowercase)))
        .collect();
    let pool = PosPool::build(tagged.iter().map(|(_, t)| t));
    use rand::SeedableRng;
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(spec.common.seed ^ 0x0a06_0e17);
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
    type Spec = LogitsSpec;

    fn name(&self) -> &str {
        "logits"
    }

    fn spec(&self, cx: &Context) -> Result<LogitsSpec> {
        let a = &cx.r.distill.augment;
        Ok(LogitsSpec {
            augment: (a.n_iter > 0).then(|| a.clone()),
            common: cx.common(),
            eval: self.eval,
        })
    }

    fn inputs(&self) -> Vec<String> {
        vec![self.data_key.clone(), self.teacher_key.clone()]
    }

    fn compute(&self, cx: &Context, spec: &LogitsSpec, out: &StageWriter) -> Result<Logits> {
        let synthetic = if self.teacher.transductive() {
            Vec::new()
        } else {
            synthetic(cx, spec)?
        };
        let logits = Logits {
            logits: self.teacher.label(cx, &synthetic)?,
            synthetic,
            eval: if spec.eval {
                Some(self.teacher.label_eval(cx)?)
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

/// What the ensemble's combination depends on besides its members' logits.
#[derive(Debug, Clone, Serialize)]
pub struct EnsembleSpec {
    /// The members' weights, in order.
    pub weights: Vec<f64>,
    pub combine: Combine,
    pub calibrate: bool,
}

impl Stage<Context<'_>> for EnsembleStage<'_> {
    type Output = Logits;
    type Spec = EnsembleSpec;

    fn name(&self) -> &str {
        "ensemble"
    }

    fn spec(&self, _cx: &Context) -> Result<EnsembleSpec> {
        Ok(EnsembleSpec {
            weights: self.members.iter().map(|(_, _, w)| *w).collect(),
            combine: self.combine,
            calibrate: self.calibrate,
        })
    }

    fn inputs(&self) -> Vec<String> {
        self.members.iter().map(|(k, _, _)| k.clone()).collect()
    }

    fn compute(&self, cx: &Context, spec: &EnsembleSpec, out: &StageWriter) -> Result<Logits> {
        let log_probs = spec.combine == Combine::LogProbs;
        let missing = || anyhow::anyhow!("an ensemble member without evaluation logits");
        let valid: Vec<(u32, usize)> = cx.data()?.valid.iter().map(|e| (e.id, e.label)).collect();
        let mut temperatures = Vec::with_capacity(self.members.len());
        for (i, (_, l, _)) in self.members.iter().enumerate() {
            let t = if spec.calibrate {
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
        // Each member's logits of one kind, divided by its temperature, and its weight; on the
        // transfer set, each row from the members that have it (`all`: every member has every
        // row, as on the validation and test splits).
        let scaled =
            |f: &dyn Fn(&Logits) -> Option<&TeacherLogits>, all: bool| -> Result<TeacherLogits> {
                let parts = self
                    .members
                    .iter()
                    .zip(&temperatures)
                    .zip(&spec.weights)
                    .map(|(((_, l, _), t), w)| Ok((f(l).ok_or_else(missing)?.scaled(*t), *w)))
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
    let ids: Vec<u32> = synthetic_ids(synthetic).collect();
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
