//! X509_CERTIFICATE device credentials: a certificate normalised as ThingsBoard stores it (the
//! base64 body of the PEM, armour and whitespace removed), its credentials id (SHA3-256 of that
//! text) and the validity check a CONNECT applies to the device's leaf certificate.

use base64::Engine as _;

use super::credentials::sha3_hex;

/// Why a certificate is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("the certificate is not a PEM or base64 X.509 certificate: {0}")]
    Encoding(String),
    #[error("the certificate is outside its validity period ({not_before} .. {not_after})")]
    NotValidNow {
        not_before: String,
        not_after: String,
    },
}

/// A parsed device certificate: the normalised text ThingsBoard stores and its DER bytes.
#[derive(Clone, Debug)]
pub struct DeviceCertificate {
    /// Standard base64 of the DER, on one line.
    pub body: String,
    pub der: Vec<u8>,
}

impl DeviceCertificate {
    /// From what a REST client sends as `credentialsValue`: one PEM certificate, or its base64
    /// body with or without line breaks. The first certificate counts when several are given.
    pub fn from_text(text: &str) -> Result<Self, CertError> {
        let mut body = String::new();
        let mut inside = !text.contains("-----BEGIN");
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("-----BEGIN") {
                inside = true;
            } else if line.starts_with("-----END") {
                if !body.is_empty() {
                    break;
                }
                inside = false;
            } else if inside {
                body.extend(line.chars().filter(|c| !c.is_whitespace()));
            }
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .map_err(|e| CertError::Encoding(e.to_string()))?;
        Self::from_der(der)
    }

    /// From the DER bytes a TLS client presented.
    pub fn from_der(der: Vec<u8>) -> Result<Self, CertError> {
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| CertError::Encoding(e.to_string()))?;
        Ok(Self {
            body: base64::engine::general_purpose::STANDARD.encode(&der),
            der,
        })
    }

    /// The credentials id the transport looks up: SHA3-256 hex of the normalised body.
    pub fn credentials_id(&self) -> String {
        sha3_hex(&self.body)
    }

    /// The certificate's validity period includes the present moment.
    pub fn check_validity_now(&self) -> Result<(), CertError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.der)
            .map_err(|e| CertError::Encoding(e.to_string()))?;
        let validity = cert.validity();
        if validity.is_valid() {
            Ok(())
        } else {
            Err(CertError::NotValidNow {
                not_before: validity.not_before.to_string(),
                not_after: validity.not_after.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(days_from_now: (i64, i64)) -> String {
        let mut params =
            rcgen::CertificateParams::new(vec!["device-1".to_owned()]).expect("params");
        let now = time_now();
        params.not_before = now + time::Duration::days(days_from_now.0);
        params.not_after = now + time::Duration::days(days_from_now.1);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").pem()
    }

    fn time_now() -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc()
    }

    #[test]
    fn pem_and_its_body_give_the_same_id_and_match_the_der() {
        let pem = self_signed((-1, 30));
        let from_pem = DeviceCertificate::from_text(&pem).expect("PEM");
        let body: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n");
        let from_body = DeviceCertificate::from_text(&body).expect("body");
        let from_der = DeviceCertificate::from_der(from_pem.der.clone()).expect("DER");
        assert_eq!(from_pem.body, from_body.body);
        assert_eq!(from_pem.credentials_id(), from_der.credentials_id());
        assert_eq!(from_pem.credentials_id(), sha3_hex(&from_pem.body));
        assert!(!from_pem.body.contains('\n'));
    }

    #[test]
    fn validity_dates_are_checked() {
        let valid = DeviceCertificate::from_text(&self_signed((-1, 30))).expect("valid");
        assert_eq!(valid.check_validity_now(), Ok(()));
        let expired = DeviceCertificate::from_text(&self_signed((-30, -1))).expect("expired");
        assert!(matches!(
            expired.check_validity_now(),
            Err(CertError::NotValidNow { .. })
        ));
        let future = DeviceCertificate::from_text(&self_signed((1, 30))).expect("future");
        assert!(future.check_validity_now().is_err());
    }

    #[test]
    fn garbage_is_an_encoding_error() {
        for text in [
            "",
            "not base64 !",
            "aGVsbG8=",
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----",
        ] {
            assert!(
                matches!(
                    DeviceCertificate::from_text(text),
                    Err(CertError::Encoding(_))
                ),
                "{text}"
            );
        }
    }
}
