//! The output flags every reporting command shares, and the files reports are written to.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::exit::usage;

/// How a report is printed (flattened into every reporting command).
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct OutputArgs {
    /// The report as JSON on stdout (its schema is named in the `schema` field; the schema files
    /// are in docs/schema/).
    #[arg(long, conflicts_with = "ndjson")]
    pub(crate) json: bool,
    /// One JSON event per line as results arrive, the whole report last.
    #[arg(long)]
    pub(crate) ndjson: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// Files a report with sections can also be written to.
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct ReportFiles {
    /// Also write Prometheus text exposition to FILE (node_exporter textfile collector).
    #[arg(long, value_name = "FILE")]
    pub(crate) prom: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
}

impl ReportFiles {
    /// Check before probing that each file can be written where it is asked for: the folder
    /// exists and the name is not a folder or a link to one.
    pub(crate) fn check(&self) -> Result<()> {
        for (flag, path) in [("--prom", &self.prom), ("--html", &self.html)] {
            if let Some(p) = path {
                check_target(p).map_err(|e| usage(format!("{flag} {}: {e}", p.display())))?;
            }
        }
        Ok(())
    }
}

fn check_target(path: &Path) -> std::result::Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("empty path".into());
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err("is a directory".into());
        }
        if meta.file_type().is_symlink() {
            return Err("is a symbolic link; give the real path".into());
        }
    }
    let dir = parent(path);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `text` to `path` through a new temporary file in the same folder (created with
/// O_EXCL under an unpredictable name, mode 0644) and a rename, so a reader (the textfile
/// collector, a browser) never sees half a file and an existing link at a predictable name
/// cannot redirect the write. A symbolic link at `path` itself is replaced, not followed.
pub(crate) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".stunmap-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.flush()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_before_probing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_target(&dir.path().join("x.prom")).is_ok());
        assert!(check_target(dir.path()).unwrap_err().contains("directory"));
        assert!(check_target(&dir.path().join("missing/x.prom")).is_err());
        #[cfg(unix)]
        {
            let link = dir.path().join("link.prom");
            std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
            assert!(check_target(&link).unwrap_err().contains("link"));
        }
    }

    #[test]
    fn a_write_replaces_a_link_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("out.prom");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        write_atomically(&target, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty());
    }
}
