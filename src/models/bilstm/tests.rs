//! The fused and CPU-operation recurrences against the reference one, with and without
//! padding, and the classifier's forward passes.

use super::*;
use burn::tensor::TensorData;

fn logits_of(model: &BiLstmClassifier, tokens: Vec<i64>, mask: Vec<f32>, t: usize) -> Vec<f32> {
    let d = Device::flex();
    let tok = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, t]), &d);
    let m = Tensor::<2>::from_data(TensorData::new(mask, [1, t]), &d);
    model
        .forward(tok, m)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}[{k}]: fused {x} vs reference {y}"
        );
    }
}

/// Every parameter's gradient of `sum(logits * weights)`, by name.
fn gradients(
    model: &BiLstmClassifier,
    logits: Tensor<2>,
    weights: Tensor<2>,
) -> Vec<(&'static str, Vec<f32>)> {
    let grads = (logits * weights).sum().backward();
    let flat = |t: Option<Tensor<2>>| values(t.expect("a gradient"));
    let bias = |l: &Linear| {
        let g = l
            .bias
            .as_ref()
            .unwrap()
            .val()
            .grad(&grads)
            .expect("a gradient");
        g.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let mut out = vec![
        ("embedding", flat(model.embedding.weight.val().grad(&grads))),
        (
            "forward.input",
            flat(model.forward_lstm.input.weight.val().grad(&grads)),
        ),
        ("forward.input.bias", bias(&model.forward_lstm.input)),
        (
            "forward.hidden",
            flat(model.forward_lstm.hidden.weight.val().grad(&grads)),
        ),
        (
            "backward.input",
            flat(model.backward_lstm.input.weight.val().grad(&grads)),
        ),
        ("backward.input.bias", bias(&model.backward_lstm.input)),
        (
            "backward.hidden",
            flat(model.backward_lstm.hidden.weight.val().grad(&grads)),
        ),
        ("out", flat(model.out.weight.val().grad(&grads))),
    ];
    if let Some(fc) = &model.fc {
        out.push(("fc", flat(fc.weight.val().grad(&grads))));
    }
    out
}

#[test]
fn fused_bilstm_equals_the_reference_recurrence() {
    // Both heads: logits and the gradients of every parameter, with padding at every step
    // (lengths 6, 4, 1, 6), at the ends only (6, 5: the middle steps skip the mask) and none.
    // Seven steps make chunks of 3, 3 and 1.
    for lengths in [[6usize, 4, 1, 6], [6, 5, 6, 5], [6; 4], [7, 2, 7, 3]] {
        fused_equals_reference(lengths);
    }
}

#[test]
fn fused_bilstm_equals_the_reference_at_the_default_recipes_sizes() {
    // recipes/tnews.toml: embeddings 128, hidden 128 per direction, fc 200, batch 64, up to
    // 48 steps; rows of every length from 1 to 48.
    let lengths: Vec<usize> = (0..64).map(|r| 1 + (r * 37) % 48).collect();
    let sizes = Sizes {
        vocab: 300,
        embedding: 128,
        hidden: 128,
        fc: 200,
    };
    fused_equals_reference_with(&lengths, sizes, 1e-5);
}

struct Sizes {
    vocab: usize,
    embedding: usize,
    hidden: usize,
    fc: usize,
}

fn fused_equals_reference(lengths: [usize; 4]) {
    let sizes = Sizes {
        vocab: 20,
        embedding: 8,
        hidden: 5,
        fc: 7,
    };
    fused_equals_reference_with(&lengths, sizes, 1e-5);
}

fn fused_equals_reference_with(lengths: &[usize], sizes: Sizes, tol: f32) {
    let (b, t, classes) = (lengths.len(), *lengths.iter().max().unwrap(), 3);
    let mut tokens = vec![0i64; b * t];
    let mut mask = vec![0f32; b * t];
    for (r, &len) in lengths.iter().enumerate() {
        for c in 0..len {
            tokens[r * t + c] = 1 + ((r * 7 + c * 3) % (sizes.vocab - 1)) as i64;
            mask[r * t + c] = 1.0;
        }
    }
    for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
        let d = Device::flex().autodiff();
        d.seed(5);
        let config = BiLstmConfig::new(
            sizes.vocab,
            classes,
            sizes.embedding,
            sizes.hidden,
            head,
            sizes.fc,
            BiLstmInput::Sequence,
        );
        let model = config.with_dropout(0.0).init(&d);
        let tok = || Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [b, t]), &d);
        let m = || Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &d);
        let weights = Tensor::<2>::from_data(
            TensorData::new(
                (0..b * classes)
                    .map(|k| 0.3 + 0.1 * (k % 13) as f32)
                    .collect(),
                [b, classes],
            ),
            &d,
        );
        let what = |x: &str| format!("{head:?} {}×{t} {x}", b);

        let fused = model.forward(tok(), m());
        let reference = model.forward_reference(tok(), m());
        assert_close(
            &what("logits"),
            &values(fused.clone()),
            &values(reference.clone()),
            tol,
        );
        let g_fused = gradients(&model, fused, weights.clone());
        let g_ref = gradients(&model, reference, weights);
        assert_eq!(g_fused.len(), g_ref.len());
        for ((name, a), (_, b)) in g_fused.iter().zip(&g_ref) {
            assert!(a.iter().any(|v| *v != 0.0), "{}: no gradient", what(name));
            assert_close(&what(&format!("{name} gradient")), a, b, tol);
        }

        // Inference (no autodiff, parts of the batch on threads) computes the same.
        let inner = d.clone().inner();
        let valid = model.valid();
        let tok_i = Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [b, t]), &inner);
        let m_i = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &inner);
        assert_close(
            &what("inference logits"),
            &values(valid.forward(tok_i.clone(), m_i.clone())),
            &values(valid.forward_reference(tok_i, m_i)),
            tol,
        );
    }
}

