//! `[sweep]`: the grid of trials — `mode`, and one list of values per dotted recipe key
//! (expanded into trials by `recipe::sweep`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How axes combine.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SweepMode {
    /// Every combination.
    #[default]
    Cartesian,
    /// The i-th value of every axis together (all axes the same length).
    Zip,
}

/// One entry of the `[sweep]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SweepEntry {
    Mode(SweepMode),
    Values(Vec<toml::Value>),
}

/// The `[sweep]` table: `mode` and one list of values per dotted key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, SweepEntry>",
    into = "BTreeMap<String, SweepEntry>"
)]
pub struct SweepSection {
    pub mode: SweepMode,
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

/// The `[sweep]` table's schema: `mode`, and any other key a list of values.
impl schemars::JsonSchema for SweepSection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SweepSection".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A grid of trials: each other key is a dotted recipe key with the list of values its trials take, e.g. \"distill.temperature\" = [1, 2, 4].",
            "type": "object",
            "properties": {
                "mode": {
                    "description": "\"cartesian\": every combination of the lists; \"zip\": the lists side by side (all of one length).",
                    "enum": ["cartesian", "zip"],
                    "default": "cartesian"
                }
            },
            "additionalProperties": {"type": "array", "minItems": 1}
        })
    }
}

impl TryFrom<BTreeMap<String, SweepEntry>> for SweepSection {
    type Error = String;

    fn try_from(map: BTreeMap<String, SweepEntry>) -> Result<Self, String> {
        let mut s = SweepSection::default();
        for (k, v) in map {
            match (k.as_str(), v) {
                ("mode", SweepEntry::Mode(m)) => s.mode = m,
                ("mode", SweepEntry::Values(_)) => {
                    return Err("sweep.mode: expected \"cartesian\" or \"zip\"".into())
                }
                (_, SweepEntry::Values(vs)) if vs.is_empty() => {
                    return Err(format!("sweep: `{k}` has no values"))
                }
                (_, SweepEntry::Values(vs)) => {
                    s.grid.insert(k, vs);
                }
                (_, SweepEntry::Mode(_)) => {
                    return Err(format!("sweep: `{k}` must be a list of values"))
                }
            }
        }
        Ok(s)
    }
}

impl From<SweepSection> for BTreeMap<String, SweepEntry> {
    fn from(s: SweepSection) -> Self {
        let mut map: BTreeMap<String, SweepEntry> = s
            .grid
            .into_iter()
            .map(|(k, v)| (k, SweepEntry::Values(v)))
            .collect();
        if s.mode != SweepMode::Cartesian || !map.is_empty() {
            map.insert("mode".into(), SweepEntry::Mode(s.mode));
        }
        map
    }
}
