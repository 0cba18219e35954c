//! A model's tensors by Hugging Face name, read off the burn module tree itself. Every parameter
//! has a path made of its fields' names (`encoder.layer.3.attention.self_attn.query.weight`); one
//! table per architecture ([`HfNames`]) says how such a path reads in a checkpoint
//! (`encoder.layer.3.attention.self.query.weight`). So a model's tree is written once — its
//! modules and their `init` — and loading ([`load`]) and export ([`export`]) follow it. PyTorch
//! keeps a `Linear` weight as `[out, in]`, burn as `[in, out]`: both directions transpose it.
//! A tree built of lazy, unfilled parameters (a skeleton) is filled either from a checkpoint or,
//! as transformers' `_init_weights` does, by [`init`].

use super::{RawTensor, Weights};
use anyhow::{anyhow, bail, Result};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor};
use std::collections::BTreeMap;

/// A model's tensors by Hugging Face name.
pub type Tensors = BTreeMap<String, RawTensor>;

/// How an architecture's parameter paths read in its Hugging Face checkpoints.
pub struct HfNames {
    /// Replacements applied in order to a burn path (`self_attn.` → `self.`).
    pub renames: &'static [(&'static str, &'static str)],
    /// Older spellings a checkpoint may use instead (suffix → suffix, e.g. `LayerNorm.weight` →
    /// `LayerNorm.gamma`), tried when the first name is absent.
    pub aliases: &'static [(&'static str, &'static str)],
}

impl HfNames {
    /// The Hugging Face name of a burn parameter path.
    pub fn hf(&self, path: &str) -> String {
        self.renames
            .iter()
            .fold(path.to_string(), |p, (from, to)| p.replace(from, to))
    }

    /// `name` and its older spellings.
    fn candidates(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        for (suffix, alias) in self.aliases {
            if let Some(stem) = name.strip_suffix(suffix) {
                out.push(format!("{stem}{alias}"));
            }
        }
        out
    }
}

/// Where a traversal is: the path of fields and the types of the modules around it.
#[derive(Default)]
struct Cursor {
    path: Vec<String>,
    containers: Vec<String>,
}

impl Cursor {
    fn enter(&mut self, name: &str, container: &str) {
        self.path.push(name.to_string());
        self.containers.push(container.to_string());
    }

    fn exit(&mut self) {
        self.path.pop();
        self.containers.pop();
    }

    fn path(&self) -> String {
        self.path.join(".")
    }

    /// A `Linear` layer's weight (transposed between burn and PyTorch).
    fn linear_weight(&self) -> bool {
        self.containers.last().is_some_and(|c| c == "Struct:Linear")
            && self.path.last().is_some_and(|p| p == "weight")
    }
}

struct Exporter<'a> {
    names: &'a HfNames,
    prefix: &'a str,
    at: Cursor,
    out: Tensors,
    error: Option<anyhow::Error>,
}

impl ModuleVisitor for Exporter<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut t = param.val();
        if self.at.linear_weight() {
            t = t.transpose();
        }
        let shape = t.dims().to_vec();
        match t.into_data().convert::<f32>().try_to_vec::<f32>() {
            Ok(data) => {
                let name = format!("{}{}", self.prefix, self.names.hf(&self.at.path()));
                self.out.insert(name, RawTensor { shape, data });
            }
            Err(e) => {
                self.error
                    .get_or_insert_with(|| anyhow!("cannot read a tensor for export: {e:?}"));
            }
        }
    }
}

/// Every parameter of `model` by its Hugging Face name, under `prefix` (`bert.`), in PyTorch's
/// layout.
pub fn export<M: Module>(
    model: &M,
    names: &HfNames,
    prefix: &str,
    out: &mut Tensors,
) -> Result<()> {
    let mut e = Exporter {
        names,
        prefix,
        at: Cursor::default(),
        out: Tensors::new(),
        error: None,
    };
    model.visit(&mut e);
    if let Some(err) = e.error {
        return Err(err);
    }
    out.extend(e.out);
    Ok(())
}