/// The CPU operation ([`lstm_op`], with its handwritten backward pass) against the
/// composition of tensor operations other backends run, on flex with autodiff: the final
/// states, every step's states, and the gradients of the input and of every LSTM parameter,
/// over rows of ragged lengths (one row all padding, one padded in the middle).
#[test]
fn the_cpu_recurrence_op_equals_the_composed_recurrence() {
    let (d_in, h) = (6, 5);
    let lengths = [7usize, 3, 0, 7, 1, 5];
    let (b, t) = (lengths.len(), 7);
    let mut mask = vec![0f32; b * t];
    for (r, &len) in lengths.iter().enumerate() {
        for c in 0..len {
            mask[r * t + c] = 1.0;
        }
    }
    // Row 5: a hole at position 2 (a mask the padding of a batch never makes; the
    // recurrence keeps the state there all the same).
    mask[5 * t + 2] = 0.0;
    let d = Device::flex().autodiff();
    d.seed(3);
    let fwd = LstmDirection::new(d_in, h, &d);
    let bwd = LstmDirection::new(d_in, h, &d);
    let x_values: Vec<f32> = (0..b * t * d_in)
        .map(|k| ((k * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let weights = |n: usize, k: usize| -> Vec<f32> {
        (0..n).map(|i| 0.2 + 0.1 * ((i * k) % 11) as f32).collect()
    };
    let run = |op: bool| {
        let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), [b, t, d_in]), &d)
            .require_grad();
        let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &d);
        let (last, seq) = if op {
            bilstm(&fwd, &bwd, x.clone(), m, true)
        } else {
            bilstm_composed(&fwd, &bwd, x.clone(), m, true)
        };
        let seq = seq.expect("steps");
        let w_last = Tensor::<2>::from_data(TensorData::new(weights(b * 2 * h, 3), [b, 2 * h]), &d);
        let w_seq = Tensor::<3>::from_data(
            TensorData::new(weights(b * t * 2 * h, 7), [b, t, 2 * h]),
            &d,
        );
        let loss = (last.clone() * w_last).sum() + (seq.clone() * w_seq).sum();
        let grads = loss.backward();
        let flat = |t: Tensor<2>| values(t);
        let mut out = vec![
            ("last", values(last)),
            ("steps", values(seq.reshape([b * t, 2 * h]))),
            (
                "x gradient",
                flat(x.grad(&grads).expect("x gradient").reshape([b * t, d_in])),
            ),
        ];
        for (name, dir) in [("forward", &fwd), ("backward", &bwd)] {
            let g = |p: Tensor<2>| flat(p.grad(&grads).expect("a gradient"));
            out.push((name, g(dir.input.weight.val())));
            out.push((name, g(dir.hidden.weight.val())));
            let bias = dir.input.bias.as_ref().unwrap().val();
            out.push((
                name,
                flat(bias.grad(&grads).expect("a gradient").unsqueeze()),
            ));
        }
        out
    };
    let (op, composed) = (run(true), run(false));
    for ((name, a), (_, b)) in op.iter().zip(&composed) {
        assert!(a.iter().any(|v| *v != 0.0), "{name}: all zero");
        assert_close(name, a, b, 1e-5);
    }
    // The all-padding row's final states are zero on both paths.
    assert!(op[0].1[2 * 2 * h..3 * 2 * h].iter().all(|v| *v == 0.0));

    // Inference (no autodiff: the operation projects each step itself).
    let (fwd, bwd) = (fwd.valid(), bwd.valid());
    let inner = d.clone().inner();
    let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), [b, t, d_in]), &inner);
    let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, t]), &inner);
    let (last, seq) = bilstm(&fwd, &bwd, x.clone(), m.clone(), true);
    let (last_c, seq_c) = bilstm_composed(&fwd, &bwd, x.clone(), m.clone(), true);
    assert_close(
        "inference last",
        &values(last),
        &values(last_c.clone()),
        1e-5,
    );
    let flat = |s: Option<Tensor<3>>| values(s.expect("steps").reshape([b * t, 2 * h]));
    assert_close("inference steps", &flat(seq), &flat(seq_c), 1e-5);
    // Without the steps, the operation keeps only the final states.
    let (last, seq) = bilstm(&fwd, &bwd, x, m, false);
    assert!(seq.is_none());
    assert_close(
        "inference final states only",
        &values(last),
        &values(last_c),
        1e-5,
    );
}

