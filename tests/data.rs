//! Pins what `Dataset::load` makes of example files — classes, the examples of each split with
//! their ids (row numbers in the file), their order, the unlabeled texts, the counts table — and
//! the error it gives for each kind of bad file. The expected values in
//! `tests/fixtures/data-pin.txt` were recorded with the hand-written json-lines reader that
//! polars' own readers replaced; `KDRUN_BLESS=1 cargo test --release --test data` rewrites them.

use kdrun::data::Dataset;
use kdrun::recipe::{DataFormat, DataSection};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every field of a dataset, one line each.
fn render(ds: &Dataset) -> String {
    let mut s = String::new();
    for c in &ds.classes {
        writeln!(s, "class {:?} {:?}", c.label, c.name).unwrap();
    }
    for (split, xs) in [
        ("train", &ds.train),
        ("valid", &ds.valid),
        ("test", &ds.test),
    ] {
        for e in xs.iter() {
            writeln!(s, "{split} {} {} {:?}", e.id, e.label, e.text).unwrap();
        }
    }
    for t in &ds.unlabeled {
        writeln!(s, "unlabeled {t:?}").unwrap();
    }
    writeln!(s, "{}", ds.counts().unwrap()).unwrap();
    s
}

fn sha(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn section(format: DataFormat, train: &Path, test: &Path) -> DataSection {
    DataSection {
        format,
        train: train.to_path_buf(),
        test: test.to_path_buf(),
        ..DataSection::default()
    }
}

/// The dataset, or the error with the temp dir's path replaced by `<dir>`.
fn outcome(data: &DataSection, dir: &Path) -> String {
    match Dataset::load(data) {
        Ok(ds) => render(&ds),
        Err(e) => format!("error: {e:#}\n").replace(&dir.display().to_string(), "<dir>"),
    }
}

fn write(dir: &Path, name: &str, bytes: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A json-lines file: blank and whitespace-only lines, CRLF endings, escapes, extra fields.
fn generic_jsonl(labels: &[&str]) -> String {
    let mut s = String::new();
    for (i, label) in labels.iter().enumerate() {
        let text = match i % 4 {
            0 => format!("plain text {i}"),
            1 => format!("quoted \\\"{i}\\\", back\\\\slash, tab\\t"),
            2 => format!("中文 {i} \\u00e9"),
            _ => format!("comma, {i}"),
        };
        let line = if i % 2 == 0 {
            format!("{{\"text\": \"{text}\", \"label\": {label}, \"extra\": [1, {i}]}}")
        } else {
            format!("{{\"id\": {i}, \"label\": {label}, \"text\": \"{text}\"}}")
        };
        s.push_str(&line);
        s.push_str(if i % 3 == 0 { "\r\n" } else { "\n" });
        if i % 5 == 1 {
            s.push('\n');
        }
        if i % 7 == 2 {
            s.push_str("  \t \r\n");
        }
    }
    s
}

fn cases(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut case =
        |name: &str, data: DataSection| out.push((name.to_string(), outcome(&data, dir)));

    // TNEWS as recipes/quick.toml and recipes/tnews.toml read it (digests: the data is large).
    let train = root().join("data/tnews/train.json");
    let test = root().join("data/tnews/dev.json");
    let five: Vec<String> = ["story", "sports", "house", "car", "game"]
        .map(String::from)
        .to_vec();
    let mut quick = section(DataFormat::Tnews, &train, &test);
    quick.classes = five.clone();
    quick.max_per_class = 30;
    quick.valid_fraction = 0.2;
    case("tnews quick", quick);
    let mut full = section(DataFormat::Tnews, &train, &test);
    full.classes = five;
    case("tnews full", full);
    let mut all = section(DataFormat::Tnews, &train, &test);
    all.classes = vec!["news_car".into(), "100".into(), "sports".into()];
    all.max_per_class = 500;
    all.seed = 3;
    case("tnews by code and label_desc, seed 3", all);
    let mut everything = section(DataFormat::Tnews, &train, &test);
    everything.max_per_class = 50;
    everything.valid_fraction = 0.5;
    everything.seed = 11;
    case(
        "tnews every class, 50 each, half for validation",
        everything,
    );

    // Generic json-lines: string, number, boolean and mixed labels.
    let string_labels = ["\"b\"", "\"a\"", "\"c\"", "\"a\"", "\"b\"", "\"c\""].repeat(3);
    let tr = write(dir, "s-train.jsonl", &generic_jsonl(&string_labels));
    let te = write(dir, "s-test.jsonl", &generic_jsonl(&string_labels[..7]));
    case("jsonl string labels", section(DataFormat::Jsonl, &tr, &te));
    let mut some = section(DataFormat::Jsonl, &tr, &te);
    some.classes = vec!["c".into(), "a".into()];
    some.max_per_class = 4;
    some.valid_fraction = 0.3;
    some.seed = 9;
    case("jsonl classes c, a", some);

    let numbers = ["1", "10", "2", "-3", "10", "1", "2", "-3"].repeat(2);
    let tr = write(dir, "n-train.jsonl", &generic_jsonl(&numbers));
    let te = write(dir, "n-test.jsonl", &generic_jsonl(&numbers[..5]));
    case("jsonl number labels", section(DataFormat::Jsonl, &tr, &te));

    let bools = ["true", "false", "false", "true"].repeat(3);
    let tr = write(dir, "b-train.jsonl", &generic_jsonl(&bools));
    case("jsonl boolean labels", section(DataFormat::Jsonl, &tr, &tr));

    let mixed = ["\"1\"", "1", "2", "\"2\"", "\"x\"", "\"x\""].repeat(2);
    let tr = write(dir, "m-train.jsonl", &generic_jsonl(&mixed));
    case(
        "jsonl mixed string and number labels",
        section(DataFormat::Jsonl, &tr, &tr),
    );

    let floats = ["0.5", "2.0", "1e2", "0.5", "2.0", "1e2"];
    let tr = write(dir, "f-train.jsonl", &generic_jsonl(&floats));
    case("jsonl float labels", section(DataFormat::Jsonl, &tr, &tr));

    // Other field names.
    let tr = write(
        dir,
        "fields.jsonl",
        "{\"body\": \"one\", \"y\": \"p\"}\n{\"body\": \"two\", \"y\": \"q\"}\n\
         {\"body\": \"three\", \"y\": \"p\"}\n{\"body\": \"four\", \"y\": \"q\"}\n",
    );
    let mut named = section(DataFormat::Jsonl, &tr, &tr);
    named.text_field = Some("body".into());
    named.label_field = Some("y".into());
    case("jsonl text_field body, label_field y", named);

    // CSV: quoted fields with commas, quotes and newlines, numeric labels.
    let csv = "text,label,other\n\
               \"hello, world\",1,x\n\
               \"two\nlines\",2,y\n\
               plain,1,z\n\
               \"quote \"\"inside\"\"\",2,w\n\
               third,1,\n\
               \"a, b, c\",2,v\n\
               last one,3,u\n\
               and another,3,t\n";
    let tr = write(dir, "train.csv", csv);
    case("csv number labels", section(DataFormat::Csv, &tr, &tr));
    let tr = write(dir, "blank.csv", "text,label\nx,1\n\ny,1\n");
    case("csv blank line", section(DataFormat::Csv, &tr, &tr));
    let csv = "label,sentence\nham,first\nspam,\"second, with comma\"\nham,third\nspam,fourth\n";
    let tr = write(dir, "named.csv", csv);
    let mut named = section(DataFormat::Csv, &tr, &tr);
    named.text_field = Some("sentence".into());
    case("csv string labels, text_field sentence", named);

    // Bad files: every error names the file, and for json-lines the line and the field.
    let good = "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": \"x\"}\n";
    let bad: &[(&str, &str)] = &[
        (
            "malformed line",
            "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"text\": \"b\", \"label\n",
        ),
        (
            "not an object",
            "{\"text\": \"a\", \"label\": \"x\"}\n[1, 2]\n",
        ),
        (
            "missing text",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"body\": \"b\", \"label\": \"x\"}\n",
        ),
        (
            "number text on line 3",
            "{\"text\": \"a\", \"label\": \"x\"}\n\n{\"text\": 5, \"label\": \"x\"}\n",
        ),
        (
            "number text everywhere",
            "{\"text\": 1, \"label\": \"x\"}\n{\"text\": 2, \"label\": \"x\"}\n",
        ),
        (
            "null text",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": null, \"label\": \"x\"}\n",
        ),
        (
            "object text",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": {\"a\": 1}, \"label\": \"x\"}\n",
        ),
        (
            "missing label",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\"}\n",
        ),
        (
            "null label",
            "{\"text\": \"a\", \"label\": null}\n{\"text\": \"b\", \"label\": \"x\"}\n",
        ),
        (
            "list label",
            "{\"text\": \"a\", \"label\": \"x\"}\n{\"text\": \"b\", \"label\": [1]}\n",
        ),
        ("only blank lines", "\n  \n\t\n"),
        ("empty file", ""),
    ];
    for (name, text) in bad {
        let tr = write(dir, "bad.jsonl", text);
        let te = write(dir, "good.jsonl", good);
        case(
            &format!("jsonl {name}"),
            section(DataFormat::Jsonl, &tr, &te),
        );
    }
    let tr = write(
        dir,
        "bad-tnews.json",
        "{\"label\": \"1\", \"label_desc\": \"news_a\", \"sentence\": \"s\"}\n\
         {\"label\": \"1\", \"sentence\": \"t\"}\n",
    );
    case(
        "tnews without label_desc",
        section(DataFormat::Tnews, &tr, &tr),
    );
    case(
        "missing file",
        section(
            DataFormat::Jsonl,
            &dir.join("nowhere.jsonl"),
            &dir.join("nowhere.jsonl"),
        ),
    );
    let bad_csv: &[(&str, &str)] = &[
        ("no text column", "body,label\nx,1\ny,1\n"),
        ("empty text cell", "text,label\nx,1\n,1\n"),
        ("empty label cell", "text,label\nx,1\ny,\n"),
        ("header only", "text,label\n"),
    ];
    for (name, text) in bad_csv {
        let tr = write(dir, "bad.csv", text);
        case(&format!("csv {name}"), section(DataFormat::Csv, &tr, &tr));
    }
    let tr = write(dir, "good.jsonl", good);
    let te = write(dir, "other.jsonl", "{\"text\": \"c\", \"label\": \"y\"}\n");
    case(
        "no test example of the classes",
        section(DataFormat::Jsonl, &tr, &te),
    );
    let tr = write(dir, "one.jsonl", "{\"text\": \"c\", \"label\": \"y\"}\n");
    case(
        "one example of a class",
        section(DataFormat::Jsonl, &tr, &tr),
    );
    let mut unknown = section(DataFormat::Jsonl, &write(dir, "good.jsonl", good), &tr);
    unknown.classes = vec!["nope".into()];
    case("unknown class", unknown);
    out
}

#[test]
fn datasets_and_errors_are_as_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = String::new();
    for (name, outcome) in cases(dir.path()) {
        writeln!(got, "== {name}").unwrap();
        if name.starts_with("tnews") && !outcome.starts_with("error") {
            // The rendering's digest, and its last lines: the counts table.
            writeln!(got, "sha256 {}", sha(&outcome)).unwrap();
            let table = &outcome[outcome.rfind("\nshape").map_or(0, |i| i + 1)..];
            got.push_str(table);
        } else {
            got.push_str(&outcome);
        }
    }
    let pinned = root().join("tests/fixtures/data-pin.txt");
    if std::env::var_os("KDRUN_BLESS").is_some() {
        std::fs::write(&pinned, &got).unwrap();
    }
    let want = std::fs::read_to_string(&pinned).expect("tests/fixtures/data-pin.txt");
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "dataset differs from the pin at line {}:\n got: {:?}\nwant: {:?}",
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}
