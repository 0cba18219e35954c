//! Models leave kdrun: a finished run's models read back from its stages ([`run`]),
//! `kdrun predict` over new text ([`predict`]), and `kdrun export` to ONNX with a
//! `tokenizer.json` ([`export`], graphs in [`onnx`]).

pub mod export;
pub mod fetch;
pub mod onnx;
pub mod predict;
pub mod run;

pub use export::{export, export_run, Format};
pub use predict::{predict, InputFormat, PredictOptions, PredictSummary};
pub use run::{resolve, Loaded, ModelChoice, Run};
