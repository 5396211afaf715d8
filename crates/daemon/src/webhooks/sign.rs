//! Standard Webhooks signatures (what the official SDKs' `webhooks.unwrap` verifies): the
//! secret is `whsec_` + base64 of the HMAC key; the signature is `v1,` + base64 of
//! HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`. HMAC from `ring`, already
//! the daemon's crypto.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};

const PREFIX: &str = "whsec_";

/// Standard base64 that takes secrets with or without their `=` padding (as the reference
/// library does).
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error(
        "a webhook secret must be `whsec_` followed by base64 (e.g. what `tether webhooks add` prints); this one {0}"
    )]
    Malformed(&'static str),
}

/// The HMAC key of a `whsec_` secret.
pub fn key_bytes(secret: &str) -> Result<Vec<u8>, SecretError> {
    let b64 = secret
        .trim()
        .strip_prefix(PREFIX)
        .ok_or(SecretError::Malformed("does not start with `whsec_`"))?;
    let key = LENIENT
        .decode(b64)
        .map_err(|_| SecretError::Malformed("is not valid base64 after `whsec_`"))?;
    if key.len() < 16 {
        return Err(SecretError::Malformed("is shorter than 16 bytes"));
    }
    Ok(key)
}

/// A new random secret: 32 bytes (as hosted).
pub fn new_secret() -> Result<String, ring::error::Unspecified> {
    let bytes: [u8; 32] = ring::rand::generate(&ring::rand::SystemRandom::new())?.expose();
    Ok(format!(
        "{PREFIX}{}",
        general_purpose::STANDARD.encode(bytes)
    ))
}

/// The `webhook-signature` header value for one attempt.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's own example (its reference libraries' tests).
    #[test]
    fn signs_the_specifications_example() {
        let key = key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_round_trips_to_32_bytes() {
        let s = new_secret().unwrap();
        assert!(s.starts_with("whsec_"), "{s}");
        assert_eq!(key_bytes(&s).unwrap().len(), 32);
        assert_ne!(s, new_secret().unwrap());
    }

    #[test]
    fn malformed_secrets_say_what_is_wrong() {
        assert_eq!(
            key_bytes("sk_abc"),
            Err(SecretError::Malformed("does not start with `whsec_`"))
        );
        assert_eq!(
            key_bytes("whsec_!!!"),
            Err(SecretError::Malformed("is not valid base64 after `whsec_`"))
        );
        // Unpadded input is accepted, as the reference library does.
        assert!(key_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
    }
}
