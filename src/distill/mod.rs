//! Distillation: the loss a student learns from, and the teacher's logits it learns them from.

pub mod augment;
pub mod logits;
pub mod loss;

pub use logits::TeacherLogits;
pub use loss::{cross_entropy, soft_loss, DistillLoss};
