//! Start-up validation of the configuration: every numeric setting is range-checked and every
//! error names its key (docs/configuration.md lists the ranges).

use super::{Config, ConfigError};

/// The allowed range of one numeric key, inclusive.
fn range<T>(key: &str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        return Err(ConfigError::Invalid(format!(
            "{key} = {value} is out of range: it must be between {min} and {max}"
        )));
    }
    Ok(())
}

/// One hour, in milliseconds: the longest timeout any setting may name.
const HOUR_MS: u64 = 3_600_000;

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mqtts_addr.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError::Invalid(
                "FERROBOARD_MQTTS_ADDR needs FERROBOARD_TLS_CERT and FERROBOARD_TLS_KEY".into(),
            ));
        }
        for (name, spec) in [
            ("limits.messages", &self.limits.messages),
            ("limits.telemetry_messages", &self.limits.telemetry_messages),
            (
                "limits.telemetry_data_points",
                &self.limits.telemetry_data_points,
            ),
            ("limits.gateway_messages", &self.limits.gateway_messages),
            (
                "limits.gateway_telemetry_messages",
                &self.limits.gateway_telemetry_messages,
            ),
            (
                "limits.gateway_telemetry_data_points",
                &self.limits.gateway_telemetry_data_points,
            ),
        ] {
            if let Some(spec) = spec {
                crate::transport::limits::parse(spec)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        range(
            "limits.max_devices_per_gateway",
            self.limits.max_devices_per_gateway,
            1,
            1_000_000,
        )?;
        range(
            "limits.max_timeseries_keys_per_tenant",
            self.limits.max_timeseries_keys_per_tenant,
            1,
            10_000_000,
        )?;
        self.auth.validate(self.jwt_secret.as_deref())?;
        self.validate_http()?;
        self.validate_mqtt()?;
        self.validate_storage()?;
        self.validate_engine()?;
        self.validate_rpc()?;
        range(
            "ota.max_package_bytes",
            self.ota.max_package_bytes,
            1,
            1 << 40,
        )
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        range("http.max_connections", h.max_connections, 1, 1_000_000)?;
        range(
            "http.header_read_timeout_ms",
            h.header_read_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "http.request_timeout_ms",
            h.request_timeout_ms,
            1000,
            HOUR_MS,
        )?;
        range(
            "http.max_body_bytes",
            h.max_body_bytes,
            1024,
            64 * 1024 * 1024,
        )?;
        let d = &self.http_device;
        range(
            "http_device.poll_timeout_ms",
            d.poll_timeout_ms,
            100,
            HOUR_MS,
        )?;
        range(
            "http_device.max_poll_timeout_ms",
            d.max_poll_timeout_ms,
            d.poll_timeout_ms,
            HOUR_MS,
        )?;
        range("http_device.max_polls", d.max_polls, 1, 1_000_000)
    }

    fn validate_mqtt(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        // 268435455 is the largest length MQTT's variable-length header can express.
        range("mqtt.max_packet_size", m.max_packet_size, 1024, 268_435_455)?;
        range("mqtt.max_inflight", m.max_inflight, 1, u16::MAX)?;
        // 0 would switch the CONNECT deadline off: a silent socket could stay forever.
        range("mqtt.connect_timeout_secs", m.connect_timeout_secs, 1, 300)?;
        range("mqtt.workers", m.workers, 0, 1024)?;
        range("mqtt.outbound_queue", m.outbound_queue, 1, 1_000_000)?;
        range("mqtt.ack_timeout_ms", m.ack_timeout_ms, 100, HOUR_MS)?;
        range(
            "mqtt.client_rpc_timeout_ms",
            m.client_rpc_timeout_ms,
            100,
            HOUR_MS,
        )?;
        range("mqtt.max_connections", m.max_connections, 1, 10_000_000)?;
        range("mqtt.auth_cache_ttl_ms", m.auth_cache_ttl_ms, 100, 600_000)?;
        range("mqtt.auth_cache_size", m.auth_cache_size, 1, 10_000_000)
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let s = &self.storage;
        range("storage.batch_window_ms", s.batch_window_ms, 0, 10_000)?;
        range("storage.batch_max_points", s.batch_max_points, 1, 1_000_000)?;
        range("storage.batch_queue", s.batch_queue, 1, 1_000_000)?;
        range("storage.pool_size", s.pool_size, 1, 1000)?;
        range("storage.connect_wait_ms", s.connect_wait_ms, 0, HOUR_MS)?;
        let r = &self.retention;
        // Ten years: a longer TTL is "keep" in all but name, and ts + TTL stays far from overflow.
        range(
            "retention.default_ttl_s",
            r.default_ttl_s,
            0,
            10 * 366 * 86_400,
        )?;
        range(
            "retention.cleanup_interval_ms",
            r.cleanup_interval_ms,
            100,
            24 * HOUR_MS,
        )?;
        range(
            "retention.cleanup_batch_size",
            r.cleanup_batch_size,
            1,
            1_000_000,
        )?;
        // The drain is part of the 10 s the operator contract gives a shutdown.
        range("shutdown.drain_ms", self.shutdown.drain_ms, 0, 5000)?;
        range(
            "json.max_string_value_length",
            self.json.max_string_value_length,
            0,
            256 * 1024 * 1024,
        )?;
        range(
            "json.max_value_size",
            self.json.max_value_size,
            1024,
            64 * 1024 * 1024,
        )
    }

    fn validate_engine(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        range("engine.max_in_flight", e.max_in_flight, 1, 1_000_000)?;
        // Rhai reads an operations budget of 0 as "unlimited": refused.
        range(
            "engine.script_max_operations",
            e.script_max_operations,
            1,
            1_000_000_000,
        )?;
        range("engine.script_timeout_ms", e.script_timeout_ms, 1, 60_000)?;
        range("engine.script_workers", e.script_workers, 1, 256)?;
        range("engine.recorded_messages", e.recorded_messages, 0, 1000)?;
        range("engine.recorded_devices", e.recorded_devices, 1, 1_000_000)?;
        range("engine.debug_max_minutes", e.debug_max_minutes, 1, 24 * 60)?;
        range("engine.debug_max_events", e.debug_max_events, 1, 100_000)?;
        let w = &self.ws;
        range("ws.queue", w.queue, 1, 1_000_000)?;
        range(
            "ws.max_subscriptions_per_connection",
            w.max_subscriptions_per_connection,
            1,
            1_000_000,
        )?;
        range(
            "ws.max_subscriptions_per_user",
            w.max_subscriptions_per_user,
            1,
            10_000_000,
        )?;
        range("ws.auth_timeout_ms", w.auth_timeout_ms, 100, 600_000)?;
        range("ws.max_message_bytes", w.max_message_bytes, 256, 16 << 20)
    }

    fn validate_rpc(&self) -> Result<(), ConfigError> {
        let r = &self.rpc;
        let hour = i64::try_from(HOUR_MS).unwrap_or(i64::MAX);
        range("rpc.min_timeout_ms", r.min_timeout_ms, 1, hour)?;
        range(
            "rpc.default_timeout_ms",
            r.default_timeout_ms,
            r.min_timeout_ms,
            hour,
        )?;
        range("rpc.max_retries", r.max_retries, 0, 1000)?;
        range(
            "rpc.inactivity_timeout_ms",
            r.inactivity_timeout_ms,
            1000,
            hour.saturating_mul(24 * 365),
        )?;
        // A REST RPC call waits inside its HTTP request: the request must be allowed to outlast it.
        let request = i64::try_from(self.http.request_timeout_ms).unwrap_or(i64::MAX);
        if r.default_timeout_ms >= request {
            return Err(ConfigError::Invalid(format!(
                "rpc.default_timeout_ms = {} must be below http.request_timeout_ms = {request}",
                r.default_timeout_ms
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's test jail returns its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn invalid(tweak: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        tweak(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid(e)) => e,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn zero_budgets_are_refused_naming_the_key() {
        let e = invalid(|c| c.engine.script_max_operations = 0);
        assert!(e.starts_with("engine.script_max_operations = 0"), "{e}");
        let e = invalid(|c| c.engine.script_timeout_ms = 0);
        assert!(e.starts_with("engine.script_timeout_ms = 0"), "{e}");
        let e = invalid(|c| c.engine.script_workers = 0);
        assert!(e.starts_with("engine.script_workers = 0"), "{e}");
        let e = invalid(|c| c.mqtt.connect_timeout_secs = 0);
        assert!(e.starts_with("mqtt.connect_timeout_secs = 0"), "{e}");
        let e = invalid(|c| c.engine.max_in_flight = 0);
        assert!(e.starts_with("engine.max_in_flight = 0"), "{e}");
    }

    #[test]
    fn out_of_range_numbers_are_refused_naming_the_key_and_the_range() {
        let e = invalid(|c| c.mqtt.connect_timeout_secs = 100_000);
        assert_eq!(
            e,
            "mqtt.connect_timeout_secs = 100000 is out of range: it must be between 1 and 300"
        );
        let e = invalid(|c| c.http.header_read_timeout_ms = 5);
        assert!(e.starts_with("http.header_read_timeout_ms = 5 "), "{e}");
        let e = invalid(|c| c.http.max_connections = 0);
        assert!(e.starts_with("http.max_connections = 0 "), "{e}");
        let e = invalid(|c| c.http_device.max_polls = 0);
        assert!(e.starts_with("http_device.max_polls = 0 "), "{e}");
        let e = invalid(|c| {
            c.http_device.poll_timeout_ms = 5000;
            c.http_device.max_poll_timeout_ms = 4000;
        });
        assert!(
            e.starts_with("http_device.max_poll_timeout_ms = 4000 "),
            "{e}"
        );
        let e = invalid(|c| c.mqtt.max_connections = 0);
        assert!(e.starts_with("mqtt.max_connections = 0 "), "{e}");
        let e = invalid(|c| c.mqtt.max_packet_size = 512);
        assert!(e.starts_with("mqtt.max_packet_size = 512 "), "{e}");
        let e = invalid(|c| c.storage.pool_size = 0);
        assert!(e.starts_with("storage.pool_size = 0 "), "{e}");
        let e = invalid(|c| c.rpc.min_timeout_ms = -1);
        assert!(e.starts_with("rpc.min_timeout_ms = -1 "), "{e}");
        let e = invalid(|c| c.rpc.default_timeout_ms = 10);
        assert!(e.starts_with("rpc.default_timeout_ms = 10 "), "{e}");
        let e = invalid(|c| c.http.request_timeout_ms = 5000);
        assert!(
            e.contains("rpc.default_timeout_ms") && e.contains("http.request_timeout_ms"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_value_from_the_environment_is_refused_at_load() {
        figment::Jail::expect_with(|jail| {
            for (name, _) in std::env::vars() {
                if name.starts_with("FERROBOARD_") {
                    jail.set_env(&name, "");
                }
            }
            jail.set_env("FERROBOARD_ENGINE_SCRIPT_TIMEOUT_MS", "0");
            let e = Config::from_file_and_env(None).unwrap_err().to_string();
            assert!(e.contains("engine.script_timeout_ms = 0"), "{e}");
            Ok(())
        });
    }
}
