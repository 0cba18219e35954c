//! The stages of a trial, one file each. Every stage implements the store's `Stage` trait: the settings its key
//! covers, the stages it reads, how it computes into a stage folder and how it loads back; the
//! store's `get_or_compute` does the rest (lookup, temporary folder, manifest, rename).
//!
//! | stage | key covers (settings) | inputs |
//! |---|---|---|
//! | data | `data.*`, the files' contents | – |
//! | pretrain | teacher sizes/checkpoint, `teacher.pretrain.*`, `data.max_len`, seed, backend | data |
//! | teacher | `teacher.*`, `data.max_len`, seed, backend | data, pretrain |
//! | logits | `distill.augment.*`, `data.max_len`, seed (+ `eval` for an ensemble's member) | data, the teacher's stage (teacher, baseline or student) |
//! | ensemble | `teacher.members[].weight`, `teacher.combine` | each member's logits |
//! | student | `student.*`, the vectors' contents, `data.max_len`, seed, backend | data |
//! | distilled | `student.*`, `distill.*`, `data.max_len`, seed, backend | data, logits or ensemble |
//! | eval | `report.timing_*`, backend, adapter, processor | one model stage |
//! | baseline | `baseline.*`, `data.lowercase`, seed (SVM only) | data |
//! | baseline_eval | `report.timing_*`, processor | baseline |
//! | textgcn | `textgcn.*`, `data.lowercase`, seed, backend, `report.timing_repeats` | data |
//!
//! Each stage's settings are one typed struct, its `Spec` (`TeacherSpec`, `StudentSpec`,
//! `LogitsSpec`, …, with `context::Common` for what every model stage shares): serialised, the
//! content of its key; handed to `compute`, the settings its training reads.
//!
//! Every stage seeds the device itself, so a stage computes the same result whether the stages
//! before it were computed in this run or reused.

pub mod baseline;
pub mod data;
pub mod eval;
pub mod logits;
pub mod student;
pub mod teacher;
pub mod textgcn;

/// Ids of synthetic examples start here, above every row number of a file.
pub const SYNTHETIC_IDS: u32 = 1 << 31;

pub(crate) use crate::files::read_json;
pub(crate) use crate::models::records::{load_record, save_model};
