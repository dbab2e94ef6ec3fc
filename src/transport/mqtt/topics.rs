//! Device topics as closed enums: what a device publishes to and which filters it may subscribe
//! to. The device profile's topic filters (`MqttSettings`) are data here: they decide telemetry,
//! attributes and attribute subscriptions before the fixed topics.

use crate::domain::profile::{DEFAULT_ATTRIBUTES_TOPIC, MqttSettings};

/// Payload encoding a topic family asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The device profile's format (JSON or PROTOBUF).
    Profile,
    Json,
    Protobuf,
}

/// What a device PUBLISH means, decided by its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uplink {
    Telemetry(Format),
    Attributes(Format),
    AttributeRequest {
        id: String,
        v2: bool,
    },
    RpcResponse {
        id: String,
        v2: bool,
    },
    RpcRequest {
        id: String,
        v2: bool,
    },
    Claim,
    FirmwareChunk {
        request: String,
        chunk: String,
        software: bool,
    },
    Gateway(GatewayTopic),
    Unknown,
}

/// The gateway API's topics (`v1/gateway/...`), for the devices behind a gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatewayTopic {
    Connect,
    Disconnect,
    Telemetry,
    Attributes,
    AttributeRequest,
    /// A device's answer to a server-side RPC.
    Rpc,
    Claim,
    /// Any other topic starting with `v1/gateway`.
    Unknown,
}

impl GatewayTopic {
    fn parse(topic: &str) -> Self {
        match topic {
            "v1/gateway/connect" => Self::Connect,
            "v1/gateway/disconnect" => Self::Disconnect,
            "v1/gateway/telemetry" => Self::Telemetry,
            "v1/gateway/attributes" => Self::Attributes,
            "v1/gateway/attributes/request" => Self::AttributeRequest,
            "v1/gateway/rpc" => Self::Rpc,
            "v1/gateway/claim" => Self::Claim,
            _ => Self::Unknown,
        }
    }
}

impl Uplink {
    /// The profile's attribute and telemetry filters come first (as in ThingsBoard) and replace
    /// `v1/devices/me/attributes` and `v1/devices/me/telemetry`; the `v2` topics always work.
    pub fn parse(topic: &str, settings: &MqttSettings) -> Self {
        use Format::*;
        if settings.attributes.matches(topic) {
            return Self::Attributes(Profile);
        }
        if settings.telemetry.matches(topic) {
            return Self::Telemetry(Profile);
        }
        match topic {
            "v2/t" => return Self::Telemetry(Profile),
            "v2/t/j" => return Self::Telemetry(Json),
            "v2/t/p" => return Self::Telemetry(Protobuf),
            "v2/a" => return Self::Attributes(Profile),
            "v2/a/j" => return Self::Attributes(Json),
            "v2/a/p" => return Self::Attributes(Protobuf),
            "v1/devices/me/claim" => return Self::Claim,
            _ => {}
        }
        let id = |rest: &str| rest.to_owned();
        if let Some(rest) = topic.strip_prefix("v1/devices/me/attributes/request/") {
            return Self::AttributeRequest {
                id: id(rest),
                v2: false,
            };
        }
        if let Some(rest) = topic.strip_prefix("v1/devices/me/rpc/response/") {
            return Self::RpcResponse {
                id: id(rest),
                v2: false,
            };
        }
        if let Some(rest) = topic.strip_prefix("v1/devices/me/rpc/request/") {
            return Self::RpcRequest {
                id: id(rest),
                v2: false,
            };
        }
        for (prefix, software) in [("v2/fw/request/", false), ("v2/sw/request/", true)] {
            if let Some(rest) = topic.strip_prefix(prefix)
                && let Some((request, chunk)) = rest.split_once("/chunk/")
            {
                return Self::FirmwareChunk {
                    request: request.to_owned(),
                    chunk: chunk.to_owned(),
                    software,
                };
            }
        }
        if let Some(rest) = strip_v2(topic, "v2/r/res/") {
            return Self::RpcResponse {
                id: id(rest),
                v2: true,
            };
        }
        if let Some(rest) = strip_v2(topic, "v2/r/req/") {
            return Self::RpcRequest {
                id: id(rest),
                v2: true,
            };
        }
        if let Some(rest) = strip_v2(topic, "v2/a/req/") {
            return Self::AttributeRequest {
                id: id(rest),
                v2: true,
            };
        }
        if topic.starts_with("v1/gateway") {
            return Self::Gateway(GatewayTopic::parse(topic));
        }
        Self::Unknown
    }
}

/// `prefix` + optional `j/` or `p/` + rest.
fn strip_v2<'a>(topic: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(prefix)?;
    Some(
        rest.strip_prefix("j/")
            .or_else(|| rest.strip_prefix("p/"))
            .unwrap_or(rest),
    )
}

/// What a SUBSCRIBE filter registers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    /// Shared-attribute updates.
    AttributeUpdates,
    /// Server-side RPC requests.
    RpcRequests,
    /// A response family; only the granted QoS is kept.
    Responses,
}

