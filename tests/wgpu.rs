//! burn's wgpu backend on a real adapter — lavapipe (Mesa's Vulkan driver on the CPU) in CI:
//!
//! 1. the BERT conformance fixtures reproduce transformers' outputs on wgpu;
//! 2. the BiLSTM's forward pass and gradients on wgpu equal the CPU backend's (same weights,
//!    padded batch, every head and input kind);
//! 3. the teacher and both students train on wgpu as on the CPU backend from the same weights and
//!    batches (dropout off);
//! 4. `kdrun recipes/quick.toml --backend wgpu` runs to a report, and the CPU backend, loading
//!    the weights that run stored, predicts every test example as the wgpu run did; the run
//!    keeps its compiled kernels and autotune results in `<store>/cubecl`;
//! 5. `--backend auto` prefers the CPU backend over a software adapter such as lavapipe.
//!
//! Without a wgpu adapter each test says so and passes, unless `KDRUN_REQUIRE_WGPU=1` (set by
//! `.ci/run`, which installs lavapipe), where it fails.

mod common;
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use kdrun::backend::{self, Compute, Probe};
use kdrun::data::batch::Encoded;
use kdrun::distill::{DistillLoss, TeacherLogits};
use kdrun::models::bilstm::{BiLstmConfig, BiLstmHead, BiLstmInput};
use kdrun::models::forward::{forward, Inputs};
use kdrun::models::hf::Weights;
use kdrun::models::{accuracy, predict, BertConfig, Classifier};
use kdrun::pipeline::context::Context;
use kdrun::recipe::{BackendChoice, Recipe};
use kdrun::store::stage::Stages;
use kdrun::store::RunResults;
use kdrun::train::{fit, FitSettings};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The largest difference allowed between wgpu and the CPU backend in one forward or backward
/// pass (measured on lavapipe, 2026-11-28: at most 3.0e-8).
const PASS_TOLERANCE: f32 = 1e-5;
/// The largest difference allowed between parameters (and per-step losses) after training on
/// both backends (measured on lavapipe, 2026-11-28: parameters at most 3.0e-6 after 16 steps).
const TRAIN_TOLERANCE: f32 = 1e-4;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Held by every test of this file for its whole length: they run one at a time, so the launch
/// count of one (a process-wide observer) holds no other's kernels.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The wgpu device, created once per test process (burn initializes a wgpu runtime once), or
/// `None` — and a message — where there is no adapter to run on.
fn gpu() -> Option<Device> {
    gpu_compute().map(|c| c.device.clone())
}

/// The wgpu backend as `backend::select` made it (once per process), or `None` as [`gpu`] says.
fn gpu_compute() -> Option<&'static Compute> {
    static GPU: OnceLock<Result<Compute, String>> = OnceLock::new();
    let found = GPU.get_or_init(|| {
        // In a child process with a time limit first: with OpenGL but no Vulkan driver wgpu picks
        // llvmpipe over GL, which can hang (README, Backends).
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_kdrun"));
        let info = backend::probe_child(&exe).map_err(|e| e.to_string())?;
        if info.api == "Gl" {
            return Err(format!("only an OpenGL adapter ({})", info.name));
        }
        backend::select(BackendChoice::Wgpu, &Probe::Skip).map_err(|e| e.to_string())
    });
    match found {
        Ok(compute) => Some(compute),
        Err(why) => {
            assert!(
                std::env::var("KDRUN_REQUIRE_WGPU").map_or(true, |v| v != "1"),
                "KDRUN_REQUIRE_WGPU=1 but there is no usable wgpu adapter: {why} \
                 (install lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)"
            );
            eprintln!("skipped: no usable wgpu adapter ({why}); CI installs lavapipe");
            None
        }
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every float parameter of a module (or, given gradients, its gradient), by path.
struct Tensors<'g> {
    grads: Option<&'g Gradients>,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Tensors<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        let tensor = match self.grads {
            None => param.val(),
            // A parameter the loss does not reach (with the mean input, one step from a zero
            // state, the recurrent weights) has no gradient; both backends must agree on that,
            // which the parameter-list comparison checks.
            Some(g) => match param.val().grad(g) {
                Some(t) => t,
                None => return,
            },
        };
        self.out.push((name, values(tensor)));
    }
}

