//! Renderers. A report describes itself as a [`doc::Doc`]; [`human`] prints any document on a
//! terminal and [`html`] makes a page of it; [`prom`] writes Prometheus text exposition from a
//! report's metrics. JSON and NDJSON are the serde form of a report (`crate::app`).

pub(crate) mod doc;
pub(crate) mod html;
pub(crate) mod human;
pub(crate) mod nat;
pub(crate) mod netbird;
pub(crate) mod paths;
pub(crate) mod prom;
pub(crate) mod relay;
pub(crate) mod words;
