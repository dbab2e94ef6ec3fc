//! Logging (tracing to stdout, text or JSON), optional OTLP trace export, and the Prometheus metrics registry;
//! `escape` keeps input from forging log lines, `log_limit` rate-limits lines input can repeat,
//! `redact` keeps secrets out of them.

mod escape;
mod log_limit;
mod redact;

pub use log_limit::LogLimiter;
pub use redact::redact_secrets;

pub mod log_gate;
pub mod metrics;
pub mod trace;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::Config;

/// Keeps the trace exporter alive; flushes it on drop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(std::time::Duration::from_secs(2));
        }
    }
}

/// How log lines are written (`FERROBOARD_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// `text` or `json` (any case); anything else is an error naming the variable.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "FERROBOARD_LOG_FORMAT = {other:?}: it must be \"text\" or \"json\""
            )),
        }
    }
}

/// The default filter of the span export when `FERROBOARD_OTEL_FILTER` is unset.
pub const DEFAULT_OTEL_FILTER: &str = "warn,ferroboard=info";

/// Installs the global subscriber. Call from plain `main`, before any runtime exists
/// (the OTLP exporter uses a blocking HTTP client). Log lines go to stdout as text or JSON
/// (`FERROBOARD_LOG_FORMAT`), filtered by `RUST_LOG`; spans are exported over OTLP only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, filtered by `FERROBOARD_OTEL_FILTER` (not `RUST_LOG`).
pub fn init_tracing() -> Telemetry {
    let format = std::env::var("FERROBOARD_LOG_FORMAT").unwrap_or_default();
    let format = LogFormat::parse(&format).unwrap_or_else(|e| {
        eprintln!("{e}; writing text");
        LogFormat::Text
    });
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .and_then(|endpoint| otlp_provider(&endpoint, &node_id()));
    let otel = provider.as_ref().map(|p| {
        let filter = std::env::var("FERROBOARD_OTEL_FILTER")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_OTEL_FILTER.to_owned());
        let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
            eprintln!(
                "FERROBOARD_OTEL_FILTER {filter:?} is invalid ({e}); using {DEFAULT_OTEL_FILTER:?}"
            );
            EnvFilter::new(DEFAULT_OTEL_FILTER)
        });
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ferroboard"))
            .with_location(false)
            .with_threads(false)
            .with_filter(filter)
    });
    let _ = tracing_subscriber::registry()
        .with(log_layer(format))
        .with(otel)
        .try_init();
    Telemetry { provider }
}

/// The stdout layer in `format`, filtered by `RUST_LOG` (default `info`).
fn log_layer<S>(format: LogFormat) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(escape::EscapedFields)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    layer.with_filter(filter)
}

/// This node's id for the trace resource: the configuration's (`FERROBOARD_NODE_ID`, or the file
/// named by `FERROBOARD_CONFIG`), else the default (hostname and process id).
fn node_id() -> String {
    Config::load(None)
        .map(|c| c.node_id)
        .unwrap_or_else(|_| Config::default().node_id)
}

fn otlp_provider(endpoint: &str, node: &str) -> Option<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(std::time::Duration::from_secs(2))
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("OTLP exporter not started: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder().with_attributes([
        opentelemetry::KeyValue::new("service.instance.id", node.to_owned()),
        opentelemetry::KeyValue::new("ferroboard.node", node.to_owned()),
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    ]);
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("ferroboard");
    }
    // The standard OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, as the SDK reads them.
    let configured = opentelemetry_sdk::trace::Config::default().sampler;
    trace::enable(configured.clone());
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(trace::NodeSampler { configured })
            .with_resource(resource.build())
            .build(),
    )
}

/// The process-wide metrics registry (installed once; every app in the process shares it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                    10.0, 100.0, 1000.0, 10000.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_ok() {
                self::metrics::describe();
            }
            handle
        })
        .clone()
}

/// How often the metrics registry folds recorded histogram samples into its buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the registry's upkeep until `stop`: histogram samples are otherwise kept until the next
/// scrape, so memory would grow without bound while nobody scrapes `/metrics`.
pub fn spawn_metrics_upkeep(
    handle: PrometheusHandle,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    spawn_every(UPKEEP_EVERY, stop, move || handle.run_upkeep())
}

/// Runs `f` every `period` until `stop`.
fn spawn_every(
    period: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    f: impl Fn() + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => f(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// The periodic task runs on its own, scrape or not, until the node stops.
    #[tokio::test]
    async fn periodic_upkeep_runs_until_stopped() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = super::spawn_every(Duration::from_millis(10), stop.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "ran {runs:?} times");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends when stopped")
            .unwrap();
    }
}
