//! A `netbird debug bundle`: a zip NetBird's `client/internal/debug` writes with `status.txt`
//! (the text of `netbird status -d`), `client.log`, `config.txt`, and with `--system-info` also
//! `routes.txt`, `interfaces.txt`, `iptables.txt` (an `iptables-save` section, `ipset list`,
//! `iptables -v -n -L`) and `nftables.txt` (`nft -a list ruleset`), beside profiles and state
//! dumps stunmap does not read.
//!
//! The zip is read from memory, never extracted: the central directory (APPNOTE.TXT §4.3.12)
//! names the entries and their sizes, each wanted entry is checked against its local header
//! (§4.3.7), inflated (method 8, RFC 1951) into a buffer that may not grow past its cap, and its
//! CRC-32 checked. Caps bound everything: the archive size, the entry count, each entry's size
//! and the total inflated. Entry names with `..`, a leading `/`, a drive letter or a backslash
//! are ignored with a note. Encrypted entries, zip64 and multi-disk archives are refused.

use std::collections::BTreeMap;

use serde::Serialize;

use super::NetbirdError;

/// Largest archive read.
pub const MAX_ARCHIVE: usize = 64 << 20;
/// Most central-directory entries.
pub const MAX_ENTRIES: usize = 4096;
/// Total bytes inflated over all wanted entries.
pub const MAX_TOTAL: usize = 128 << 20;
/// Largest compression ratio accepted for an entry over 1 MiB (text rarely passes 50).
pub const MAX_RATIO: u64 = 200;

/// The files read, with their caps.
pub const WANTED: [(&str, usize); 7] = [
    ("status.txt", 4 << 20),
    ("status.json", 4 << 20),
    ("client.log", 64 << 20),
    ("routes.txt", 8 << 20),
    ("iptables.txt", 8 << 20),
    ("nftables.txt", 8 << 20),
    ("config.txt", 1 << 20),
];

fn bad(reason: impl Into<String>) -> NetbirdError {
    NetbirdError::Bundle {
        reason: reason.into(),
    }
}

/// One entry of the listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Name in the archive (or folder).
    pub name: String,
    /// Size (uncompressed).
    pub size: u64,
    /// Whether stunmap read it.
    pub read: bool,
}

/// The bundle's files stunmap reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bundle {
    /// Every entry seen.
    pub listing: Vec<Entry>,
    /// Contents of the wanted files, by name.
    #[serde(skip)]
    pub files: BTreeMap<&'static str, Vec<u8>>,
    /// What was skipped and why.
    pub notes: Vec<String>,
}

impl Bundle {
    /// A wanted file's bytes.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// A wanted file as text (invalid UTF-8 replaced).
    pub fn text(&self, name: &str) -> Option<String> {
        self.file(name)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Whether it looks like a NetBird bundle at all.
    fn check_netbird(&self) -> Result<(), NetbirdError> {
        if self.files.contains_key("status.txt")
            || self.files.contains_key("status.json")
            || self.files.contains_key("client.log")
        {
            Ok(())
        } else {
            Err(bad(
                "not a NetBird debug bundle: no status.txt, status.json or client.log at its top level",
            ))
        }
    }

    /// Build from files the caller read (an unpacked folder): `(name, size, bytes)` where
    /// `bytes` is `None` for files it did not read. Sizes must already respect [`cap_of`].
    pub fn from_files(
        files: impl IntoIterator<Item = (String, u64, Option<Vec<u8>>)>,
    ) -> Result<Bundle, NetbirdError> {
        let mut b = Bundle::default();
        for (name, size, bytes) in files {
            let want = wanted(&name);
            let read = match (want, bytes) {
                (Some(w), Some(bytes)) if bytes.len() <= w.1 => {
                    b.files.insert(w.0, bytes);
                    true
                }
                (Some(w), Some(_)) => {
                    b.notes
                        .push(format!("{name}: over its cap of {} bytes; not read", w.1));
                    false
                }
                (Some(w), None) if size > w.1 as u64 => {
                    b.notes.push(format!(
                        "{name}: {size} bytes, over its cap of {}; not read",
                        w.1
                    ));
                    false
                }
                _ => false,
            };
            b.listing.push(Entry { name, size, read });
        }
        b.check_netbird()?;
        Ok(b)
    }
}

/// The cap of a wanted file, `None` for files not read.
pub fn cap_of(name: &str) -> Option<usize> {
    wanted(name).map(|w| w.1)
}

fn wanted(name: &str) -> Option<(&'static str, usize)> {
    WANTED.iter().find(|(n, _)| *n == name).copied()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LFH_SIG: u32 = 0x0403_4b50;

/// Why an entry name is not used, if it is not.
fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        Some("a NUL byte")
    } else if name.starts_with('/') || name.contains('\\') {
        Some("an absolute or backslash path")
    } else if name.split('/').any(|c| c == "..") {
        Some("a `..` component")
    } else if name.get(1..2) == Some(":") {
        Some("a drive letter")
    } else {
        None
    }
}

