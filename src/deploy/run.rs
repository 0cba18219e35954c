//! A finished run's models, read back from the stages it used: the folder a user names (a run,
//! a sweep's trial, a recipe's latest run), the stage folders checked against their manifests,
//! and each model with the run's own tokenization.

use crate::data::batch::{Batcher, Encoded, InputKind, TextEncoder};
use crate::data::{CharVocab, HfTokenizer, StudentVocab, TeacherTokenizer, WordVocab};
use crate::models::linear::LinearModel;
use crate::models::records::load_record;
use crate::models::{BiLstmClassifier, Classifier, TeacherConfig, TeacherModel};
use crate::recipe::{Recipe, StudentTokens};
use crate::store::stage::{Found, Stages, STAGES_DIR};
use crate::store::RunResults;
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// Which of a run's models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelChoice {
    /// The student distilled from the teacher.
    Distilled,
    /// The same student trained alone on the labels.
    Student,
    /// The fine-tuned teacher (a BERT or XLNet teacher; not an ensemble).
    Teacher,
    /// The linear TF-IDF baseline.
    Baseline,
}

impl ModelChoice {
    pub fn name(self) -> &'static str {
        match self {
            Self::Distilled => "distilled",
            Self::Student => "student",
            Self::Teacher => "teacher",
            Self::Baseline => "baseline",
        }
    }
}

/// A finished run: its results, its recipe, and the store its stages are in.
pub struct Run {
    pub dir: PathBuf,
    pub results: RunResults,
    pub recipe: Recipe,
    /// The store's stages (the store: the folder above the run that holds `stages/`).
    stages: Stages,
}

/// The run folder `arg` names: a run folder (or a sweep's `trial-NNN`) with `results.json`; a
/// recipe's folder in the store (its latest finished run); or a recipe file (its latest run in
/// its store).
pub fn resolve(arg: &Path) -> Result<PathBuf> {
    if arg.join("results.json").is_file() {
        return Ok(arg.to_path_buf());
    }
    if arg.is_file() {
        let loaded = crate::recipe::load(arg, &[]).map_err(|e| anyhow!("{e}"))?;
        let r = &loaded.recipe;
        return latest(&r.runtime.store.join(&r.name)).with_context(|| {
            format!(
                "no finished run of the recipe {} in its store {} (run `kdrun {}` first)",
                arg.display(),
                r.runtime.store.display(),
                arg.display()
            )
        });
    }
    if arg.is_dir() {
        return latest(arg);
    }
    bail!(
        "{} not found: expected a run folder (with results.json), a recipe's folder in the store, or a recipe file",
        arg.display()
    )
}

/// The latest finished run (by folder name, a UTC time) under a recipe's folder in the store.
fn latest(dir: &Path) -> Result<PathBuf> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("results.json").is_file())
        .collect();
    runs.sort();
    runs.pop().ok_or_else(|| {
        anyhow!(
            "{} holds no finished run (no folder with results.json); a sweep's trials are its trial-NNN folders",
            dir.display()
        )
    })
}

impl From<crate::recipe::ExportModel> for ModelChoice {
    fn from(m: crate::recipe::ExportModel) -> Self {
        use crate::recipe::ExportModel as E;
        match m {
            E::Distilled => Self::Distilled,
            E::Student => Self::Student,
            E::Teacher => Self::Teacher,
        }
    }
}

