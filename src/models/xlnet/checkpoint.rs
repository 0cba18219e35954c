//! Initialising, loading and exporting XLNet models: three visitors over the module tree of
//! [`super::params`]. Loading takes transformers' state dicts (`model.safetensors` or
//! `pytorch_model.bin` through [`Weights`]) of `XLNetModel` (no prefix),
//! `XLNetForSequenceClassification` and `XLNetLMHeadModel` (`transformer.` prefix); a missing,
//! mis-shaped or unexpected tensor is an error that names it.

use super::heads::{XlnetForSequenceClassification, XlnetLmHeadModel};
use super::layer::XlnetModel;
use super::params::{Entry, Init, Layout, Slot};
use super::XlnetConfig;
use crate::models::hf::{RawTensor, Weights};
use anyhow::{anyhow, bail, Result};
use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Tensors by Hugging Face name.
pub type Tensors = BTreeMap<String, RawTensor>;

/// Apply `$body` to the parameter of `$slot` whatever its rank (`$p` is a
/// `&mut Param<Tensor<D>>` with `D` a constant in `$body`).
macro_rules! on_slot {
    ($slot:expr, $p:ident => $body:expr) => {
        match $slot {
            Slot::D1($p) => $body,
            Slot::D2($p) => $body,
            Slot::D3($p) => $body,
        }
    };
}

fn init_param<const D: usize>(p: &mut Param<Tensor<D>>, init: Init, std: f64, device: &Device) {
    let shape: [usize; D] = p.lazy_shape().dims();
    let t = match init {
        Init::Normal => Tensor::random(shape, Distribution::Normal(0.0, std), device),
        Init::Zeros => Tensor::zeros(shape, device),
        Init::Ones => Tensor::ones(shape, device),
    };
    *p = Param::from_tensor(t);
}

fn load_param<const D: usize>(
    p: &mut Param<Tensor<D>>,
    w: &Weights,
    key: &str,
    layout: Layout,
    device: &Device,
) -> Result<()> {
    let mut shape: [usize; D] = p.lazy_shape().dims();
    if layout == Layout::Transposed {
        shape.reverse();
    }
    let t = w.tensor(key, shape, device)?;
    *p = Param::from_tensor(match layout {
        Layout::AsIs => t,
        Layout::Transposed => t.transpose(),
    });
    Ok(())
}

fn raw<const D: usize>(t: Tensor<D>) -> Result<RawTensor> {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow!("cannot read a tensor for export: {e:?}"))?;
    Ok(RawTensor { shape, data })
}

fn export_param<const D: usize>(p: &Param<Tensor<D>>, layout: Layout) -> Result<RawTensor> {
    raw(match layout {
        Layout::AsIs => p.val(),
        Layout::Transposed => p.val().transpose(),
    })
}

/// The initialising visitor: transformers' `_init_weights` with `initializer_range` `std`.
fn initializer(std: f64, device: &Device) -> impl FnMut(Entry<'_>) -> Result<()> + '_ {
    move |e: Entry<'_>| {
        on_slot!(e.slot, p => init_param(p, e.init, std, device));
        Ok(())
    }
}

/// The exporting visitor: each tensor under its Hugging Face name, in PyTorch layout.
fn exporter(out: &mut Tensors) -> impl FnMut(Entry<'_>) -> Result<()> + '_ {
    move |e: Entry<'_>| {
        let t = on_slot!(e.slot, p => export_param(p, e.layout))?;
        out.insert(e.name, t);
        Ok(())
    }
}

/// How a load treats names: `bare` strips the `transformer.` prefix (an `XLNetModel` checkpoint
/// under a task model); names for which `fresh` holds are initialised anew rather than read.
struct Loader<'a> {
    weights: &'a Weights,
    device: &'a Device,
    std: f64,
    bare: bool,
    fresh: &'a dyn Fn(&str) -> bool,
    initialised: Vec<String>,
}