/// Read a bundle zip from memory.
pub fn from_zip(zip: &[u8]) -> Result<Bundle, NetbirdError> {
    if zip.len() > MAX_ARCHIVE {
        return Err(NetbirdError::TooLarge {
            what: "bundle".into(),
            size: zip.len() as u64,
            max: MAX_ARCHIVE as u64,
        });
    }
    if zip.len() < 22 || u32_at(zip, 0) != Some(LFH_SIG) && u32_at(zip, 0) != Some(EOCD_SIG) {
        return Err(bad("not a zip archive"));
    }
    // End of central directory, APPNOTE §4.3.16: the last 22 bytes plus a comment of up to 64 KiB.
    let lowest = zip.len().saturating_sub(22 + 0xffff);
    let eocd = (lowest..=zip.len() - 22)
        .rev()
        .find(|&i| u32_at(zip, i) == Some(EOCD_SIG))
        .ok_or_else(|| bad("truncated zip: no end-of-central-directory record"))?;
    let field16 = |o: usize| u16_at(zip, eocd + o).ok_or_else(|| bad("truncated zip"));
    let field32 = |o: usize| u32_at(zip, eocd + o).ok_or_else(|| bad("truncated zip"));
    if field16(4)? != 0 || field16(6)? != 0 {
        return Err(bad("multi-disk zip archives are not read"));
    }
    let count = usize::from(field16(10)?);
    let cd_size = field32(12)? as usize;
    let cd_off = field32(16)? as usize;
    if count == 0xffff || cd_off == 0xffff_ffff || cd_size == 0xffff_ffff {
        return Err(bad(
            "zip64 archives are not read (a NetBird bundle is far smaller)",
        ));
    }
    if count > MAX_ENTRIES {
        return Err(bad(format!(
            "{count} entries; at most {MAX_ENTRIES} are read"
        )));
    }
    let cd_end = cd_off
        .checked_add(cd_size)
        .filter(|&e| e <= eocd)
        .ok_or_else(|| bad("central directory lies outside the archive (truncated zip?)"))?;
    let mut b = Bundle::default();
    let mut total: usize = 0;
    let mut at = cd_off;
    for i in 0..count {
        let h = |o: usize| {
            u16_at(zip, at + o)
                .ok_or_else(|| bad(format!("entry {i}: truncated central directory")))
        };
        let w = |o: usize| {
            u32_at(zip, at + o)
                .ok_or_else(|| bad(format!("entry {i}: truncated central directory")))
        };
        if at + 46 > cd_end || w(0)? != CDH_SIG {
            return Err(bad(format!("entry {i}: bad central directory header")));
        }
        let flags = h(8)?;
        let method = h(10)?;
        let crc = w(16)?;
        let csize = w(20)? as usize;
        let usize_ = w(24)? as usize;
        let nlen = usize::from(h(28)?);
        let elen = usize::from(h(30)?);
        let clen = usize::from(h(32)?);
        let local = w(42)? as usize;
        let name_bytes = zip
            .get(at + 46..at + 46 + nlen)
            .ok_or_else(|| bad(format!("entry {i}: name runs past the central directory")))?;
        let next = at + 46 + nlen + elen + clen;
        if next > cd_end {
            return Err(bad(format!("entry {i}: runs past the central directory")));
        }
        at = next;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let shown: String = name.chars().take(200).collect();
        if let Some(why) = unsafe_name(&name) {
            b.notes.push(format!("entry {shown:?} has {why}; ignored"));
            continue;
        }
        // Tolerate one top-level folder (a bundle unpacked and zipped again).
        let base = match name.split_once('/') {
            Some((_, rest)) if !rest.contains('/') => rest,
            Some(_) => "",
            None => name.as_str(),
        };
        let Some((key, cap)) = wanted(base) else {
            // Listed, not read (the listing itself is bounded by MAX_ENTRIES).
            if !name.ends_with('/') {
                if base.ends_with(".log.gz") && !b.notes.iter().any(|n| n.contains("rotated")) {
                    b.notes.push(
                        "rotated logs (client-*.log.gz) are not read; only client.log".into(),
                    );
                }
                b.listing.push(Entry {
                    name: shown,
                    size: usize_ as u64,
                    read: false,
                });
            }
            continue;
        };
        let mut entry = Entry {
            name: shown.clone(),
            size: usize_ as u64,
            read: false,
        };
        if b.files.contains_key(key) {
            b.notes
                .push(format!("{shown}: a second entry of that name; ignored"));
            b.listing.push(entry);
            continue;
        }
        if flags & 1 != 0 {
            b.notes.push(format!("{shown}: encrypted; not read"));
            b.listing.push(entry);
            continue;
        }
        if usize_ > cap {
            b.notes.push(format!(
                "{shown}: {usize_} bytes, over its cap of {cap}; not read"
            ));
            b.listing.push(entry);
            continue;
        }
        if usize_ > 1 << 20 && (usize_ as u64) > (csize as u64).saturating_mul(MAX_RATIO) {
            return Err(bad(format!(
                "{shown}: compression ratio over {MAX_RATIO}:1 ({csize} → {usize_} bytes): refused as a zip bomb"
            )));
        }
        if total.saturating_add(usize_) > MAX_TOTAL {
            return Err(bad(format!(
                "more than {MAX_TOTAL} bytes to inflate: refused"
            )));
        }
        // Local header, APPNOTE §4.3.7: its own name and extra lengths decide where data starts.
        if u32_at(zip, local) != Some(LFH_SIG) {
            return Err(bad(format!("{shown}: bad local header (truncated zip?)")));
        }
        let lnlen = usize::from(u16_at(zip, local + 26).ok_or_else(|| bad("truncated zip"))?);
        let lelen = usize::from(u16_at(zip, local + 28).ok_or_else(|| bad("truncated zip"))?);
        let start = local + 30 + lnlen + lelen;
        let data = start
            .checked_add(csize)
            .and_then(|end| zip.get(start..end))
            .ok_or_else(|| bad(format!("{shown}: data runs past the end (truncated zip)")))?;
        let out = match method {
            0 => data.to_vec(),
            8 => {
                miniz_oxide::inflate::decompress_to_vec_with_limit(data, usize_).map_err(|_| {
                    bad(format!(
                        "{shown}: corrupt deflate data or larger than declared"
                    ))
                })?
            }
            m => {
                b.notes
                    .push(format!("{shown}: compression method {m} is not read"));
                b.listing.push(entry);
                continue;
            }
        };
        if out.len() != usize_ || crc32fast::hash(&out) != crc {
            return Err(bad(format!(
                "{shown}: size or CRC-32 does not match (corrupt zip)"
            )));
        }
        total += out.len();
        b.files.insert(key, out);
        entry.read = true;
        b.listing.push(entry);
    }
    b.check_netbird()?;
    Ok(b)
}

