//! The process tests' harness: real `ferroboard serve` child processes (two nodes sharing
//! PostgreSQL and Redis, or one node on either backend) killed on drop, a REST client logged in on
//! one node, and an MQTT 3.1.1 device on rumqttc.
// Shared by several test binaries: each uses a part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{Event as MqttEvent, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{self, Backend, TENANT_EMAIL, TENANT_PASSWORD};

pub const WAIT: Duration = Duration::from_secs(10);
const START_WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Every child process of one test; killed on drop, also when the test panics (then the tails of
/// the node logs are printed; `CLUSTER_LOGS=1` prints them always).
pub struct Cluster {
    /// Dropped after the nodes are killed (in `drop`); None when the test brought its own database.
    _database: Option<common::Database>,
    database_url: String,
    rules: PathBuf,
    dir: tempfile::TempDir,
    /// None: the nodes run without Redis (bus LOCAL).
    redis_port: Option<u16>,
    redis: Option<Child>,
    nodes: Vec<Node>,
    /// Extra variables of every node (e.g. the trace exporter's).
    env: Vec<(String, String)>,
}

pub struct Node {
    pub name: &'static str,
    pub http: String,
    pub mqtt_port: u16,
    child: Child,
    log: PathBuf,
}

impl Node {
    /// Everything the node wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Cluster {
    /// Redis, then node `a` (it migrates and bootstraps the database), then node `b`, on a fresh
    /// PostgreSQL database.
    pub async fn start() -> Self {
        Self::launch(Backend::Postgres, None, true, &["a", "b"]).await
    }

    /// One node without Redis on a fresh database of `backend`, or on `database_url` when given.
    pub async fn single(backend: Backend, database_url: Option<String>) -> Self {
        Self::launch(backend, database_url, false, &["a"]).await
    }

    async fn launch(
        backend: Backend,
        database_url: Option<String>,
        redis: bool,
        names: &[&'static str],
    ) -> Self {
        Self::launch_with_env(backend, database_url, redis, names, Vec::new()).await
    }

    /// `launch` with extra variables for every node.
    pub async fn launch_with_env(
        backend: Backend,
        database_url: Option<String>,
        redis: bool,
        names: &[&'static str],
        env: Vec<(String, String)>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (database, database_url) = match database_url {
            Some(url) => (None, url),
            None => {
                let database = common::fresh_database(backend, dir.path()).await;
                let url = database.url.clone();
                (Some(database), url)
            }
        };
        let rules = common::rules_copy(dir.path());
        let mut cluster = Self {
            _database: database,
            database_url,
            rules,
            redis_port: redis.then(free_port),
            dir,
            redis: None,
            nodes: Vec::new(),
            env,
        };
        if redis {
            cluster.start_redis().await;
        }
        for name in names {
            let node = cluster.spawn_node(name);
            cluster.nodes.push(node);
            let index = cluster.nodes.len() - 1;
            cluster.wait_healthy(index).await;
        }
        cluster
    }

    /// Ends node `index` with SIGKILL: nothing of it runs after this returns.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.child.kill().expect("SIGKILL the node");
        node.child.wait().expect("reap the node");
    }

    /// Starts node `index` again (new ports, same database) and waits until it is healthy.
    pub async fn restart(&mut self, index: usize) {
        let name = self.nodes[index].name;
        self.nodes[index] = self.spawn_node(name);
        self.wait_healthy(index).await;
    }

    pub fn a(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn b(&self) -> &Node {
        &self.nodes[1]
    }

    pub async fn start_redis(&mut self) {
        let port = self.redis_port.expect("a cluster with Redis");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("redis-server must be on PATH for the cluster test");
        self.redis = Some(child);
        common::eventually("redis-server answers PING", WAIT, || async move {
            redis_ping(port).await.then_some(())
        })
        .await;
    }

    pub fn stop_redis(&mut self) {
        if let Some(mut child) = self.redis.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn_node(&self, name: &'static str) -> Node {
        let (http_port, mqtt_port) = (free_port(), free_port());
        let log = self.dir.path().join(format!("node-{name}.log"));
        // A restarted node appends to the log of its earlier run.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("node log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferroboard"));
        command
            .arg("serve")
            .env_remove("FERROBOARD_CONFIG")
            .env_remove("FERROBOARD_REDIS_URL")
            .env("FERROBOARD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("FERROBOARD_MQTT_ADDR", format!("127.0.0.1:{mqtt_port}"))
            .env("FERROBOARD_DATABASE_URL", &self.database_url)
            .env("FERROBOARD_NODE_ID", name)
            .env("FERROBOARD_RULES_DIR", &self.rules)
            .env("FERROBOARD_ADMIN_PASSWORD", TENANT_PASSWORD)
            .env("FERROBOARD_SYSADMIN_PASSWORD", common::SYSADMIN_PASSWORD)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out);
        if let Some(port) = self.redis_port {
            command.env("FERROBOARD_REDIS_URL", format!("redis://127.0.0.1:{port}/"));
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().expect("spawn ferroboard");
        Node {
            name,
            http: format!("http://127.0.0.1:{http_port}"),
            mqtt_port,
            child,
            log,
        }
    }

    /// Polls `/api/health` until the node is UP with its bus UP (LOCAL without Redis).
    async fn wait_healthy(&mut self, index: usize) {
        let deadline = Instant::now() + START_WAIT;
        let bus = if self.redis_port.is_some() {
            "UP"
        } else {
            "LOCAL"
        };
        loop {
            let node = &mut self.nodes[index];
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!(
                    "node {} exited during start-up ({status}):\n{}",
                    node.name,
                    tail(&node.log)
                );
            }
            if let Some((200, body)) = health(&node.http).await
                && body["status"] == "UP"
                && body["components"]["bus"] == bus
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} not healthy after {START_WAIT:?}:\n{}",
                node.name,
                tail(&node.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
            if std::thread::panicking() || std::env::var_os("CLUSTER_LOGS").is_some() {
                eprintln!("---- node {} log ----\n{}", node.name, tail(&node.log));
            }
        }
        self.stop_redis();
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn redis_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        sock.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = sock.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"+PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

/// The sum of a Prometheus metric's samples (all label sets) on `node`; 0 when it has none yet.
pub async fn metric(node: &Node, name: &str) -> f64 {
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", node.http))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("metrics request");
    let text = resp.text().await.expect("metrics text");
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn health(base: &str) -> Option<(u16, Value)> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.ok()?))
}

/// A logged-in tenant administrator on one node.
pub struct Rest {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Rest {
    pub async fn login(node: &Node) -> Self {
        Self::login_at(&node.http).await
    }

    /// Logs in on the server at `base` (`http://host:port`).
    pub async fn login_at(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let (status, body) = send(
            &http,
            &format!("{base}/api/auth/login"),
            None,
            json!({"username": TENANT_EMAIL, "password": TENANT_PASSWORD}),
        )
        .await;
        assert_eq!(status, 200, "login: {body}");
        Self {
            http,
            base: base.to_owned(),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// The access token (for the WebSocket's `?token=`).
    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(
            &self.http,
            &format!("{}{path}", self.base),
            Some(&self.token),
            body,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-Authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Creates a device; returns its id and access token.
    pub async fn device(&self) -> (String, String) {
        let name = format!("cluster-{}", uuid::Uuid::new_v4().simple());
        let (status, device) = self.post("/api/device", json!({"name": name})).await;
        assert_eq!(status, 200, "create device: {device}");
        let id = device["id"]["id"].as_str().expect("id").to_owned();
        let resp = self
            .http
            .get(format!("{}/api/device/{id}/credentials", self.base))
            .header("X-Authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .expect("credentials request");
        let creds: Value = resp.json().await.expect("credentials JSON");
        let token = creds["credentialsId"].as_str().expect("token").to_owned();
        (id, token)
    }

    pub async fn save_shared(&self, device: &str, attrs: Value) {
        let path = format!("/api/plugins/telemetry/DEVICE/{device}/SHARED_SCOPE");
        let (status, body) = self.post(&path, attrs).await;
        assert_eq!(status, 200, "save shared attributes: {body}");
    }
}

async fn send(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.header("X-Authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// An MQTT 3.1.1 device whose event loop runs in a task; it stops at the first error.
pub struct Device {
    client: rumqttc::AsyncClient,
    events: mpsc::UnboundedReceiver<Result<MqttEvent, String>>,
}

impl Device {
    pub async fn connect(node: &Node, token: &str) -> Self {
        Self::try_connect(node.mqtt_port, token)
            .await
            .unwrap_or_else(|e| panic!("device connect to node {}: {e}", node.name))
    }

    /// Connects to the MQTT port; an error names what went wrong (refused, no CONNACK in time).
    pub async fn try_connect(mqtt_port: u16, token: &str) -> Result<Self, String> {
        let mut opts = rumqttc::MqttOptions::new(
            format!("c-{}", uuid::Uuid::new_v4().simple()),
            "127.0.0.1",
            mqtt_port,
        );
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_credentials(token, "");
        let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| format!("{e:?}"));
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut device = Self { client, events };
        let code = device
            .try_expect(WAIT, |p| match p {
                Packet::ConnAck(ack) => Some(ack.code),
                _ => None,
            })
            .await?;
        match code {
            rumqttc::ConnectReturnCode::Success => Ok(device),
            refused => Err(format!("CONNACK {refused:?}")),
        }
    }

    /// The first incoming packet `pick` accepts within `wait`, or why there was none.
    pub async fn try_expect<T>(
        &mut self,
        wait: Duration,
        mut pick: impl FnMut(&Packet) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(MqttEvent::Incoming(packet)))) => {
                    if let Some(v) = pick(&packet) {
                        return Ok(v);
                    }
                }
                Ok(Some(Ok(MqttEvent::Outgoing(_)))) => {}
                Ok(Some(Err(e))) => return Err(format!("connection failed: {e}")),
                Ok(None) => return Err("connection gone".to_owned()),
                Err(_) => return Err(format!("nothing within {wait:?}")),
            }
        }
    }

    /// QoS 1 telemetry; Ok once it is acknowledged, Err when the connection fails first.
    pub async fn try_telemetry(&mut self, payload: Value) -> Result<(), String> {
        self.client
            .publish(
                "v1/devices/me/telemetry",
                QoS::AtLeastOnce,
                false,
                payload.to_string(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        self.try_expect(WAIT, |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await
    }

    /// The first incoming packet `pick` accepts; other packets are skipped.
    pub async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(MqttEvent::Incoming(packet)))) => {
                    if let Some(v) = pick(&packet) {
                        return v;
                    }
                }
                Ok(Some(Ok(MqttEvent::Outgoing(_)))) => {}
                Ok(Some(Err(e))) => panic!("connection failed while waiting for {what}: {e}"),
                Ok(None) => panic!("connection gone while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// Waits for a PUBLISH on `topic` (exact, or prefix when it ends with `/`) for at most `wait`.
    pub async fn publish_on(&mut self, topic: &str, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(MqttEvent::Incoming(Packet::Publish(p)))))
                    if p.topic == topic || (topic.ends_with('/') && p.topic.starts_with(topic)) =>
                {
                    let body = serde_json::from_slice(&p.payload).unwrap_or_else(|e| {
                        panic!("non-JSON payload on {}: {e}: {:?}", p.topic, p.payload)
                    });
                    return Some((p.topic.clone(), body));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => panic!("connection failed while waiting on {topic}: {e}"),
                Ok(None) => panic!("connection gone while waiting on {topic}"),
                Err(_) => return None,
            }
        }
    }

    pub async fn subscribe(&mut self, topic: &str) {
        self.subscribe_qos(topic, QoS::AtLeastOnce).await;
    }

    pub async fn subscribe_qos(&mut self, topic: &str, qos: QoS) {
        self.client.subscribe(topic, qos).await.expect("subscribe");
        let codes = self
            .expect("SUBACK", |p| match p {
                Packet::SubAck(ack) => Some(ack.return_codes.clone()),
                _ => None,
            })
            .await;
        assert!(
            matches!(codes.as_slice(), [rumqttc::SubscribeReasonCode::Success(_)]),
            "SUBACK for {topic}: {codes:?}"
        );
    }

    pub async fn publish(&self, topic: &str, qos: QoS, payload: Value) {
        self.client
            .publish(topic, qos, false, payload.to_string())
            .await
            .expect("publish");
    }

    /// QoS 1 telemetry, acknowledged.
    pub async fn telemetry(&mut self, payload: Value) {
        self.publish("v1/devices/me/telemetry", QoS::AtLeastOnce, payload)
            .await;
        self.expect("PUBACK of telemetry", |p| {
            matches!(p, Packet::PubAck(_)).then_some(())
        })
        .await;
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return e,
                Ok(None) => return "event loop ended".to_owned(),
                Err(_) => panic!("the connection was not closed within {WAIT:?}"),
            }
        }
    }
}

/// Both nodes answer 200 with `"bus": expected_bus` and `status`.
pub async fn wait_health(cluster: &Cluster, expected_bus: &str, expected_status: &str) {
    for node in &cluster.nodes {
        let url = node.http.clone();
        let what = format!("node {} health bus={expected_bus}", node.name);
        common::eventually(&what, WAIT, || {
            let url = url.clone();
            async move {
                let (code, body) = health(&url).await?;
                (code == 200
                    && body["components"]["bus"] == expected_bus
                    && body["status"] == expected_status)
                    .then_some(())
            }
        })
        .await;
    }
}
