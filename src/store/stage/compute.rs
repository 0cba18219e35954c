//! [`Stages::get_or_compute`]: a stage reused when its folder is whole, else computed under its
//! key's lock; a damaged folder set aside first, and an older one given its checksums.

use super::{file_sums, Done, Found, Keyed, Manifest, Stage, Stages, MANIFEST};
use crate::store::write_atomic;
use anyhow::{Context, Result};

impl Stages {
    /// The stage's result: read back if its folder is finished and whole, else computed into a
    /// temporary folder that is moved into place with its manifest (so a folder is whole or
    /// absent). A damaged folder is said in a warning and computed again.
    pub fn get_or_compute<C: ?Sized, S: Stage<C>>(
        &self,
        stage: &S,
        cx: &C,
    ) -> Result<Done<S::Output>> {
        let Keyed {
            spec,
            key,
            settings,
            inputs,
        } = Keyed::new(stage, cx)?;
        let name = stage.name();
        let dir = self.dir(name, &key);
        let reused = |value| Done {
            value,
            key: key.clone(),
            dir: dir.clone(),
            reused: true,
        };
        // Without the lock, the common case: a finished stage that checks out (its files hashed
        // once per process). Anything else (also a folder replaced while it was read) is looked
        // at again under the lock.
        let whole =
            self.was_checked(name, &key) || matches!(self.check(name, &key), Found::Whole(_));
        if whole {
            if let Ok(value) = stage.load(cx, &dir) {
                self.mark_checked(name, &key);
                return Ok(reused(value));
            }
        }
        let lock = self.lock(name, &key)?;
        // Another process may have finished (or repaired) it while this one waited for the lock.
        match self.check(name, &key) {
            Found::Absent => {}
            found @ (Found::Whole(_) | Found::Unchecked(_)) => {
                if let Found::Unchecked(m) = found {
                    self.record_checksums(m);
                }
                drop(lock);
                let value = stage
                    .load(cx, &dir)
                    .with_context(|| format!("reading stage {}", dir.display()))?;
                self.mark_checked(name, &key);
                return Ok(reused(value));
            }
            Found::Damaged(damage) => {
                crate::runtime::progress::note(&format!(
                    "warning: stage {name}/{key} is damaged, computing it again: {damage}"
                ));
                self.set_aside(name, &key)?;
            }
        }
        let writer = self.begin_locked(name, &key, lock)?;
        let value = stage.compute(cx, &spec, &writer)?;
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let dir = writer.finish(settings, &refs)?;
        self.mark_checked(name, &key);
        Ok(Done {
            value,
            key,
            dir,
            reused: false,
        })
    }

    /// A stage written before manifests had checksums: record them now (with the key's lock
    /// held), so later damage is found. Best effort: a store that cannot be written is used as
    /// it is.
    fn record_checksums(&self, mut m: Manifest) {
        let dir = self.dir(&m.stage, &m.key);
        let recorded = file_sums(&dir).and_then(|files| {
            m.files = Some(files);
            m.checksum = Some(m.checksum_now());
            write_atomic(
                &dir.join(MANIFEST),
                serde_json::to_string_pretty(&m)?.as_bytes(),
            )
        });
        crate::runtime::progress::note(&match recorded {
            Ok(_) => format!(
                "kdrun: stage {}/{} was written by a kdrun without checksums; recorded them now",
                m.stage, m.key
            ),
            Err(e) => format!(
                "kdrun: stage {}/{} has no checksums and they could not be recorded: {e:#}",
                m.stage, m.key
            ),
        });
    }

    /// Move a damaged stage folder out of the way and remove it (the key's lock held). It is
    /// renamed first, in one step, to a temporary name that cleaning removes if this process
    /// dies before it does.
    fn set_aside(&self, stage: &str, key: &str) -> Result<()> {
        let dir = self.dir(stage, key);
        let aside = dir.with_file_name(format!("{key}.tmp-{}.damaged", std::process::id()));
        if aside.exists() {
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("cannot remove {}", aside.display()))?;
        }
        match std::fs::rename(&dir, &aside) {
            Ok(()) => std::fs::remove_dir_all(&aside)
                .with_context(|| format!("cannot remove {}", aside.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot move {} aside", dir.display())),
        }
    }
}
