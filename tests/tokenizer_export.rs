//! An exported teacher's `tokenizer.json`, loaded by the `tokenizers` crate as transformers'
//! `AutoTokenizer` loads it, reads every sentence of the default recipe's test split into the
//! same ids as kdrun's own tokenizer (training vocabulary, truncation to `data.max_len`), for
//! BERT's layout (`[CLS] … [SEP]`) and XLNet's (`… [SEP] [CLS]`, `[CLS]` in segment 2).

use kdrun::data::batch::{InputKind, TextEncoder};
use kdrun::data::{CharVocab, Dataset, Layout, TeacherTokenizer};
use std::path::Path;
use std::str::FromStr;

#[test]
fn exported_tokenizer_gives_kdruns_ids_on_the_whole_test_split() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded =
        kdrun::recipe::load_with_env(&root.join("recipes/tnews.toml"), &[], false).unwrap();
    let r = &loaded.recipe;
    let data = Dataset::load(&r.data).unwrap();
    let vocab = CharVocab::build(
        data.train.iter().map(|e| e.text.as_str()),
        r.data.min_count,
        r.data.lowercase,
    );
    for layout in [Layout::ClsFirst, Layout::ClsLast] {
        check_layout(&data, r, TeacherTokenizer::Chars(vocab.clone(), layout));
    }
}

fn check_layout(data: &Dataset, r: &kdrun::recipe::Recipe, teacher: TeacherTokenizer) {
    let layout = teacher.layout();
    let json = teacher.tokenizer_json(r.data.max_len).unwrap();
    let exported = tokenizers::Tokenizer::from_str(&json).unwrap();
    assert_eq!(data.test.len(), 2810);
    // KDRUN_DUMP_TOKENIZER=DIR writes the tokenizer and kdrun's ids, to check them against
    // Python's `tokenizers` / transformers by hand.
    let dump = std::env::var_os("KDRUN_DUMP_TOKENIZER").map(std::path::PathBuf::from);
    let mut lines = Vec::new();
    let mut truncated = 0;
    for e in &data.test {
        let ours = teacher
            .encode_text(&e.text, InputKind::Teacher, r.data.max_len)
            .unwrap();
        let theirs = exported.encode(e.text.as_str(), true).unwrap();
        assert_eq!(
            theirs.get_ids(),
            ours.as_slice(),
            "{layout:?}, test example {}: {:?}",
            e.id,
            e.text
        );
        let types = theirs.get_type_ids();
        match layout {
            Layout::ClsFirst => assert!(types.iter().all(|&t| t == 0)),
            Layout::ClsLast => {
                assert_eq!(types.last(), Some(&2));
                assert!(types[..types.len() - 1].iter().all(|&t| t == 0));
            }
        }
        truncated += usize::from(ours.len() == r.data.max_len);
        lines.push(serde_json::json!({"text": e.text, "ids": ours}).to_string());
    }
    if let Some(dir) = dump {
        let dir = dir.join(format!("{layout:?}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokenizer.json"), &json).unwrap();
        std::fs::write(dir.join("ids.jsonl"), lines.join("\n") + "\n").unwrap();
    }
    // The split exercises truncation and unknown characters, not only the easy cases.
    assert!(truncated > 0);
    let unk = teacher.special_ids()[1];
    assert!(data.test.iter().any(|e| teacher
        .encode_text(&e.text, InputKind::Teacher, r.data.max_len)
        .unwrap()
        .contains(&unk)));
}
