//! `--set key=value` from the command line: a layer of the recipe's figment (one value) or a
//! key to sweep over (several).

use super::error::shown;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// One `--set key=value` from the command line. The value is read as TOML (`3`, `0.5`,
/// `["car","game"]`, `"a,b"`), else as bare comma-separated values, each TOML or a plain string
/// (`1,2,4,8` sweeps the key over four values), else as a plain string (`--set data.format=csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct SetArg {
    /// How error messages name it: `--set teacher.epochs=3` as typed, a flag that sets a key as
    /// typed (`--time 2:00:00`), a trial's value from a `[sweep]` table `--set [sweep] KEY`.
    pub source: String,
    pub key: String,
    /// One value, or several to sweep over.
    pub values: Vec<toml::Value>,
}

fn toml_or_string(text: &str) -> Option<toml::Value> {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// Parse `key=value`.
pub fn parse_set(raw: &str) -> Result<SetArg, String> {
    let (key, value) = raw.split_once('=').ok_or_else(|| {
        format!(
            "`--set {}`: expected key=value, e.g. teacher.epochs=3",
            shown(raw)
        )
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!(
            "`--set {}`: `{}` is not a dotted recipe key such as teacher.epochs",
            shown(raw),
            shown(key)
        ));
    }
    let value = value.trim();
    if let Some(swept) = key.strip_prefix("sweep.").filter(|k| *k != "mode") {
        return Err(sweep_from_set(raw, swept, value));
    }
    let values = match toml_or_string(value) {
        Some(v) => vec![v],
        None if value.contains(',') => value
            .split(',')
            .map(|part| {
                let part = part.trim();
                toml_or_string(part).unwrap_or_else(|| toml::Value::String(part.to_string()))
            })
            .collect(),
        None => vec![toml::Value::String(value.to_string())],
    };
    Ok(SetArg {
        source: format!("--set {raw}"),
        key: key.to_string(),
        values,
    })
}

/// What `--set sweep.KEY=[…]` should have been: on the command line a key is swept by its
/// values comma-separated (`--set KEY=v1,v2`); the `[sweep]` table is the recipe file's.
fn sweep_from_set(raw: &str, swept: &str, value: &str) -> String {
    let key = swept.replace('"', "");
    let values = match toml_or_string(value) {
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => value.to_string(),
    };
    format!(
        "`--set {}`: the [sweep] table belongs in the recipe file; to sweep a key from the \
         command line, give its values comma-separated: --set {}={}",
        shown(raw),
        shown(&key),
        shown(&values)
    )
}

impl Provider for SetArg {
    fn metadata(&self) -> Metadata {
        Metadata::named(shown(&self.source))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        if self.values.len() != 1 {
            return Err(figment::Error::from(format!(
                "`{}` holds {} values: a sweep is expanded into trials first",
                shown(&self.source),
                self.values.len()
            )));
        }
        let value = Value::serialize(&self.values[0])?;
        let nested = figment::util::nest(&self.key, value);
        let dict = nested
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("`{}`: bad key", shown(&self.source))))?;
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_toml_else_strings() {
        let s = parse_set("teacher.epochs=3").unwrap();
        assert_eq!(s.values, vec![toml::Value::Integer(3)]);
        let s = parse_set("data.format=csv").unwrap();
        assert_eq!(s.values, vec![toml::Value::String("csv".into())]);
        let s = parse_set(r#"data.classes=["car","game"]"#).unwrap();
        assert_eq!(
            s.values,
            vec![toml::Value::Array(vec!["car".into(), "game".into()])]
        );
        // Bare commas sweep; a quoted string with a comma is one value.
        let s = parse_set("distill.temperature=1,2, 4.5").unwrap();
        assert_eq!(s.values, vec![1.into(), 2.into(), toml::Value::Float(4.5)]);
        let s = parse_set(r#"report.title="a,b""#).unwrap();
        assert_eq!(s.values, vec![toml::Value::String("a,b".into())]);
        let s = parse_set("student.head=tang,seed").unwrap();
        assert_eq!(s.values, vec!["tang".into(), "seed".into()]);
        assert!(parse_set("noequals").is_err());
        assert!(parse_set("a..b=1").is_err());
    }

    #[test]
    fn a_sweep_key_on_the_command_line_is_refused_with_the_way_to_sweep() {
        let e = parse_set(r#"sweep."runtime.seed"=[42,43,44]"#).unwrap_err();
        assert!(e.ends_with("--set runtime.seed=42,43,44"), "{e}");
        let e = parse_set(r#"sweep.student.head=["tang","seed"]"#).unwrap_err();
        assert!(e.ends_with("--set student.head=tang,seed"), "{e}");
        // The sweep's mode is one value, not a swept key.
        assert!(parse_set("sweep.mode=zip").is_ok());
    }
}
