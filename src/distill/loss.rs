//! Losses: hard-label cross-entropy and the soft (distillation) losses.
//!
//! `loss = alpha · CE(student, label) + soft_weight · soft(student, teacher)` where `soft` is
//! - `mse`: mean over batch and classes of `(s/T − t/T)²` (Tang et al. 2019 use T = 1: raw logits);
//! - `kl`: `T² · KL(softmax(t/T) ‖ softmax(s/T))`, summed over classes and averaged over the batch
//!   (Hinton et al. 2015; PyTorch's `kl_div(..., reduction="batchmean")` times T²).

use crate::recipe::{DistillSection, SoftLoss, SoftTargets};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` `[batch, classes]` against class indices `[batch]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    log_softmax(logits, 1)
        .gather(1, labels.reshape([b, 1]))
        .mean()
        .neg()
}

/// The soft loss between student and teacher logits at temperature `t`.
pub fn soft_loss(kind: SoftLoss, student: Tensor<2>, teacher: Tensor<2>, t: f64) -> Tensor<1> {
    match kind {
        SoftLoss::Mse => (student - teacher).div_scalar(t).square().mean(),
        SoftLoss::Kl => {
            let [b, _] = student.dims();
            let log_p_teacher = log_softmax(teacher.div_scalar(t), 1);
            let log_p_student = log_softmax(student.div_scalar(t), 1);
            (log_p_teacher.clone().exp() * (log_p_teacher - log_p_student))
                .sum()
                .div_scalar(b as f64)
                .mul_scalar(t * t)
        }
    }
}

/// The soft loss on log-probabilities (`distill.targets = "log_probs"`): MSE between
/// `log_softmax(s/T)` and `log_softmax(t/T)` (each row's offset removed); KL is unchanged, as it
/// is already invariant to a row's offset.
pub fn soft_loss_log_probs(
    kind: SoftLoss,
    student: Tensor<2>,
    teacher: Tensor<2>,
    t: f64,
) -> Tensor<1> {
    match kind {
        SoftLoss::Mse => {
            let s = log_softmax(student.div_scalar(t), 1);
            let q = log_softmax(teacher.div_scalar(t), 1);
            (s - q).square().mean()
        }
        SoftLoss::Kl => soft_loss(kind, student, teacher, t),
    }
}

/// The weighted sum a student is trained on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistillLoss {
    pub alpha: f64,
    pub soft_weight: f64,
    pub kind: SoftLoss,
    pub temperature: f64,
    /// Compare log-probabilities instead of logits (`distill.targets = "log_probs"`).
    pub log_probs: bool,
}

impl DistillLoss {
    /// Hard labels only: the student trained alone.
    pub fn hard_only() -> Self {
        Self {
            alpha: 1.0,
            soft_weight: 0.0,
            kind: SoftLoss::Mse,
            temperature: 1.0,
            log_probs: false,
        }
    }

    /// The loss `[distill]` describes, on the soft targets the recipe resolved
    /// (`Recipe::soft_targets`: `distill.targets`, else the teacher's default).
    pub fn new(d: &DistillSection, targets: SoftTargets) -> Self {
        Self {
            alpha: d.alpha,
            soft_weight: d.soft_weight(),
            kind: d.soft_loss,
            temperature: d.temperature,
            log_probs: targets == SoftTargets::LogProbs,
        }
    }

    /// Whether the loss reads teacher logits at all.
    pub fn needs_teacher(&self) -> bool {
        self.soft_weight > 0.0
    }

