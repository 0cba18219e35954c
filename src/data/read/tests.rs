//! Reading each format: names, lines, bad rows and the messages that name them.

use super::csv::{data_lines, record_starts};
use super::*;
use std::io::Write;

fn data(format: DataFormat) -> DataSection {
    DataSection {
        format,
        ..DataSection::default()
    }
}

#[test]
fn tnews_lines_read_with_names() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        r#"{{"label": "103", "label_desc": "news_sports", "sentence": "球赛", "keywords": ""}}"#
    )
    .unwrap();
    writeln!(
        f,
        r#"{{"label": "107", "label_desc": "news_car", "sentence": "新车", "keywords": "a,b"}}"#
    )
    .unwrap();
    let df = read_examples(f.path(), &data(DataFormat::Tnews)).unwrap();
    assert_eq!(df.height(), 2);
    let names: Vec<_> = df
        .column("name")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(names, ["sports", "car"]);
}

#[test]
fn bad_json_line_names_file_and_line() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, r#"{{"label": "1", "text": "ok"}}"#).unwrap();
    writeln!(f, r#"{{"label": "1", "text": "#).unwrap();
    let err = read_examples(f.path(), &data(DataFormat::Jsonl))
        .unwrap_err()
        .to_string();
    assert!(err.contains(":2:"), "{err}");
    assert!(err.contains(&f.path().display().to_string()), "{err}");
}

#[test]
fn missing_field_is_named() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, r#"{{"label": "1", "body": "ok"}}"#).unwrap();
    let err = read_examples(f.path(), &data(DataFormat::Jsonl))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`text`") && err.contains("body"), "{err}");
}

#[test]
fn csv_with_numeric_labels() {
    let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    writeln!(f, "text,label\n\"hello, world\",1\nbye,2").unwrap();
    let df = read_examples(f.path(), &data(DataFormat::Csv)).unwrap();
    let labels: Vec<_> = df
        .column("label")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(labels, ["1", "2"]);
    let texts: Vec<_> = df
        .column("text")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(texts[0], "hello, world");
    let mut g = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    writeln!(g, "body,label\nx,1").unwrap();
    let err = read_examples(g.path(), &data(DataFormat::Csv))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no column `text`"), "{err}");
}

#[test]
fn non_string_text_among_strings_names_its_line() {
    // Polars reads the number into the string column; the line scan finds it.
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, r#"{{"label": "1", "text": "ok"}}"#).unwrap();
    writeln!(f).unwrap();
    writeln!(f, r#"{{"label": "1", "text": 12}}"#).unwrap();
    let err = read_examples(f.path(), &data(DataFormat::Jsonl))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":3:") && err.contains("no string field `text`"),
        "{err}"
    );
}

