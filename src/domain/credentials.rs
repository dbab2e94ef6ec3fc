//! MQTT_BASIC device credentials: the stored JSON value and the credentials id derived from it.

use serde_json::{Map, Value};
use sha3::{Digest, Sha3_256};

/// SHA3-256 lower-case hex, as ThingsBoard derives MQTT_BASIC credential ids.
pub fn sha3_hex(text: &str) -> String {
    hex::encode(Sha3_256::digest(text.as_bytes()))
}

/// Why an MQTT_BASIC credentials value is refused (ThingsBoard's texts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BasicError {
    /// Absent, not JSON, not an object, or a field that is not a string.
    InvalidBody,
    NoClientIdNorUserName,
    PasswordWithClientIdOnly,
}

impl BasicError {
    pub fn message(self) -> &'static str {
        match self {
            Self::InvalidBody => "Invalid credentials body for simple mqtt credentials!",
            Self::NoClientIdNorUserName => "Both mqtt client id and user name are empty!",
            Self::PasswordWithClientIdOnly => "Password cannot be specified along with client id",
        }
    }
}

/// The fields of an MQTT_BASIC credentials value; absent fields stay absent when re-serialized.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttBasic {
    pub client_id: Option<String>,
    pub user_name: Option<String>,
    pub password: Option<String>,
}

impl MqttBasic {
    /// Parses the JSON text a client sends as `credentialsValue` and checks ThingsBoard's rules.
    pub fn parse(text: &str) -> Result<Self, BasicError> {
        let value: Value = serde_json::from_str(text).map_err(|_| BasicError::InvalidBody)?;
        let obj = value.as_object().ok_or(BasicError::InvalidBody)?;
        let field = |name: &str| match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(BasicError::InvalidBody),
        };
        let basic = Self {
            client_id: field("clientId")?,
            user_name: field("userName")?,
            password: field("password")?,
        };
        match (
            non_empty(&basic.client_id),
            non_empty(&basic.user_name),
            non_empty(&basic.password),
        ) {
            (None, None, _) => Err(BasicError::NoClientIdNorUserName),
            (Some(_), None, Some(_)) => Err(BasicError::PasswordWithClientIdOnly),
            _ => Ok(basic),
        }
    }

    /// The credentials id the transport looks up: the user name alone, else SHA3 of the client id,
    /// else SHA3 of `clientId|userName`.
    pub fn credentials_id(&self) -> String {
        match (non_empty(&self.client_id), non_empty(&self.user_name)) {
            (None, Some(user)) => user.to_owned(),
            (Some(client), None) => sha3_hex(client),
            (Some(client), Some(user)) => sha3_hex(&format!("{client}|{user}")),
            (None, None) => String::new(),
        }
    }

    /// Compact JSON with only the fields given, in ThingsBoard's order.
    pub fn to_json(&self) -> String {
        let mut obj = Map::new();
        for (name, v) in [
            ("clientId", &self.client_id),
            ("userName", &self.user_name),
            ("password", &self.password),
        ] {
            if let Some(v) = v {
                obj.insert(name.to_owned(), Value::String(v.clone()));
            }
        }
        Value::Object(obj).to_string()
    }
}

fn non_empty(field: &Option<String>) -> Option<&str> {
    field.as_deref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha3_matches_known_vector() {
        assert_eq!(
            sha3_hex("abc"),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
    }

    #[test]
    fn credentials_id_follows_the_given_fields() {
        let user = MqttBasic::parse(r#"{"userName":"u1","password":"p1"}"#).expect("valid");
        assert_eq!(user.credentials_id(), "u1");
        let client = MqttBasic::parse(r#"{"clientId":"c1","userName":""}"#).expect("valid");
        assert_eq!(client.credentials_id(), sha3_hex("c1"));
        let both =
            MqttBasic::parse(r#"{"clientId":"c1","userName":"u1","password":"p"}"#).expect("valid");
        assert_eq!(both.credentials_id(), sha3_hex("c1|u1"));
    }

    #[test]
    fn refused_values() {
        for (text, err) in [
            ("", BasicError::InvalidBody),
            ("not json", BasicError::InvalidBody),
            ("[1]", BasicError::InvalidBody),
            (r#""{}""#, BasicError::InvalidBody),
            (r#"{"userName":7}"#, BasicError::InvalidBody),
            ("{}", BasicError::NoClientIdNorUserName),
            (
                r#"{"clientId":"","userName":"","password":"p"}"#,
                BasicError::NoClientIdNorUserName,
            ),
            (
                r#"{"clientId":"c1","password":"p1"}"#,
                BasicError::PasswordWithClientIdOnly,
            ),
        ] {
            assert_eq!(MqttBasic::parse(text), Err(err), "{text}");
        }
    }

    #[test]
    fn re_serialized_with_only_the_given_fields() {
        let basic = MqttBasic::parse(r#"{ "password" : "p1", "userName":"u1", "extra": 1 }"#)
            .expect("valid");
        assert_eq!(basic.to_json(), r#"{"userName":"u1","password":"p1"}"#);
        let all =
            MqttBasic::parse(r#"{"clientId":"c","userName":"u","password":null}"#).expect("valid");
        assert_eq!(all.to_json(), r#"{"clientId":"c","userName":"u"}"#);
    }
}