    pub fn forward(
        &self,
        student: Tensor<2>,
        labels: Tensor<1, Int>,
        teacher: Option<Tensor<2>>,
    ) -> Tensor<1> {
        let mut total: Option<Tensor<1>> = None;
        if self.alpha > 0.0 {
            total = Some(cross_entropy(student.clone(), labels).mul_scalar(self.alpha));
        }
        if self.soft_weight > 0.0 {
            let teacher = teacher.expect("soft loss needs teacher logits");
            let soft = if self.log_probs {
                soft_loss_log_probs(self.kind, student, teacher, self.temperature)
            } else {
                soft_loss(self.kind, student, teacher, self.temperature)
            }
            .mul_scalar(self.soft_weight);
            total = Some(match total {
                Some(t) => t + soft,
                None => soft,
            });
        }
        total.expect("a validated recipe has alpha or soft_weight above 0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn t2(v: [[f32; 3]; 2]) -> Tensor<2> {
        Tensor::from_data(TensorData::from(v), &Device::flex())
    }

    fn scalar(x: Tensor<1>) -> f64 {
        x.into_scalar::<f32>() as f64
    }

    // Hand computation, student s = [[1,2,3],[0,0,0]], teacher t = [[3,2,1],[1,0,-1]].
    const S: [[f32; 3]; 2] = [[1., 2., 3.], [0., 0., 0.]];
    const T: [[f32; 3]; 2] = [[3., 2., 1.], [1., 0., -1.]];

    fn softmax(x: &[f64]) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|v| v / z).collect()
    }

    /// KL(p_t ‖ p_s) averaged over rows, × T², computed in f64 by hand.
    fn kl_by_hand(temp: f64) -> f64 {
        let mut total = 0.0;
        for r in 0..2 {
            let s: Vec<f64> = S[r].iter().map(|v| *v as f64 / temp).collect();
            let t: Vec<f64> = T[r].iter().map(|v| *v as f64 / temp).collect();
            let (ps, pt) = (softmax(&s), softmax(&t));
            total += (0..3).map(|k| pt[k] * (pt[k] / ps[k]).ln()).sum::<f64>();
        }
        total / 2.0 * temp * temp
    }

    #[test]
    fn mse_matches_hand_values() {
        // Differences: [-2,0,2] and [-1,0,1]: squares sum 8 + 2 = 10 over 6 entries.
        let at1 = scalar(soft_loss(SoftLoss::Mse, t2(S), t2(T), 1.0));
        assert!((at1 - 10.0 / 6.0).abs() < 1e-6, "{at1}");
        // At T = 4 every difference is divided by 4: 10/16/6.
        let at4 = scalar(soft_loss(SoftLoss::Mse, t2(S), t2(T), 4.0));
        assert!((at4 - 10.0 / 16.0 / 6.0).abs() < 1e-6, "{at4}");
    }

    #[test]
    fn kl_matches_hand_values() {
        for temp in [1.0, 4.0] {
            let got = scalar(soft_loss(SoftLoss::Kl, t2(S), t2(T), temp));
            let want = kl_by_hand(temp);
            assert!((got - want).abs() < 1e-5, "T={temp}: {got} vs {want}");
        }
        // Row 0 by hand at T = 1: p_t = softmax(3,2,1) = (0.6652, 0.2447, 0.0900) and
        // p_s its mirror, so KL = (0.665241 − 0.090031)·ln(e²) = 1.150420.
        let row0 = {
            let s = [[1f32, 2., 3.]];
            let t = [[3f32, 2., 1.]];
            let d = Device::flex();
            scalar(soft_loss(
                SoftLoss::Kl,
                Tensor::from_data(TensorData::from(s), &d),
                Tensor::from_data(TensorData::from(t), &d),
                1.0,
            ))
        };
        assert!((row0 - 1.150420).abs() < 1e-5, "{row0}");
    }

    #[test]
    fn kl_of_identical_logits_is_zero() {
        let got = scalar(soft_loss(SoftLoss::Kl, t2(S), t2(S), 2.0));
        assert!(got.abs() < 1e-6);
    }

    #[test]
    fn log_prob_targets_ignore_each_rows_offset() {
        // Shifting a teacher row by a constant changes logit MSE but not log-prob MSE or KL.
        let shifted = [[T[0][0] + 5.0, T[0][1] + 5.0, T[0][2] + 5.0], T[1]];
        for temp in [1.0, 2.0] {
            let a = scalar(soft_loss_log_probs(SoftLoss::Mse, t2(S), t2(T), temp));
            let b = scalar(soft_loss_log_probs(SoftLoss::Mse, t2(S), t2(shifted), temp));
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            let kl = scalar(soft_loss(SoftLoss::Kl, t2(S), t2(T), temp));
            let kl_lp = scalar(soft_loss_log_probs(SoftLoss::Kl, t2(S), t2(shifted), temp));
            assert!((kl - kl_lp).abs() < 1e-5);
        }
        let raw = scalar(soft_loss(SoftLoss::Mse, t2(S), t2(T), 1.0));
        let raw_shifted = scalar(soft_loss(SoftLoss::Mse, t2(S), t2(shifted), 1.0));
        assert!((raw - raw_shifted).abs() > 1.0);
        // By hand at T = 1: log_softmax rows minus each other, squared, averaged.
        let ls = |r: [f32; 3]| {
            let m = r.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
            r.map(|v| v as f64 - m)
        };
        let mut want = 0.0;
        for i in 0..2 {
            let (s, t) = (ls(S[i]), ls(T[i]));
            want += (0..3).map(|k| (s[k] - t[k]).powi(2)).sum::<f64>();
        }
        want /= 6.0;
        let got = scalar(soft_loss_log_probs(SoftLoss::Mse, t2(S), t2(T), 1.0));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn cross_entropy_matches_hand_value() {
        let d = Device::flex();
        let labels = Tensor::<1, Int>::from_data(TensorData::from([2i64, 0]), &d);
        // Row 0: −log softmax(1,2,3)[2] = 0.40761; row 1: −log(1/3) = 1.09861.
        let got = scalar(cross_entropy(t2(S), labels));
        assert!((got - (0.407606 + 1.098612) / 2.0).abs() < 1e-5, "{got}");
    }

    #[test]
    fn weights_combine() {
        let d = Device::flex();
        let labels = Tensor::<1, Int>::from_data(TensorData::from([2i64, 0]), &d);
        let loss = DistillLoss {
            alpha: 0.5,
            soft_weight: 2.0,
            kind: SoftLoss::Mse,
            temperature: 1.0,
            log_probs: false,
        };
        let got = scalar(loss.forward(t2(S), labels, Some(t2(T))));
        let want = 0.5 * (0.407606 + 1.098612) / 2.0 + 2.0 * 10.0 / 6.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
