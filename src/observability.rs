//! Logging (tracing to stdout), optional OTLP trace export, and the Prometheus metrics registry;
//! `escape` keeps input from forging log lines, `log_limit` rate-limits lines input can repeat,
//! `redact` keeps secrets out of them.

mod escape;
mod log_limit;
mod redact;

pub use log_limit::LogLimiter;
pub use redact::redact_secrets;

pub mod log_gate;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

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

/// Installs the global subscriber. Call from plain `main`, before any runtime exists
/// (the OTLP exporter uses a blocking HTTP client). OTLP is on only when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init_tracing() -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .and_then(|endpoint| otlp_provider(&endpoint));
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ferroboard"))
            .boxed()
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().fmt_fields(escape::EscapedFields))
        .with(otel)
        .try_init();
    Telemetry { provider }
}

fn otlp_provider(endpoint: &str) -> Option<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(std::time::Duration::from_secs(2))
        .build();
    match exporter {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("ferroboard")
                        .build(),
                )
                .build(),
        ),
        Err(e) => {
            eprintln!("OTLP exporter not started: {e}");
            None
        }
    }
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
            let _ = metrics::set_global_recorder(recorder);
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