impl Loader<'_> {
    fn visit(&mut self, e: Entry<'_>) -> Result<()> {
        if (self.fresh)(&e.name) {
            on_slot!(e.slot, p => init_param(p, e.init, self.std, self.device));
            self.initialised.push(e.name);
            return Ok(());
        }
        let key = match e.name.strip_prefix("transformer.") {
            Some(rest) if self.bare => rest,
            _ => e.name.as_str(),
        };
        on_slot!(e.slot, p => load_param(p, self.weights, key, e.layout, self.device))
    }
}

/// `"transformer."` when the checkpoint's body is prefixed (task models), `""` for `XLNetModel`.
pub fn body_prefix(w: &Weights) -> &'static str {
    if w.names().any(|n| n.starts_with("transformer.")) {
        "transformer."
    } else {
        ""
    }
}

/// Skip every tensor starting with one of `heads` and say so once.
fn skip_heads(w: &Weights, heads: &[&str], why: &str, notes: &mut Vec<String>) {
    let names: Vec<String> = w
        .names()
        .filter(|n| heads.iter().any(|h| n.starts_with(h)))
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        for n in &names {
            w.skip(n);
        }
        notes.push(format!("skipped {}: {why}", names.join(", ")));
    }
}

fn check_unused(w: &Weights) -> Result<()> {
    let unused = w.unused();
    if !unused.is_empty() {
        bail!(
            "{}: {} unexpected tensor(s), not part of this XLNet model: {}",
            w.source.display(),
            unused.len(),
            unused.join(", ")
        );
    }
    Ok(())
}

const CLS_HEAD: [&str; 2] = ["sequence_summary.", "logits_proj."];

impl XlnetConfig {
    pub fn init_model(&self, device: &Device) -> XlnetModel {
        let mut m = self.skeleton_model(device);
        m.visit_params("", &mut initializer(self.initializer_range, device))
            .expect("initialisation cannot fail");
        m
    }

    pub fn init_classifier(&self, device: &Device) -> XlnetForSequenceClassification {
        let mut m = self.skeleton_classifier(device);
        m.visit_params(&mut initializer(self.initializer_range, device))
            .expect("initialisation cannot fail");
        m
    }

    pub fn init_lm(&self, device: &Device) -> XlnetLmHeadModel {
        let mut m = self.skeleton_lm(device);
        m.visit_params(&mut initializer(self.initializer_range, device))
            .expect("initialisation cannot fail");
        m
    }

    fn loader<'a>(
        &self,
        w: &'a Weights,
        device: &'a Device,
        fresh: &'a dyn Fn(&str) -> bool,
    ) -> Loader<'a> {
        Loader {
            weights: w,
            device,
            std: self.initializer_range,
            bare: body_prefix(w).is_empty(),
            fresh,
            initialised: Vec::new(),
        }
    }
}

impl XlnetModel {
    /// The body of any XLNet checkpoint (heads are skipped, and said so in the notes).
    pub fn load(c: &XlnetConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        let mut m = c.skeleton_model(device);
        let mut loader = c.loader(w, device, &|_| false);
        m.visit_params(body_prefix(w), &mut |e| loader.visit(e))?;
        let mut notes = Vec::new();
        skip_heads(
            w,
            &["sequence_summary.", "logits_proj.", "lm_loss."],
            "heads are not part of XLNetModel",
            &mut notes,
        );
        check_unused(w)?;
        Ok((m, notes))
    }

    /// `XLNetModel`'s state dict (no prefix).
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.clone().visit_params("", &mut exporter(&mut out))?;
        Ok(out)
    }
}

