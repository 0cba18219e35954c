//! The bottom layer every other uses at run time: notes and progress bars on the terminal
//! ([`progress`]), Ctrl-C ([`interrupt`]), and the facts of the machine a run ran on
//! ([`machine`]).

pub mod interrupt;
pub mod machine;
pub mod progress;
