//! Lock files a killed process left in a mirror.
//!
//! gix takes a ref or `packed-refs` by creating `<file>.lock` beside it and
//! renames it into place when done; a process killed in between (SIGKILL,
//! OOM, a power cut) leaves the `.lock`, and every later fetch fails with
//! "the lock for the packed-ref file could not be obtained". Only a
//! process that owns the mirror alone (the daemon, holding its state
//! directory's lock) may remove them, and only before it starts using it.

use std::path::{Path, PathBuf};

/// Removes the lock files in the mirror at `path`: `*.lock` files at its
/// top (`packed-refs.lock`, `HEAD.lock`, `config.lock`...) and anywhere
/// under `refs/`. Links are neither followed nor removed; a directory
/// that cannot be read is passed over. Returns the files removed.
pub fn clear_stale_locks(path: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut dirs = vec![(path.to_owned(), false)];
    while let Some((dir, in_refs)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() && (in_refs || entry.file_name() == "refs") {
                dirs.push((path, true));
            } else if kind.is_file()
                && path.extension().is_some_and(|e| e == "lock")
                && std::fs::remove_file(&path).is_ok()
            {
                removed.push(path);
            }
        }
    }
    removed.sort();
    removed
}
