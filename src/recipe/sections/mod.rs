//! The recipe's sections. Key names are a contract: docs, sweeps and other tools use them.
//! Every field has a default, so a recipe file only states what it changes.

mod baseline;
mod data;
mod distill;
mod optim;
mod run;
mod student;
mod sweep;
mod teacher;
mod textgcn;

pub use baseline::*;
pub use data::*;
pub use distill::*;
pub use optim::*;
pub use run::*;
pub use student::*;
pub use sweep::*;
pub use teacher::*;
pub use textgcn::*;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole recipe. `name` defaults to the recipe file's stem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    /// Names the report folder (`<report.dir>/<name>/`) and the run folder in the store.
    pub name: String,
    pub data: DataSection,
    #[serde(serialize_with = "teacher::serialize_in_recipe")]
    pub teacher: TeacherSection,
    pub student: StudentSection,
    pub distill: DistillSection,
    pub baseline: BaselineSection,
    pub textgcn: TextGcnSection,
    pub report: ReportSection,
    pub runtime: RuntimeSection,
    /// Models each finished run writes for use outside kdrun (ONNX).
    #[serde(skip_serializing_if = "ExportSection::is_empty")]
    pub export: ExportSection,
    /// A grid of trials over dotted keys (see `recipe::sweep`).
    pub sweep: SweepSection,
}

/// A recipe key's path value(s), for resolution against the folder of the layer that set it.
pub enum PathSlot<'a> {
    One(&'a mut PathBuf),
    Many(&'a mut Vec<PathBuf>),
}

impl Recipe {
    /// Every key that holds a path or a list of paths, with its slot: the one table path
    /// resolution reads (a new path key is added here and nowhere else).
    pub fn path_slots(&mut self) -> [(&'static str, PathSlot<'_>); 8] {
        [
            ("data.train", PathSlot::One(&mut self.data.train)),
            ("data.test", PathSlot::One(&mut self.data.test)),
            ("report.dir", PathSlot::One(&mut self.report.dir)),
            (
                "report.templates",
                PathSlot::One(&mut self.report.templates),
            ),
            ("runtime.store", PathSlot::One(&mut self.runtime.store)),
            (
                "teacher.checkpoint",
                PathSlot::One(&mut self.teacher.checkpoint),
            ),
            ("student.vectors", PathSlot::One(&mut self.student.vectors)),
            (
                "teacher.pretrain.extra",
                PathSlot::Many(&mut self.teacher.pretrain.extra),
            ),
        ]
    }

    /// Fill in every key the recipe left to a derived default (`data.text_field`,
    /// `data.label_field`, `teacher.intermediate`, `distill.soft_weight`, `distill.targets`), so the resolved
    /// recipe — what `kdrun check` prints, each run saves and stage keys hash — states the values
    /// that are used.
    pub fn resolve_derived(&mut self) {
        self.data.text_field = Some(self.data.text_field().to_string());
        self.data.label_field = Some(self.data.label_field().to_string());
        self.teacher.resolve();
        self.distill.soft_weight = Some(self.distill.soft_weight());
        self.distill.targets = Some(self.soft_targets());
    }
}
