//! Progress per stage: an indicatif bar when stderr is a terminal, one line per epoch otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    stage: String,
    epochs: usize,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(stage: &str, epochs: usize, steps_per_epoch: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new((epochs * steps_per_epoch) as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>16} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(stage.to_string());
            bar
        });
        Self {
            stage: stage.to_string(),
            epochs,
            bar,
        }
    }

    /// One optimizer step done; `loss` when it was read.
    pub fn step(&self, epoch: usize, loss: Option<f64>) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if let Some(l) = loss {
                bar.set_message(format!("epoch {}/{} loss {l:.4}", epoch + 1, self.epochs));
            }
        }
    }

    /// A line for a finished epoch (printed above the bar, or alone).
    pub fn epoch(&self, line: &str) {
        let line = format!("{}: {line}", self.stage);
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A one-off status line, kept apart from the bars.
pub fn note(line: &str) {
    eprintln!("{line}");
}
