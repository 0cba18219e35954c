//! The optimiser settings every trained model shares — the teacher's fine-tuning, its further
//! pre-training and the students: AdamW with a linear warm-up, then a linear decay to 0. Each
//! section keeps its own keys (`teacher.lr`, `student.lr`, `teacher.pretrain.lr`); [`Optim`] is
//! what they mean, validated once (`validate`) and read once by the training loop
//! (`train::FitSettings`).

use super::{PretrainSection, StudentSection, TeacherSection};
use serde::Serialize;

/// One model's optimiser settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Optim {
    /// Passes over the training set (the best epoch on the validation split is kept); 0 where
    /// a section counts steps instead (`teacher.pretrain.steps`).
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Examples per optimiser step.
    pub batch_size: usize,
    /// Fraction of all steps spent warming the learning rate up linearly.
    pub warmup: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
}

/// `optim()` of a section that holds the five keys under their own names.
macro_rules! optim_of {
    ($($section:ty => $what:literal),* $(,)?) => {$(
        impl $section {
            #[doc = concat!("The optimiser settings of ", $what, ".")]
            pub fn optim(&self) -> Optim {
                Optim {
                    epochs: self.epochs,
                    lr: self.lr,
                    batch_size: self.batch_size,
                    warmup: self.warmup,
                    weight_decay: self.weight_decay,
                }
            }
        }
    )*};
}

optim_of! {
    TeacherSection => "the teacher's fine-tuning",
    PretrainSection => "the teacher's further pre-training",
    StudentSection => "both students' training",
}
