//! What every section's checks share: the list of problems found so far with its kinds of
//! check, and the keys problems are named by.

use crate::recipe::sections::Optim;

/// The dotted key of `rest` in member `index` (0-based, as the array is indexed) of
/// `[[teacher.members]]`: `teacher.members[1].arch`.
pub fn member_key(index: usize, rest: &str) -> &'static str {
    static_key(&format!("teacher.members[{index}].{rest}"))
}

/// `key` as the `&'static str` problems name keys by: made once each and kept (a recipe has few
/// keys made at run time: its members' and its teacher section's).
pub fn static_key(key: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static KEYS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys = keys.get_or_insert_with(HashSet::new);
    if let Some(k) = keys.get(key) {
        return k;
    }
    let k: &'static str = Box::leak(key.to_string().into_boxed_str());
    keys.insert(k);
    k
}

/// The problems found so far, as (dotted key, "expected …, found …").
#[derive(Default)]
pub(super) struct Checks {
    pub(super) problems: Vec<(&'static str, String)>,
}

impl Checks {
    /// A problem at `key` unless `ok`.
    pub(super) fn check(&mut self, key: &'static str, ok: bool, expected: &str, found: String) {
        if !ok {
            self.problems
                .push((key, format!("expected {expected}, found {found}")));
        }
    }

    /// A count that must be at least 1.
    pub(super) fn at_least_one<T: PartialOrd + From<u8> + std::fmt::Display>(
        &mut self,
        key: &'static str,
        n: T,
    ) {
        let ok = n >= T::from(1);
        self.check(key, ok, "an integer ≥ 1", n.to_string());
    }

    /// The optimiser settings of `section` (`teacher`, `student`, `teacher.pretrain`): at least
    /// one epoch (where the section counts epochs: pre-training may count steps instead), a
    /// positive learning rate, batches of at least one example, a warm-up fraction in [0, 1),
    /// a weight decay ≥ 0.
    pub(super) fn optim(&mut self, section: &str, o: Optim, counts_epochs: bool) {
        let key = |rest: &str| static_key(&format!("{section}.{rest}"));
        if counts_epochs {
            self.at_least_one(key("epochs"), o.epochs);
        }
        self.positive(key("lr"), o.lr);
        self.at_least_one(key("batch_size"), o.batch_size);
        self.check(
            key("warmup"),
            (0.0..1.0).contains(&o.warmup),
            "a fraction in [0, 1)",
            o.warmup.to_string(),
        );
        self.check(
            key("weight_decay"),
            o.weight_decay >= 0.0 && o.weight_decay.is_finite(),
            "a number ≥ 0",
            o.weight_decay.to_string(),
        );
    }

    /// A finite number above 0.
    pub(super) fn positive(&mut self, key: &'static str, x: f64) {
        self.check(
            key,
            x > 0.0 && x.is_finite(),
            "a positive number",
            x.to_string(),
        );
    }
}

/// Why a path that should be a file is not one: a folder, or not there.
pub(super) fn missing_file(path: &std::path::Path) -> &'static str {
    if path.is_dir() {
        "a folder, not a file"
    } else {
        "not found"
    }
}