impl Subscription {
    /// The filters a ThingsBoard device may subscribe to, compared as exact strings, and the
    /// filter the profile names for attribute updates (matched by its filter).
    pub fn parse(filter: &str, settings: &MqttSettings) -> Option<Self> {
        if filter == DEFAULT_ATTRIBUTES_TOPIC || settings.attributes_subscribe.matches(filter) {
            return Some(Self::AttributeUpdates);
        }
        Some(match filter {
            "v2/a" | "v2/a/j" | "v2/a/p" => Self::AttributeUpdates,
            "v1/devices/me/rpc/request/+" | "v2/r/req/+" | "v2/r/req/j/+" | "v2/r/req/p/+" => {
                Self::RpcRequests
            }
            "v1/devices/me/rpc/response/+"
            | "v2/r/res/+"
            | "v2/r/res/j/+"
            | "v2/r/res/p/+"
            | "v1/devices/me/attributes/response/+"
            | "v2/a/res/+"
            | "v2/a/res/j/+"
            | "v2/a/res/p/+"
            | "v1/gateway/attributes"
            | "v1/gateway/rpc"
            | "v1/gateway/attributes/response"
            | "v2/fw/response/+/chunk/+"
            | "v2/fw/error"
            | "v2/sw/response/+/chunk/+"
            | "v2/sw/error" => Self::Responses,
            _ => return None,
        })
    }

    /// The topic updates of a subscription through `filter` are published on: the filter itself
    /// for the fixed ones, `v1/devices/me/attributes` for a profile's attribute filter.
    pub fn publish_topic(self, filter: &str) -> &str {
        match (self, filter) {
            (Self::AttributeUpdates, "v2/a" | "v2/a/j" | "v2/a/p") => filter,
            (Self::AttributeUpdates, _) => DEFAULT_ATTRIBUTES_TOPIC,
            _ => filter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(topic: &str) -> Uplink {
        Uplink::parse(topic, &MqttSettings::default())
    }

    fn sub(filter: &str) -> Option<Subscription> {
        Subscription::parse(filter, &MqttSettings::default())
    }

    #[test]
    fn profile_filters_replace_the_v1_topics() {
        let settings = MqttSettings {
            telemetry: crate::domain::profile::TopicFilter::parse("sensors/+/telemetry").unwrap(),
            attributes: crate::domain::profile::TopicFilter::parse("sensors/+/attrs").unwrap(),
            attributes_subscribe: crate::domain::profile::TopicFilter::parse("cfg/#").unwrap(),
            ..MqttSettings::default()
        };
        let parse = |t| Uplink::parse(t, &settings);
        assert_eq!(
            parse("sensors/a/telemetry"),
            Uplink::Telemetry(Format::Profile)
        );
        assert_eq!(
            parse("sensors/a/attrs"),
            Uplink::Attributes(Format::Profile)
        );
        assert_eq!(parse("v1/devices/me/telemetry"), Uplink::Unknown);
        assert_eq!(parse("v2/t"), Uplink::Telemetry(Format::Profile));
        let sub = |f| Subscription::parse(f, &settings);
        assert_eq!(sub("cfg/x"), Some(Subscription::AttributeUpdates));
        assert_eq!(
            sub("v1/devices/me/attributes"),
            Some(Subscription::AttributeUpdates)
        );
        assert_eq!(
            Subscription::AttributeUpdates.publish_topic("cfg/x"),
            "v1/devices/me/attributes"
        );
        assert_eq!(Subscription::AttributeUpdates.publish_topic("v2/a"), "v2/a");
    }

    #[test]
    fn publish_topics() {
        assert_eq!(
            parse("v1/devices/me/telemetry"),
            Uplink::Telemetry(Format::Profile)
        );
        assert_eq!(parse("v2/t/j"), Uplink::Telemetry(Format::Json));
        assert_eq!(
            parse("v1/devices/me/attributes/request/7"),
            Uplink::AttributeRequest {
                id: "7".into(),
                v2: false
            }
        );
        assert_eq!(
            parse("v2/r/req/j/3"),
            Uplink::RpcRequest {
                id: "3".into(),
                v2: true
            }
        );
        assert_eq!(
            parse("v2/fw/request/1/chunk/2"),
            Uplink::FirmwareChunk {
                request: "1".into(),
                chunk: "2".into(),
                software: false
            }
        );
        assert_eq!(
            parse("v1/gateway/telemetry"),
            Uplink::Gateway(GatewayTopic::Telemetry)
        );
        assert_eq!(
            parse("v1/gateway/attributes/request"),
            Uplink::Gateway(GatewayTopic::AttributeRequest)
        );
        assert_eq!(
            parse("v1/gatewayx"),
            Uplink::Gateway(GatewayTopic::Unknown),
            "ThingsBoard's prefix test has no slash"
        );
        assert_eq!(parse("v1/devices/me/other"), Uplink::Unknown);
        assert_eq!(parse("v1/devices/me/telemetry/x"), Uplink::Unknown);
    }

    #[test]
    fn subscribe_filters() {
        assert_eq!(
            sub("v1/devices/me/attributes"),
            Some(Subscription::AttributeUpdates)
        );
        assert_eq!(
            sub("v1/devices/me/rpc/request/+"),
            Some(Subscription::RpcRequests)
        );
        assert_eq!(
            sub("v1/devices/me/attributes/response/+"),
            Some(Subscription::Responses)
        );
        assert_eq!(sub("#"), None);
        assert_eq!(sub("v1/devices/me/#"), None);
        assert_eq!(sub("v2/fw/response/+"), None);
    }
}
