//! Initialising, loading and exporting XLNet models over the skeletons of [`super::skeleton`],
//! through `models::hf::tree` with [`XLNET_NAMES`] (as BERT). Loading takes transformers' state
//! dicts (`model.safetensors` or `pytorch_model.bin` through [`Weights`]) of `XLNetModel` (no
//! prefix), `XLNetForSequenceClassification` and `XLNetLMHeadModel` (`transformer.` prefix); a
//! missing, mis-shaped or unexpected tensor is an error that names it.

use super::heads::{XlnetForSequenceClassification, XlnetLmHeadModel};
use super::layer::XlnetModel;
use super::skeleton::XLNET_NAMES;
use super::XlnetConfig;
use crate::models::hf::tree;
use crate::models::hf::Weights;
use anyhow::{anyhow, bail, Result};
use burn::tensor::Device;
use std::path::Path;

pub use tree::Tensors;

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

/// A model's state dict under transformers' XLNet names (no prefix).
fn hf_tensors<M: burn::module::Module>(m: &M) -> Result<Tensors> {
    let mut out = Tensors::new();
    tree::export(m, &XLNET_NAMES, "", &mut out)?;
    Ok(out)
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
    /// The parameters of `m` for which `select` holds (burn paths) drawn as transformers' XLNet
    /// `_init_weights` draws them, in the order of the tree.
    fn draw<M: burn::module::Module>(
        &self,
        m: M,
        select: &dyn Fn(&str) -> bool,
        device: &Device,
    ) -> M {
        tree::init(m, self.initializer_range, select, device)
    }

    pub fn init_model(&self, device: &Device) -> XlnetModel {
        self.draw(self.skeleton_model(device), &|_| true, device)
    }

    pub fn init_classifier(&self, device: &Device) -> XlnetForSequenceClassification {
        self.draw(self.skeleton_classifier(device), &|_| true, device)
    }

    pub fn init_lm(&self, device: &Device) -> XlnetLmHeadModel {
        self.draw(self.skeleton_lm(device), &|_| true, device)
    }
}

/// `m` with the parameters `fresh` selects drawn anew and every other one read from `w` under
/// `prefix`.
fn fill<M: burn::module::Module>(
    c: &XlnetConfig,
    m: M,
    w: &Weights,
    prefix: &str,
    fresh: &dyn Fn(&str) -> bool,
    device: &Device,
) -> Result<M> {
    let m = c.draw(m, fresh, device);
    tree::load(m, w, &XLNET_NAMES, prefix, fresh, device)
}

impl XlnetModel {
    /// The body of any XLNet checkpoint (heads are skipped, and said so in the notes).
    pub fn load(c: &XlnetConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        let m = fill(
            c,
            c.skeleton_model(device),
            w,
            body_prefix(w),
            &|_| false,
            device,
        )?;
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
        hf_tensors(self)
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
        let mut m = c.skeleton_classifier(device);
        m.transformer = fill(c, m.transformer, w, body_prefix(w), &|_| false, device)?;
        let summary = "sequence_summary.";
        m.sequence_summary = fill(c, m.sequence_summary, w, summary, &|_| new_head, device)?;
        let relabelled = new_head || relabel;
        m.logits_proj = fill(c, m.logits_proj, w, "logits_proj.", &|_| relabelled, device)?;
        let mut notes = Vec::new();
        if new_head {
            let mut drawn = tree::names(&m.sequence_summary, &XLNET_NAMES, summary);
            drawn.extend(tree::names(&m.logits_proj, &XLNET_NAMES, "logits_proj."));
            notes.push(format!(
                "no classification head in the checkpoint: initialised anew {}",
                drawn.join(", ")
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
        let head = |path: &str| !path.starts_with("transformer.");
        let mut m = c.draw(c.skeleton_classifier(device), &head, device);
        m.transformer = transformer;
        m
    }

    /// `XLNetForSequenceClassification`'s state dict.
    pub fn hf_tensors(&self) -> Result<Tensors> {
        hf_tensors(self)
    }
}

impl XlnetLmHeadModel {
    /// The body and the LM head. A checkpoint without `lm_loss.bias` gets a zero bias (noted);
    /// a stored `lm_loss.weight` must equal the word embedding (tied).
    pub fn load(c: &XlnetConfig, w: &Weights, device: &Device) -> Result<(Self, Vec<String>)> {
        let new_head = !w.contains("lm_loss.bias");
        let mut m = c.skeleton_lm(device);
        m.transformer = fill(c, m.transformer, w, body_prefix(w), &|_| false, device)?;
        m.lm_loss = fill(c, m.lm_loss, w, "lm_loss.", &|_| new_head, device)?;
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
        hf_tensors(self)
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
