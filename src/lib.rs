//! kdrun: knowledge-distillation experiments for text classification.
//!
//! The pipeline reads in folder order: [`recipe`] → [`data`] → [`models`] → [`train`] /
//! [`distill`] → [`eval`] → [`store`] → [`report`]; [`pipeline`] runs them in turn and
//! [`backend`] picks the device once, at the edge ([`cli`]).

pub mod backend;
pub mod cli;
pub mod data;
pub mod distill;
pub mod eval;
pub mod models;
pub mod pipeline;
pub mod recipe;
pub mod report;
pub mod store;
pub mod train;
