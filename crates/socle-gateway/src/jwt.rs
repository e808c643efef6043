//! Signing the gateway's JWTs (access tokens, caller assertions, delivery signatures,
//! consent receipts) with the platform's active ES256 key.

use josekit::jwt::JwtPayload;
use serde_json::Value;
use socle_identity::KeyRing;

use crate::error::{GatewayError, Result};

/// Signs `claims` (registered ones included: `iss`, `sub`, `aud`…) as a JWT of type
/// `typ`.
pub(crate) fn sign(keys: &KeyRing, typ: &str, claims: Vec<(&str, Value)>) -> Result<String> {
    let unavailable =
        || GatewayError::unavailable("signing_failed", "the platform cannot sign now");
    let mut p = JwtPayload::new();
    for (k, v) in claims {
        p.set_claim(k, Some(v)).map_err(|e| {
            tracing::error!(error = %e, claim = k, "gateway: invalid claim");
            unavailable()
        })?;
    }
    keys.sign("ES256", &p, Some(typ)).map_err(|e| {
        tracing::error!(error = %e, typ, "gateway: cannot sign");
        unavailable()
    })
}
