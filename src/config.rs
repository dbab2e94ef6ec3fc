//! Typed configuration: embedded defaults, an optional TOML file, then `FERROBOARD_*` variables (spec/contract.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http_addr: String,
    pub mqtt_addr: String,
    pub mqtts_addr: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub rules_dir: PathBuf,
    pub node_id: String,
    pub jwt_secret: Option<String>,
    pub sysadmin_email: String,
    pub sysadmin_password: Option<String>,
    pub admin_email: String,
    pub admin_password: Option<String>,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub json: JsonConfig,
    pub limits: LimitsConfig,
    pub rpc: RpcConfig,
}

/// Per-device transport rate limits (grammar `capacity:seconds[,...]`); unset = unlimited.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub messages: Option<String>,
    pub telemetry_messages: Option<String>,
    pub telemetry_data_points: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// Smallest and default server-side RPC timeout (ms).
    pub min_timeout_ms: i64,
    pub default_timeout_ms: i64,
    /// Delivery attempts of a persistent RPC, at most.
    pub max_retries: u32,
    /// Device inactivity after which INACTIVITY_EVENT is emitted (ms).
    pub inactivity_timeout_ms: i64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            min_timeout_ms: 5000,
            default_timeout_ms: 10000,
            max_retries: 5,
            inactivity_timeout_ms: 600_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Largest accepted packet (bytes); advertised to MQTT 5 clients.
    pub max_packet_size: u32,
    /// MQTT 5 Receive Maximum and the enforced MQTT 3.1.1 in-flight limit per session.
    pub max_inflight: u16,
    pub connect_timeout_secs: u64,
    /// MQTT worker threads; 0 = one per core.
    pub workers: usize,
    /// Server→device messages queued per session, at most.
    pub outbound_queue: usize,
    /// How long a QoS 1 server→device PUBLISH waits for the device's PUBACK (ms).
    pub ack_timeout_ms: u64,
    /// How long a client-side RPC waits for the rules' answer before `{"error":"timeout"}` (ms).
    pub client_rpc_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub batch_window_ms: u64,
    pub batch_max_points: usize,
    pub batch_queue: usize,
    /// SQLite `synchronous` setting: FULL (default) or NORMAL.
    pub sqlite_synchronous: String,
    pub pool_size: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Messages being processed at once, at most; beyond it sessions wait.
    pub max_in_flight: usize,
    pub script_max_operations: u64,
    pub script_timeout_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonConfig {
    pub type_cast_enabled: bool,
    pub max_string_value_length: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: "0.0.0.0:8080".into(),
            mqtt_addr: "0.0.0.0:1883".into(),
            mqtts_addr: None,
            tls_cert: None,
            tls_key: None,
            database_url: "sqlite://./data/ferroboard.db".into(),
            redis_url: None,
            rules_dir: PathBuf::from("./rules"),
            node_id: default_node_id(),
            jwt_secret: None,
            sysadmin_email: "sysadmin@thingsboard.org".into(),
            sysadmin_password: None,
            admin_email: "tenant@thingsboard.org".into(),
            admin_password: None,
            mqtt: MqttConfig::default(),
            storage: StorageConfig::default(),
            engine: EngineConfig::default(),
            json: JsonConfig::default(),
            limits: LimitsConfig::default(),
            rpc: RpcConfig::default(),
        }
    }
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 65536,
            max_inflight: 100,
            connect_timeout_secs: 10,
            workers: 0,
            outbound_queue: 256,
            ack_timeout_ms: 10_000,
            client_rpc_timeout_ms: 60_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            batch_window_ms: 3,
            batch_max_points: 20_000,
            batch_queue: 8192,
            sqlite_synchronous: "FULL".into(),
            pool_size: 8,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 8192,
            script_max_operations: 200_000,
            script_timeout_ms: 100,
        }
    }
}

