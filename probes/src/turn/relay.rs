//! Relay round-trip benchmark (placeholder, filled in below).
