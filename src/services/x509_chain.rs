//! X.509 client-certificate authentication at CONNECT, with X509_CERTIFICATE_CHAIN provisioning:
//! a leaf registered as a device's credentials is accepted; otherwise a certificate of the
//! client's chain that is a chain profile's CA, and signed the leaf, names the device (the
//! profile's pattern applied to the leaf's CN), which is updated or created with the leaf.

use super::Services;
use super::device_auth::AuthResult;
use crate::domain::profile::x509_chain::X509Chain;
use crate::domain::x509::DeviceCertificate;
use crate::domain::{DeviceProfile, StorageError};

impl Services {
    /// The CONNECT check of a client certificate: `leaf` is the DER the client presented, `chain`
    /// the certificates it sent after it (issuer first).
    pub(super) async fn authenticate_certificate(
        &self,
        leaf: &[u8],
        chain: &[Vec<u8>],
    ) -> Result<AuthResult, StorageError> {
        let cert = match DeviceCertificate::from_der(leaf.to_vec()) {
            Ok(cert) => cert,
            Err(e) => return Ok(refused(&e.to_string())),
        };
        if let Err(e) = cert.check_validity_now() {
            return Ok(refused(&e.to_string()));
        }
        if let Some((device, stored)) = self
            .store
            .find_by_credentials_id(&cert.credentials_id())
            .await?
        {
            return Ok(if stored.credentials_type == "X509_CERTIFICATE" {
                AuthResult::Accepted(Box::new(device))
            } else {
                AuthResult::NotAuthorized
            });
        }
        for (depth, der) in chain.iter().enumerate() {
            let Ok(ca) = DeviceCertificate::from_der(der.clone()) else {
                return Ok(refused(
                    "the client's chain holds a certificate that does not parse",
                ));
            };
            let Some(profile) = self
                .store
                .find_profile_by_provision_key(&ca.credentials_id())
                .await?
            else {
                continue;
            };
            let Some(settings) = X509Chain::of(&profile.profile_data) else {
                continue;
            };
            if let Err(e) = signed_by(leaf, &chain[..=depth]) {
                return Ok(refused(&e));
            }
            return self.provision_by_chain(&profile, &settings, cert).await;
        }
        Ok(refused(
            "no device has the certificate and no profile has a CA of its chain",
        ))
    }

    /// The device the chain profile names after the leaf: updated to the leaf when it exists in
    /// the profile, created when the profile allows it.
    async fn provision_by_chain(
        &self,
        profile: &DeviceProfile,
        settings: &X509Chain,
        leaf: DeviceCertificate,
    ) -> Result<AuthResult, StorageError> {
        let Some(name) = common_name(&leaf.der).and_then(|cn| settings.device_name(&cn)) else {
            return Ok(refused(&format!(
                "the certificate's CN does not match the pattern '{}' of profile {}",
                settings.pattern, profile.name
            )));
        };
        let found = self
            .store
            .find_device_by_name(profile.tenant_id, &name)
            .await?;
        if let Some(device) = found {
            if device.profile_id != profile.id {
                return Ok(refused(&format!(
                    "device {name} exists outside profile {}",
                    profile.name
                )));
            }
            let Some(existing) = self.store.get_credentials(device.id).await? else {
                return Ok(AuthResult::NotAuthorized);
            };
            let updated = crate::domain::DeviceCredentials {
                credentials_type: "X509_CERTIFICATE".to_owned(),
                credentials_id: leaf.credentials_id(),
                credentials_value: Some(leaf.body),
                ..existing
            };
            return Ok(match self.store.update_credentials(&updated).await {
                Ok(_) => {
                    self.auth_cache.invalidate();
                    tracing::info!(device = %name, profile = %profile.name, "device certificate updated from its chain");
                    AuthResult::Accepted(Box::new(device))
                }
                Err(StorageError::Conflict(reason)) => refused(&reason),
                Err(e) => return Err(e),
            });
        }
        if !settings.allow_create {
            return Ok(refused(&format!(
                "device {name} does not exist and profile {} does not create devices",
                profile.name
            )));
        }
        let id = leaf.credentials_id();
        let created = self
            .create_with_credentials(
                profile,
                name.clone(),
                false,
                "X509_CERTIFICATE",
                id,
                Some(leaf.body),
            )
            .await?;
        let Some((device_id, _)) = created else {
            return Ok(refused(&format!("device {name} could not be created")));
        };
        self.mark_provisioned(device_id).await?;
        tracing::info!(device = %name, profile = %profile.name, "device created from its certificate chain");
        Ok(match self.store.find_device(device_id).await? {
            Some(device) => AuthResult::Accepted(Box::new(device)),
            None => AuthResult::NotAuthorized,
        })
    }
}

fn refused(reason: &str) -> AuthResult {
    tracing::info!(reason, "client certificate refused");
    AuthResult::NotAuthorized
}

/// Each certificate, starting with the leaf, is signed by the next one of `issuers`.
fn signed_by(leaf: &[u8], issuers: &[Vec<u8>]) -> Result<(), String> {
    let mut subject = leaf;
    for issuer in issuers {
        let (_, child) = x509_parser::parse_x509_certificate(subject).map_err(|e| e.to_string())?;
        let (_, parent) = x509_parser::parse_x509_certificate(issuer).map_err(|e| e.to_string())?;
        child
            .verify_signature(Some(parent.public_key()))
            .map_err(|e| {
                format!(
                    "the certificate of {} is not signed by {}: {e}",
                    child.subject(),
                    parent.subject()
                )
            })?;
        subject = issuer;
    }
    Ok(())
}

/// The first CN of the certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
