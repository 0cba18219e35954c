//! Error analysis from a run's per-example test predictions: each model's most frequent
//! confusions with example sentences, and the sentences on which the distilled student and the
//! teacher disagree.

use crate::store::{ModelResult, RunResults};
use polars::prelude::*;

/// Example sentences shown per confusion.
pub const EXAMPLES_PER_CONFUSION: usize = 3;
/// Confusions listed per model.
pub const TOP_CONFUSIONS: usize = 8;

/// Whether `results` has what the error analysis needs (runs stored before kdrun kept
/// per-example predictions do not).
pub fn available(results: &RunResults) -> bool {
    let n = results.test_texts.len();
    n > 0
        && results.test_labels.len() == n
        && results.models.iter().all(|m| m.predictions.len() == n)
}

/// `model`'s most frequent (true, predicted) confusions, most frequent first: count, share of
/// the true class's test examples, and the first few sentences (test order).
pub fn confusions(results: &RunResults, model: &ModelResult) -> PolarsResult<DataFrame> {
    let names = |c: usize| {
        results
            .classes
            .get(c)
            .map_or_else(|| c.to_string(), |c| c.name.clone())
    };
    let k = results.classes.len();
    let mut support = vec![0usize; k];
    let mut cells: Vec<Vec<Vec<usize>>> = vec![vec![Vec::new(); k]; k];
    for (i, (&t, &p)) in results
        .test_labels
        .iter()
        .zip(&model.predictions)
        .enumerate()
    {
        if t < k && p < k {
            support[t] += 1;
            if t != p {
                cells[t][p].push(i);
            }
        }
    }
    let mut pairs: Vec<(usize, usize, &Vec<usize>)> = cells
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().map(move |(p, ix)| (t, p, ix)))
        .filter(|(_, _, ix)| !ix.is_empty())
        .collect();
    pairs.sort_by(|a, b| b.2.len().cmp(&a.2.len()).then((a.0, a.1).cmp(&(b.0, b.1))));
    pairs.truncate(TOP_CONFUSIONS);
    df!(
        "true" => pairs.iter().map(|(t, _, _)| names(*t)).collect::<Vec<_>>(),
        "predicted" => pairs.iter().map(|(_, p, _)| names(*p)).collect::<Vec<_>>(),
        "count" => pairs.iter().map(|(_, _, ix)| ix.len() as u64).collect::<Vec<_>>(),
        "share_of_class" => pairs
            .iter()
            .map(|(t, _, ix)| ix.len() as f64 / support[*t].max(1) as f64)
            .collect::<Vec<_>>(),
        "examples" => pairs
            .iter()
            .map(|(_, _, ix)| {
                ix.iter()
                    .take(EXAMPLES_PER_CONFUSION)
                    .map(|&i| results.test_texts[i].clone())
                    .collect::<Vec<_>>()
                    .join(" · ")
            })
            .collect::<Vec<_>>(),
    )
}

/// Every test sentence on which the teacher and the distilled student predict differently, with
/// the truth and (when present) the student trained alone.
pub fn disagreements(results: &RunResults) -> Option<PolarsResult<DataFrame>> {
    let teacher = results.model("teacher")?;
    let distilled = results.model("distilled")?;
    let alone = results.model("student");
    let name = |c: usize| {
        results
            .classes
            .get(c)
            .map_or_else(|| c.to_string(), |c| c.name.clone())
    };
    let rows: Vec<usize> = (0..results.test_texts.len())
        .filter(|&i| teacher.predictions[i] != distilled.predictions[i])
        .collect();
    let col = |m: &ModelResult| {
        rows.iter()
            .map(|&i| name(m.predictions[i]))
            .collect::<Vec<_>>()
    };
    let mut columns = vec![
        Column::new(
            "example".into(),
            rows.iter().map(|&i| i as u64 + 1).collect::<Vec<_>>(),
        ),
        Column::new(
            "text".into(),
            rows.iter()
                .map(|&i| results.test_texts[i].clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "true".into(),
            rows.iter()
                .map(|&i| name(results.test_labels[i]))
                .collect::<Vec<_>>(),
        ),
        Column::new("teacher".into(), col(teacher)),
        Column::new("distilled".into(), col(distilled)),
    ];
    if let Some(a) = alone {
        columns.push(Column::new("student alone".into(), col(a)));
    }
    Some(DataFrame::new_infer_height(columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusions_and_disagreements_by_hand() {
        let mut r: RunResults =
            serde_json::from_str(include_str!("../../tests/fixtures/results-min.json")).unwrap();
        r.test_texts = ["a", "b", "c", "d", "e", "f"].map(String::from).to_vec();
        r.test_labels = vec![0, 0, 0, 1, 1, 1];
        let preds = |key: &str| match key {
            "teacher" => vec![0, 1, 1, 1, 1, 0],
            "distilled" => vec![0, 1, 0, 1, 0, 0],
            _ => vec![0; 6],
        };
        for m in &mut r.models {
            m.predictions = preds(&m.key);
        }
        assert!(available(&r));
        let c = confusions(&r, r.model("teacher").unwrap()).unwrap();
        // 0→1 twice (b, c), then 1→0 once (f).
        assert_eq!(c.height(), 2);
        let count = c.column("count").unwrap().u64().unwrap();
        assert_eq!(count.get(0), Some(2));
        let ex = c.column("examples").unwrap().str().unwrap();
        assert_eq!(ex.get(0), Some("b · c"));
        let share = c.column("share_of_class").unwrap().f64().unwrap();
        assert!((share.get(0).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let d = disagreements(&r).unwrap().unwrap();
        // Examples 3 (c) and 5 (e) differ.
        let ids: Vec<u64> = d
            .column("example")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(ids, vec![3, 5]);
        r.models.last_mut().unwrap().predictions.pop();
        assert!(!available(&r));
    }
}
