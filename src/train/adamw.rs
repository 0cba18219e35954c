//! AdamW with per-tensor gradient-norm clipping as one optimizer, whose step on the CPU backend is
//! one fused operation per parameter tensor ([`crate::models::ops::adamw`]).
//!
//! It computes what burn's `AdamWConfig::…with_grad_clipping(Norm(c)).init()` computes (burn's
//! [`ModuleOptimizer`] clips each gradient by its own norm, then burn's `AdamW` steps), keeps
//! burn's state ([`AdamWState`]: an optimizer record saved from one loads into the other) and
//! clips inside its step, so the [`ModuleOptimizer`] built from it carries no clipping of its
//! own. On the CPU backend the step is one CPU operation per tensor, on wgpu one or two kernel
//! launches; for other float types than f32 it is burn's composition itself.

use crate::models::ops::adamw::{adamw_update, AdamWStep};
use burn::grad_clipping::GradientClipping;
use burn::optim::{
    AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{DType, Device, Tensor};

/// AdamW (no AMSGrad, no cautious weight decay) with optional gradient-norm clipping of each
/// parameter tensor.
#[derive(Clone)]
pub struct FusedAdamW {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    clip_norm: Option<f32>,
    /// burn's AdamW of the same settings, which steps tensors the fused operation does not take.
    burn: AdamW,
}

impl FusedAdamW {
    /// β₁ 0.9, β₂ 0.999 (burn's defaults), the given ε and weight decay, and gradients scaled down
    /// to norm `clip_norm` (each parameter's by its own norm) where it is set.
    pub fn new(epsilon: f32, weight_decay: f32, clip_norm: Option<f32>) -> Self {
        Self::with_betas(0.9, 0.999, epsilon, weight_decay, clip_norm)
    }

    /// As [`new`](Self::new) with the moments' decay rates given.
    pub fn with_betas(
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        clip_norm: Option<f32>,
    ) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        Self {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            clip_norm,
            burn,
        }
    }

    /// The optimizer of a whole module.
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // ModuleOptimizer hands over inner (non-autodiff) tensors; f32 ones take the fused
        // operation (the CPU backend's or wgpu's), any others burn's clipping and AdamW.
        let fused = tensor.dtype() == DType::F32
            && grad.dtype() == DType::F32
            && state.as_ref().is_none_or(|s| {
                s.momentum.max_moment_2.is_none()
                    && s.momentum.moment_1.dtype() == DType::F32
                    && s.momentum.moment_2.dtype() == DType::F32
            });
        if !fused || tensor.device().is_autodiff() {
            let grad = match self.clip_norm {
                Some(c) => GradientClipping::Norm(c).clip_gradient(grad),
                None => grad,
            };
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, moment_1, moment_2) = match state {
            Some(s) => (
                s.momentum.time + 1,
                s.momentum.moment_1,
                s.momentum.moment_2,
            ),
            None => {
                let device = tensor.device();
                let zeros = || Tensor::<D>::zeros(tensor.shape(), &device);
                (1, zeros(), zeros())
            }
        };
        let step = AdamWStep {
            lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
            clip_norm: self.clip_norm,
        };
        let (tensor, moment_1, moment_2) = adamw_update(tensor, grad, moment_1, moment_2, step);
        let momentum = AdaptiveMomentumState {
            time,
            moment_1,
            moment_2,
            max_moment_2: None,
        };
        (tensor, Some(AdamWState { momentum }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, TensorData};

    /// Two trained layers (the first of 64 × 512 weights: several of the fused operation's
    /// parallel chunks) and a frozen one.
    #[derive(Module, Debug)]
    struct Net {
        a: Linear,
        b: Linear,
        frozen: Linear,
    }

    impl Net {
        fn new(device: &Device) -> Self {
            Self {
                a: LinearConfig::new(64, 512).init(device),
                b: LinearConfig::new(512, 8).init(device),
                frozen: LinearConfig::new(64, 8).init(device).no_grad(),
            }
        }

        /// Gradients of `scale · Σ (b(tanh(a(x))) + frozen(x))²` for the `step`-th input.
        fn grads(&self, step: usize, scale: f32) -> GradientsParams {
            let device = self.a.weight.val().device();
            let x: Vec<f32> = (0..4 * 64)
                .map(|i| (((i * 7 + step * 13) % 29) as f32 - 14.0) / 14.0)
                .collect();
            let x = Tensor::<2>::from_data(TensorData::new(x, [4, 64]), &device);
            let y = self.b.forward(self.a.forward(x.clone()).tanh()) + self.frozen.forward(x);
            let loss = y.square().sum().mul_scalar(scale);
            GradientsParams::from_grads(loss.backward(), self)
        }
    }

    /// Every float parameter's values, in visiting order.
    fn params<M: Module>(module: &M) -> Vec<Vec<f32>> {
        struct Values(Vec<Vec<f32>>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .push(param.val().into_data().try_to_vec::<f32>().unwrap());
            }
        }
        let mut v = Values(Vec::new());
        module.visit(&mut v);
        v.0
    }

    /// The largest difference between two parameter sets, relative to 1 or the value.
    fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
            .fold(0.0, f32::max)
    }

    /// Each trained tensor's gradient norm (to see that clipping triggers for some).
    fn grad_norms(net: &Net, grads: &GradientsParams) -> Vec<f32> {
        let norm = |t: Tensor<2>| t.square().sum().sqrt().into_scalar::<f32>();
        let norm1 = |t: Tensor<1>| t.square().sum().sqrt().into_scalar::<f32>();
        vec![
            norm(grads.get::<2>(net.a.weight.id).unwrap()),
            norm1(grads.get::<1>(net.a.bias.as_ref().unwrap().id).unwrap()),
            norm(grads.get::<2>(net.b.weight.id).unwrap()),
            norm1(grads.get::<1>(net.b.bias.as_ref().unwrap().id).unwrap()),
        ]
    }

    /// burn's AdamW with its clipping, and this one, over `steps` steps from the same model.
    fn compare(clip: Option<f32>, weight_decay: f32, scale: f32, steps: usize) -> Vec<Vec<f32>> {
        let device = Device::flex().autodiff();
        device.seed(5);
        let start = Net::new(&device);
        let mut burn = AdamWConfig::new()
            .with_weight_decay(weight_decay)
            .with_epsilon(1e-8)
            .with_grad_clipping(clip.map(burn::grad_clipping::GradientClippingConfig::Norm))
            .init();
        let mut fused = FusedAdamW::new(1e-8, weight_decay, clip).init();
        assert!(
            !fused.has_gradient_clipping(),
            "the fused step clips, not the module's"
        );
        let (mut ours, mut theirs) = (start.clone(), start.clone());
        let (mut clipped, mut unclipped) = (0, 0);
        for step in 0..steps {
            let lr = 1e-2 * (1.0 + step as f64) / steps as f64;
            let grads = theirs.grads(step, scale);
            if let Some(c) = clip {
                for n in grad_norms(&theirs, &grads) {
                    if n > c {
                        clipped += 1
                    } else {
                        unclipped += 1
                    }
                }
            }
            theirs = burn.step(lr, theirs, grads);
            let grads = ours.grads(step, scale);
            ours = fused.step(lr, ours, grads);
            let (a, b) = (params(&ours), params(&theirs));
            let diff = max_diff(&a, &b);
            assert!(diff <= 1e-5, "step {step}: parameters differ by {diff}");
        }
        if clip.is_some() {
            assert!(
                clipped > 0 && unclipped > 0,
                "{clipped} clipped, {unclipped} not"
            );
        }
        // The steps moved every trained parameter (so that equal results mean something), and
        // not the frozen one, which has no state either.
        let (before, after) = (params(&start), params(&ours));
        for (i, (x, y)) in before.iter().zip(&after).enumerate() {
            let moved = x
                .iter()
                .zip(y)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            if i < 4 {
                assert!(moved > 1e-3, "parameter {i} moved by {moved} only");
            } else {
                assert_eq!(x, y, "the frozen parameter {i} changed");
            }
        }
        assert_eq!(
            fused.to_record().len(),
            8,
            "two moments of each trained tensor"
        );
        assert_eq!(burn.to_record().len(), 8);
        // burn's optimizer resumes from this one's saved state, and the other way round.
        let bytes = |o: &ModuleOptimizer| o.into_bytes().unwrap();
        let mut burn_resumed = AdamWConfig::new()
            .with_weight_decay(weight_decay)
            .with_epsilon(1e-8)
            .with_grad_clipping(clip.map(burn::grad_clipping::GradientClippingConfig::Norm))
            .init()
            .from_bytes(bytes(&fused))
            .unwrap();
        let mut fused_resumed = FusedAdamW::new(1e-8, weight_decay, clip)
            .init()
            .from_bytes(bytes(&burn))
            .unwrap();
        let next =
            |o: &mut ModuleOptimizer, m: &Net| o.step(1e-2, m.clone(), m.grads(steps, scale));
        let a = next(&mut fused_resumed, &ours);
        let b = next(&mut burn_resumed, &ours);
        let c = next(&mut fused, &ours);
        let (a, b, c) = (params(&a), params(&b), params(&c));
        assert!(max_diff(&a, &c) <= 1e-5 && max_diff(&b, &c) <= 1e-5);
        assert!(max_diff(&c, &after) > 1e-4, "the resumed step moves");
        after
    }

    #[test]
    fn fused_adamw_matches_burns_adamw_with_weight_decay() {
        compare(None, 0.1, 1.0, 6);
    }

    #[test]
    fn fused_adamw_matches_burns_adamw_with_clipping() {
        // Gradients scaled so that some tensors' norms exceed the threshold at some steps (the
        // weights' always, the biases' not or not always).
        let clipped = compare(Some(10.0), 0.1, 3.0, 6);
        let unclipped = compare(None, 0.1, 3.0, 6);
        let diff = max_diff(&clipped, &unclipped);
        assert!(
            diff > 1e-3,
            "clipping changed the parameters by {diff} only"
        );
    }

    /// What the fused operation does not take (here f64 tensors) is stepped by burn's composition.
    #[test]
    fn other_float_types_get_burns_composition() {
        let device = Device::flex();
        let p = Tensor::<2>::random([8, 8], Distribution::Default, &device).cast(DType::F64);
        let g =
            Tensor::<2>::random([8, 8], Distribution::Normal(0.0, 2.0), &device).cast(DType::F64);
        let fused = FusedAdamW::new(1e-8, 0.01, Some(1.0));
        let (ours, _) = fused.step(1e-2, p.clone(), g.clone(), None);
        let burn = AdamWConfig::new()
            .with_weight_decay(0.01)
            .with_epsilon(1e-8)
            .build();
        let (theirs, _) = burn.step(1e-2, p, GradientClipping::Norm(1.0).clip_gradient(g), None);
        assert_eq!(ours.dtype(), DType::F64);
        ours.into_data().assert_eq(&theirs.into_data(), true);
    }

    /// Random gradients for every float parameter of `module`.
    fn random_grads<M: Module>(module: &M) -> GradientsParams {
        struct Grads(GradientsParams);
        impl ModuleVisitor for Grads {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val().inner();
                let g =
                    Tensor::<D>::random(t.shape(), Distribution::Normal(0.0, 1e-2), &t.device());
                self.0.register(param.id, g);
            }
        }
        let mut g = Grads(GradientsParams::new());
        module.visit(&mut g);
        g.0
    }

    /// The time of one optimizer step over a BERT-small's parameters (4 layers × 256, FFN 1024,
    /// vocabulary 21128: 11 M parameters), burn's AdamW and this one, clipping at norm 1 with
    /// weight decay 0.01. `RAYON_NUM_THREADS=2 cargo test --release --lib -- --ignored
    /// bert_small_optimizer_step_time --nocapture`.
    #[test]
    #[ignore = "a timing, not a test"]
    fn bert_small_optimizer_step_time() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let labels: Vec<String> = (0..15).map(|i| format!("class{i}")).collect();
        let config = crate::models::BertConfig::new(21128, 256, 4, 4, 1024, 512, 0.1, &labels);
        let mut model = config.init_classifier(&device);
        eprintln!("{} parameters", model.num_params());
        let burn = || {
            AdamWConfig::new()
                .with_weight_decay(0.01)
                .with_epsilon(1e-8)
                .with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Norm(1.0)))
                .init()
        };
        let fused = || FusedAdamW::new(1e-8, 0.01, Some(1.0)).init();
        for round in 0..2 {
            for (name, make) in [
                ("burn AdamW", &burn as &dyn Fn() -> ModuleOptimizer),
                ("fused AdamW", &fused),
            ] {
                let mut optim = make();
                let mut times = Vec::new();
                for step in 0..8 {
                    let grads = random_grads(&model);
                    let start = std::time::Instant::now();
                    model = optim.step(1e-4, model, grads);
                    if step >= 2 {
                        // The first steps allocate the moments.
                        times.push(start.elapsed().as_secs_f64() * 1e3);
                    }
                }
                times.sort_by(f64::total_cmp);
                eprintln!(
                    "round {round} {name}: median {:.1} ms, min {:.1} ms, max {:.1} ms per step",
                    times[times.len() / 2],
                    times[0],
                    times[times.len() - 1]
                );
            }
        }
    }
}
