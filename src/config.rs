//! Typed configuration: embedded defaults, an optional TOML file, then `FERROBOARD_*` variables (docs/configuration.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod auth;
mod validate;
pub use auth::AuthConfig;

#[derive(Clone, Debug, Deserialize, Serialize)]
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
    pub http: HttpConfig,
    pub http_device: HttpDeviceConfig,
    pub mqtt: MqttConfig,
    pub storage: StorageConfig,
    pub engine: EngineConfig,
    pub json: JsonConfig,
    pub limits: LimitsConfig,
    pub rpc: RpcConfig,
    pub auth: AuthConfig,
    pub ota: OtaConfig,
    pub retention: RetentionConfig,
    pub shutdown: ShutdownConfig,
    pub metrics: MetricsConfig,
    pub ws: WsConfig,
}

/// Telemetry retention: TTLs and the background deletion of expired points.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// TTL of time-series points saved without one of their own (seconds after the point's
    /// timestamp), for every tenant; 0 keeps them until deleted.
    pub default_ttl_s: u64,
    /// How often expired points are looked for (ms).
    pub cleanup_interval_ms: u64,
    /// Expired points deleted per statement, at most.
    pub cleanup_batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_ttl_s: 0,
            cleanup_interval_ms: 60_000,
            cleanup_batch_size: 10_000,
        }
    }
}

/// Stopping: how long a node keeps serving, unready, before it closes its listeners.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM, `/api/health/ready` answers 503 while the node goes on serving this long
    /// (ms), so load balancers stop sending it new clients first; part of the 10 s shutdown.
    pub drain_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_ms: 2000 }
    }
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// A separate listen address (`host:port`) for `GET /metrics`; when set, the HTTP port no
    /// longer serves it. Unset: `/metrics` is on the HTTP port.
    pub addr: Option<String>,
}

/// WebSocket telemetry subscriptions (`/api/ws`, `/api/ws/plugins/telemetry`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Updates waiting for one connection, at most; a client that falls further behind is closed
    /// (1008, "too slow").
    pub queue: usize,
    pub max_subscriptions_per_connection: usize,
    /// Subscriptions of one user over all its connections on this node.
    pub max_subscriptions_per_user: usize,
    /// Time `/api/ws` waits for the first message's `authCmd`.
    pub auth_timeout_ms: u64,
    /// Bytes of one command message, at most.
    pub max_message_bytes: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            queue: 512,
            max_subscriptions_per_connection: 200,
            max_subscriptions_per_user: 1000,
            auth_timeout_ms: 10_000,
            max_message_bytes: 65_536,
        }
    }
}

/// Firmware and software packages (OTA).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtaConfig {
    /// Largest package file an upload may store (bytes); a larger one is refused with 413.
    pub max_package_bytes: u64,
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            max_package_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Per-device transport rate limits (grammar `capacity:seconds[,...]`; unset = unlimited) and
/// the per-tenant key quota.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub messages: Option<String>,
    pub telemetry_messages: Option<String>,
    pub telemetry_data_points: Option<String>,
    /// One set of buckets per gateway, shared by all the devices behind it (their messages skip
    /// the per-device limits above, as in ThingsBoard); the gateway's own messages use the
    /// per-device limits.
    pub gateway_messages: Option<String>,
    pub gateway_telemetry_messages: Option<String>,
    pub gateway_telemetry_data_points: Option<String>,
    /// Devices one gateway connection serves at once, at most (more are refused).
    pub max_devices_per_gateway: usize,
    /// Distinct time-series keys the devices of one tenant may use, at most.
    pub max_timeseries_keys_per_tenant: usize,
}

