//! The tensors of a Hugging Face checkpoint, by their Hugging Face names, read from
//! `model.safetensors` or `pytorch_model.bin` into one map, so that model loaders look names up
//! in the same way whichever file a user has. Float tensors of any width (f16, bf16, f32, f64)
//! become f32; integer buffers (`embeddings.position_ids`) are kept aside.
//!
//! Lookups are recorded: after a loader is done, [`Weights::unused`] lists what it never asked
//! for, so that an unexpected tensor is an error rather than silently ignored.

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One float tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug)]
pub struct Weights {
    /// The file the tensors came from (for messages).
    pub source: PathBuf,
    tensors: BTreeMap<String, RawTensor>,
    /// Non-float tensors (names only): buffers such as `position_ids`.
    pub buffers: BTreeSet<String>,
    used: RefCell<BTreeSet<String>>,
}

/// Little-endian bytes of `dtype` to f32; `None` for non-float types.
fn floats(dtype: &str, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        "F64" => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

impl Weights {
    /// The weights of a checkpoint folder: `model.safetensors` if present, else
    /// `pytorch_model.bin`.
    pub fn open(dir: &Path) -> Result<Self> {
        let file = Self::file_in(dir)?;
        if file.extension().is_some_and(|e| e == "safetensors") {
            Self::from_safetensors(&file)
        } else {
            Self::from_pytorch(&file)
        }
    }

    /// The weights file [`Weights::open`] reads in `dir`, without reading it.
    pub fn file_in(dir: &Path) -> Result<PathBuf> {
        let st = dir.join("model.safetensors");
        let pt = dir.join("pytorch_model.bin");
        if st.is_file() {
            Ok(st)
        } else if pt.is_file() {
            Ok(pt)
        } else {
            bail!(
                "{}: no model.safetensors or pytorch_model.bin (a Hugging Face checkpoint folder holds one of them)",
                dir.display()
            )
        }
    }

    fn new(source: &Path) -> Self {
        Self {
            source: source.to_path_buf(),
            tensors: BTreeMap::new(),
            buffers: BTreeSet::new(),
            used: RefCell::new(BTreeSet::new()),
        }
    }

    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
        let mut w = Self::new(path);
        for (name, view) in st.tensors() {
            let dtype = format!("{:?}", view.dtype());
            match floats(&dtype, view.data()) {
                Some(data) => {
                    w.tensors.insert(
                        name,
                        RawTensor {
                            shape: view.shape().to_vec(),
                            data,
                        },
                    );
                }
                None => {
                    w.buffers.insert(name);
                }
            }
        }
        Ok(w)
    }

    pub fn from_pytorch(path: &Path) -> Result<Self> {
        let reader = burn::store::pytorch_reader::PytorchReader::new(path)
            .map_err(|e| anyhow!("{}: not a PyTorch checkpoint: {e}", path.display()))?;
        let mut w = Self::new(path);
        for (name, t) in reader.into_tensors() {
            let dtype = format!("{:?}", t.dtype());
            let bytes = t
                .read()
                .with_context(|| format!("{}: cannot read tensor {name}", path.display()))?;
            match floats(&dtype, &bytes) {
                Some(data) => {
                    w.tensors.insert(
                        name,
                        RawTensor {
                            shape: t.shape().to_vec(),
                            data,
                        },
                    );
                }
                None => {
                    w.buffers.insert(name);
                }
            }
        }
        Ok(w)
    }

    /// Build from tensors in memory (tests, exports).
    pub fn from_map(source: &Path, tensors: BTreeMap<String, RawTensor>) -> Self {
        let mut w = Self::new(source);
        w.tensors = tensors;
        w
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The first of `names` that exists (legacy names such as `LayerNorm.gamma` as fallbacks).
    pub fn first_of<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names.iter().copied().find(|n| self.contains(n))
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Take `name` with exactly `shape`, as a tensor on `device`.
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        let t = self.tensors.get(name).ok_or_else(|| {
            anyhow!(
                "{}: missing tensor `{name}` (expected shape {shape:?})",
                self.source.display()
            )
        })?;
        if t.shape != shape {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected {shape:?} (does config.json match the weights?)",
                self.source.display(),
                t.shape
            );
        }
        self.used.borrow_mut().insert(name.to_string());
        Ok(Tensor::from_data(
            TensorData::new(t.data.clone(), shape),
            device,
        ))
    }

    /// Mark tensors as deliberately not used (said elsewhere), so [`Weights::unused`] skips them.
    pub fn skip(&self, name: &str) {
        self.used.borrow_mut().insert(name.to_string());
    }

    /// Float tensors no loader asked for.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }
}
