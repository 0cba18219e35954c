//! kdrun: knowledge-distillation experiments for text classification.
//!
//! The layers, lowest first; a module uses only modules below it (`tests/layers.rs` keeps this
//! true):
//!
//! | layer | room |
//! |---|---|
//! | [`build_info`], [`files`], [`runtime`] | what the binary was built from; files written whole, hashed by content; notes, progress, Ctrl-C and the machine's facts |
//! | [`recipe`] | TOML recipes in layers → one validated, resolved recipe |
//! | [`data`] | files → classes and splits → tokens → batches; pretrained vectors |
//! | [`models`] | the teachers (BERT/RoBERTa/XLM-R, XLNet, linear, TextGCN) and the BiLSTM student, each a `Config` and a `Module`; Hugging Face checkpoints |
//! | [`distill`], [`train`] | distillation losses, teacher logits, the transfer set; training loops |
//! | [`eval`] | scores and inference timing on the test split |
//! | [`store`] | run folders, content-addressed stages, stored results and their scan |
//! | [`report`] | pages, tables and plots from stored results; the static site |
//! | [`backend`] | the device, chosen once |
//! | [`deploy`] | a run's models leave kdrun: `predict` on new text, ONNX export with a tokenizer |
//! | [`pipeline`], [`bench`] | a trial's stages in order, and sweeps of trials; timings of the models at fixed shapes |
//! | [`cli`] | the command line |

pub mod backend;
pub mod bench;
pub mod build_info;
pub mod cli;
pub mod data;
pub mod deploy;
pub mod distill;
pub mod eval;
pub mod files;
pub mod models;
pub mod pipeline;
pub mod recipe;
pub mod report;
pub mod runtime;
pub mod store;
pub mod train;