impl LimitsConfig {
    /// The limits of the buckets a gateway's devices share, in the per-device shape.
    pub fn of_gateway_devices(&self) -> Self {
        Self {
            messages: self.gateway_messages.clone(),
            telemetry_messages: self.gateway_telemetry_messages.clone(),
            telemetry_data_points: self.gateway_telemetry_data_points.clone(),
            ..self.clone()
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            messages: None,
            telemetry_messages: None,
            telemetry_data_points: None,
            gateway_messages: None,
            gateway_telemetry_messages: None,
            gateway_telemetry_data_points: None,
            max_devices_per_gateway: 10_000,
            max_timeseries_keys_per_tenant: 10_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
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

/// The HTTP listener's connection limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Open HTTP connections, at most; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// How long a client has to send a request's headers (ms); a slower one is disconnected.
    pub header_read_timeout_ms: u64,
    /// How long one request may take, body and answer included (ms).
    pub request_timeout_ms: u64,
    /// Largest accepted request body (bytes).
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 120_000,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The HTTP device API (`/api/v1/{token}/...`): its long polls.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpDeviceConfig {
    /// How long a long poll (and a client-side RPC) waits when the request names no timeout (ms).
    pub poll_timeout_ms: u64,
    /// The longest timeout a long poll may ask for (ms); longer ones are cut to it.
    pub max_poll_timeout_ms: u64,
    /// Long polls and client-side RPCs waiting at once on this node, at most.
    pub max_polls: usize,
}

impl Default for HttpDeviceConfig {
    fn default() -> Self {
        Self {
            poll_timeout_ms: 60_000,
            max_poll_timeout_ms: 300_000,
            max_polls: 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
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
    /// Authenticated MQTT sessions on this node, at most; a CONNECT beyond it is refused.
    pub max_connections: usize,
    /// How long a refused set of credentials is answered from memory, without a lookup (ms);
    /// also how long an accepted HTTP access token is (at most `auth_cache::MAX_ACCEPTED_TTL`).
    pub auth_cache_ttl_ms: u64,
    /// Refused credentials remembered, at most (the oldest are forgotten first), and as many
    /// accepted HTTP access tokens.
    pub auth_cache_size: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub batch_window_ms: u64,
    pub batch_max_points: usize,
    pub batch_queue: usize,
    /// SQLite `synchronous` setting: FULL (default) or NORMAL.
    pub sqlite_synchronous: String,
    pub pool_size: u32,
    /// How long a start waits for a PostgreSQL server that does not answer yet, retrying with
    /// a growing pause, before it gives up (ms); 0 tries once.
    pub connect_wait_ms: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Messages being processed at once, at most; beyond it sessions wait.
    pub max_in_flight: usize,
    pub script_max_operations: u64,
    pub script_timeout_ms: u64,
    /// Scripts running at once, at most (each on a blocking thread, off the async workers).
    pub script_workers: usize,
    /// Last messages kept per device for dry runs of a candidate chain; 0 keeps none.
    pub recorded_messages: usize,
    /// Devices whose last messages are kept, at most (the least recently active are forgotten).
    pub recorded_devices: usize,
    /// Longest debug capture a node may ask for (`debugSettings.allEnabledUntil` is capped to it).
    pub debug_max_minutes: u64,
    /// Debug events kept per node, at most (the oldest are dropped).
    pub debug_max_events: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonConfig {
    pub type_cast_enabled: bool,
    pub max_string_value_length: usize,
    /// Bytes of one device value (string, number literal, object or array text), at most.
    pub max_value_size: usize,
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
            http: HttpConfig::default(),
            http_device: HttpDeviceConfig::default(),
            mqtt: MqttConfig::default(),
            storage: StorageConfig::default(),
            engine: EngineConfig::default(),
            json: JsonConfig::default(),
            limits: LimitsConfig::default(),
            rpc: RpcConfig::default(),
            auth: AuthConfig::default(),
            ota: OtaConfig::default(),
            retention: RetentionConfig::default(),
            shutdown: ShutdownConfig::default(),
            metrics: MetricsConfig::default(),
            ws: WsConfig::default(),
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
            max_connections: 10_000,
            auth_cache_ttl_ms: 5000,
            auth_cache_size: 10_000,
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
            connect_wait_ms: 60_000,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 8192,
            script_max_operations: 200_000,
            script_timeout_ms: 100,
            script_workers: 4,
            recorded_messages: 10,
            recorded_devices: 1000,
            debug_max_minutes: 15,
            debug_max_events: 200,
        }
    }
}

impl Default for JsonConfig {
    fn default() -> Self {
        Self {
            type_cast_enabled: true,
            max_string_value_length: 0,
            max_value_size: crate::domain::kv::DEFAULT_MAX_VALUE_SIZE,
        }
    }
}

/// The address a local client reaches a listener bound to `addr` on: a wildcard host
/// (`0.0.0.0`, `[::]`, empty) becomes loopback.
pub fn local_address(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some(("0.0.0.0" | "", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => addr.to_owned(),
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
    #[error("cannot read config file {0}: does not exist")]
    Missing(PathBuf),
    /// A file or variable that does not fit the configuration (figment names the key and the source).
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

/// Prefix of every configuration variable.
const ENV_PREFIX: &str = "FERROBOARD_";

/// `FERROBOARD_*` variables that are not configuration keys (the file's path; the test harness's).
const ENV_NOT_KEYS: &[&str] = &["CONFIG", "BIN", "TEST_PG_URL"];

impl Config {
    /// Defaults, then the file (`--config` or `FERROBOARD_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_env = std::env::var_os("FERROBOARD_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let file = file.map(Path::to_path_buf).or(from_env);
        Self::from_file_and_env(file.as_deref())
    }

    /// Layers the defaults, an optional TOML file and the process's `FERROBOARD_*` variables.
    ///
    /// A variable names a top-level key (`FERROBOARD_HTTP_ADDR` → `http_addr`) or a key of a
    /// section (`FERROBOARD_MQTT_MAX_PACKET_SIZE` → `[mqtt] max_packet_size`); a variable set to
    /// the empty string counts as unset.
    pub fn from_file_and_env(file: Option<&Path>) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Env, Format, Serialized, Toml};

        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Variables go through figment's environment reader (names mapped to key paths); their
        // values are typed by the key: text keys take the text as it is (a token of digits stays
        // a string), the others are parsed (numbers, booleans).
        let keys = Keys::of_defaults();
        let mapping = keys.clone();
        let env = Env::raw().filter_map(move |name| {
            let name = name.as_str().strip_prefix(ENV_PREFIX)?;
            mapping.path_of(name).map(Into::into)
        });
        let mut from_env = Vec::new();
        for (path, text) in env.iter() {
            if text.is_empty() {
                continue;
            }
            from_env.push(path.as_str().to_owned());
            let value = if keys.is_text(path.as_str()) {
                figment::value::Value::from(text)
            } else {
                text.parse()
                    .unwrap_or_else(|_| figment::value::Value::from(text))
            };
            figment = figment.merge(Serialized::default(path.as_str(), value));
        }
        let config: Config = figment.extract().map_err(|e| {
            // A bad variable is named as the variable, not as figment's internal source.
            let key = e.path.join(".");
            if from_env.contains(&key) {
                let var = format!("{ENV_PREFIX}{}", key.replace('.', "_")).to_ascii_uppercase();
                ConfigError::Invalid(format!("environment variable {var}: {}", e.kind))
            } else {
                ConfigError::Parse(Box::new(e))
            }
        })?;
        config.validate()?;
        Ok(config)
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
            max_value_size: self.json.max_value_size,
        }
    }
}

fn is_text(default: &serde_json::Value) -> bool {
    matches!(
        default,
        serde_json::Value::String(_) | serde_json::Value::Null
    )
}

/// The key paths of the configuration, read off the serialized defaults: the mapping from
/// variable names to keys, and the list the example file is checked against.
#[derive(Clone)]
pub struct Keys {
    /// `(section, key, text)`; section is empty for top-level keys; `text` for string-valued
    /// keys (and unset ones, which are all text: addresses, paths, URLs, secrets, limits).
    paths: Vec<(String, String, bool)>,
}

impl Keys {
    pub fn of_defaults() -> Self {
        let value = serde_json::to_value(Config::default()).unwrap_or_default();
        let mut paths = Vec::new();
        if let serde_json::Value::Object(top) = value {
            for (key, v) in top {
                match v {
                    serde_json::Value::Object(section) => paths.extend(
                        section
                            .iter()
                            .map(|(k, v)| (key.clone(), k.clone(), is_text(v))),
                    ),
                    v => paths.push((String::new(), key, is_text(&v))),
                }
            }
        }
        Self { paths }
    }

    /// Every key as `key` or `section.key`.
    pub fn dotted(&self) -> impl Iterator<Item = String> + '_ {
        self.paths.iter().map(|(s, k, _)| {
            if s.is_empty() {
                k.clone()
            } else {
                format!("{s}.{k}")
            }
        })
    }

    /// Whether the key at `dotted` takes text.
    fn is_text(&self, dotted: &str) -> bool {
        let (section, key) = dotted.split_once('.').unwrap_or(("", dotted));
        self.paths
            .iter()
            .any(|(s, k, text)| *text && s == section && k == key)
    }

    /// The key path a variable name (without prefix, any case) stands for, if any.
    fn path_of(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if ENV_NOT_KEYS.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            return None;
        }
        self.paths.iter().find_map(|(section, key, _)| {
            let matches = if section.is_empty() {
                name == *key
            } else {
                name.strip_prefix(section.as_str())
                    .and_then(|rest| rest.strip_prefix('_'))
                    == Some(key.as_str())
            };
            matches.then(|| {
                if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                }
            })
        })
    }
}

