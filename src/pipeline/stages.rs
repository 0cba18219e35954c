//! The stages of a run, each computed or reused from the store by its key.
//!
//! | stage | depends on (settings) | inputs |
//! |---|---|---|
//! | data | `data.*`, the files' contents | – |
//! | pretrain | teacher sizes/checkpoint, `teacher.pretrain.*`, `data.max_len`, seed, backend | data |
//! | teacher | `teacher.*`, `data.max_len`, seed, backend | data, pretrain |
//! | logits | `distill.augment.*`, `data.max_len`, seed | data, teacher |
//! | student | `student.*`, `data.max_len`, seed, backend | data |
//! | distilled | `student.*`, `distill.*`, `data.max_len`, seed, backend | data, logits |
//! | eval | `report.timing_*`, backend, adapter, processor | one model stage |
//!
//! Every stage seeds the device itself, so a stage computes the same result whether the stages
//! before it were computed in this run or reused.

use super::{evaluate, further_pretrain, save_model, student_embeddings};
use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded, InputKind};
use crate::data::vectors::Coverage;
use crate::data::{CharVocab, Dataset, StudentVocab, WordVocab};
use crate::distill::augment::{self, AugmentRates, PosPool, Synthetic};
use crate::distill::{DistillLoss, TeacherLogits};
use crate::models::bert::mlm::BertMaskedLm;
use crate::models::{bert, BertClassifier, BiLstmClassifier};
use crate::recipe::{Recipe, StudentTokens};
use crate::store::machine::Machine;
use crate::store::stage::{file_hash, key, Stages};
use crate::store::{ModelResult, RunDir};
use crate::train::pretrain::PretrainReport;
use crate::train::progress::note;
use crate::train::student::StudentInit;
use crate::train::teacher::TeacherSetup;
use crate::train::{student, teacher, FitInfo};
use anyhow::{anyhow, Context as _, Result};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Ids of synthetic examples start here, above every row number of a file.
const SYNTHETIC_IDS: u32 = 1 << 31;

/// What a teacher stage keeps beside its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeacherMeta {
    fit: FitInfo,
    trainable: usize,
    pretrain: Option<PretrainReport>,
    notes: Vec<String>,
}

pub struct TeacherStage {
    pub key: String,
    pub model: BertClassifier,
    pub fit: FitInfo,
    pub trainable: usize,
    pub pretrain: Option<PretrainReport>,
    pub notes: Vec<String>,
}

pub struct LogitsStage {
    pub key: String,
    pub logits: TeacherLogits,
    pub synthetic: Vec<Synthetic>,
}

pub struct StudentStage {
    pub key: String,
    pub model: BiLstmClassifier,
    pub fit: FitInfo,
}

pub struct Students {
    pub alone: StudentStage,
    pub distilled: StudentStage,
    pub transfer_size: usize,
}