impl Default for JsonConfig {
    fn default() -> Self {
        Self {
            type_cast_enabled: true,
            max_string_value_length: 0,
        }
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "node".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the file (`--config` or `FERROBOARD_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os("FERROBOARD_CONFIG").map(PathBuf::from);
        let mut config = match file.map(Path::to_path_buf).or(from_env) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ConfigError::Read(path.clone(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(path, e))?
            }
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
        config.validate()?;
        Ok(config)
    }

    /// Overrides from `FERROBOARD_*` variables, read through `get`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let set = |target: &mut String, name: &str| {
            if let Some(v) = get(name) {
                *target = v;
            }
        };
        set(&mut self.http_addr, "FERROBOARD_HTTP_ADDR");
        set(&mut self.mqtt_addr, "FERROBOARD_MQTT_ADDR");
        set(&mut self.database_url, "FERROBOARD_DATABASE_URL");
        set(&mut self.node_id, "FERROBOARD_NODE_ID");
        set(&mut self.sysadmin_email, "FERROBOARD_SYSADMIN_EMAIL");
        set(&mut self.admin_email, "FERROBOARD_ADMIN_EMAIL");
        let opt = |target: &mut Option<String>, name: &str| {
            if let Some(v) = get(name) {
                *target = Some(v);
            }
        };
        opt(&mut self.mqtts_addr, "FERROBOARD_MQTTS_ADDR");
        opt(&mut self.redis_url, "FERROBOARD_REDIS_URL");
        opt(&mut self.jwt_secret, "FERROBOARD_JWT_SECRET");
        opt(&mut self.sysadmin_password, "FERROBOARD_SYSADMIN_PASSWORD");
        opt(&mut self.admin_password, "FERROBOARD_ADMIN_PASSWORD");
        if let Some(v) = get("FERROBOARD_TLS_CERT") {
            self.tls_cert = Some(v.into());
        }
        if let Some(v) = get("FERROBOARD_TLS_KEY") {
            self.tls_key = Some(v.into());
        }
        if let Some(v) = get("FERROBOARD_RULES_DIR") {
            self.rules_dir = v.into();
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.mqtts_addr.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError::Invalid(
                "FERROBOARD_MQTTS_ADDR needs FERROBOARD_TLS_CERT and FERROBOARD_TLS_KEY".into(),
            ));
        }
        if self.mqtt.max_inflight == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.max_inflight must be at least 1".into(),
            ));
        }
        for (name, spec) in [
            ("limits.messages", &self.limits.messages),
            ("limits.telemetry_messages", &self.limits.telemetry_messages),
            (
                "limits.telemetry_data_points",
                &self.limits.telemetry_data_points,
            ),
        ] {
            if let Some(spec) = spec {
                crate::transport::mqtt::parse_rate_limit(spec)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
            }
        }
        if self.mqtt.max_packet_size < 1024 {
            return Err(ConfigError::Invalid(
                "mqtt.max_packet_size must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    pub fn batch(&self) -> crate::storage::BatchConfig {
        crate::storage::BatchConfig {
            max_points: self.storage.batch_max_points.max(1),
            window: Duration::from_millis(self.storage.batch_window_ms),
            queue: self.storage.batch_queue.max(1),
        }
    }

    pub fn typing(&self) -> crate::domain::kv::Typing {
        crate::domain::kv::Typing {
            type_cast_strings: self.json.type_cast_enabled,
            max_string_len: self.json.max_string_value_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config =
            toml::from_str("http_addr = \"1.2.3.4:1\"\n[mqtt]\nmax_inflight = 7\n").unwrap();
        assert_eq!(c.http_addr, "1.2.3.4:1");
        assert_eq!(c.mqtt.max_inflight, 7);
        c.apply_env(|n| (n == "FERROBOARD_HTTP_ADDR").then(|| "127.0.0.1:9".to_owned()));
        assert_eq!(c.http_addr, "127.0.0.1:9");
        assert_eq!(c.mqtt_addr, "0.0.0.0:1883");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("htp_addr = \"x\"").is_err());
    }
}
