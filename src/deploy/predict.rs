//! `kdrun predict`: a run's model over new text, streamed. Input is plain text (a sentence a
//! line), JSON lines (the text in `text` or `sentence`, or the run's text field; the other fields
//! passed through) or CSV (the run's text column); output is JSON lines or CSV in input order:
//! the label, its probability and the top k classes. Lines are read and classified a chunk at a
//! time (batched by length inside it), so input of any size never sits in memory; an output
//! file is written to a temporary file and moved into place only when every line succeeded.

use super::run::{ModelChoice, Run};
use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Sentences classified together (sorted by length into batches inside).
const CHUNK: usize = 4096;

/// How input lines are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One sentence a line.
    Text,
    /// One JSON object a line.
    Jsonl,
    /// CSV with a header row.
    Csv,
}

impl InputFormat {
    /// By the file's extension: `.jsonl`/`.json` → JSON lines, `.csv` → CSV, else text.
    pub fn of(path: Option<&Path>) -> Self {
        match path.and_then(|p| p.extension()).and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => Self::Jsonl,
            Some("csv") => Self::Csv,
            _ => Self::Text,
        }
    }
}

/// What `kdrun predict` was asked.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    pub model: ModelChoice,
    /// None or `-`: standard input.
    pub input: Option<PathBuf>,
    pub input_format: Option<InputFormat>,
    /// None or `-`: standard output.
    pub output: Option<PathBuf>,
    pub top_k: usize,
    pub batch_size: usize,
}

/// What a prediction run did.
#[derive(Debug, Clone)]
pub struct PredictSummary {
    pub sentences: usize,
    pub seconds: f64,
}

/// One input record: where it came from, its text, the fields to pass through.
struct Record {
    line: usize,
    text: String,
    fields: Map<String, Value>,
}

fn is_dash(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_none_or(|p| p == Path::new("-"))
}