/// `WgIface:` and `WgPort:` of `config.txt`.
pub fn config_interface_and_port(config: &str) -> (Option<String>, Option<u16>) {
    let mut iface = None;
    let mut port = None;
    for l in config.lines().take(10_000) {
        if let Some(v) = l.trim().strip_prefix("WgIface:") {
            let v = v.trim();
            if !v.is_empty()
                && v.len() < 16
                && v.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
            {
                iface = Some(v.to_owned());
            }
        } else if let Some(v) = l.trim().strip_prefix("WgPort:") {
            port = v.trim().parse().ok().filter(|p| *p > 0);
        }
    }
    (iface, port)
}

/// The `iptables-save` part of `iptables.txt` (`=== iptables-save output ===` up to the next
/// `=== … ===` header), or the whole file when it is plain `iptables-save` output.
pub fn iptables_save_section(text: &str) -> Option<&str> {
    const HEAD: &str = "=== iptables-save output ===";
    if let Some(i) = text.find(HEAD) {
        let rest = text.get(i + HEAD.len()..)?;
        let end = rest.find("\n=== ").map_or(rest.len(), |e| e + 1);
        return rest.get(..end);
    }
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    (first.starts_with("# Generated by") || first.starts_with('*')).then_some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A stored (method 0) zip of `files`, written by hand: local headers, central directory, EOCD.
    pub(crate) fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (name, data) in files {
            let off = out.len() as u32;
            let crc = crc32fast::hash(data);
            let n = name.len() as u16;
            let sz = data.len() as u32;
            out.extend_from_slice(&LFH_SIG.to_le_bytes());
            out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&sz.to_le_bytes());
            out.extend_from_slice(&sz.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            cd.extend_from_slice(&CDH_SIG.to_le_bytes());
            cd.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            cd.extend_from_slice(&crc.to_le_bytes());
            cd.extend_from_slice(&sz.to_le_bytes());
            cd.extend_from_slice(&sz.to_le_bytes());
            cd.extend_from_slice(&n.to_le_bytes());
            cd.extend_from_slice(&[0; 12]);
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(name.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&EOCD_SIG.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        let c = files.len() as u16;
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn reads_wanted_entries_and_ignores_traversal() {
        let z = stored_zip(&[
            ("status.txt", b"Management: Connected\n"),
            ("../../etc/passwd", b"root"),
            ("/abs/status.txt", b"x"),
            ("heap.prof", b"\x00\x01"),
        ]);
        let b = from_zip(&z).unwrap();
        assert_eq!(b.text("status.txt").unwrap(), "Management: Connected\n");
        assert_eq!(b.notes.len(), 2, "{:?}", b.notes);
        assert!(b.notes.iter().any(|n| n.contains("..")));
        assert!(b.listing.iter().any(|e| e.name == "heap.prof" && !e.read));
    }

    #[test]
    fn refuses_other_archives_truncation_and_bad_crc() {
        let z = stored_zip(&[("hello.txt", b"hi")]);
        assert!(
            from_zip(&z)
                .unwrap_err()
                .to_string()
                .contains("not a NetBird debug bundle")
        );
        let z = stored_zip(&[("status.txt", b"Management: Connected\n")]);
        for cut in [1, 10, 30, z.len() / 2] {
            assert!(from_zip(&z[..z.len() - cut]).is_err());
        }
        let mut bad_crc = z.clone();
        bad_crc[30 + 10] ^= 0xff;
        assert!(from_zip(&bad_crc).unwrap_err().to_string().contains("CRC"));
        assert!(from_zip(b"PK\x03\x04 not really").is_err());
        assert!(from_zip(b"{\"json\": true}").is_err());
    }

    #[test]
    fn deflate_bomb_is_refused() {
        // 16 MiB of zeros deflates to ~16 KiB: over the ratio cap.
        let big = vec![0u8; 16 << 20];
        let comp = miniz_oxide::deflate::compress_to_vec(&big, 6);
        let mut z = stored_zip(&[("client.log", &comp)]);
        // Patch method 8 and the uncompressed size into both headers.
        let crc = crc32fast::hash(&big).to_le_bytes();
        let usz = (big.len() as u32).to_le_bytes();
        z[8] = 8;
        z[14..18].copy_from_slice(&crc);
        z[22..26].copy_from_slice(&usz);
        let cd = z.len() - 22 - 46 - "client.log".len();
        z[cd + 10] = 8;
        z[cd + 16..cd + 20].copy_from_slice(&crc);
        z[cd + 24..cd + 28].copy_from_slice(&usz);
        let e = from_zip(&z).unwrap_err().to_string();
        assert!(e.contains("zip bomb"), "{e}");
    }

    #[test]
    fn iptables_section_and_config() {
        let t = "=== iptables-save output ===\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n\n=== ipset list output ===\nNo ipsets found\n";
        assert_eq!(
            iptables_save_section(t).unwrap(),
            "\n*filter\n:INPUT DROP [0:0]\nCOMMIT\n\n"
        );
        assert!(iptables_save_section("Chain INPUT (policy ACCEPT)\n").is_none());
        let (i, p) = config_interface_and_port(
            "NetBird Client Configuration:\n\nWgIface: wt0\nWgPort: 51821\n",
        );
        assert_eq!((i.as_deref(), p), (Some("wt0"), Some(51821)));
    }
}