#[cfg(test)]
// figment's test jail returns its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// Runs `f` with exactly these `FERROBOARD_*` variables set (figment's jail serialises the
    /// tests that touch the process environment and restores it afterwards).
    fn with_env(
        vars: &[(&str, &str)],
        f: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<(), figment::Error> {
        figment::Jail::try_with(|jail| {
            for (name, _) in std::env::vars() {
                if name.starts_with(ENV_PREFIX) {
                    jail.set_env(&name, "");
                }
            }
            for (name, value) in vars {
                jail.set_env(name, value);
            }
            f(jail.directory()).map_err(Into::into)
        })
    }

    #[test]
    fn environment_overrides_the_file_for_top_level_and_section_keys() {
        with_env(
            &[
                ("FERROBOARD_HTTP_ADDR", "127.0.0.1:9"),
                ("FERROBOARD_MQTT_MAX_PACKET_SIZE", "4096"),
                ("FERROBOARD_STORAGE_SQLITE_SYNCHRONOUS", "NORMAL"),
                ("FERROBOARD_JWT_SECRET", &"1234".repeat(16)),
                ("FERROBOARD_ADMIN_PASSWORD", ""),
                ("FERROBOARD_BIN", "/not/a/key"),
            ],
            |dir| {
                let file = dir.join("f.toml");
                std::fs::write(
                    &file,
                    "http_addr = \"1.2.3.4:1\"\nmqtt_addr = \"1.2.3.4:2\"\n[mqtt]\nmax_inflight = 7\n",
                )
                .map_err(|e| e.to_string())?;
                let c = Config::from_file_and_env(Some(&file)).map_err(|e| e.to_string())?;
                assert_eq!(c.http_addr, "127.0.0.1:9");
                assert_eq!(c.mqtt_addr, "1.2.3.4:2");
                assert_eq!(c.mqtt.max_inflight, 7);
                assert_eq!(c.mqtt.max_packet_size, 4096);
                assert_eq!(c.storage.sqlite_synchronous, "NORMAL");
                assert_eq!(c.jwt_secret, Some("1234".repeat(16)));
                assert_eq!(c.admin_password, None, "an empty variable counts as unset");
                Ok(())
            },
        )
        .unwrap();
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_their_name() {
        with_env(&[("FERROBOARD_MQTT_MAX_INFLIGHT", "lots")], |_| {
            let e = Config::from_file_and_env(None).unwrap_err().to_string();
            assert!(e.contains("FERROBOARD_MQTT_MAX_INFLIGHT"), "{e}");
            Ok(())
        })
        .unwrap();
        with_env(&[], |dir| {
            let file = dir.join("f.toml");
            std::fs::write(&file, "htp_addr = \"x\"\n").map_err(|e| e.to_string())?;
            let e = Config::from_file_and_env(Some(&file))
                .unwrap_err()
                .to_string();
            assert!(e.contains("htp_addr"), "{e}");
            let missing = Config::from_file_and_env(Some(&dir.join("nope.toml")));
            assert!(matches!(missing, Err(ConfigError::Missing(_))));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn the_value_size_bound_is_range_checked() {
        for (value, ok) in [
            ("1023", false),
            ("1024", true),
            ("67108865", false),
            ("0", false),
        ] {
            with_env(&[("FERROBOARD_JSON_MAX_VALUE_SIZE", value)], |_| {
                match Config::from_file_and_env(None) {
                    Ok(c) if ok => assert_eq!(c.typing().max_value_size.to_string(), value),
                    Err(e) if !ok => assert!(e.to_string().contains("json.max_value_size"), "{e}"),
                    other => panic!("{value}: {other:?}"),
                }
                Ok(())
            })
            .unwrap();
        }
    }

    #[test]
    fn the_example_file_parses_and_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ferroboard.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let example: toml::Table = toml::from_str(&text).unwrap();
        let _: Config = toml::from_str(&text).unwrap();
        // Keys without a default (None) are listed commented out: `# key = ...`.
        let listed = |dotted: &str| {
            let (section, key) = dotted.split_once('.').unwrap_or(("", dotted));
            let table = if section.is_empty() {
                Some(&example)
            } else {
                example.get(section).and_then(|t| t.as_table())
            };
            table.is_some_and(|t| t.contains_key(key))
                || text.lines().any(|l| {
                    l.trim_start_matches(['#', ' '])
                        .starts_with(&format!("{key} ="))
                })
        };
        let missing: Vec<String> = Keys::of_defaults()
            .dotted()
            .filter(|k| !listed(k))
            .collect();
        assert!(
            missing.is_empty(),
            "ferroboard.example.toml lacks {missing:?}"
        );
    }
}
