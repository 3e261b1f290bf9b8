//! Prometheus metrics: the writer every report's metrics go through (`--prom FILE` for
//! node_exporter's textfile collector, `stunmap serve --metrics`'s `/probe` and `/metrics`).
//!
//! Callers declare families and add samples ([`Writer::family`], [`Writer::sample`]); the
//! exposition itself is written by the official `prometheus-client` crate, in one of two
//! formats ([`Format`]):
//! - the classic text format 0.0.4 (`prometheus_client::encoding::prometheus_text`), which
//!   node_exporter's textfile collector and `promtool check metrics` read: files and HTTP
//!   clients that do not ask for OpenMetrics;
//! - OpenMetrics 1.0 text (`prometheus_client::encoding::text`, ending in `# EOF`), which
//!   Prometheus asks for in its `Accept` header.
//!
//! Names follow Prometheus' conventions: a `stunmap_` prefix, base units in the name
//! (`_seconds`, `_ratio`), `_info` for constant-1 series that carry labels, states as one
//! series per state (0 or 1), and labels for what varies (service, kind, probe, transport,
//! port). Counters are declared with their `_total` name; in OpenMetrics the family is
//! written without it (`# TYPE stunmap_probes counter`, sample `stunmap_probes_total`), as
//! that format requires. Samples of one family are kept together whatever order they are
//! added in. Label values are escaped by the encoder; HELP texts are reduced to characters
//! that need no escaping in either format.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The HTTP `Content-Type` of the format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Unknown,
}

impl Kind {
    fn parse(kind: &str) -> Kind {
        match kind {
            "gauge" => Kind::Gauge,
            "counter" => Kind::Counter,
            _ => Kind::Unknown,
        }
    }

    fn metric_type(self) -> MetricType {
        match self {
            Kind::Gauge => MetricType::Gauge,
            Kind::Counter => MetricType::Counter,
            Kind::Unknown => MetricType::Unknown,
        }
    }
}

#[derive(Clone, Debug)]
struct Sample {
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Clone, Debug)]
struct Family {
    /// The name as declared (a counter's with `_total`).
    name: String,
    kind: Kind,
    help: String,
    samples: Vec<Sample>,
}

impl Family {
    /// The name the encoder is given: it appends `_total` to counters itself.
    fn base_name(&self) -> &str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(&self.name),
            Kind::Gauge | Kind::Unknown => &self.name,
        }
    }
}

/// Whether `s` is a metric or label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`; labels have no `:`,
/// which the callers' names never use).
fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A HELP text both formats carry unescaped: one line, no backslash or double quote.
fn plain_help(help: &str) -> String {
    help.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            '"' => '\'',
            '\\' => '/',
            c => c,
        })
        .collect()
}

/// Collects metric families in declaration order, each with its HELP and TYPE once.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    families: Vec<Family>,
}

impl Writer {
    /// Declare a family (`kind`: "gauge" or "counter"; anything else is untyped). A second
    /// declaration of the same name is ignored.
    pub(crate) fn family(&mut self, name: &'static str, kind: &str, help: &str) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        if self.families.iter().any(|f| f.name == name) {
            return;
        }
        self.families.push(Family {
            name: name.to_string(),
            kind: Kind::parse(kind),
            help: plain_help(help),
            samples: Vec::new(),
        });
    }

    /// Declare the gauge `name` with its one sample (labelled `labels`).
    pub(crate) fn gauge(
        &mut self,
        name: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, "gauge", help);
        self.sample(name, labels, value);
    }

    /// Declare the counter `name` with its one sample (labelled `labels`).
    pub(crate) fn counter(
        &mut self,
        name: &'static str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, "counter", help);
        self.sample(name, labels, value);
    }

    /// Add a sample to the family `name` (declared untyped, without help, if it was not).
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        debug_assert!(valid_name(name), "metric name {name:?}");
        debug_assert!(labels.iter().all(|(k, _)| valid_name(k)), "{labels:?}");
        let sample = Sample {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            value,
        };
        match self.families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.samples.push(sample),
            None => self.families.push(Family {
                name: name.to_string(),
                kind: Kind::Unknown,
                help: String::new(),
                samples: vec![sample],
            }),
        }
    }

    /// The classic text format (files, node_exporter's textfile collector).
    pub(crate) fn finish(self) -> String {
        self.encode(Format::Text)
    }

    /// The exposition in `format`.
    pub(crate) fn encode(self, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(self.families)));
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error leaves what was written.
        let _ = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        };
        out
    }
}

