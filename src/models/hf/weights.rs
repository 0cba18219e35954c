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
    /// The data types of the buffers (for a message when a loader asks for one as a weight).
    buffer_dtypes: BTreeMap<String, String>,
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
            buffer_dtypes: BTreeMap::new(),
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// Whether a `model.safetensors` file is whole, from its header and its length alone (no
    /// tensor is read): the header's length, its JSON, each tensor's bytes against its shape and
    /// data type, and the last tensor's end against the file's length. A `pytorch_model.bin` is
    /// not checked here (its index is at the end of the file; reading it is the check).
    pub fn check_file(path: &Path) -> Result<()> {
        if path.extension().is_none_or(|e| e != "safetensors") {
            return Ok(());
        }
        use std::io::Read;
        let mut file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = [0u8; 8];
        if len < 8 || file.read_exact(&mut head).is_err() {
            bail!(
                "{}: {len} bytes, too short for a safetensors file (cut short? copy it again)",
                path.display()
            );
        }
        let n = u64::from_le_bytes(head);
        if n > len - 8 {
            bail!(
                "{}: cut short: its header alone needs {n} bytes, the file has {} after the \
                 length (copy it again)",
                path.display(),
                len - 8
            );
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::check_header(path, &header, len - 8 - n)
    }

    /// The tensors a safetensors header lists fit in the `data_len` bytes after it.
    fn check_header(path: &Path, header: &[u8], data_len: u64) -> Result<()> {
        let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
            .map_err(|e| {
                anyhow!(
                    "{}: not a safetensors file (its header is not a JSON object: {e})",
                    path.display()
                )
            })?;
        let mut last: Option<(u64, &str)> = None;
        for (name, info) in header.iter().filter(|(k, _)| *k != "__metadata__") {
            let dtype = info["dtype"].as_str().unwrap_or("?");
            let shape: Option<Vec<u64>> = info["shape"]
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64()).collect());
            let offsets: Option<[u64; 2]> =
                info["data_offsets"]
                    .as_array()
                    .and_then(|a| match a.as_slice() {
                        [s, e] => Some([s.as_u64()?, e.as_u64()?]),
                        _ => None,
                    });
            let (Some(shape), Some([start, end])) = (shape, offsets) else {
                bail!(
                    "{}: tensor `{}`: no shape or data offsets in the header (a damaged file?)",
                    path.display(),
                    crate::recipe::shown(name)
                );
            };
            let width = match dtype {
                "F64" | "I64" | "U64" => 8,
                "F32" | "I32" | "U32" => 4,
                "F16" | "BF16" | "I16" | "U16" => 2,
                _ => 1,
            };
            let need = shape
                .iter()
                .try_fold(width, |a: u64, d| a.checked_mul(*d))
                .unwrap_or(u64::MAX);
            if end < start || end - start != need {
                bail!(
                    "{}: tensor `{}` of shape {shape:?} ({dtype}) needs {need} bytes, its header \
                     gives it {} (a damaged file?)",
                    path.display(),
                    crate::recipe::shown(name),
                    end.saturating_sub(start)
                );
            }
            if last.is_none_or(|(e, _)| end > e) {
                last = Some((end, name));
            }
        }
        if let Some((end, name)) = last {
            if end > data_len {
                bail!(
                    "{}: cut short: tensor `{}` ends at byte {end} of the data, the file holds \
                     {data_len} (copy it again)",
                    path.display(),
                    crate::recipe::shown(name)
                );
            }
        }
        Ok(())
    }

    pub fn from_safetensors(path: &Path) -> Result<Self> {
        Self::check_file(path)?;
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
                    w.buffer_dtypes.insert(name.clone(), dtype.clone());
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
                    w.buffer_dtypes.insert(name.clone(), dtype.clone());
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
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| match self.buffer_dtypes.get(name) {
                Some(dtype) => anyhow!(
                "{}: tensor `{name}` holds {dtype} numbers, expected floating point (F32, F16, \
                 BF16 or F64) of shape {shape:?}",
                self.source.display()
            ),
                None => anyhow!(
                    "{}: missing tensor `{name}` (expected shape {shape:?})",
                    self.source.display()
                ),
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
