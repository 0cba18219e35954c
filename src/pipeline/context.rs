//! One trial's context: the recipe, the device, the store, and the inputs its stages read —
//! each prepared on first use (data, vocabularies, tokenized splits, the teacher's set-up,
//! file hashes), so a trial whose stages all come from the store does no input work it does not
//! need.

use crate::backend::Compute;
use crate::data::batch::{Batcher, Encoded, InputKind};
use crate::data::vectors::Coverage;
use crate::data::{CharVocab, Dataset, StudentVocab, WordVocab};
use crate::recipe::{Recipe, StudentTokens};
use crate::runtime::machine::Machine;
use crate::runtime::progress::note;
use crate::store::hashes::HashCache;
use crate::store::stage::{stage_key, Done, NotShared, Stage, Stages};
use crate::train::student::{student_init, StudentInit};
use crate::train::teacher::{self, TeacherSetup};
use anyhow::Result;
use burn::tensor::Device;
use once_cell::unsync::OnceCell;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A split set tokenized for one model family, with the batcher that pads it.
pub struct Encodings {
    pub batcher: Batcher,
    pub train: Vec<Encoded>,
    pub valid: Vec<Encoded>,
    pub test: Vec<Encoded>,
}

impl Encodings {
    fn new(batcher: Batcher, encoder: &dyn crate::data::TextEncoder, d: &Dataset) -> Result<Self> {
        Ok(Self {
            train: batcher.encode(encoder, &d.train)?,
            valid: batcher.encode(encoder, &d.valid)?,
            test: batcher.encode(encoder, &d.test)?,
            batcher,
        })
    }
}

/// Settings every model stage depends on (part of their specs, so of their keys).
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub max_len: usize,
    pub min_count: usize,
    pub lowercase: bool,
    pub seed: u64,
    /// `wgpu` or `cpu (flex)`.
    pub backend: String,
}

/// Everything a trial's stages share.
pub struct Context<'a> {
    pub r: &'a Recipe,
    pub compute: &'a Compute,
    stages: &'a Stages,
    /// The autodiff device training runs on.
    pub ad: Device,
    data: OnceCell<Dataset>,
    vocab: OnceCell<CharVocab>,
    setup: OnceCell<TeacherSetup>,
    teacher_inputs: OnceCell<Encodings>,
    student_vocab: OnceCell<StudentVocab>,
    student_inputs: OnceCell<Encodings>,
    student_init: OnceCell<(StudentInit, Option<Coverage>)>,
    hashes: RefCell<HashMap<PathBuf, String>>,
    hash_cache: HashCache,
    machine: OnceCell<Machine>,
    /// What loading and training said once, for the report.
    pub notes: RefCell<Vec<String>>,
    /// Stage name → folder of every stage this trial used.
    used: RefCell<BTreeMap<String, String>>,
    /// The other trials' contexts when only shared stages are to be computed
    /// ([`Stages::only_shared_with`]).
    peers: Vec<Context<'a>>,
}

impl<'a> Context<'a> {
    pub fn new(r: &'a Recipe, compute: &'a Compute, stages: &'a Stages) -> Self {
        let mut cx = Self::alone(r, compute, stages);
        cx.peers = stages
            .shared_with()
            .iter()
            .map(|p| Self::alone(p, compute, stages))
            .collect();
        cx
    }

    fn alone(r: &'a Recipe, compute: &'a Compute, stages: &'a Stages) -> Self {
        Self {
            r,
            compute,
            stages,
            ad: compute.device.clone().autodiff(),
            data: OnceCell::new(),
            vocab: OnceCell::new(),
            setup: OnceCell::new(),
            teacher_inputs: OnceCell::new(),
            student_vocab: OnceCell::new(),
            student_inputs: OnceCell::new(),
            student_init: OnceCell::new(),
            hashes: RefCell::new(HashMap::new()),
            hash_cache: HashCache::new(&r.runtime.store),
            machine: OnceCell::new(),
            notes: RefCell::new(Vec::new()),
            used: RefCell::new(BTreeMap::new()),
            peers: Vec::new(),
        }
    }

    /// A context for another recipe on the same device and store (an ensemble's member: the
    /// recipe with that member as its teacher).
    /// The data (and the character vocabulary built from it) is shared when the two recipes'
    /// `[data]` sections agree, as an ensemble's members' do: read once, said once.
    pub fn with_recipe<'b>(&'b self, r: &'b Recipe) -> Context<'b> {
        let cx = Context::new(r, self.compute, self.stages);
        if r.data == self.r.data {
            if let Some(d) = self.data.get() {
                let _ = cx.data.set(d.clone());
            }
            if let Some(v) = self.vocab.get() {
                let _ = cx.vocab.set(v.clone());
            }
        }
        cx
    }

    /// Take over what a member's context used and noted, its stages named after the member.
    pub fn absorb(&self, member: Context, label: &str) {
        let mut used = self.used.borrow_mut();
        for (name, dir) in member.used.into_inner() {
            used.insert(format!("{label}: {name}"), dir);
        }
        self.notes.borrow_mut().extend(member.notes.into_inner());
    }

