//! Stage `textgcn`: TextGCN of `[textgcn]` — the graph over every split's documents and their
//! words, built sparse; the two-layer GCN trained on the training documents with early stopping
//! on the validation documents; evaluated on the test documents (predictions, scores, inference
//! time). Keyed by `[textgcn]`, `data.lowercase`, the seed, the backend and the timing repeats;
//! input: the data stage. Its folder holds the weights (`textgcn.bpk`), `graph.json` (sizes,
//! build time, peak memory), `fit.json` and `result.json`.

use super::super::context::Context;
use super::logits::Logits;
use super::{read_json, save_model};
use crate::distill::{DistillLoss, TeacherLogits};
use crate::eval::{ClassificationReport, InferenceTiming};
use crate::models::textgcn::spmm::SparseAdj;
use crate::models::textgcn::{build_graph, GraphConfig, GraphSize, GraphTokens, TextGcn};
use crate::recipe::{DistillSection, SoftTargets, StudentTokens, TextGcnSection};
use crate::runtime::progress::note;
use crate::store::stage::{Stage, StageWriter};
use crate::store::ModelResult;
use crate::train::textgcn::{node_logits, predict_nodes, train_textgcn, GcnSettings, Labelled};
use anyhow::Result;
use burn::module::Module;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The graph's sizes and what building it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphReport {
    pub size: GraphSize,
    pub nodes: usize,
    pub build_seconds: f64,
    /// Peak resident memory of the process while the graph was built, MiB (the kernel's peak
    /// counter reset just before, where Linux allows it; `None` where it cannot be read).
    pub build_peak_rss_mib: Option<f64>,
    /// The same while training and evaluating.
    pub train_peak_rss_mib: Option<f64>,
}

pub struct TextGcnOutput {
    pub result: ModelResult,
    pub graph: GraphReport,
    /// The documents' logits by example id, per split (for TextGCN as a teacher).
    pub logits: DocLogits,
}

/// TextGCN's logits of every document of the graph, by split (example ids as keys).
pub struct DocLogits {
    pub train: TeacherLogits,
    pub valid: TeacherLogits,
    pub test: TeacherLogits,
}

const SPLIT_FILES: [&str; 3] = [
    "train_logits.safetensors",
    "valid_logits.safetensors",
    "test_logits.safetensors",
];

/// How the report names TextGCN.
pub fn textgcn_label(g: &TextGcnSection) -> String {
    let tokens = match g.tokens {
        StudentTokens::Word => "jieba words",
        StudentTokens::Char => "characters",
    };
    format!(
        "TextGCN ({tokens}, window {}, 2 layers, hidden {})",
        g.window, g.hidden
    )
}

/// Reset the process's peak resident memory counter (`VmHWM`), where the kernel allows it.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` of `/proc/self/status`, MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(v: Option<f64>) -> String {
    v.map_or("unknown".into(), |m| format!("{m:.0} MiB"))
}

pub struct TextGcnStage<'l> {
    pub data_key: String,
    /// The teacher's logits and their stage's key, for TextGCN distilled from the teacher.
    pub teacher: Option<(&'l Logits, String)>,
}

/// What TextGCN's training depends on besides the data (and, distilled, the teacher's logits).
#[derive(Debug, Clone, Serialize)]
pub struct TextGcnSpec {
    pub textgcn: TextGcnSection,
    pub lowercase: bool,
    pub seed: u64,
    pub backend: String,
    pub timing_repeats: usize,
    /// The stopping rule (results made before it counted the loss are not reused).
    pub early_stop: &'static str,
    /// 2: the documents' logits are kept (TextGCN as a teacher).
    pub outputs: u32,
    /// The distilled twin's loss (none for TextGCN alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_targets: Option<SoftTargets>,
}

impl Stage<Context<'_>> for TextGcnStage<'_> {
    type Output = TextGcnOutput;
    type Spec = TextGcnSpec;

    fn name(&self) -> &str {
        if self.teacher.is_some() {
            "textgcn_distilled"
        } else {
            "textgcn"
        }
    }

    fn spec(&self, cx: &Context) -> Result<TextGcnSpec> {
        let r = cx.r;
        let distilled = self.teacher.is_some();
        Ok(TextGcnSpec {
            // `distill` only says whether a distilled twin is also trained: in neither key.
            textgcn: TextGcnSection {
                distill: false,
                ..r.textgcn.clone()
            },
            lowercase: r.data.lowercase,
            seed: r.runtime.seed,
            backend: cx.compute.backend.clone(),
            timing_repeats: r.report.timing_repeats,
            early_stop: "accuracy_or_loss",
            outputs: 2,
            distill: distilled.then(|| r.distill.clone()),
            soft_targets: distilled.then(|| r.soft_targets()),
        })
    }