/// Classify every record of the input with `run`'s model `opts.model`.
pub fn predict(run: &Run, opts: &PredictOptions, device: &Device) -> Result<PredictSummary> {
    if opts.top_k == 0 {
        bail!("--top-k: expected at least 1, found 0");
    }
    if opts.batch_size == 0 {
        bail!("--batch-size: expected at least 1, found 0");
    }
    let model = run.model(opts.model, device)?;
    let classes = run.class_names();
    let top_k = opts.top_k.min(classes.len());
    let input_name = if is_dash(&opts.input) {
        "standard input".to_string()
    } else {
        opts.input.as_ref().unwrap().display().to_string()
    };
    let (reader, size): (Box<dyn Read>, Option<u64>) = if is_dash(&opts.input) {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let path = opts.input.as_ref().unwrap();
        let f = std::fs::File::open(path)
            .with_context(|| format!("cannot open the input {}", path.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let format = opts
        .input_format
        .unwrap_or_else(|| InputFormat::of(opts.input.as_deref()));
    let csv_out = opts
        .output
        .as_deref()
        .and_then(|p| p.extension())
        .is_some_and(|e| e == "csv");
    let bar = progress(size);
    let mut reader = Reader::new(reader, format, &input_name, run.recipe.data.text_field())?;
    let mut sink = Sink::open(opts.output.as_deref(), csv_out, top_k)?;
    let clock = Instant::now();
    let mut sentences = 0;
    loop {
        let chunk = reader.chunk(CHUNK)?;
        if chunk.is_empty() {
            break;
        }
        let texts: Vec<String> = chunk.iter().map(|r| r.text.clone()).collect();
        let probs = model.probabilities(&texts, opts.batch_size, device)?;
        for (record, p) in chunk.into_iter().zip(probs) {
            sink.write(record, &p, &classes, top_k)?;
        }
        sentences += texts.len();
        if let Some(b) = &bar {
            b.set_position(reader.bytes);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if sentences == 0 {
        bail!("{input_name}: no sentence to classify (the input is empty)");
    }
    let seconds = clock.elapsed().as_secs_f64();
    sink.finish()?;
    Ok(PredictSummary { sentences, seconds })
}

fn progress(size: Option<u64>) -> Option<indicatif::ProgressBar> {
    let size = size?;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}").ok()?,
    );
    Some(bar)
}

/// Reads records from the input, a chunk at a time.
struct Reader<'a> {
    lines: BufReader<Box<dyn Read + 'a>>,
    format: InputFormat,
    name: String,
    /// The text field of JSON lines (`text`, `sentence`, or the run's).
    run_field: String,
    /// CSV: the header and the text column's index.
    header: Option<(Vec<String>, usize)>,
    line: usize,
    pub bytes: u64,
}

impl<'a> Reader<'a> {
    fn new(
        r: Box<dyn Read + 'a>,
        format: InputFormat,
        name: &str,
        run_field: &str,
    ) -> Result<Self> {
        Ok(Self {
            lines: BufReader::with_capacity(1 << 16, r),
            format,
            name: name.to_string(),
            run_field: run_field.to_string(),
            header: None,
            line: 0,
            bytes: 0,
        })
    }

    /// The next physical line (without its line break), None at the end.
    fn next_line(&mut self) -> Result<Option<String>> {
        let mut buf = Vec::new();
        let n = self
            .lines
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", self.name))?;
        if n == 0 {
            return Ok(None);
        }
        self.bytes += n as u64;
        self.line += 1;
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        if self.line == 1 && buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
            buf.drain(..3);
        }
        String::from_utf8(buf).map(Some).map_err(|e| {
            anyhow!(
                "{}:{}: not UTF-8 text (byte {} of the line)",
                self.name,
                self.line,
                e.utf8_error().valid_up_to() + 1
            )
        })
    }

    fn chunk(&mut self, n: usize) -> Result<Vec<Record>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(line) = self.next_line()? else {
                break;
            };
            if let Some(r) = self.record(line)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn empty(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{}:{}: {what} (every record needs a sentence to classify)",
            self.name,
            self.line
        )
    }

    fn record(&mut self, line: String) -> Result<Option<Record>> {
        let (text, fields) = match self.format {
            InputFormat::Text => (line, Map::new()),
            InputFormat::Jsonl => {
                if line.trim().is_empty() {
                    return Ok(None); // blank lines between JSON objects are allowed
                }
                self.json_record(&line)?
            }
            InputFormat::Csv => match self.csv_record(&line)? {
                Some(r) => r,
                None => return Ok(None),
            },
        };
        if text.is_empty() {
            return Err(self.empty("the text is empty"));
        }
        if text.chars().all(char::is_whitespace) {
            return Err(self.empty("the text is only spaces"));
        }
        Ok(Some(Record {
            line: self.line,
            text,
            fields,
        }))
    }

    fn json_record(&self, line: &str) -> Result<(String, Map<String, Value>)> {
        let mut obj: Map<String, Value> = match serde_json::from_str(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => bail!("{}:{}: expected a JSON object", self.name, self.line),
            Err(e) => bail!("{}:{}: not JSON ({e})", self.name, self.line),
        };
        let key = [self.run_field.as_str(), "text", "sentence"]
            .into_iter()
            .find(|k| obj.contains_key(*k))
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "{}:{}: no text field: expected \"text\", \"sentence\" or \"{}\", found {}",
                    self.name,
                    self.line,
                    self.run_field,
                    crate::data::listed(obj.keys().map(|k| format!("\"{k}\"")))
                )
            })?;
        match obj.remove(&key) {
            Some(Value::String(s)) => Ok((s, obj)),
            Some(other) => bail!(
                "{}:{}: the field \"{key}\" is {}, expected a string",
                self.name,
                self.line,
                kind(&other)
            ),
            None => unreachable!("the key was found"),
        }
    }

    /// A CSV line: the header first (it names the text column), then records. A quoted field
    /// may not span lines here.
    fn csv_record(&mut self, line: &str) -> Result<Option<(String, Map<String, Value>)>> {
        if line.matches('"').count() % 2 == 1 {
            bail!(
                "{}:{}: a quoted field opens here and does not close on this line (kdrun predict reads a CSV record a line; put the line breaks of a text as spaces)",
                self.name,
                self.line
            );
        }
        let fields =
            parse_csv_line(line).map_err(|e| anyhow!("{}:{}: {e}", self.name, self.line))?;
        let Some((header, col)) = &self.header else {
            let col = [self.run_field.as_str(), "text", "sentence"]
                .into_iter()
                .find_map(|k| fields.iter().position(|f| f == k))
                .ok_or_else(|| {
                    anyhow!(
                        "{}:1: no text column: expected \"{}\", \"text\" or \"sentence\" in the header, found {}",
                        self.name,
                        self.run_field,
                        crate::data::listed(fields.iter().map(|k| format!("\"{k}\"")))
                    )
                })?;
            self.header = Some((fields, col));
            return Ok(None);
        };
        if fields.len() != header.len() {
            bail!(
                "{}:{}: expected {} fields (as the header has), found {}",
                self.name,
                self.line,
                header.len(),
                fields.len()
            );
        }
        let mut text = String::new();
        let mut rest = Map::new();
        for (i, (name, value)) in header.iter().zip(fields).enumerate() {
            if i == *col {
                text = value;
            } else {
                rest.insert(name.clone(), Value::String(value));
            }
        }
        Ok(Some((text, rest)))
    }
}