#[test]
fn a_new_model_starts_from_the_weights_the_reference_gives_it() {
    // burn draws a parameter's initial value when it is first read; the fused recurrence
    // reads them in the reference's order, so a seeded new model trains from the same
    // weights (and the same dropout masks) as before.
    let logits = |reference: bool| {
        let d = Device::flex().autodiff();
        d.seed(21);
        let model =
            BiLstmConfig::new(20, 3, 8, 5, BiLstmHead::Tang, 7, BiLstmInput::Sequence).init(&d);
        let tok = Tensor::<2, Int>::from_data(
            TensorData::new((0..24).map(|k| (k % 19) as i64).collect(), [4, 6]),
            &d,
        );
        let mask = Tensor::<2>::ones([4, 6], &d);
        let out = if reference {
            model.forward_reference(tok, mask)
        } else {
            model.forward(tok, mask)
        };
        values(out)
    };
    // The random state is one for the process, and other tests draw from it in parallel:
    // tries until one matches (a wrong order never does), for up to 20 s — by then the other
    // tests of the binary (about 3 s in all) have finished drawing.
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
    let start = std::time::Instant::now();
    let mut last = (logits(false), logits(true));
    while !close(&last.0, &last.1) && start.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        last = (logits(false), logits(true));
    }
    assert!(
        close(&last.0, &last.1),
        "fused vs reference first logits, last try: {last:?}"
    );
}

#[test]
fn parts_of_a_batch_compute_what_the_whole_does() {
    let d = Device::flex();
    for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
        d.seed(9);
        let model = BiLstmConfig::new(20, 3, 6, 5, head, 7, BiLstmInput::Sequence).init(&d);
        let (b, t) = (7, 5);
        let tokens: Vec<i64> = (0..b * t).map(|k| (k * 7 % 19) as i64).collect();
        // Row r has 1 + r % t tokens.
        let mask: Vec<f32> = (0..b * t)
            .map(|k| if k % t <= (k / t) % t { 1.0 } else { 0.0 })
            .collect();
        let tok = Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, t]), &d);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), &d);
        let whole = values(model.forward_in_parts(tok.clone(), mask.clone(), 1));
        let parts = values(model.forward_in_parts(tok, mask, 3));
        assert_close(&format!("{head:?}"), &parts, &whole, 1e-6);
    }
}

#[test]
fn mean_input_reads_one_step_of_the_mean_embedding() {
    let d = Device::flex();
    let model = BiLstmConfig::new(10, 2, 4, 3, BiLstmHead::Tang, 8, BiLstmInput::Mean)
        .with_dropout(0.0)
        .init(&d);
    // The mean ignores padding and order.
    let a = logits_of(&model, vec![3, 7, 0], vec![1., 1., 0.], 3);
    let b = logits_of(&model, vec![7, 3], vec![1., 1.], 2);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    assert_eq!(a.len(), 2);
}

#[test]
fn padding_does_not_change_the_output() {
    for head in [BiLstmHead::Tang, BiLstmHead::MaxOverTime] {
        let d = Device::flex();
        d.seed(11);
        let model = BiLstmConfig::new(20, 3, 6, 5, head, 32, BiLstmInput::Sequence)
            .with_dropout(0.0)
            .init(&d);
        let short = logits_of(&model, vec![3, 7, 9], vec![1.0; 3], 3);
        let padded = logits_of(
            &model,
            vec![3, 7, 9, 0, 0, 0],
            vec![1., 1., 1., 0., 0., 0.],
            6,
        );
        for (a, b) in short.iter().zip(&padded) {
            assert!((a - b).abs() < 1e-5, "{head:?}: {short:?} vs {padded:?}");
        }
        // Without the mask the padding would change the result.
        let unmasked = logits_of(&model, vec![3, 7, 9, 0, 0, 0], vec![1.0; 6], 6);
        assert!(
            short
                .iter()
                .zip(&unmasked)
                .any(|(a, b)| (a - b).abs() > 1e-4),
            "{head:?}: {short:?} vs unmasked {unmasked:?}"
        );
    }
}