impl XlnetForSequenceClassification {
    /// A classifier with `config.num_labels()` classes. A checkpoint without any classification
    /// head (`XLNetModel`, `XLNetLMHeadModel`) gets a new one, initialised as transformers
    /// does; one whose `logits_proj` has another number of labels keeps its summary and gets a
    /// new `logits_proj` (both said in the notes). A partial head, or any other missing or
    /// mis-shaped tensor, is an error that names it.
    pub fn load(c: &XlnetConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        let new_head = !w.names().any(|n| CLS_HEAD.iter().any(|h| n.starts_with(h)));
        let labels = c.num_labels();
        let relabel = matches!(w.shape("logits_proj.weight"), Some([n, _]) if *n != labels);
        let fresh = move |n: &str| {
            (new_head && CLS_HEAD.iter().any(|h| n.starts_with(h)))
                || (relabel && n.starts_with("logits_proj."))
        };
        let mut m = c.skeleton_classifier(device);
        let mut loader = c.loader(w, device, &fresh);
        m.visit_params(&mut |e| loader.visit(e))?;
        let mut notes = Vec::new();
        if new_head {
            notes.push(format!(
                "no classification head in the checkpoint: initialised anew {}",
                loader.initialised.join(", ")
            ));
        }
        if relabel {
            skip_heads(
                w,
                &["logits_proj."],
                &format!(
                    "the checkpoint's labels are not the {labels} of the config; a new logits_proj is initialised"
                ),
                &mut notes,
            );
        }
        skip_heads(
            w,
            &["lm_loss."],
            "the LM head is not used by a classifier",
            &mut notes,
        );
        check_unused(w)?;
        Ok((m, notes))
    }

    /// A classifier over a (further pre-trained) body, with a new head initialised as
    /// transformers does; the body's parameters are not drawn again.
    pub fn over(c: &XlnetConfig, transformer: XlnetModel, device: &Device) -> Self {
        let mut m = c.skeleton_classifier(device);
        let mut init = initializer(c.initializer_range, device);
        m.visit_params(&mut |e: Entry<'_>| {
            if e.name.starts_with("transformer.") {
                Ok(())
            } else {
                init(e)
            }
        })
        .expect("initialisation cannot fail");
        m.transformer = transformer;
        m
    }

    /// `XLNetForSequenceClassification`'s state dict.
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.clone().visit_params(&mut exporter(&mut out))?;
        Ok(out)
    }
}

impl XlnetLmHeadModel {
    /// The body and the LM head. A checkpoint without `lm_loss.bias` gets a zero bias (noted);
    /// a stored `lm_loss.weight` must equal the word embedding (tied).
    pub fn load(c: &XlnetConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        let new_head = !w.contains("lm_loss.bias");
        let fresh = move |n: &str| new_head && n == "lm_loss.bias";
        let mut m = c.skeleton_lm(device);
        let mut loader = c.loader(w, device, &fresh);
        m.visit_params(&mut |e| loader.visit(e))?;
        let mut notes = Vec::new();
        if new_head {
            notes.push("no lm_loss.bias in the checkpoint: initialised to zeros".into());
        }
        if w.contains("lm_loss.weight") {
            let tied = w.tensor("lm_loss.weight", [c.vocab_size, c.d_model], device)?;
            let diff = (tied - m.transformer.word_embedding.weight.val())
                .abs()
                .max()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow!("{e:?}"))?[0];
            if diff != 0.0 {
                bail!(
                    "{}: lm_loss.weight differs from the word embedding (max abs diff {diff}); \
                     XLNetLMHeadModel ties them",
                    w.source.display()
                );
            }
        }
        skip_heads(
            w,
            &CLS_HEAD,
            "a classification head is not used by the LM head model",
            &mut notes,
        );
        check_unused(w)?;
        Ok((m, notes))
    }

    /// `XLNetLMHeadModel`'s state dict; the tied `lm_loss.weight` is not stored twice (as
    /// transformers saves it).
    pub fn hf_tensors(&self) -> Result<Tensors> {
        let mut out = Tensors::new();
        self.clone().visit_params(&mut exporter(&mut out))?;
        Ok(out)
    }
}

/// `config.json` and the weights of a checkpoint folder.
pub fn open_folder(dir: &Path) -> Result<(XlnetConfig, Weights)> {
    if !dir.is_dir() {
        bail!("checkpoint folder {} not found", dir.display());
    }
    Ok((
        XlnetConfig::from_file(&dir.join("config.json"))?,
        Weights::open(dir)?,
    ))
}