/// The families of one exposition, handed to the registry as a collector.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut metric =
                encoder.encode_descriptor(f.base_name(), &f.help, None, f.kind.metric_type())?;
            for s in &f.samples {
                let sample = metric.encode_family(&s.labels)?;
                match f.kind {
                    Kind::Counter => ConstCounter::new(s.value).encode(sample)?,
                    Kind::Gauge | Kind::Unknown => ConstGauge::new(s.value).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// The facts of a run every command's metrics start with, labelled by the command: its exit
/// code, how long it ran, when it started, and whether it was stopped early.
pub(crate) fn run_facts(w: &mut Writer, command: &str, run: &crate::app::RunInfo) {
    let l = [("command", command)];
    w.gauge(
        "stunmap_run_exit_code",
        "Exit code of the run (0 ok, 1 degraded, 2 blocked, 130 interrupted).",
        &l,
        f64::from(run.exit_code.code()),
    );
    w.gauge(
        "stunmap_run_duration_seconds",
        "How long the run took.",
        &l,
        run.elapsed_seconds,
    );
    w.gauge(
        "stunmap_run_timestamp_seconds",
        "When the run started, seconds since the Unix epoch.",
        &l,
        run.started_unix_seconds,
    );
    w.gauge(
        "stunmap_run_interrupted",
        "1 when the run was stopped early (signal or deadline): partial results.",
        &l,
        flag(run.partial()),
    );
}

/// Owned label pairs borrowed as [`Writer::sample`] takes them.
pub(crate) fn borrowed<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// 1 for true, 0 for false.
pub(crate) fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_writer() -> Writer {
        let mut w = Writer::default();
        w.family("x_seconds", "gauge", "help \"quoted\"\nsecond line");
        w.family("x_seconds", "gauge", "help");
        w.sample("x_seconds", &[("l", "v\"\\\n")], 0.5);
        w.family("x_requests_total", "counter", "requests");
        w.sample("x_requests_total", &[], 3.0);
        // A late sample of the first family stays with it.
        w.sample("x_seconds", &[("l", "b")], 2.0);
        w
    }

    #[test]
    fn classic_text_escapes_and_groups() {
        assert_eq!(
            sample_writer().finish(),
            "# HELP x_seconds help 'quoted' second line\n\
             # TYPE x_seconds gauge\n\
             x_seconds{l=\"v\\\"\\\\\\n\"} 0.5\n\
             x_seconds{l=\"b\"} 2.0\n\
             # HELP x_requests_total requests\n\
             # TYPE x_requests_total counter\n\
             x_requests_total 3.0\n"
        );
    }

    #[test]
    fn openmetrics_names_counters_without_total_and_ends_with_eof() {
        let out = sample_writer().encode(Format::OpenMetrics);
        assert!(out.contains("# TYPE x_requests counter\n"), "{out}");
        assert!(out.contains("\nx_requests_total 3.0\n"), "{out}");
        assert!(out.contains("x_seconds{l=\"v\\\"\\\\\\n\"} 0.5\n"), "{out}");
        assert!(out.ends_with("# EOF\n"), "{out}");
    }

    #[test]
    fn undeclared_samples_are_untyped() {
        let mut w = Writer::default();
        w.sample("y", &[], 1.0);
        assert_eq!(w.finish(), "# HELP y \n# TYPE y untyped\ny 1.0\n");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("stunmap_probe_rtt_seconds"));
        assert!(valid_name("_x:y"));
        assert!(!valid_name(""));
        assert!(!valid_name("1x"));
        assert!(!valid_name("a-b"));
    }
}