    /// The recipe's splits.
    pub fn data(&self) -> Result<&Dataset> {
        self.data.get_or_try_init(|| {
            let data = Dataset::load(&self.r.data)?;
            note(&format!(
                "data: {} classes ({}); {} train, {} valid, {} test examples",
                data.classes.len(),
                data.class_names().join(", "),
                data.train.len(),
                data.valid.len(),
                data.test.len()
            ));
            Ok(data)
        })
    }

    /// The character vocabulary of the training text (the students' with `tokens = "char"`, a
    /// from-scratch teacher's).
    pub fn vocab(&self) -> Result<&CharVocab> {
        self.vocab.get_or_try_init(|| {
            let data = self.data()?;
            Ok(CharVocab::build(
                data.train.iter().map(|e| e.text.as_str()),
                self.r.data.min_count,
                self.r.data.lowercase,
            ))
        })
    }

    /// The teacher's tokenizer, configuration and checkpoint.
    pub fn setup(&self) -> Result<&TeacherSetup> {
        self.setup.get_or_try_init(|| {
            let r = self.r;
            teacher::setup(
                &r.teacher,
                r.data.max_len,
                self.vocab()?,
                &self.data()?.class_names(),
            )
        })
    }

    /// The splits as the teacher reads them.
    pub fn teacher_inputs(&self) -> Result<&Encodings> {
        self.teacher_inputs.get_or_try_init(|| {
            let tokenizer = &self.setup()?.tokenizer;
            let batcher = Batcher::for_encoder(InputKind::Teacher, self.r.data.max_len, tokenizer);
            Encodings::new(batcher, tokenizer, self.data()?)
        })
    }

    /// The students' vocabulary (characters or jieba-rs words).
    pub fn student_vocab(&self) -> Result<&StudentVocab> {
        self.student_vocab.get_or_try_init(|| {
            let r = self.r;
            let vocab = match r.student.tokens {
                StudentTokens::Char => StudentVocab::Chars(self.vocab()?.clone()),
                StudentTokens::Word => StudentVocab::Words(WordVocab::build(
                    self.data()?.train.iter().map(|e| e.text.as_str()),
                    r.data.min_count,
                    r.student.max_vocab,
                    r.data.lowercase,
                )),
            };
            note(&format!("student: {} {} tokens", vocab.len(), vocab.unit()));
            Ok(vocab)
        })
    }

    /// The splits as the students read them.
    pub fn student_inputs(&self) -> Result<&Encodings> {
        self.student_inputs.get_or_try_init(|| {
            let vocab = self.student_vocab()?;
            let batcher = Batcher::for_encoder(InputKind::Student, self.r.data.max_len, vocab);
            Encodings::new(batcher, vocab, self.data()?)
        })
    }

    /// What the students start from, and their vectors' coverage.
    pub fn student_init(&self) -> Result<&(StudentInit, Option<Coverage>)> {
        self.student_init.get_or_try_init(|| {
            student_init(
                &self.r.student,
                self.r.runtime.seed,
                self.student_vocab()?,
                &self.student_inputs()?.train,
                self.data()?.classes.len(),
            )
        })
    }

    /// sha256 of a file the recipe names (data, vectors, a checkpoint's weights): once per trial,
    /// and read from the store's remembered hashes while the file is unchanged.
    pub fn hash(&self, path: &Path) -> Result<String> {
        if let Some(h) = self.hashes.borrow().get(path) {
            return Ok(h.clone());
        }
        let h = self.hash_cache.hash(path)?;
        self.hashes
            .borrow_mut()
            .insert(path.to_path_buf(), h.clone());
        Ok(h)
    }

    /// The machine this trial runs on (read once).
    pub fn machine(&self) -> &Machine {
        self.machine.get_or_init(Machine::detect)
    }

    /// Settings every model stage depends on.
    pub fn common(&self) -> Common {
        let d = &self.r.data;
        Common {
            max_len: d.max_len,
            min_count: d.min_count,
            lowercase: d.lowercase,
            seed: self.r.runtime.seed,
            backend: self.compute.backend.clone(),
        }
    }

    /// A stage's result, reused from the store or computed now; recorded as used by this trial.
    pub fn run<S: Stage<Self>>(&self, stage: &S) -> Result<Done<S::Output>> {
        if !self.peers.is_empty() {
            // The same stage (same inputs) with each other trial's settings.
            let key = stage_key(stage, self)?.0;
            for peer in &self.peers {
                if stage_key(stage, peer)?.0 != key {
                    return Err(NotShared(stage.name().to_string()).into());
                }
            }
        }
        let done = self.stages.get_or_compute(stage, self)?;
        let name = stage.name();
        if done.reused {
            note(&format!(
                "{name}: reused from the store (stage {})",
                done.key
            ));
        }
        let mut used = self.used.borrow_mut();
        let entry = if used.contains_key(name) {
            format!("{name} ({})", done.key)
        } else {
            name.to_string()
        };
        used.insert(entry, done.dir.display().to_string());
        Ok(done)
    }

    /// Stage name → folder of every stage this trial used.
    pub fn used(&self) -> BTreeMap<String, String> {
        self.used.borrow().clone()
    }

    pub fn add_note(&self, note: String) {
        self.notes.borrow_mut().push(note);
    }
}
