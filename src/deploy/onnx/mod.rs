//! Models as ONNX graphs another runtime (onnxruntime) loads: the BiLSTM student
//! ([`student`]) and the BERT teacher ([`bert`]), both over one graph builder ([`graph`]).

pub mod bert;
pub mod graph;
pub mod student;