struct Namer<'a> {
    names: &'a HfNames,
    prefix: &'a str,
    at: Cursor,
    out: Vec<String>,
}

impl ModuleVisitor for Namer<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        let name = format!("{}{}", self.prefix, self.names.hf(&self.at.path()));
        self.out.push(name);
    }
}

/// The Hugging Face names of `model`'s parameters under `prefix`, in the order of the tree (no
/// tensor is read).
pub fn names<M: Module>(model: &M, names: &HfNames, prefix: &str) -> Vec<String> {
    let mut n = Namer {
        names,
        prefix,
        at: Cursor::default(),
        out: Vec::new(),
    };
    model.visit(&mut n);
    n.out
}

struct Loader<'a> {
    names: &'a HfNames,
    prefix: &'a str,
    weights: &'a Weights,
    keep: &'a dyn Fn(&str) -> bool,
    device: Device,
    at: Cursor,
    errors: Vec<String>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.at.path();
        if (self.keep)(&path) {
            return param;
        }
        let transposed = self.at.linear_weight();
        let mut shape: [usize; D] = param.lazy_shape().dims();
        if transposed {
            shape.swap(D - 2, D - 1);
        }
        let name = format!("{}{}", self.prefix, self.names.hf(&path));
        let found = self
            .names
            .candidates(&name)
            .into_iter()
            .find(|n| self.weights.contains(n))
            .unwrap_or(name);
        match self.weights.tensor(&found, shape, &self.device) {
            Ok(t) => Param::from_tensor(if transposed { t.transpose() } else { t }),
            Err(e) => {
                self.errors.push(e.to_string());
                param
            }
        }
    }
}

/// `model` with every parameter read from `weights` by its Hugging Face name under `prefix`,
/// except those whose burn path `keep` holds (they stay as initialized). A missing or
/// mis-shaped tensor is an error naming it (all of them, one per line).
pub fn load<M: Module>(
    model: M,
    weights: &Weights,
    names: &HfNames,
    prefix: &str,
    keep: &dyn Fn(&str) -> bool,
    device: &Device,
) -> Result<M> {
    let mut l = Loader {
        names,
        prefix,
        weights,
        keep,
        device: device.clone(),
        at: Cursor::default(),
        errors: Vec::new(),
    };
    let model = model.map(&mut l);
    if !l.errors.is_empty() {
        bail!("{}", l.errors.join("\n"));
    }
    Ok(model)
}

struct Initializer<'a> {
    std: f64,
    select: &'a dyn Fn(&str) -> bool,
    device: Device,
    at: Cursor,
}

impl ModuleMapper for Initializer<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.at.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !(self.select)(&self.at.path()) {
            return param;
        }
        let shape: [usize; D] = param.lazy_shape().dims();
        let t = match self.at.path.last().map(String::as_str) {
            Some("bias" | "beta") => Tensor::zeros(shape, &self.device),
            Some("gamma") => Tensor::ones(shape, &self.device),
            _ => Tensor::random(shape, Distribution::Normal(0.0, self.std), &self.device),
        };
        Param::from_tensor(t)
    }
}

/// `model` with the parameters whose burn path `select` holds drawn anew, one after the other in
/// the order of the tree, as transformers' `_init_weights` draws them: a `bias` (of a `Linear`,
/// a head) and LayerNorm's `beta` zeros, LayerNorm's `gamma` ones, every other parameter (weights,
/// embeddings, free tensors such as XLNet's `q`/`r_w_bias`/`mask_emb`) `N(0, std²)`.
pub fn init<M: Module>(model: M, std: f64, select: &dyn Fn(&str) -> bool, device: &Device) -> M {
    model.map(&mut Initializer {
        std,
        select,
        device: device.clone(),
        at: Cursor::default(),
    })
}