    fn inputs(&self) -> Vec<String> {
        let mut inputs = vec![self.data_key.clone()];
        inputs.extend(self.teacher.as_ref().map(|(_, key)| key.clone()));
        inputs
    }

    fn compute(
        &self,
        cx: &Context,
        spec: &TextGcnSpec,
        out: &StageWriter,
    ) -> Result<TextGcnOutput> {
        let g = &spec.textgcn;
        let data = cx.data()?;
        // Nodes: training, validation, test documents in this order, then the words.
        let splits = [&data.train, &data.valid, &data.test];
        let texts: Vec<&str> = splits
            .iter()
            .flat_map(|s| s.iter().map(|e| e.text.as_str()))
            .collect();
        let (adj, mut graph) = build(g, spec.lowercase, &texts);
        drop(texts);
        let (n_train, n_valid) = (data.train.len(), data.valid.len());
        let labelled = |offset: usize, split: &[crate::data::Example]| Labelled {
            nodes: (offset..offset + split.len()).collect(),
            labels: split.iter().map(|e| e.label).collect(),
        };
        let train = labelled(0, &data.train);
        let valid = labelled(n_train, &data.valid);
        let test = labelled(n_train + n_valid, &data.test);
        let settings = GcnSettings {
            hidden: g.hidden,
            dropout: g.dropout,
            lr: g.lr,
            epochs: g.epochs,
            patience: g.patience,
            weight_decay: g.weight_decay,
            seed: spec.seed,
        };
        reset_peak_rss();
        let distill = match (&self.teacher, &spec.distill, spec.soft_targets) {
            (Some((l, _)), Some(distill), Some(targets)) => {
                let ids: Vec<u32> = data.train.iter().map(|e| e.id).collect();
                Some((
                    DistillLoss::new(distill, targets),
                    l.logits.batch(&ids, &cx.ad)?,
                ))
            }
            _ => None,
        };
        let fitted = train_textgcn(
            &adj,
            data.classes.len(),
            &train,
            &valid,
            &cx.ad,
            &settings,
            distill,
        )?;
        let model = fitted.model.valid();
        let predictions = predict_nodes(&model, &adj, &test.nodes)?;
        let report = ClassificationReport::new(&test.labels, &predictions, data.classes.len());

        let timing = time_inference(&model, &adj, &test.nodes, spec.timing_repeats)?;
        graph.train_peak_rss_mib = peak_rss_mib();
        let label = if self.teacher.is_some() {
            format!("{} distilled", textgcn_label(g))
        } else {
            textgcn_label(g)
        };
        note(&format!(
            "{label}: test accuracy {:.4}, macro-F1 {:.4}, best epoch {} of {} (validation {:.4}), \
             trained in {:.1} s, {:.0} samples/s, peak RSS {}",
            report.accuracy,
            report.macro_avg.f1,
            fitted.best_epoch,
            fitted.history.len(),
            fitted.best_valid_accuracy,
            fitted.seconds,
            timing.samples_per_sec,
            mib(graph.train_peak_rss_mib)
        ));
        let params = model.num_params();
        let result = ModelResult {
            key: self.name().into(),
            label,
            params,
            trainable_params: params,
            report,
            timing,
            train_seconds: fitted.seconds,
            best_epoch: fitted.best_epoch,
            best_valid_accuracy: fitted.best_valid_accuracy,
            history: fitted.history.clone(),
            predictions,
        };
        let logits = doc_logits(&model, &adj, data)?;
        for (l, file) in [&logits.train, &logits.valid, &logits.test]
            .into_iter()
            .zip(SPLIT_FILES)
        {
            l.save(&out.file(file))?;
        }
        save_model(&fitted.model, &out.file("textgcn.bpk"))?;
        out.write_json("graph.json", &graph)?;
        out.write_json("fit.json", &fitted.info())?;
        out.write_json("result.json", &result)?;
        Ok(TextGcnOutput {
            result,
            graph,
            logits,
        })
    }

    fn load(&self, _cx: &Context, dir: &Path) -> Result<TextGcnOutput> {
        let [train, valid, test] = SPLIT_FILES.map(|f| TeacherLogits::load(&dir.join(f)));
        Ok(TextGcnOutput {
            result: read_json(&dir.join("result.json"))?,
            graph: read_json(&dir.join("graph.json"))?,
            logits: DocLogits {
                train: train?,
                valid: valid?,
                test: test?,
            },
        })
    }
}