#[test]
fn texts_that_look_like_numbers_and_float_labels_read_as_written() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, r#"{{"label": 2.0, "text": "12"}}"#).unwrap();
    writeln!(f, r#"{{"label": "x", "text": "[a] b"}}"#).unwrap();
    writeln!(f, r#"{{"label": 1e2, "text": "true"}}"#).unwrap();
    let df = read_examples(f.path(), &data(DataFormat::Jsonl)).unwrap();
    let strings = |c: &str| -> Vec<String> {
        let col = df.column(c).unwrap().str().unwrap().clone();
        col.iter().flatten().map(String::from).collect()
    };
    assert_eq!(strings("text"), ["12", "[a] b", "true"]);
    assert_eq!(strings("label"), ["2.0", "x", "100.0"]);
    assert_eq!(strings("name"), strings("label"));
    let ids: Vec<u32> = df
        .column("id")
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(ids, [0, 1, 2]);
}

fn column_u32(df: &DataFrame, c: &str) -> Vec<u32> {
    df.column(c)
        .unwrap()
        .u32()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

#[test]
fn jsonl_lines_are_physical_lines_with_bom_and_blank_lines() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"\xEF\xBB\xBF{\"label\": \"1\", \"text\": \"a\"}\r\n\r\n  \n")
        .unwrap();
    writeln!(f, r#"{{"label": "2", "text": "b"}}"#).unwrap();
    let df = read_examples(f.path(), &data(DataFormat::Jsonl)).unwrap();
    assert_eq!(column_u32(&df, "id"), [0, 1]);
    assert_eq!(column_u32(&df, "line"), [1, 4]);
    writeln!(f).unwrap();
    writeln!(f, r#"{{"label": "3", "text": " "}}"#).unwrap();
    let err = read_examples(f.path(), &data(DataFormat::Jsonl))
        .unwrap_err()
        .to_string();
    let want = format!("{}:6: empty text in `text`", f.path().display());
    assert!(err.starts_with(&want), "{err}");
}

#[test]
fn csv_rows_are_named_by_the_line_they_start_on() {
    let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    f.write_all(b"\xEF\xBB\xBFtext,label\r\n\"two\r\nlines, \"\"q\"\"\",1\r\n\r\nb,2\r\n")
        .unwrap();
    let df = read_examples(f.path(), &data(DataFormat::Csv)).unwrap();
    assert_eq!(column_u32(&df, "id"), [0, 2]);
    assert_eq!(column_u32(&df, "line"), [2, 5]);
    writeln!(f, "\"\",3").unwrap();
    let err = read_examples(f.path(), &data(DataFormat::Csv))
        .unwrap_err()
        .to_string();
    let want = format!("{}:6: empty text in `text`", f.path().display());
    assert!(err.starts_with(&want), "{err}");
    let skip = DataSection {
        on_error: OnError::Skip,
        ..data(DataFormat::Csv)
    };
    let read = read_file(f.path(), &skip).unwrap();
    assert_eq!(read.skipped.len(), 1);
    assert_eq!(read.skipped[0].first_at, "line 6");
}

#[test]
fn record_starts_follow_quotes_and_blank_lines() {
    let b = b"h,l\n\"a\n\nb\",1\n\nc,2";
    assert_eq!(data_lines(&record_starts(b), 3), [2, 5, 6]);
    // Polars skipping leading blank lines: the last records are the data rows.
    assert_eq!(data_lines(&record_starts(b"\n\nh,l\nx,1\n"), 1), [4]);
    assert_eq!(data_lines(&record_starts(b""), 0), Vec::<usize>::new());
    assert_eq!(data_lines(&record_starts(b"h,l"), 1), [2]);
}

#[test]
fn record_starts_agree_with_polars() {
    // (file, data rows' lines), as polars reads the rows.
    let cases: [(&str, &[usize]); 4] = [
        ("text,label\n\"a\"\"\nb\",1\n\n\nc,2", &[2, 4, 5, 6]),
        ("text,label\r\na,1\r\n", &[2]),
        ("\n\ntext,label\na,1\n", &[4]),
        ("text,label\n\"\"\"\",1\n,\n", &[2, 3]),
    ];
    for (s, lines) in cases {
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(std::io::Cursor::new(s.as_bytes().to_vec()))
            .finish()
            .unwrap();
        assert_eq!(
            data_lines(&record_starts(s.as_bytes()), df.height()),
            lines,
            "{s:?}"
        );
    }
}

#[test]
fn csv_that_polars_refuses_names_the_line() {
    let cases = [
        (
            "text,label\na,1\nb,2,3\nc,4\n",
            ":3: cannot read CSV: 3 fields, the header has 2",
        ),
        (
            "text,label\na,1\n\"b\n\nc,2\n",
            ":3: cannot read CSV: a quote opened in this row is never closed",
        ),
        (
            "text,label\na,1\nb\"c,2\nd,3\n",
            ":3: cannot read CSV: a quote opened in this row is never closed",
        ),
    ];
    for (text, want) in cases {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let err = read_examples(f.path(), &data(DataFormat::Csv))
            .unwrap_err()
            .to_string();
        let want = format!("{}{want}", f.path().display());
        assert!(err.starts_with(&want), "{err}");
    }
}
