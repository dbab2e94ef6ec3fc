//! Device topics as closed enums: what a device publishes to and which filters it may subscribe to
//!.

/// Payload encoding a topic family asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The device profile's format (JSON for now).
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
    Gateway(String),
    Unknown,
}

impl Uplink {
    pub fn parse(topic: &str) -> Self {
        use Format::*;
        match topic {
            "v1/devices/me/telemetry" | "v2/t" => return Self::Telemetry(Profile),
            "v2/t/j" => return Self::Telemetry(Json),
            "v2/t/p" => return Self::Telemetry(Protobuf),
            "v1/devices/me/attributes" | "v2/a" => return Self::Attributes(Profile),
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
            return Self::Gateway(topic.to_owned());
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
    /// The filters a ThingsBoard device may subscribe to, compared as exact strings.
    pub fn parse(filter: &str) -> Option<Self> {
        Some(match filter {
            "v1/devices/me/attributes" | "v2/a" | "v2/a/j" | "v2/a/p" => Self::AttributeUpdates,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_topics() {
        assert_eq!(
            Uplink::parse("v1/devices/me/telemetry"),
            Uplink::Telemetry(Format::Profile)
        );
        assert_eq!(Uplink::parse("v2/t/j"), Uplink::Telemetry(Format::Json));
        assert_eq!(
            Uplink::parse("v1/devices/me/attributes/request/7"),
            Uplink::AttributeRequest {
                id: "7".into(),
                v2: false
            }
        );
        assert_eq!(
            Uplink::parse("v2/r/req/j/3"),
            Uplink::RpcRequest {
                id: "3".into(),
                v2: true
            }
        );
        assert_eq!(
            Uplink::parse("v2/fw/request/1/chunk/2"),
            Uplink::FirmwareChunk {
                request: "1".into(),
                chunk: "2".into(),
                software: false
            }
        );
        assert_eq!(
            Uplink::parse("v1/gateway/telemetry"),
            Uplink::Gateway("v1/gateway/telemetry".into())
        );
        assert_eq!(Uplink::parse("v1/devices/me/other"), Uplink::Unknown);
        assert_eq!(Uplink::parse("v1/devices/me/telemetry/x"), Uplink::Unknown);
    }

    #[test]
    fn subscribe_filters() {
        assert_eq!(
            Subscription::parse("v1/devices/me/attributes"),
            Some(Subscription::AttributeUpdates)
        );
        assert_eq!(
            Subscription::parse("v1/devices/me/rpc/request/+"),
            Some(Subscription::RpcRequests)
        );
        assert_eq!(
            Subscription::parse("v1/devices/me/attributes/response/+"),
            Some(Subscription::Responses)
        );
        assert_eq!(Subscription::parse("#"), None);
        assert_eq!(Subscription::parse("v1/devices/me/#"), None);
        assert_eq!(Subscription::parse("v2/fw/response/+"), None);
    }
}
