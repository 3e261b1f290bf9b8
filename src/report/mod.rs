//! Renderers of a check report: terminal ([`human`]), Prometheus text exposition ([`prom`]),
//! a self-contained HTML page ([`html`]); JSON and NDJSON are the serde form of
//! `check::model`.

pub(crate) mod html;
pub(crate) mod human;
pub(crate) mod netbird;
pub(crate) mod prom;

use std::path::Path;

use serde::Serialize;

use crate::check::model::CheckReport;

/// The last NDJSON line: the whole report.
#[derive(Debug, Serialize)]
pub(crate) struct ReportEvent<'a> {
    pub(crate) event: &'static str,
    pub(crate) report: &'a CheckReport,
}

/// Write `text` to `path` through a temporary file and a rename, so a reader (the textfile
/// collector, a browser) never sees half a file.
pub(crate) fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
