//! Small serde helpers shared by result types.

/// Serialize any `Display` value as a string (transaction ids as hex).
pub(crate) fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}