impl Run {
    /// Open the run folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let results = RunResults::load(&dir.join("results.json"))?;
        let recipe: Recipe = toml::from_str(&results.recipe_toml).with_context(|| {
            format!(
                "{}: the recipe stored with the run cannot be read by this kdrun",
                dir.join("results.json").display()
            )
        })?;
        Self::new(dir, results, recipe)
    }

    /// The run in `dir` with its results and recipe at hand (a run that just finished).
    pub fn new(dir: &Path, results: RunResults, recipe: Recipe) -> Result<Self> {
        let store = dir
            .ancestors()
            .find(|a| a.join(STAGES_DIR).is_dir())
            .ok_or_else(|| {
                anyhow!(
                    "{}: no store around the run (no `{STAGES_DIR}` folder above it)",
                    dir.display()
                )
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            results,
            recipe,
            stages: Stages::new(store),
        })
    }

    pub fn class_names(&self) -> Vec<String> {
        self.results
            .classes
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The folder of the run's stage `name`, checked whole against its manifest.
    pub fn stage(&self, name: &str, model: ModelChoice) -> Result<PathBuf> {
        let recorded = self.results.stages.get(name).ok_or_else(|| {
            anyhow!(
                "the run {} has no {} model (its stages: {})",
                self.dir.display(),
                model.name(),
                self.results
                    .stages
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let recorded = Path::new(recorded);
        let key = file_name(recorded)?;
        let stage = file_name(recorded.parent().unwrap_or(recorded))?;
        let stages = &self.stages;
        match stages.check(&stage, &key) {
            Found::Whole(_) | Found::Unchecked(_) => Ok(stages.dir(&stage, &key)),
            Found::Absent => bail!(
                "the {} model's stage folder {} is gone from the store (run the recipe again to compute it)",
                model.name(),
                stages.dir(&stage, &key).display()
            ),
            Found::Damaged(d) => bail!(
                "the {} model's stage folder {} is damaged ({d}); run the recipe again to compute it anew",
                model.name(),
                stages.dir(&stage, &key).display()
            ),
        }
    }

    /// The students' vocabulary, as the run saved it.
    pub fn student_vocab(&self) -> Result<StudentVocab> {
        let path = self.dir.join("student_vocab.txt");
        let lowercase = self.recipe.data.lowercase;
        Ok(match self.recipe.student.tokens {
            StudentTokens::Char => StudentVocab::Chars(CharVocab::load(&path, lowercase)?),
            StudentTokens::Word => StudentVocab::Words(WordVocab::load(&path, lowercase)?),
        })
    }

    /// One of the run's models, ready to classify text.
    pub fn model(&self, which: ModelChoice, device: &Device) -> Result<Loaded> {
        let max_len = self.recipe.data.max_len;
        let classes = self.results.classes.len();
        Ok(match which {
            ModelChoice::Distilled | ModelChoice::Student => {
                let dir = self.stage(which.name(), which)?;
                let vocab = self.student_vocab()?;
                let config = crate::train::student::bilstm_config(
                    &self.recipe.student,
                    vocab.len(),
                    classes,
                );
                let model = load_record(config.init(device), &dir.join("student.bpk"))?;
                Loaded::Student(Box::new(model), vocab, max_len)
            }
            ModelChoice::Teacher => {
                if !self.recipe.teacher.members.is_empty()
                    || !self.recipe.teacher.arch.is_transformer()
                {
                    bail!(
                        "the run's teacher is {}: `--model teacher` reads a BERT or XLNet teacher; predict with the distilled student or the baseline",
                        if self.recipe.teacher.members.is_empty() {
                            format!("a {} model", self.recipe.teacher.arch.name())
                        } else {
                            "an ensemble".to_string()
                        }
                    );
                }
                let dir = self.stage("teacher", which)?;
                let config: TeacherConfig = crate::files::read_json(&dir.join("config.json"))?;
                let model = load_record(config.init_classifier(device), &dir.join("teacher.bpk"))?;
                let tokenizer = self.teacher_tokenizer(&dir, &config)?;
                Loaded::Teacher(
                    Box::new(model),
                    Box::new(tokenizer),
                    max_len,
                    Box::new(config),
                )
            }
            ModelChoice::Baseline => {
                let dir = self.stage("baseline", which)?;
                Loaded::Baseline(Box::new(LinearModel::load(
                    &dir.join(crate::models::linear::MODEL_FILE),
                )?))
            }
        })
    }

    /// The teacher's tokenizer: the run's characters for a teacher from scratch, else the
    /// checkpoint's (from the teacher's exported folder, or the recipe's checkpoint).
    fn teacher_tokenizer(&self, stage: &Path, config: &TeacherConfig) -> Result<TeacherTokenizer> {
        let checkpoint = &self.recipe.teacher.checkpoint;
        if checkpoint.as_os_str().is_empty() {
            let vocab = CharVocab::load(&self.dir.join("vocab.txt"), self.recipe.data.lowercase)?;
            return Ok(TeacherTokenizer::Chars(vocab, config.layout()));
        }
        let exported = stage.join("teacher_hf");
        let dir = if exported.is_dir() {
            exported
        } else {
            checkpoint.clone()
        };
        Ok(TeacherTokenizer::WordPiece(Box::new(HfTokenizer::open(
            &dir,
        )?)))
    }
}

fn file_name(p: &Path) -> Result<String> {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{}: not a stage folder", p.display()))
}

/// A model read back from a run, with what turns text into its inputs.
pub enum Loaded {
    Student(Box<BiLstmClassifier>, StudentVocab, usize),
    Teacher(
        Box<TeacherModel>,
        Box<TeacherTokenizer>,
        usize,
        Box<TeacherConfig>,
    ),
    Baseline(Box<LinearModel>),
}

impl Loaded {
    /// The token ids of `text` as the model reads them (none for the baseline, which reads
    /// text).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Self::Student(_, vocab, max_len) => {
                vocab.encode_text(text, InputKind::Student, *max_len)
            }
            Self::Teacher(_, tok, max_len, _) => {
                tok.encode_text(text, InputKind::Teacher, *max_len)
            }
            Self::Baseline(_) => Ok(Vec::new()),
        }
    }

    /// Class probabilities of each text, in order; batches of at most `batch_size` sentences of
    /// similar length.
    pub fn probabilities(
        &self,
        texts: &[String],
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .logits(texts, batch_size, device)?
            .iter()
            .map(|l| crate::models::softmax(l))
            .collect())
    }

    /// Class logits of each text, in order (the baseline's decision scores).
    pub fn logits(
        &self,
        texts: &[String],
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        match self {
            Self::Student(m, vocab, max_len) => {
                let batcher = Batcher::for_encoder(InputKind::Student, *max_len, vocab);
                self.run(m.as_ref(), &batcher, texts, batch_size, device)
            }
            Self::Teacher(m, tok, max_len, _) => {
                let batcher = Batcher::for_encoder(InputKind::Teacher, *max_len, tok.as_ref());
                self.run(m.as_ref(), &batcher, texts, batch_size, device)
            }
            Self::Baseline(m) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                Ok(m.logits(&refs))
            }
        }
    }

    fn run<M: Classifier>(
        &self,
        model: &M,
        batcher: &Batcher,
        texts: &[String],
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        let items = texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Ok(Encoded {
                    id: i as u32,
                    tokens: self.encode(t)?,
                    label: 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lengths: Vec<usize> = items.iter().map(|e| e.tokens.len()).collect();
        let mut out = vec![Vec::new(); items.len()];
        for idx in crate::data::batch::eval_order(&lengths, batch_size.max(1)) {
            let rows: Vec<&Encoded> = idx.iter().map(|&i| &items[i]).collect();
            let batch = batcher.batch(&rows, device);
            let logits = model.logits(&batch);
            let [_, k] = logits.dims();
            let flat = logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow!("cannot read logits: {e:?}"))?;
            for (row, &slot) in idx.iter().enumerate() {
                out[slot] = flat[row * k..(row + 1) * k].to_vec();
            }
        }
        Ok(out)
    }
}