/// A probability as JSON, with the digits an f32 holds (0.21160628, not 0.21160627901554108).
fn prob(p: f32) -> Value {
    format!("{p}")
        .parse::<f64>()
        .map(Value::from)
        .unwrap_or(Value::Null)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The fields of one CSV line (RFC 4180 quoting).
fn parse_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    match r.records().next() {
        None => Ok(vec![String::new()]),
        Some(Ok(rec)) => Ok(rec.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(format!("not a CSV record ({e})")),
    }
}

/// Where predictions go: standard output, or a file written whole.
struct Sink {
    out: Option<Box<dyn Write>>,
    /// The output's name, for messages.
    name: String,
    /// The temporary file and the file it becomes.
    rename: Option<(PathBuf, PathBuf)>,
    csv: bool,
    header_written: bool,
    top_k: usize,
}

impl Sink {
    fn open(path: Option<&Path>, csv_out: bool, top_k: usize) -> Result<Self> {
        let (out, rename): (Box<dyn Write>, _) = match path.filter(|p| *p != Path::new("-")) {
            None => (
                Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                None,
            ),
            Some(p) => {
                let tmp = crate::files::temp_name(p);
                let f = std::fs::File::create(&tmp)
                    .with_context(|| format!("cannot write the output {}", p.display()))?;
                (
                    Box::new(std::io::BufWriter::new(f)),
                    Some((tmp, p.to_path_buf())),
                )
            }
        };
        let name = match &rename {
            Some((_, p)) => p.display().to_string(),
            None => "standard output".to_string(),
        };
        Ok(Self {
            out: Some(out),
            name,
            rename,
            csv: csv_out,
            header_written: false,
            top_k,
        })
    }

    fn write(&mut self, r: Record, probs: &[f32], classes: &[String], top_k: usize) -> Result<()> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let top: Vec<(String, f32)> = order[..top_k]
            .iter()
            .map(|&i| (classes[i].clone(), probs[i]))
            .collect();
        match self.csv {
            true => {
                let mut w = csv::Writer::from_writer(Vec::new());
                if !self.header_written {
                    let mut h: Vec<String> = vec!["line".into()];
                    h.extend(r.fields.keys().cloned());
                    h.extend(["label".into(), "probability".into()]);
                    for k in 2..=self.top_k {
                        h.extend([format!("label_{k}"), format!("probability_{k}")]);
                    }
                    w.write_record(&h)?;
                    self.header_written = true;
                }
                let mut row = vec![r.line.to_string()];
                row.extend(r.fields.values().map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }));
                for (label, p) in &top {
                    row.extend([label.clone(), p.to_string()]);
                }
                w.write_record(&row)?;
                let bytes = w
                    .into_inner()
                    .map_err(|e| anyhow!("cannot write a CSV row: {e}"))?;
                self.emit(&bytes)?;
            }
            false => {
                let mut obj = r.fields;
                obj.insert("label".into(), Value::from(top[0].0.clone()));
                obj.insert("probability".into(), prob(top[0].1));
                obj.insert(
                    "top_k".into(),
                    Value::Array(
                        top.iter()
                            .map(|(l, p)| serde_json::json!({"label": l, "probability": prob(*p)}))
                            .collect(),
                    ),
                );
                let mut line = serde_json::to_vec(&obj)?;
                line.push(b'\n');
                self.emit(&line)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(out) = self.out.as_mut() {
            out.write_all(bytes)
                .map_err(|e| anyhow!("cannot write {}: {e}", self.name))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()
                .map_err(|e| anyhow!("cannot write {}: {e}", self.name))?;
        }
        if let Some((tmp, path)) = self.rename.take() {
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot move {} into place", path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Sink {
    /// A sink dropped before `finish` (an error) leaves no half-written output file.
    fn drop(&mut self) {
        if let Some((tmp, _)) = &self.rename {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
