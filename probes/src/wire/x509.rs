//! Just enough of X.509 (RFC 5280 §4.1) to name a certificate's subject and issuer: a
//! bounds-checked DER walk (ITU-T X.690 §8.1) to the two `Name` fields (RFC 5280 §4.1.2.4,
//! §4.1.2.6), and their common name and organization (RFC 5280 Appendix A.1).
//! Verification is rustls' job; this only says who signed what, for the report.

use std::fmt;

use serde::Serialize;

use super::WireError;

/// The parts of a distinguished name worth printing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DistinguishedName {
    /// commonName (2.5.4.3).
    pub common_name: Option<String>,
    /// organizationName (2.5.4.10).
    pub organization: Option<String>,
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.common_name, &self.organization) {
            (Some(cn), Some(o)) if cn != o => write!(f, "{cn} ({o})"),
            (Some(cn), _) => f.write_str(cn),
            (None, Some(o)) => f.write_str(o),
            (None, None) => f.write_str("(unnamed)"),
        }
    }
}

/// Subject and issuer of one certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertNames {
    /// Who the certificate is for.
    pub subject: DistinguishedName,
    /// Who signed it.
    pub issuer: DistinguishedName,
    /// Subject and issuer are the same name (a root, or a self-signed leaf).
    pub self_issued: bool,
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0A];

/// A DER cursor: each read returns one TLV's tag and contents, or an error with the offset.
struct Der<'a> {
    buf: &'a [u8],
    /// Offset of `buf` in the certificate, for error messages.
    base: usize,
}

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn read(&mut self) -> Result<(u8, Der<'a>), WireError> {
        let err = WireError::Der { offset: self.base };
        let (&tag, rest) = self.buf.split_first().ok_or(err.clone())?;
        let (&first, rest) = rest.split_first().ok_or(err.clone())?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 || n > 4 {
                return Err(err);
            }
            let (bytes, rest) = rest.split_at_checked(n).ok_or(err.clone())?;
            (
                bytes
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | usize::from(*b)),
                rest,
            )
        };
        let (content, rest) = rest.split_at_checked(len).ok_or(err)?;
        let header = self.buf.len() - rest.len() - len;
        let inner = Der {
            buf: content,
            base: self.base + header,
        };
        self.base += self.buf.len() - rest.len();
        self.buf = rest;
        Ok((tag, inner))
    }

    fn expect(&mut self, tag: u8) -> Result<Der<'a>, WireError> {
        let at = self.base;
        match self.read()? {
            (t, inner) if t == tag => Ok(inner),
            _ => Err(WireError::Der { offset: at }),
        }
    }
}

/// Read the subject and issuer of a DER certificate.
pub fn names(cert_der: &[u8]) -> Result<CertNames, WireError> {
    let mut top = Der {
        buf: cert_der,
        base: 0,
    };
    let mut cert = top.expect(TAG_SEQUENCE)?;
    let mut tbs = cert.expect(TAG_SEQUENCE)?;
    let (mut tag, _) = tbs.read()?;
    if tag == 0xA0 {
        // [0] EXPLICIT version; the serial number follows.
        (tag, _) = tbs.read()?;
    }
    if tag != 0x02 {
        return Err(WireError::Der { offset: tbs.base });
    }
    tbs.expect(TAG_SEQUENCE)?; // signature algorithm
    let issuer = tbs.expect(TAG_SEQUENCE)?;
    let issuer_raw = issuer.buf;
    let issuer = name(issuer)?;
    tbs.expect(TAG_SEQUENCE)?; // validity
    let subject = tbs.expect(TAG_SEQUENCE)?;
    let subject_raw = subject.buf;
    let subject = name(subject)?;
    Ok(CertNames {
        subject,
        issuer,
        self_issued: issuer_raw == subject_raw,
    })
}

fn name(mut rdns: Der<'_>) -> Result<DistinguishedName, WireError> {
    let mut dn = DistinguishedName::default();
    while !rdns.is_empty() {
        let mut set = rdns.expect(TAG_SET)?;
        while !set.is_empty() {
            let mut atv = set.expect(TAG_SEQUENCE)?;
            let oid = atv.expect(TAG_OID)?;
            let (vtag, value) = atv.read()?;
            let text = string_value(vtag, value.buf);
            if oid.buf == OID_CN {
                dn.common_name = Some(text);
            } else if oid.buf == OID_O {
                dn.organization = Some(text);
            }
        }
    }
    Ok(dn)
}

/// Decode a directory string: BMPString is UTF-16BE, everything else is taken as UTF-8
/// (Printable and IA5 are subsets), lossily.
fn string_value(tag: u8, bytes: &[u8]) -> String {
    if tag == 0x1E {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| {
                u16::from_be_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            })
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn dn(cn: &str, o: Option<&str>) -> Vec<u8> {
        let mut rdns = Vec::new();
        if let Some(o) = o {
            let atv = [tlv(0x06, OID_O), tlv(0x0C, o.as_bytes())].concat();
            rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
        }
        let atv = [tlv(0x06, OID_CN), tlv(0x13, cn.as_bytes())].concat();
        rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
        tlv(0x30, &rdns)
    }

    fn cert(issuer: &[u8], subject: &[u8]) -> Vec<u8> {
        let tbs = [
            tlv(0xA0, &tlv(0x02, &[2])),
            tlv(0x02, &[1, 2, 3]),
            tlv(0x30, &tlv(0x06, &[0x2A, 0x86, 0x48])),
            issuer.to_vec(),
            tlv(0x30, &[]),
            subject.to_vec(),
            tlv(0x30, &[]),
        ]
        .concat();
        let body = [tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat();
        tlv(0x30, &body)
    }

    #[test]
    fn reads_names() {
        let c = cert(
            &dn("Corp Inspection CA", Some("Corp")),
            &dn("api.netbird.io", None),
        );
        let n = names(&c).unwrap();
        assert_eq!(n.issuer.to_string(), "Corp Inspection CA (Corp)");
        assert_eq!(n.subject.to_string(), "api.netbird.io");
        assert!(!n.self_issued);
        let r = cert(&dn("Root", None), &dn("Root", None));
        assert!(names(&r).unwrap().self_issued);
        for k in 0..c.len() {
            assert!(names(&c[..k]).is_err());
        }
        assert_eq!(names(&[0x31, 0]), Err(WireError::Der { offset: 0 }));
    }
}
