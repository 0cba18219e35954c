//! A module's weights on disk (burn's record format): written whole, read back into a model of
//! the same configuration.

use anyhow::{anyhow, Result};
use burn::module::Module;
use burn::store::ModuleRecord;
use std::path::Path;

/// Save `model`'s weights to `path` (through a temporary file).
pub fn save_model<M: Module>(model: &M, path: &Path) -> Result<()> {
    crate::files::write_with(path, |tmp| {
        model
            .clone()
            .into_record()
            .save(tmp)
            .map_err(|e| anyhow!("cannot save {}: {e:?}", path.display()))
    })?;
    Ok(())
}

/// `model` with the weights saved at `path`.
pub fn load_record<M: Module>(model: M, path: &Path) -> Result<M> {
    let record =
        ModuleRecord::load(path).map_err(|e| anyhow!("cannot read {}: {e:?}", path.display()))?;
    model
        .try_load_record(record)
        .map_err(|e| anyhow!("{}: does not fit the model: {e:?}", path.display()))
}
