//! Learning-rate schedule: linear warm-up from 0, then linear decay to 0 at the last step.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub base: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// `warmup` is the fraction of `total_steps` spent warming up.
    pub fn new(base: f64, warmup: f64, total_steps: usize) -> Self {
        Self {
            base,
            warmup_steps: (warmup * total_steps as f64).round() as usize,
            total_steps: total_steps.max(1),
        }
    }

    /// The rate for step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            self.base * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            let left = self.total_steps.saturating_sub(step) as f64;
            let span = (self.total_steps - self.warmup_steps).max(1) as f64;
            self.base * left / span
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays() {
        let s = LinearSchedule::new(1.0, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert!((s.at(0) - 0.1).abs() < 1e-12);
        assert!((s.at(9) - 1.0).abs() < 1e-12);
        assert!((s.at(10) - 1.0).abs() < 1e-12);
        assert!((s.at(55) - 0.5).abs() < 1e-12);
        assert!(s.at(99) > 0.0 && s.at(99) < 0.02);
        let flat = LinearSchedule::new(2.0, 0.0, 4);
        assert_eq!(flat.at(0), 2.0);
        assert_eq!(flat.at(2), 1.0);
    }
}
