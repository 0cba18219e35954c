//! Stage `data`: the recipe's splits, keyed by the `data` section and the files' contents. Its
//! folder records which rows went where (`splits.json`); later stages take its key as input.

use super::super::context::Context;
use crate::store::stage::{Stage, StageWriter};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;

pub struct DataStage;

impl Stage<Context<'_>> for DataStage {
    type Output = ();

    fn name(&self) -> &str {
        "data"
    }

    fn settings(&self, cx: &Context) -> Result<Value> {
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
        Ok(json!({
            "data": d,
            "train_sha256": cx.hash(&d.train)?,
            "test_sha256": cx.hash(&d.test)?,
        }))
    }

    fn inputs(&self) -> Vec<String> {
        Vec::new()
    }

    fn compute(&self, cx: &Context, out: &StageWriter) -> Result<()> {
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
