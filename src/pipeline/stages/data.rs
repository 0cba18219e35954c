//! Stage `data`: the recipe's splits, keyed by the `data` section and the files' contents. Its
//! folder records which rows went where (`splits.json`); later stages take its key as input.

use super::super::context::Context;
use crate::recipe::DataSection;
use crate::store::stage::{Stage, StageWriter};
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::json;
use std::path::Path;

pub struct DataStage;

/// The `[data]` section and the contents of the files it names.
#[derive(Debug, Clone, Serialize)]
pub struct DataSpec {
    pub data: DataSection,
    pub train_sha256: String,
    pub test_sha256: String,
}

impl Stage<Context<'_>> for DataStage {
    type Output = ();
    type Spec = DataSpec;

    fn name(&self) -> &str {
        "data"
    }

    fn spec(&self, cx: &Context) -> Result<DataSpec> {
        let d = &cx.r.data;
        // Checked at load already on the command line; a library caller may skip that.
        let problems = crate::pipeline::check_data_files(cx.r);
        if !problems.is_empty() {
            let lines: Vec<String> = problems
                .into_iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect();
            bail!("{}", lines.join("\n"));
        }
        Ok(DataSpec {
            data: d.clone(),
            train_sha256: cx.hash(&d.train)?,
            test_sha256: cx.hash(&d.test)?,
        })
    }

    fn inputs(&self) -> Vec<String> {
        Vec::new()
    }

    /// The splits are the context's (read once per trial from the same `[data]` section).
    fn compute(&self, cx: &Context, _: &DataSpec, out: &StageWriter) -> Result<()> {
        let data = cx.data()?;
        out.write_json(
            "splits.json",
            &json!({
                "classes": data.classes,
                "train": data.train.iter().map(|e| e.id).collect::<Vec<_>>(),
                "valid": data.valid.iter().map(|e| e.id).collect::<Vec<_>>(),
                "test": data.test.iter().map(|e| e.id).collect::<Vec<_>>(),
            }),
        )
    }

    fn load(&self, _cx: &Context, _dir: &Path) -> Result<()> {
        Ok(())
    }
}
