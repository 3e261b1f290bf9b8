//! The shapes Windows PowerShell's `ConvertTo-Json` gives the values stunmap reads.
//!
//! - Nothing at all when the pipeline was empty (no rule, no product): an empty list.
//! - A bare object instead of a one-element array when the pipeline held one object.
//! - Enums as their numbers (`"Direction": 1`), unless the caller converted them to text.
//! - A multi-valued property as a string (one value), an array, or — when the values went
//!   through `Select-Object` — an object `{"value": [...], "Count": n}`; an empty one as `""`
//!   or `null`.
//! - UTF-8 with or without a byte-order mark, or UTF-16 with one (`Out-File` in Windows
//!   PowerShell 5.1 writes UTF-16LE by default).

use serde_json::Value;

use super::{HostFwError, InputFormat};

/// Decode UTF-8 (with or without BOM) or UTF-16 with a BOM.
pub(crate) fn decode(bytes: &[u8]) -> Option<String> {
    let utf16 = |le: bool, rest: &[u8]| {
        let units: Vec<u16> = rest
            .chunks(2)
            .map(|c| match (c.first(), c.get(1)) {
                (Some(&a), Some(&b)) => Some(if le {
                    u16::from_le_bytes([a, b])
                } else {
                    u16::from_be_bytes([a, b])
                }),
                _ => None,
            })
            .collect::<Option<_>>()?;
        String::from_utf16(&units).ok()
    };
    match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).ok(),
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        _ => String::from_utf8(bytes.to_vec()).ok(),
    }
}

/// The objects of one `ConvertTo-Json` document: an array's elements, a bare object, or none
/// for empty output.
pub(crate) fn objects(
    bytes: &[u8],
    format: InputFormat,
) -> Result<Vec<serde_json::Map<String, Value>>, HostFwError> {
    let text = decode(bytes).ok_or(HostFwError::Encoding { format })?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(&text).map_err(|e| HostFwError::json(format, &e))?;
    let items = match doc {
        Value::Array(a) => a,
        Value::Object(o) => match wrapped(&o) {
            Some(inner) => inner.to_vec(),
            None => vec![Value::Object(o)],
        },
        Value::Null => Vec::new(),
        _ => {
            return Err(HostFwError::Shape {
                format,
                path: "(top)".into(),
                detail: "expected an array of objects".into(),
            });
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(o) => Ok(o),
            _ => Err(HostFwError::Shape {
                format,
                path: format!("[{i}]"),
                detail: "expected an object".into(),
            }),
        })
        .collect()
}

/// The array inside `{"value": [...], "Count": n}`.
fn wrapped(o: &serde_json::Map<String, Value>) -> Option<&[Value]> {
    if !o.contains_key("Count") {
        return None;
    }
    match o.get("value") {
        Some(Value::Array(a)) => Some(a),
        _ => None,
    }
}

/// A scalar as text: strings as they are, numbers and booleans as written.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A scalar as a number: a JSON number or a string of digits.
pub(crate) fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A value that means "no condition" in these exports.
pub(crate) fn is_any(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("any")
}

/// A multi-valued property: its values, "Any" and empty values left out (so an empty list is
/// "any"). Strings are split at commas, which no port, address, alias or path of these
/// filters contains but a `"$(…)"`-converted list does.
pub(crate) fn list(v: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    collect(v, &mut out, 0);
    out.retain(|s| !is_any(s));
    out
}

fn collect(v: Option<&Value>, out: &mut Vec<String>, depth: usize) {
    // A wrapper holds an array of scalars; anything deeper is not one of these properties.
    if depth > 2 {
        return;
    }
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => out.extend(s.split(',').map(|x| x.trim().to_owned())),
        Some(Value::Array(a)) => {
            for x in a {
                collect(Some(x), out, depth + 1);
            }
        }
        Some(Value::Object(o)) => {
            if let Some(inner) = wrapped(o) {
                for x in inner {
                    collect(Some(x), out, depth + 1);
                }
            }
        }
        Some(other) => out.extend(text(Some(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_every_shape() {
        let v: Value = serde_json::json!({
            "a": "Any", "b": "4444", "c": ["80", "443"], "d": {"value": ["80", "443"], "Count": 2},
            "e": "", "f": null, "g": 17, "h": {"value": [], "Count": 0}
        });
        assert!(list(v.get("a")).is_empty());
        assert_eq!(list(v.get("b")), ["4444"]);
        assert_eq!(list(v.get("c")), ["80", "443"]);
        assert_eq!(list(v.get("d")), ["80", "443"]);
        assert!(list(v.get("e")).is_empty());
        assert!(list(v.get("f")).is_empty());
        assert_eq!(list(v.get("g")), ["17"]);
        assert!(list(v.get("h")).is_empty());
        assert!(list(v.get("missing")).is_empty());
    }

    #[test]
    fn documents_in_every_shape() {
        let f = InputFormat::NetFirewallRule;
        assert!(objects(b"", f).unwrap().is_empty());
        assert!(objects(b"  \r\n", f).unwrap().is_empty());
        assert_eq!(objects(br#"{"Name":"x"}"#, f).unwrap().len(), 1);
        assert_eq!(
            objects(br#"[{"Name":"x"},{"Name":"y"}]"#, f).unwrap().len(),
            2
        );
        assert_eq!(
            objects(br#"{"value":[{"Name":"x"}],"Count":1}"#, f)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(objects(b"[1]", f), Err(HostFwError::Shape { .. })));
        assert!(matches!(objects(b"7", f), Err(HostFwError::Shape { .. })));
        assert!(matches!(
            objects(&[0xFF, 0xFE, 0x00], f),
            Err(HostFwError::Encoding { .. })
        ));
        let mut utf16 = vec![0xFF, 0xFE];
        for u in r#"[{"Name":"é"}]"#.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        assert_eq!(objects(&utf16, f).unwrap()[0]["Name"], "é");
    }

    #[test]
    fn numbers_from_numbers_and_digit_strings() {
        let v: Value = serde_json::json!({"a": 397568, "b": "397568", "c": "x", "d": -1});
        assert_eq!(number(v.get("a")), Some(397_568));
        assert_eq!(number(v.get("b")), Some(397_568));
        assert_eq!(number(v.get("c")), None);
        assert_eq!(number(v.get("d")), None);
    }
}