fn params_of<M: Module>(model: &M) -> Vec<(String, Vec<f32>)> {
    let mut v = Tensors {
        grads: None,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

fn grads_of<M: Module>(model: &M, grads: &Gradients) -> Vec<(String, Vec<f32>)> {
    let mut v = Tensors {
        grads: Some(grads),
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

/// The largest difference between two lists of named tensors (asserting the names agree).
fn largest_diff(what: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: different parameter lists");
    let mut worst = 0.0f32;
    for ((name_a, x), (name_b, y)) in a.iter().zip(b) {
        assert_eq!(name_a, name_b, "{what}");
        assert!(
            y.iter().all(|v| v.is_finite()),
            "{what} {name_b}: not finite"
        );
        worst = worst.max(max_abs_diff(x, y));
    }
    worst
}

// 1. BERT against transformers.

#[test]
fn bert_fixtures_match_transformers_on_wgpu() {
    let _serial = serial();
    let Some(device) = gpu() else { return };
    for name in ["bert-tiny-cls", "bert-tiny-mlm"] {
        let dir = root().join("tests/fixtures").join(name);
        let config: BertConfig =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let weights = Weights::from_safetensors(&dir.join("model.safetensors")).unwrap();
        let inputs = Inputs::load(&dir.join("reference.json")).unwrap();
        let got = forward(&config, &weights, &inputs, &device).unwrap();
        let cpu = forward(&config, &weights, &inputs, &Device::flex()).unwrap();
        for (key, want) in common::reference_outputs(&dir) {
            let diff = got[&key].max_abs_diff(&want);
            eprintln!(
                "{name} {key}: wgpu vs transformers {diff:.1e}, vs CPU backend {:.1e}",
                got[&key].max_abs_diff(&cpu[&key])
            );
            assert!(diff < 1e-4, "{name} {key}: max abs diff {diff}");
        }
    }
}

// 2. The BiLSTM's forward pass and gradients.

/// Four rows of lengths 7, 3, 5 and 1, right-padded with id 0.
fn padded_batch(device: &Device) -> (Tensor<2, Int>, Tensor<2>, Tensor<1, Int>) {
    let lengths = [7usize, 3, 5, 1];
    let t = 7;
    let mut tokens = vec![0i64; lengths.len() * t];
    let mut mask = vec![0f32; lengths.len() * t];
    for (r, &len) in lengths.iter().enumerate() {
        for c in 0..len {
            tokens[r * t + c] = (1 + (r * 11 + c * 7) % 39) as i64;
            mask[r * t + c] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(tokens, [lengths.len(), t]), device),
        Tensor::from_data(TensorData::new(mask, [lengths.len(), t]), device),
        Tensor::from_data(
            TensorData::new(vec![0i64, 3, 4, 1], [lengths.len()]),
            device,
        ),
    )
}

#[test]
fn bilstm_forward_and_gradients_match_the_cpu_backend() {
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    let (cpu_ad, gpu_ad) = (Device::flex().autodiff(), gpu.autodiff());
    for (head, input) in [
        (BiLstmHead::Tang, BiLstmInput::Sequence),
        (BiLstmHead::MaxOverTime, BiLstmInput::Sequence),
        (BiLstmHead::Tang, BiLstmInput::Mean),
    ] {
        let config = BiLstmConfig::new(40, 5, 8, 6, head, 12, input).with_dropout(0.0);
        cpu_ad.seed(21);
        let on_cpu = config.init(&cpu_ad);
        // The same weights on wgpu: the CPU model's record loaded into a wgpu model.
        let on_gpu = config
            .init(&gpu_ad)
            .load_record(on_cpu.clone().into_record());
        assert_eq!(
            largest_diff("weights", &params_of(&on_cpu), &params_of(&on_gpu)),
            0.0
        );
        let mut logits = Vec::new();
        let mut states = Vec::new();
        let mut grads = Vec::new();
        for (model, device) in [(&on_cpu, &cpu_ad), (&on_gpu, &gpu_ad)] {
            let (tokens, mask, labels) = padded_batch(device);
            let emb = model.embedding.forward(tokens.clone());
            let (last, steps) = kdrun::models::bilstm::bilstm(
                &model.forward_lstm,
                &model.backward_lstm,
                emb,
                mask.clone(),
                true,
            );
            let steps = steps.expect("asked for every step's states");
            states.push([values(last), values(steps)]);
            let out = model.forward(tokens, mask);
            logits.push(values(out.clone()));
            let loss = kdrun::distill::cross_entropy(out, labels);
            grads.push(grads_of(model, &loss.backward()));
        }
        let what = format!("{head:?} head, {input:?} input");
        let d_logits = max_abs_diff(&logits[0], &logits[1]);
        let d_states = (0..2)
            .map(|k| max_abs_diff(&states[0][k], &states[1][k]))
            .fold(0.0, f32::max);
        let d_grads = largest_diff(&what, &grads[0], &grads[1]);
        eprintln!(
            "{what}: max abs diff logits {d_logits:.1e}, states {d_states:.1e}, gradients {d_grads:.1e}"
        );
        assert!(logits[1].iter().all(|v| v.is_finite()), "{what}");
        assert!(d_logits < PASS_TOLERANCE, "{what}: logits {d_logits}");
        assert!(d_states < PASS_TOLERANCE, "{what}: LSTM states {d_states}");
        assert!(d_grads < PASS_TOLERANCE, "{what}: gradients {d_grads}");
    }
}

/// The BiLSTM recurrence as two wgpu kernels (one launch for every step forward, one backward:
/// what `bilstm` runs on wgpu) computes what the same recurrence composed from burn's tensor
/// operations computes on wgpu: every step's states, the final ones, and the gradients of the
/// inputs and of both directions' weights, on a batch with right padding, left padding, a hole
/// and a one-token row, and a hidden size that is no power of two; in inference (no autodiff)
/// the final states alone and every step's.
#[test]
fn lstm_kernels_match_the_composed_recurrence_on_wgpu() {
    use burn::tensor::Distribution;
    use kdrun::models::bilstm::{bilstm, bilstm_composed, LstmDirection};
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    let (b, t, d, h) = (5, 9, 6, 20);
    let mut valid = vec![0f32; b * t];
    for (r, (from, to)) in [(0, 9), (0, 4), (3, 9), (2, 8), (0, 1)]
        .into_iter()
        .enumerate()
    {
        for p in from..to {
            valid[r * t + p] = 1.0;
        }
    }
    valid[3 * t + 5] = 0.0; // a hole in row 3
    let ad = gpu.clone().autodiff();
    ad.seed(3);
    let (fwd, bwd) = (LstmDirection::new(d, h, &ad), LstmDirection::new(d, h, &ad));
    let x = Tensor::<3>::random([b, t, d], Distribution::Normal(0.0, 1.0), &ad).require_grad();
    let w_steps = Tensor::<3>::random([b, t, 2 * h], Distribution::Normal(0.0, 1.0), &ad);
    let w_last = Tensor::<2>::random([b, 2 * h], Distribution::Normal(0.0, 1.0), &ad);
    let mask = Tensor::<2>::from_data(TensorData::new(valid.clone(), [b, t]), &ad);
    let mut runs = Vec::new();
    for kernels in [true, false] {
        let lstm = if kernels { bilstm } else { bilstm_composed };
        let (last, steps) = lstm(&fwd, &bwd, x.clone(), mask.clone(), true);
        let steps = steps.expect("every step's states");
        let loss = (steps.clone() * w_steps.clone()).sum() + (last.clone() * w_last.clone()).sum();
        let grads = loss.backward();
        let mut g = grads_of(&fwd, &grads);
        g.extend(
            grads_of(&bwd, &grads)
                .into_iter()
                .map(|(n, v)| (format!("bwd.{n}"), v)),
        );
        g.push((
            "x".into(),
            values(x.grad(&grads).expect("the input's gradient")),
        ));
        runs.push((values(last), values(steps), g));
    }
    let d_last = max_abs_diff(&runs[0].0, &runs[1].0);
    let d_steps = max_abs_diff(&runs[0].1, &runs[1].1);
    let d_grads = largest_diff("lstm", &runs[0].2, &runs[1].2);
    eprintln!(
        "kernels vs composed: last {d_last:.1e}, steps {d_steps:.1e}, gradients {d_grads:.1e}"
    );
    assert!(runs[0]
        .2
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
    assert!(runs[0].2.iter().any(|(_, v)| v.iter().any(|&x| x != 0.0)));
    assert!(d_last < PASS_TOLERANCE, "final states {d_last}");
    assert!(d_steps < PASS_TOLERANCE, "step states {d_steps}");
    assert!(d_grads < PASS_TOLERANCE, "gradients {d_grads}");

    // Inference: the same weights without autodiff.
    let (fwd, bwd) = (fwd.valid(), bwd.valid());
    let x = Tensor::<3>::from_data(x.into_data(), &gpu);
    let mask = Tensor::<2>::from_data(TensorData::new(valid, [b, t]), &gpu);
    let (last_c, steps_c) = bilstm_composed(&fwd, &bwd, x.clone(), mask.clone(), true);
    for keep_steps in [false, true] {
        let (last, steps) = bilstm(&fwd, &bwd, x.clone(), mask.clone(), keep_steps);
        let d = max_abs_diff(&values(last), &values(last_c.clone()));
        assert!(
            d < PASS_TOLERANCE,
            "inference, keep_steps {keep_steps}: final states {d}"
        );
        if let Some(steps) = steps {
            let d = max_abs_diff(&values(steps), &values(steps_c.clone().unwrap()));
            assert!(d < PASS_TOLERANCE, "inference: step states {d}");
        }
    }
}

/// kdrun's AdamW step on wgpu (one kernel launch per tensor, two for a large one) computes what
/// burn's AdamW with its per-tensor gradient clipping computes on wgpu: the parameter and both
/// moments over several steps, for a tensor one workgroup updates alone and one larger than that,
/// with gradients that get clipped and gradients that do not, with and without clipping and
/// weight decay.
#[test]
fn adamw_kernels_match_burns_adamw_on_wgpu() {
    use burn::grad_clipping::GradientClipping;
    use burn::optim::{AdamWConfig, Optimizer};
    use burn::tensor::Distribution;
    use kdrun::train::adamw::FusedAdamW;
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    gpu.seed(11);
    for (clip, decay) in [(Some(1.0f32), 0.01f32), (None, 0.0)] {
        for n in [1_000usize, 70_000 + 7] {
            let fused = FusedAdamW::new(1e-8, decay, clip);
            let burn = AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .build();
            let start = Tensor::<1>::random([n], Distribution::Normal(0.0, 1.0), &gpu);
            let (mut ours, mut theirs) = (start.clone(), start.clone());
            let (mut state_ours, mut state_theirs) = (None, None);
            let mut clipped = 0;
            for step in 0..4 {
                // Gradients of norm about 0.1 · √n / 30 and 10 · √n: clipped and not.
                let scale = if step % 2 == 0 { 0.1 / 30.0 } else { 10.0 };
                let grad = Tensor::<1>::random([n], Distribution::Normal(0.0, scale), &gpu);
                let norm = values(grad.clone().powf_scalar(2.0).sum().sqrt())[0];
                if clip.is_some_and(|c| norm > c) {
                    clipped += 1;
                }
                let lr = 1e-2 * (1 + step) as f64;
                let (p, st) = fused.step(lr, ours, grad.clone(), state_ours);
                (ours, state_ours) = (p, st);
                let grad = match clip {
                    Some(c) => GradientClipping::Norm(c).clip_gradient(grad),
                    None => grad,
                };
                let (p, st) = burn.step(lr, theirs, grad, state_theirs);
                (theirs, state_theirs) = (p, st);
                let what = format!("clip {clip:?}, {n} elements, step {step}");
                let d = max_abs_diff(&values(ours.clone()), &values(theirs.clone()));
                let (a, b) = (
                    state_ours.as_ref().unwrap().momentum.clone(),
                    state_theirs.as_ref().unwrap().momentum.clone(),
                );
                let d1 = max_abs_diff(&values(a.moment_1), &values(b.moment_1));
                let d2 = max_abs_diff(&values(a.moment_2), &values(b.moment_2));
                assert!(d <= 1e-5, "{what}: parameters differ by {d}");
                assert!(
                    d1 <= 1e-5 && d2 <= 1e-4,
                    "{what}: moments differ by {d1}, {d2}"
                );
            }
            let moved = max_abs_diff(&values(ours), &values(start));
            assert!(
                moved > 1e-3,
                "the steps moved the parameter by {moved} only"
            );
            if clip.is_some() {
                assert_eq!(clipped, 2, "every other step clipped ({n} elements)");
            }
        }
    }
}

/// Layer normalization on wgpu as kdrun's kernels (one launch forward, two backward) computes
/// what burn's `LayerNorm::forward` computes on wgpu: the output and the gradients of the input,
/// γ and β, for a last dimension under a workgroup's 256 units and one over it, with and without
/// β, and the output without autodiff.
#[test]
fn layer_norm_kernels_match_burns_layer_on_wgpu() {
    use burn::module::Param;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Distribution;
    use kdrun::models::ops::layer_norm::layer_norm;
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    let ad = gpu.clone().autodiff();
    ad.seed(9);
    for (d, bias) in [(20, true), (300, true), (20, false)] {
        let mut layer = LayerNormConfig::new(d).with_bias(bias).init(&ad);
        let random = |shift: f64| {
            let v = Tensor::<1>::random([d], Distribution::Normal(shift, 0.5), &ad);
            Param::from_tensor(v)
        };
        layer.gamma = random(1.0);
        layer.beta = bias.then(|| random(0.0));
        let x = Tensor::<3>::random([3, 7, d], Distribution::Normal(0.5, 2.0), &ad).require_grad();
        let w = Tensor::<3>::random([3, 7, d], Distribution::Normal(0.0, 1.0), &ad);
        let mut runs = Vec::new();
        for ours in [true, false] {
            let y = if ours {
                layer_norm(&layer, x.clone())
            } else {
                layer.forward(x.clone())
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            let mut g = vec![
                values(x.grad(&grads).unwrap()),
                values(layer.gamma.val().grad(&grads).unwrap()),
            ];
            if let Some(beta) = &layer.beta {
                g.push(values(beta.val().grad(&grads).unwrap()));
            }
            runs.push((values(y), g));
        }
        let what = format!("d {d}, bias {bias}");
        let d_out = max_abs_diff(&runs[0].0, &runs[1].0);
        assert!(d_out < PASS_TOLERANCE, "{what}: outputs differ by {d_out}");
        for (k, (a, b)) in runs[0].1.iter().zip(&runs[1].1).enumerate() {
            let diff = max_abs_diff(a, b);
            assert!(a.iter().any(|&v| v != 0.0), "{what}: gradient {k} is zero");
            assert!(
                diff < PASS_TOLERANCE,
                "{what}: gradient {k} differs by {diff}"
            );
        }
        let layer = layer.valid();
        let x = Tensor::<3>::from_data(x.into_data(), &gpu);
        let diff = max_abs_diff(
            &values(layer_norm(&layer, x.clone())),
            &values(layer.forward(x)),
        );
        assert!(
            diff < PASS_TOLERANCE,
            "{what}, inference: outputs differ by {diff}"
        );
    }
}

/// Self-attention on wgpu as kdrun's kernels (one launch forward, two backward) computes what
/// burn's composition computes on wgpu without dropout, and with dropout what the CPU operation
/// computes from the same key (the same Philox masks): the context and the gradients of q, k and
/// v, with padded keys, a length that is no power of two and one longer than a workgroup.
#[test]
fn attention_kernels_match_the_composition_and_the_cpu_operation() {
    use burn::nn::DropoutConfig;
    use burn::tensor::Distribution;
    use kdrun::models::ops::attention::{attention_composed, AttentionBackend};
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    let fused = |q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, bias: Tensor<4>, heads, p, key| {
        Tensor::<3>::from_dispatch(
            <burn::backend::Dispatch as AttentionBackend>::fused_attention(
                q.into_dispatch(),
                k.into_dispatch(),
                v.into_dispatch(),
                bias.into_dispatch(),
                heads,
                p,
                key,
            ),
        )
    };
    let cpu = Device::flex();
    cpu.seed(4);
    for (b, t, hidden, heads) in [(2, 7, 12, 3), (2, 70, 16, 2)] {
        let data = |shape: [usize; 3]| {
            Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &cpu).into_data()
        };
        let (q, k, v, w) = (
            data([b, t, hidden]),
            data([b, t, hidden]),
            data([b, t, hidden]),
            data([b, t, hidden]),
        );
        // The last three keys of the second sequence are padding.
        let mut bias = vec![0f32; b * t];
        for p in t - 3..t {
            bias[t + p] = -1e4;
        }
        let run = |device: &Device, how: &str, p: f64| {
            let on = |d: &TensorData| Tensor::<3>::from_data(d.clone(), device).require_grad();
            let (q, k, v) = (on(&q), on(&k), on(&v));
            let mask = Tensor::<4>::from_data(TensorData::new(bias.clone(), [b, 1, 1, t]), device);
            let out = match how {
                "composed" => {
                    let dropout = DropoutConfig::new(0.0).init();
                    attention_composed(q.clone(), k.clone(), v.clone(), mask, heads, &dropout)
                }
                _ => fused(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    mask,
                    heads,
                    p,
                    0x5eed_1234_abcd,
                ),
            };
            let w = Tensor::<3>::from_data(w.clone(), device);
            let grads = (out.clone() * w).sum().backward();
            let g = |x: &Tensor<3>| values(x.grad(&grads).expect("a gradient"));
            (values(out), [g(&q), g(&k), g(&v)])
        };
        let ad = gpu.clone().autodiff();
        let compare = |what: &str, a: &(Vec<f32>, [Vec<f32>; 3]), z: &(Vec<f32>, [Vec<f32>; 3])| {
            let d = max_abs_diff(&a.0, &z.0);
            assert!(d < PASS_TOLERANCE, "{what}: contexts differ by {d}");
            for (i, (x, y)) in a.1.iter().zip(&z.1).enumerate() {
                let d = max_abs_diff(x, y);
                assert!(x.iter().any(|&v| v != 0.0), "{what}: gradient {i} is zero");
                assert!(d < PASS_TOLERANCE, "{what}: gradient {i} differs by {d}");
            }
        };
        let what = format!("b {b}, t {t}, hidden {hidden}, heads {heads}");
        compare(&what, &run(&ad, "kernels", 0.0), &run(&ad, "composed", 0.0));
        let dropped = run(&ad, "kernels", 0.25);
        compare(
            &format!("{what}, dropout"),
            &dropped,
            &run(&cpu.clone().autodiff(), "cpu", 0.25),
        );
        let zeros = |v: &[f32]| v.iter().filter(|&&x| x == 0.0).count();
        assert!(
            max_abs_diff(&dropped.0, &run(&ad, "kernels", 0.0).0) > 1e-3,
            "{what}: dropout changed nothing ({} zeros)",
            zeros(&dropped.0)
        );
    }
}

// 3. Training steps.

/// `recipes/quick.toml` with dropout off (its masks are drawn by each backend's own generator).
fn quick_recipe(store: &Path) -> Recipe {
    let mut r = kdrun::recipe::load_with_env(&root().join("recipes/quick.toml"), &[], false)
        .unwrap()
        .recipe;
    r.teacher.dropout = 0.0;
    r.student.dropout = 0.0;
    r.runtime.store = store.to_path_buf();
    r
}

/// Train `model` with `loss` (as `fit` does) and every step's loss.
fn fit_recording<M, L>(
    model: M,
    items: (&kdrun::data::Batcher, &[Encoded], &[Encoded]),
    device: &Device,
    settings: &FitSettings,
    loss: L,
) -> (M, Vec<f32>)
where
    M: Classifier,
    L: Fn(&M, &kdrun::data::TokenBatch) -> Tensor<1>,
{
    let losses = RefCell::new(Vec::new());
    let fitted = fit(
        model,
        items.0,
        items.1,
        items.2,
        device,
        settings,
        |m, b| {
            let value = loss(m, b);
            losses.borrow_mut().push(value.clone().into_scalar::<f32>());
            Ok(value)
        },
    )
    .unwrap();
    (fitted.model, losses.into_inner())
}

fn compare_training(
    what: &str,
    cpu: (&[(String, Vec<f32>)], &[f32]),
    gpu: (&[(String, Vec<f32>)], &[f32]),
) {
    let d_params = largest_diff(what, cpu.0, gpu.0);
    let d_losses = max_abs_diff(cpu.1, gpu.1);
    eprintln!(
        "{what}: {} steps, max abs diff parameters {d_params:.1e}, losses {d_losses:.1e}",
        cpu.1.len()
    );
    assert!(!cpu.1.is_empty());
    assert!(d_params < TRAIN_TOLERANCE, "{what}: parameters {d_params}");
    assert!(d_losses < TRAIN_TOLERANCE, "{what}: losses {d_losses}");
}

#[test]
fn teacher_and_students_train_as_on_the_cpu_backend() {
    let _serial = serial();
    let Some(gpu) = gpu() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = quick_recipe(&tmp.path().join("runs"));
    let cpu = backend::cpu();
    let stages = Stages::new(&r.runtime.store);
    let cx = Context::new(&r, &cpu, &stages);
    let (cpu_ad, gpu_ad) = (Device::flex().autodiff(), gpu.autodiff());

    // The teacher (BERT from scratch), fine-tuned for the recipe's epochs.
    let setup = cx.setup().unwrap();
    let t = cx.teacher_inputs().unwrap();
    cpu_ad.seed(r.runtime.seed);
    let start = setup.config.init_classifier(&cpu_ad);
    let on_gpu = setup
        .config
        .init_classifier(&gpu_ad)
        .load_record(start.clone().into_record());
    let settings =
        kdrun::train::teacher::fit_settings("teacher", r.teacher.optim(), r.runtime.seed);
    let ce = |m: &kdrun::models::TeacherModel, b: &kdrun::data::TokenBatch| {
        kdrun::distill::cross_entropy(m.logits(b), b.labels.clone())
    };
    let items = (&t.batcher, &t.train[..], &t.valid[..]);
    let (teacher_cpu, loss_cpu) = fit_recording(start, items, &cpu_ad, &settings, ce);
    let (teacher_gpu, loss_gpu) = fit_recording(on_gpu, items, &gpu_ad, &settings, ce);
    compare_training(
        "teacher",
        (&params_of(&teacher_cpu), &loss_cpu),
        (&params_of(&teacher_gpu), &loss_gpu),
    );

    // The students: alone (hard labels) and distilled (the recipe's KL loss against the CPU
    // teacher's logits, the same rows on both backends).
    let s = cx.student_inputs().unwrap();
    let logits = TeacherLogits::compute(
        &teacher_cpu.valid(),
        &t.batcher,
        &t.train,
        64,
        &Device::flex(),
    )
    .unwrap();
    let (init, _) = cx.student_init().unwrap();
    for (name, loss) in [
        ("student", DistillLoss::hard_only()),
        ("distilled", DistillLoss::new(&r.distill, r.soft_targets())),
    ] {
        let settings = kdrun::train::student::fit_settings(name, r.student.optim(), r.runtime.seed);
        cpu_ad.seed(r.runtime.seed.wrapping_add(1));
        let start = init.model(&r.student, &cpu_ad);
        let on_gpu = init
            .model(&r.student, &gpu_ad)
            .load_record(start.clone().into_record());
        let mut runs = Vec::new();
        for (model, device) in [(start, &cpu_ad), (on_gpu, &gpu_ad)] {
            let (trained, losses) = fit_recording(
                model,
                (&s.batcher, &s.train, &s.valid),
                device,
                &settings,
                |m, b| {
                    let soft = loss
                        .needs_teacher()
                        .then(|| logits.batch(&b.ids, device).unwrap());
                    loss.forward(m.logits(b), b.labels.clone(), soft)
                },
            );
            let inner = device.clone().inner();
            let predicted = predict(&trained.valid(), &s.batcher, &s.test, 256, &inner).unwrap();
            runs.push((params_of(&trained), losses, predicted));
        }
        compare_training(name, (&runs[0].0, &runs[0].1), (&runs[1].0, &runs[1].1));
        let same = runs[0]
            .2
            .iter()
            .zip(&runs[1].2)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
            "{name}: {same} of {} test predictions equal (accuracy {:.4})",
            s.test.len(),
            accuracy(&s.test, &runs[1].2)
        );
        assert_eq!(same, s.test.len(), "{name}");
    }
}

// 4. The whole quick recipe through the binary.

/// The weights a stage stored (`file` in the stage folder the run used) loaded into `model`.
fn stored<M: Module>(model: M, results: &RunResults, stage: &str, file: &str) -> M {
    let dir = PathBuf::from(&results.stages[stage]);
    let record = ModuleRecord::load(dir.join(file)).unwrap();
    model.try_load_record(record).unwrap()
}

#[test]
fn quick_recipe_on_wgpu_predicts_as_the_cpu_backend_from_its_weights() {
    let _serial = serial();
    if gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("runs");
    let reports = tmp.path().join("reports");
    let out = common::kdrun()
        .args(["recipes/quick.toml", "--backend", "wgpu", "--set"])
        .arg(format!("runtime.store={}", store.display()))
        .arg("--set")
        .arg(format!("report.dir={}", reports.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(reports.join("quick/index.html").is_file());
    // Compiled kernels and autotune results are kept in the store, and the run says where.
    let cache = store.join("cubecl");
    assert!(
        stderr.contains(&format!(
            "wgpu kernel and autotune cache: {}",
            cache.display()
        )),
        "{stderr}"
    );
    let cached: u64 = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .map(|f| f.unwrap().metadata().unwrap().len())
        .sum();
    assert!(cached > 0, "{} holds no cache", cache.display());
    let run = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let results = RunResults::load(&run.join("results.json")).unwrap();
    assert_eq!(results.backend, "wgpu");
    // The three networks and the linear baseline.
    assert_eq!(results.models.len(), 4);

    // The CPU backend, from the weights the wgpu run stored, on the same inputs.
    let r = quick_recipe(&store);
    let cpu = backend::cpu();
    let stages = Stages::new(&store);
    let cx = Context::new(&r, &cpu, &stages);
    let flex = Device::flex();
    let t = cx.teacher_inputs().unwrap();
    let s = cx.student_inputs().unwrap();
    let student_config = kdrun::train::student::bilstm_config(
        &r.student,
        cx.student_vocab().unwrap().len(),
        cx.data().unwrap().classes.len(),
    );
    for m in &results.models {
        let predicted = match m.key.as_str() {
            "teacher" => {
                let model = cx.setup().unwrap().config.init_classifier(&flex);
                let model = stored(model, &results, "teacher", "teacher.bpk");
                predict(&model, &t.batcher, &t.test, 256, &flex).unwrap()
            }
            // The linear baseline runs on the CPU whatever the backend: from its stored file.
            "baseline" => {
                let dir = PathBuf::from(&results.stages["baseline"]);
                let model =
                    kdrun::models::linear::LinearModel::load(&dir.join("linear.safetensors"))
                        .unwrap();
                let data = cx.data().unwrap();
                let texts: Vec<&str> = data.test.iter().map(|e| e.text.as_str()).collect();
                model.predict(&texts)
            }
            key => {
                let model = stored(student_config.init(&flex), &results, key, "student.bpk");
                predict(&model, &s.batcher, &s.test, 256, &flex).unwrap()
            }
        };
        let same = predicted
            .iter()
            .zip(&m.predictions)
            .filter(|(a, b)| a == b)
            .count();
        let acc = m.report.accuracy;
        eprintln!(
            "{}: wgpu accuracy {acc:.4}; the CPU backend predicts {same} of {} test examples alike",
            m.label,
            predicted.len()
        );
        assert!(acc.is_finite() && (0.0..=1.0).contains(&acc), "{}", m.label);
        assert_eq!(same, predicted.len(), "{}", m.label);
        assert!(
            (acc - accuracy(&s.test, &m.predictions)).abs() < 1e-12,
            "{}",
            m.label
        );
    }
}

// 5. `auto` and software adapters.

#[test]
fn auto_prefers_the_cpu_backend_over_a_software_adapter() {
    let _serial = serial();
    if gpu().is_none() {
        return;
    }
    let info = backend::probe_child(&PathBuf::from(env!("CARGO_BIN_EXE_kdrun"))).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("runs");
    let out = common::kdrun()
        .args(["recipes/quick.toml", "--backend", "auto", "--set"])
        .arg(format!("runtime.store={}", store.display()))
        .arg("--set")
        .arg(format!(
            "report.dir={}",
            tmp.path().join("reports").display()
        ))
        .args(["--set", "teacher.epochs=1", "--set", "student.epochs=1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(store.join("quick"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let results = RunResults::load(&run.join("results.json")).unwrap();
    if info.is_hardware() {
        assert_eq!(results.backend, "wgpu", "{}", results.backend_reason);
    } else {
        assert!(
            results.backend.starts_with("cpu"),
            "{}: {}",
            results.backend,
            results.backend_reason
        );
        assert!(
            results.backend_reason.contains(&info.name)
                && results.backend_reason.contains("not a hardware GPU"),
            "{}",
            results.backend_reason
        );
    }
}

/// `kdrun bench` counts the kernels wgpu launches in one iteration (a cubecl launch observer):
/// a positive count, the same for the same step twice; for the student's inference and training
/// step the same at 12 and at 24 tokens (the recurrence is one launch forward and one backward,
/// whatever the length); no count on the CPU backend, which launches no kernels.
#[test]
fn bench_counts_kernel_launches_on_wgpu() {
    let _serial = serial();
    use kdrun::bench::{run_workload, workloads, Policy};
    let recipe = Recipe::default();
    let policy = Policy::new(false, true);
    let all = workloads(&recipe, false, true);
    let student = |name: &str| {
        all.iter()
            .find(|w| w.name == name)
            .cloned()
            .expect("the default student's workloads")
    };
    let cpu = backend::select(BackendChoice::Cpu, &Probe::Skip).unwrap();
    let on_cpu = run_workload(&student("default-bilstm/infer"), &recipe, &cpu, &policy).unwrap();
    assert_eq!(on_cpu.launches, None, "{on_cpu:?}");
    let Some(wgpu) = gpu_compute() else {
        return;
    };
    for name in ["default-bilstm/infer", "default-bilstm/train"] {
        let mut per_length = Vec::new();
        for tokens in [12, 24] {
            let w = kdrun::bench::Workload {
                tokens,
                ..student(name)
            };
            let counts: Vec<Option<usize>> = (0..2)
                .map(|_| run_workload(&w, &recipe, wgpu, &policy).unwrap().launches)
                .collect();
            eprintln!("{name}, {tokens} tokens: {counts:?} launches");
            assert!(matches!(counts[0], Some(n) if n > 0), "{counts:?}");
            assert_eq!(counts[0], counts[1], "{name}, {tokens} tokens");
            per_length.push(counts[0]);
        }
        assert_eq!(per_length[0], per_length[1], "{name}: 12 vs 24 tokens");
    }
}
