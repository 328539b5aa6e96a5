//! Log lines and metrics. Log lines are tracing's, formatted as Lambda's
//! logging controls ask (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, as
//! `lambda_runtime`'s default subscriber does). Metrics are CloudWatch
//! embedded metric format (EMF) documents, one JSON object per line in the
//! same log stream: CloudWatch turns them into metrics, with no API call
//! from the function. They travel as tracing events with target
//! [`TARGET`], which a layer of their own writes as they are.

use std::io::Write as _;

use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ProjectWebhooks";
/// The one dimension of every metric: the Lambda function's name
/// (`AWS_LAMBDA_FUNCTION_NAME`), so each stack's functions have their own.
pub const DIMENSION: &str = "FunctionName";
/// The tracing target metric documents travel under.
pub const TARGET: &str = "emf";

/// The metrics the functions publish (README, "Alarms"; the template's
/// alarms name them, and a test reads both).
pub mod metric {
    /// Sweeper: disable e-mails over their project's day of e-mails, left
    /// pending for the next day's allowance.
    pub const NOTICES_DEFERRED: &str = "NoticesDeferred";
    /// Sender: batch history writes that failed (their attempts are not in
    /// the delivery history; the deliveries stand).
    pub const HISTORY_WRITES_FAILED: &str = "HistoryWritesFailed";
    /// Every metric above.
    pub const ALL: [&str; 2] = [NOTICES_DEFERRED, HISTORY_WRITES_FAILED];
}

/// One EMF document: `counts` of `function`, in [`NAMESPACE`] with the
/// [`DIMENSION`] dimension, at `at_ms` (Unix milliseconds).
pub fn document(function: &str, counts: &[(&str, u64)], at_ms: i64) -> String {
    let mut doc = json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": counts
                    .iter()
                    .map(|(name, _)| json!({"Name": name, "Unit": "Count"}))
                    .collect::<Vec<_>>(),
            }],
        },
        DIMENSION: function,
    });
    for (name, value) in counts {
        doc[*name] = json!(value);
    }
    doc.to_string()
}

/// Publishes `counts` (metric name, value) as one EMF document of this
/// function.
pub fn count(counts: &[(&str, u64)]) {
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into());
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let doc = document(&function, counts, at_ms);
    tracing::info!(target: TARGET, emf = doc.as_str());
}

/// Writes metric documents to `writer` as they are, one per line.
pub struct Metrics<W> {
    writer: W,
}

impl<W> Metrics<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<W> std::fmt::Debug for Metrics<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The `emf` field of an event.
struct Document(Option<String>);

impl Visit for Document {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "emf" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber, W: for<'w> MakeWriter<'w> + 'static> Layer<S> for Metrics<W> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut document = Document(None);
        event.record(&mut document);
        if let Some(line) = document.0 {
            let _ = writeln!(self.writer.make_writer(), "{line}");
        }
    }
}

/// Whether an event is a log line (not a metric document).
pub fn is_log(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() != TARGET
}

/// The process's subscriber, set once at cold start: log lines as
/// `lambda_runtime`'s default subscriber writes them, metric documents as
/// they are, both to stdout.
pub fn init() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|raw| raw.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let subscriber = tracing_subscriber::registry()
        .with(logs.with_filter(filter_fn(is_log)).with_filter(level))
        .with(Metrics::new(std::io::stdout));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_embedded_metric_format() {
        let doc: serde_json::Value = serde_json::from_str(&document(
            "stack-Sweeper",
            &[(metric::NOTICES_DEFERRED, 3), ("Other", 0)],
            1_764_547_200_000,
        ))
        .unwrap();
        assert_eq!(doc["_aws"]["Timestamp"], 1_764_547_200_000_i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ProjectWebhooks");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "NoticesDeferred", "Unit": "Count"}, {"Name": "Other", "Unit": "Count"}])
        );
        assert_eq!(doc["FunctionName"], "stack-Sweeper");
        assert_eq!(doc["NoticesDeferred"], 3);
        assert_eq!(doc["Other"], 0);
    }
}
