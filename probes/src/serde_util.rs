//! Serde helpers shared by result types: durations are written as seconds (f64), the unit
//! every report and the Prometheus output use; ids as their display form.

use std::time::Duration;

/// Serialize any `Display` value as a string (transaction ids as hex).
pub fn display<T: std::fmt::Display, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// A `Duration` as seconds.
pub mod secs {
    use super::Duration;

    /// Serialize.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// An `Option<Duration>` as seconds or null.
pub mod opt_secs {
    use super::Duration;

    /// Serialize.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}