fn load_record<M: Module>(model: M, path: &Path) -> Result<M> {
    let record =
        ModuleRecord::load(path).map_err(|e| anyhow!("cannot read {}: {e:?}", path.display()))?;
    model
        .try_load_record(record)
        .map_err(|e| anyhow!("{}: does not fit the model: {e:?}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))
}

/// Everything a trial's stages share.
pub struct Context<'a> {
    r: &'a Recipe,
    compute: &'a Compute,
    stages: &'a Stages,
    ad: Device,
    pub data: Dataset,
    data_key: String,
    pub vocab: CharVocab,
    pub setup: TeacherSetup,
    tb: Batcher,
    t_train: Vec<Encoded>,
    t_valid: Vec<Encoded>,
    t_test: Vec<Encoded>,
    pub student_vocab: StudentVocab,
    sb: Batcher,
    s_train: Vec<Encoded>,
    s_valid: Vec<Encoded>,
    s_test: Vec<Encoded>,
    init: StudentInit,
    pub coverage: Option<Coverage>,
    vectors_hash: Option<String>,
    checkpoint_hash: Option<String>,
    pub notes: Vec<String>,
    /// Stage name → folder of every stage this trial used.
    pub used: BTreeMap<String, String>,
}

impl<'a> Context<'a> {
    pub fn new(
        r: &'a Recipe,
        compute: &'a Compute,
        stages: &'a Stages,
        run_dir: &RunDir,
    ) -> Result<Self> {
        let data = Dataset::load(&r.data)?;
        note(&format!(
            "data: {} classes ({}); {} train, {} valid, {} test examples",
            data.classes.len(),
            data.class_names().join(", "),
            data.train.len(),
            data.valid.len(),
            data.test.len()
        ));
        let data_settings = json!({
            "data": r.data,
            "train_sha256": file_hash(&r.data.train)?,
            "test_sha256": file_hash(&r.data.test)?,
        });
        let data_key = key("data", &data_settings, &[]);
        let mut used = BTreeMap::new();
        if stages.lookup("data", &data_key).is_none() {
            let w = stages.begin("data", &data_key)?;
            w.write_json(
                "splits.json",
                &json!({
                    "classes": data.classes,
                    "train": data.train.iter().map(|e| e.id).collect::<Vec<_>>(),
                    "valid": data.valid.iter().map(|e| e.id).collect::<Vec<_>>(),
                    "test": data.test.iter().map(|e| e.id).collect::<Vec<_>>(),
                }),
            )?;
            w.finish(data_settings, &[])?;
        }
        used.insert(
            "data".into(),
            stages.dir("data", &data_key).display().to_string(),
        );

        let vocab = CharVocab::build(
            data.train.iter().map(|e| e.text.as_str()),
            r.data.min_count,
            r.data.lowercase,
        );
        vocab.save(&run_dir.file("vocab.txt"))?;
        let setup = teacher::setup(r, &vocab, &data.class_names())?;
        let tb = Batcher::for_encoder(InputKind::Teacher, r.data.max_len, &setup.tokenizer);
        let (t_train, t_valid, t_test) = (
            tb.encode(&setup.tokenizer, &data.train)?,
            tb.encode(&setup.tokenizer, &data.valid)?,
            tb.encode(&setup.tokenizer, &data.test)?,
        );
        let student_vocab = match r.student.tokens {
            StudentTokens::Char => StudentVocab::Chars(vocab.clone()),
            StudentTokens::Word => StudentVocab::Words(WordVocab::build(
                data.train.iter().map(|e| e.text.as_str()),
                r.data.min_count,
                r.student.max_vocab,
                r.data.lowercase,
            )),
        };
        crate::store::write_atomic(
            &run_dir.file("student_vocab.txt"),
            (student_vocab.tokens().join("\n") + "\n").as_bytes(),
        )?;
        let sb = Batcher::for_encoder(InputKind::Student, r.data.max_len, &student_vocab);
        let (s_train, s_valid, s_test) = (
            sb.encode(&student_vocab, &data.train)?,
            sb.encode(&student_vocab, &data.valid)?,
            sb.encode(&student_vocab, &data.test)?,
        );
        note(&format!(
            "student: {} {} tokens",
            student_vocab.len(),
            student_vocab.unit()
        ));
        let (embeddings, coverage) = student_embeddings(r, &student_vocab, &s_train)?;
        let vectors_hash = (!r.student.vectors.as_os_str().is_empty())
            .then(|| file_hash(&r.student.vectors))
            .transpose()?;
        let checkpoint_hash = match &setup.checkpoint {
            Some(c) => Some(file_hash(&c.weights.source)?),
            None => None,
        };
        let init = StudentInit {
            vocab_size: student_vocab.len(),
            classes: data.classes.len(),
            embeddings,
            freeze_embeddings: r.student.freeze_vectors,
        };
        Ok(Self {
            r,
            compute,
            stages,
            ad: compute.device.clone().autodiff(),
            data,
            data_key,
            vocab,
            setup,
            tb,
            t_train,
            t_valid,
            t_test,
            student_vocab,
            sb,
            s_train,
            s_valid,
            s_test,
            init,
            coverage,
            vectors_hash,
            checkpoint_hash,
            notes: Vec::new(),
            used,
        })
    }

    fn common(&self) -> Value {
        json!({
            "max_len": self.r.data.max_len,
            "min_count": self.r.data.min_count,
            "lowercase": self.r.data.lowercase,
            "seed": self.r.runtime.seed,
            "backend": self.compute.backend,
        })
    }

    fn mark(&mut self, stage: &str, key: &str) {
        let name = if self.used.contains_key(stage) {
            format!("{stage} ({key})")
        } else {
            stage.to_string()
        };
        self.used
            .insert(name, self.stages.dir(stage, key).display().to_string());
    }

    fn reused(&self, stage: &str, key: &str) {
        note(&format!("{stage}: reused from the store (stage {key})"));
    }

    /// The fine-tuned teacher, further pre-trained first if `pretrained`.
    pub fn teacher(&mut self, pretrained: bool) -> Result<TeacherStage> {
        let r = self.r;
        let t = &r.teacher;
        let mut teacher_settings = serde_json::to_value(t)?;
        teacher_settings["export"] = Value::Null;
        if !pretrained {
            teacher_settings["pretrain"] = Value::Null;
        }
        let pre_key = pretrained.then(|| {
            key(
                "pretrain",
                &json!({
                    "checkpoint": t.checkpoint,
                    "checkpoint_sha256": self.checkpoint_hash,
                    "sizes": [t.layers, t.hidden, t.heads, t.intermediate(), ],
                    "dropout": t.dropout,
                    "pretrain": t.pretrain,
                    "common": self.common(),
                }),
                &[&self.data_key],
            )
        });
        let settings = json!({
            "teacher": teacher_settings,
            "checkpoint_sha256": self.checkpoint_hash,
            "common": self.common(),
        });
        let mut owned_inputs = vec![self.data_key.clone()];
        owned_inputs.extend(pre_key.clone());
        let inputs: Vec<&str> = owned_inputs.iter().map(String::as_str).collect();
        let tkey = key("teacher", &settings, &inputs);
        let stage = if let Some(dir) = self.stages.lookup("teacher", &tkey) {
            self.reused("teacher", &tkey);
            let meta: TeacherMeta = read_json(&dir.join("teacher.json"))?;
            let model = load_record(
                self.setup.config.init_classifier(&self.compute.device),
                &dir.join("teacher.bpk"),
            )?;
            TeacherStage {
                key: tkey.clone(),
                model,
                fit: meta.fit,
                trainable: meta.trainable,
                pretrain: meta.pretrain,
                notes: meta.notes,
            }
        } else {
            let mut notes = Vec::new();
            let mut pretrain_report = None;
            let start = if let Some(pk) = &pre_key {
                let (mlm, report) = self.pretrained_encoder(pk)?;
                pretrain_report = Some(report);
                // Seeded here, so the new head is the same whether pre-training ran now or not.
                self.ad.seed(r.runtime.seed.wrapping_add(17));
                self.setup.classifier_over(mlm, &self.ad)
            } else {
                self.ad.seed(r.runtime.seed);
                let (model, ns) = self.setup.classifier(&self.ad)?;
                notes.extend(ns.into_iter().map(|n| format!("teacher: {n}")));
                model
            };
            for n in &notes {
                note(n);
            }
            let (start, trainable) = teacher::apply_freeze(start, t.freeze)?;
            let w = self.stages.begin("teacher", &tkey)?;
            let stage_name = if pretrained || !t.pretrain.enabled() {
                "teacher"
            } else {
                "teacher (no pretraining)"
            };
            let fitted = teacher::fine_tune(
                r,
                stage_name,
                start,
                &self.tb,
                &self.t_train,
                &self.t_valid,
                &self.ad,
            )?;
            save_model(&fitted.model, &w.file("teacher.bpk"))?;
            crate::store::write_atomic(
                &w.file("config.json"),
                serde_json::to_string_pretty(&self.setup.config)?.as_bytes(),
            )?;
            let meta = TeacherMeta {
                fit: fitted.info(),
                trainable,
                pretrain: pretrain_report,
                notes,
            };
            w.write_json("teacher.json", &meta)?;
            let model = fitted.model.valid();
            if t.export {
                bert::export::save_folder(
                    &w.file("teacher_hf"),
                    &self.setup.config,
                    "BertForSequenceClassification",
                    &self.setup.tokenizer.vocab(),
                    &model.hf_tensors()?,
                )?;
            }
            let dir = w.finish(settings, &inputs)?;
            if t.export {
                note(&format!(
                    "teacher: saved as a Hugging Face folder in {}",
                    dir.join("teacher_hf").display()
                ));
            }
            TeacherStage {
                key: tkey.clone(),
                model,
                fit: meta.fit,
                trainable: meta.trainable,
                pretrain: meta.pretrain,
                notes: meta.notes,
            }
        };
        self.mark("teacher", &tkey);
        Ok(stage)
    }

    /// The further pre-trained encoder (stage `pretrain`).
    fn pretrained_encoder(&mut self, pkey: &str) -> Result<(BertMaskedLm, PretrainReport)> {
        let r = self.r;
        let out = if let Some(dir) = self.stages.lookup("pretrain", pkey) {
            self.reused("pretrain", pkey);
            let model = load_record(
                BertMaskedLm::new(&self.setup.config, &self.ad),
                &dir.join("mlm.bpk"),
            )?;
            (model, read_json(&dir.join("pretrain.json"))?)
        } else {
            self.ad.seed(r.runtime.seed);
            let (mlm, ns) = self.setup.masked_lm(&self.ad)?;
            for n in ns {
                note(&format!("pretrain: {n}"));
                self.notes.push(format!("pretrain: {n}"));
            }
            let w = self.stages.begin("pretrain", pkey)?;
            let (mlm, report) = further_pretrain(r, &self.setup, &self.data, mlm, &self.ad)?;
            save_model(&mlm, &w.file("mlm.bpk"))?;
            w.write_json("pretrain.json", &report)?;
            let manifest_settings = json!({"pretrain": r.teacher.pretrain});
            w.finish(manifest_settings, &[&self.data_key])?;
            (mlm, report)
        };
        self.mark("pretrain", pkey);
        Ok(out)
    }

    /// Teacher logits on the training split and, with augmentation, on Tang et al.'s synthetic
    /// examples.
    pub fn logits(&mut self, teacher: &TeacherStage) -> Result<LogitsStage> {
        let r = self.r;
        let a = &r.distill.augment;
        let settings = json!({
            "augment": if a.n_iter > 0 { serde_json::to_value(a)? } else { Value::Null },
            "common": self.common(),
            // 2: logits stored exactly (shortest round-trip form), not to 6 decimals.
            "format": 2,
        });
        let inputs = [self.data_key.as_str(), teacher.key.as_str()];
        let lkey = key("logits", &settings, &inputs);
        let stage = if let Some(dir) = self.stages.lookup("logits", &lkey) {
            self.reused("logits", &lkey);
            LogitsStage {
                key: lkey.clone(),
                logits: TeacherLogits::load(&dir.join("teacher_logits.csv"))?,
                synthetic: read_json(&dir.join("synthetic.json"))?,
            }
        } else {
            let w = self.stages.begin("logits", &lkey)?;
            let mut logits = TeacherLogits::compute(
                &teacher.model,
                &self.tb,
                &self.t_train,
                256,
                &self.compute.device,
            )?;
            let mut synthetic = Vec::new();
            if a.n_iter > 0 {
                let tagged: Vec<(u32, augment::Tagged)> = self
                    .data
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
                let items = synthetic
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        Ok(Encoded {
                            id: SYNTHETIC_IDS + i as u32,
                            tokens: self
                                .setup
                                .tokenizer
                                .encode_pieces(&s.pieces, r.data.max_len)?,
                            label: 0,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                logits.extend(TeacherLogits::compute(
                    &teacher.model,
                    &self.tb,
                    &items,
                    256,
                    &self.compute.device,
                )?);
                let mut table = polars::df!(
                    "id" => (0..synthetic.len()).map(|i| SYNTHETIC_IDS + i as u32).collect::<Vec<_>>(),
                    "source" => synthetic.iter().map(|s| s.source).collect::<Vec<_>>(),
                    "teacher_label" => (0..synthetic.len())
                        .map(|i| logits.argmax(SYNTHETIC_IDS + i as u32).unwrap_or(0) as u32)
                        .collect::<Vec<_>>(),
                    "text" => synthetic.iter().map(|s| augment::render(&s.pieces)).collect::<Vec<_>>(),
                )?;
                let mut f = std::fs::File::create(w.file("transfer_set.csv"))?;
                use polars::prelude::{CsvWriter, SerWriter};
                CsvWriter::new(&mut f).finish(&mut table)?;
            }
            logits.save(&w.file("teacher_logits.csv"))?;
            w.write_json("synthetic.json", &synthetic)?;
            w.finish(settings, &inputs)?;
            LogitsStage {
                key: lkey.clone(),
                logits,
                synthetic,
            }
        };
        if a.n_iter > 0 {
            note(&format!(
                "transfer set: {} training examples + {} synthetic ones ({} rounds each, duplicates dropped), labelled by the teacher",
                self.s_train.len(),
                stage.synthetic.len(),
                a.n_iter
            ));
        }
        self.mark("logits", &lkey);
        Ok(stage)
    }

    fn student_stage(
        &mut self,
        name: &str,
        settings: Value,
        inputs: &[&str],
        train: &[Encoded],
        loss: DistillLoss,
        logits: Option<&TeacherLogits>,
    ) -> Result<StudentStage> {
        let skey = key(name, &settings, inputs);
        let stage = if let Some(dir) = self.stages.lookup(name, &skey) {
            self.reused(name, &skey);
            StudentStage {
                key: skey.clone(),
                model: load_record(
                    self.init.model(self.r, &self.compute.device),
                    &dir.join("student.bpk"),
                )?,
                fit: read_json(&dir.join("fit.json"))?,
            }
        } else {
            let w = self.stages.begin(name, &skey)?;
            let fitted = student::train_student(
                self.r,
                name,
                &self.init,
                &self.sb,
                train,
                &self.s_valid,
                &self.ad,
                loss,
                logits,
            )?;
            save_model(&fitted.model, &w.file("student.bpk"))?;
            w.write_json("fit.json", &fitted.info())?;
            w.finish(settings, inputs)?;
            StudentStage {
                key: skey.clone(),
                model: fitted.model.valid(),
                fit: fitted.info(),
            }
        };
        self.mark(name, &skey);
        Ok(stage)
    }

    /// The student alone and the distilled student.
    pub fn students(&mut self, logits: &LogitsStage) -> Result<Students> {
        let r = self.r;
        let base = json!({
            "student": r.student,
            "vectors_sha256": self.vectors_hash,
            "common": self.common(),
        });
        let data_key = self.data_key.clone();
        let s_train = self.s_train.clone();
        let alone = self.student_stage(
            "student",
            base.clone(),
            &[&data_key],
            &s_train,
            DistillLoss::hard_only(),
            None,
        )?;

        let mut transfer = s_train;
        transfer.extend(logits.synthetic.iter().enumerate().map(|(i, s)| {
            let id = SYNTHETIC_IDS + i as u32;
            Encoded {
                id,
                tokens: self.student_vocab.encode_pieces(&s.pieces, r.data.max_len),
                label: logits.logits.argmax(id).unwrap_or(0),
            }
        }));
        let mut settings = base;
        settings["distill"] = serde_json::to_value(&r.distill)?;
        let distilled = self.student_stage(
            "distilled",
            settings,
            &[&data_key, &logits.key],
            &transfer,
            DistillLoss::from_recipe(&r.distill),
            Some(&logits.logits),
        )?;
        Ok(Students {
            alone,
            distilled,
            transfer_size: transfer.len(),
        })
    }

    fn eval_settings(&self) -> Value {
        json!({
            "timing_batch": self.r.report.timing_batch,
            "timing_repeats": self.r.report.timing_repeats,
            "backend": self.compute.backend,
            "adapter": self.compute.adapter,
            "cpu": Machine::detect().cpu,
            // 2: results carry per-example predictions (error analysis).
            "outputs": 2,
        })
    }

    fn cached_eval(
        &mut self,
        model_key: &str,
        key_name: &str,
        label: &str,
        run: impl FnOnce(&Self) -> Result<ModelResult>,
    ) -> Result<ModelResult> {
        let settings = self.eval_settings();
        let ekey = key("eval", &settings, &[model_key]);
        let mut result = if let Some(dir) = self.stages.lookup("eval", &ekey) {
            self.reused("eval", &ekey);
            let r: ModelResult = read_json(&dir.join("result.json"))?;
            note(&format!(
                "{label}: test accuracy {:.4}, macro-F1 {:.4}, {:.0} samples/s (measured before)",
                r.report.accuracy, r.report.macro_avg.f1, r.timing.samples_per_sec
            ));
            r
        } else {
            let w = self.stages.begin("eval", &ekey)?;
            let result = run(self)?;
            w.write_json("result.json", &result)?;
            w.finish(settings, &[model_key])?;
            result
        };
        self.mark("eval", &ekey);
        result.key = key_name.into();
        result.label = label.into();
        Ok(result)
    }

    pub fn evaluate_teacher(
        &mut self,
        key_name: &str,
        label: &str,
        t: &TeacherStage,
    ) -> Result<ModelResult> {
        let k = self.data.classes.len();
        self.cached_eval(&t.key.clone(), key_name, label, |c| {
            evaluate(
                key_name,
                label,
                &t.model,
                &t.fit,
                t.trainable,
                &c.tb,
                &c.t_test,
                k,
                c.r,
                c.compute,
            )
        })
    }

    pub fn evaluate_student(
        &mut self,
        key_name: &str,
        label: &str,
        s: &StudentStage,
    ) -> Result<ModelResult> {
        let k = self.data.classes.len();
        let trainable = if self.init.freeze_embeddings {
            s.model.num_params() - s.model.embedding.num_params()
        } else {
            s.model.num_params()
        };
        self.cached_eval(&s.key.clone(), key_name, label, |c| {
            evaluate(
                key_name, label, &s.model, &s.fit, trainable, &c.sb, &c.s_test, k, c.r, c.compute,
            )
        })
    }
}