/// The graph of `texts` (the documents, then their words, as nodes) and what building it cost
/// (its training's peak memory left for later).
fn build(
    g: &TextGcnSection,
    lowercase: bool,
    texts: &[&str],
) -> (std::sync::Arc<SparseAdj>, GraphReport) {
    let config = GraphConfig {
        tokens: match g.tokens {
            StudentTokens::Word => GraphTokens::Word,
            StudentTokens::Char => GraphTokens::Char,
        },
        min_count: g.min_count,
        window: g.window,
        stop_words: g.stop_words.clone(),
        lowercase,
    };
    reset_peak_rss();
    let start = Instant::now();
    let graph = build_graph(texts, &config);
    let build_seconds = start.elapsed().as_secs_f64();
    let build_peak_rss_mib = peak_rss_mib();
    let size = graph.size;
    let nodes = graph.nodes();
    let adj = SparseAdj::new(graph.adj);
    note(&format!(
        "textgcn: graph of {nodes} nodes ({} documents, {} words), {} document–word and {} \
         word–word edges ({} stored entries of Â), built in {build_seconds:.1} s, peak RSS {}",
        size.docs,
        size.words,
        size.doc_word_edges,
        size.word_word_edges,
        size.nnz,
        mib(build_peak_rss_mib)
    ));
    let report = GraphReport {
        size,
        nodes,
        build_seconds,
        build_peak_rss_mib,
        train_peak_rss_mib: None,
    };
    (adj, report)
}

/// Inference time: TextGCN classifies by one forward pass over the whole graph (every document
/// and word node at once), so each timed pass is that forward pass plus reading the test
/// documents' predictions back; samples/s = test documents / seconds of the fastest pass (after
/// one untimed pass).
fn time_inference(
    model: &TextGcn,
    adj: &std::sync::Arc<SparseAdj>,
    test: &[usize],
    repeats: usize,
) -> Result<InferenceTiming> {
    predict_nodes(model, adj, test)?;
    let repeats = repeats.max(1);
    let mut seconds = f64::INFINITY;
    for _ in 0..repeats {
        let t = Instant::now();
        predict_nodes(model, adj, test)?;
        seconds = seconds.min(t.elapsed().as_secs_f64());
    }
    let samples = test.len();
    Ok(InferenceTiming {
        batch_size: samples,
        samples,
        batches: 1,
        repeats,
        seconds,
        samples_per_sec: samples as f64 / seconds,
        batch_latency_ms: seconds * 1e3,
        max_batch_latency_ms: seconds * 1e3,
    })
}

/// Every document's logits from one forward pass: nodes are the training, validation and test
/// documents in this order.
fn doc_logits(
    model: &TextGcn,
    adj: &std::sync::Arc<SparseAdj>,
    data: &crate::data::Dataset,
) -> Result<DocLogits> {
    let classes = data.classes.len();
    let docs: Vec<usize> = (0..data.train.len() + data.valid.len() + data.test.len()).collect();
    let mut rows = node_logits(model, adj, &docs)?.into_iter();
    let mut split_logits = |split: &[crate::data::Example]| {
        let part: Vec<Vec<f32>> = rows.by_ref().take(split.len()).collect();
        TeacherLogits::from_rows(classes, split.iter().map(|e| e.id).zip(part))
    };
    Ok(DocLogits {
        train: split_logits(&data.train),
        valid: split_logits(&data.valid),
        test: split_logits(&data.test),
    })
}

/// TextGCN's row of the report: the stage run or reused, its graph and costs in the run's notes.
pub fn textgcn_row(
    cx: &Context,
    data_key: &str,
    teacher: Option<(&Logits, String)>,
) -> Result<ModelResult> {
    let distilled = teacher.is_some();
    let done = cx.run(&TextGcnStage {
        data_key: data_key.to_string(),
        teacher,
    })?;
    if distilled {
        return Ok(done.value.result);
    }
    let TextGcnOutput { result, graph, .. } = done.value;
    let s = &graph.size;
    cx.add_note(format!(
        "TextGCN: graph of {} nodes ({} documents, {} words), {} document–word and {} word–word \
         edges ({} stored entries of Â with self-loops), built in {:.1} s (peak RSS {}); trained \
         in {:.1} s, {} epochs, best {} (peak RSS {}); inference = one forward pass over the \
         whole graph, samples/s = test documents ÷ its seconds",
        graph.nodes,
        s.docs,
        s.words,
        s.doc_word_edges,
        s.word_word_edges,
        s.nnz,
        graph.build_seconds,
        mib(graph.build_peak_rss_mib),
        result.train_seconds,
        result.history.len(),
        result.best_epoch,
        mib(graph.train_peak_rss_mib)
    ));
    Ok(result)
}
