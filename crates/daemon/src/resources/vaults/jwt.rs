//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9): a short
//! JWT the client signs with its own key, sent as `client_assertion`. Signed with `ring`
//! (already tether's crypto provider): a P-256 key signs ES256, an RSA key RS256.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};

/// How long an assertion is good for (RFC 7523 asks for a short expiry).
const LIFETIME_SECS: i64 = 300;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

enum Key {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER inside a PEM `-----BEGIN PRIVATE KEY-----` block (PKCS#8).
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    let pem = pem.trim();
    if pem.contains("BEGIN EC PRIVATE KEY") || pem.contains("BEGIN RSA PRIVATE KEY") {
        return Err("the private key is in the SEC1/PKCS#1 form; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in KEY`".into());
    }
    if pem.contains("ENCRYPTED PRIVATE KEY") {
        return Err("the private key is encrypted; give tether an unencrypted PKCS#8 key (`openssl pkcs8 -topk8 -nocrypt`)".into());
    }
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| {
            "the private key is not PEM (expected -----BEGIN PRIVATE KEY----- and base64)"
                .to_string()
        })
}

fn key(pem: &str) -> Result<Key, String> {
    let der = pkcs8_der(pem)?;
    let rng = SystemRandom::new();
    if let Ok(k) = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
    {
        return Ok(Key::Es256(k));
    }
    RsaKeyPair::from_pkcs8(&der).map(Key::Rs256).map_err(|_| {
        "the private key is neither a P-256 (ES256) nor an RSA (RS256) PKCS#8 key".to_string()
    })
}

/// Checks that `pem` is a key tether can sign with, and says which algorithm.
pub fn check_key(pem: &str) -> Result<&'static str, String> {
    Ok(match key(pem)? {
        Key::Es256(_) => "ES256",
        Key::Rs256(_) => "RS256",
    })
}

/// A signed client assertion: `iss` = `sub` = the client, `aud` = `audiences` (the issuer
/// and the token endpoint: servers check one or the other), a fresh `jti`.
pub fn client_assertion(
    pem: &str,
    client_id: &str,
    audiences: &[&str],
    now_secs: i64,
) -> Result<String, String> {
    let key = key(pem)?;
    let rng = SystemRandom::new();
    let mut jti = [0u8; 16];
    rng.fill(&mut jti)
        .map_err(|_| "the system random generator failed".to_string())?;
    let alg = match key {
        Key::Es256(_) => "ES256",
        Key::Rs256(_) => "RS256",
    };
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    let aud = match audiences {
        [one] => serde_json::json!(one),
        many => serde_json::json!(many),
    };
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now_secs,
        "exp": now_secs + LIFETIME_SECS,
        "jti": b64url(&jti),
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = match key {
        Key::Es256(k) => k
            .sign(&rng, signing_input.as_bytes())
            .map_err(|_| "signing the client assertion failed".to_string())?
            .as_ref()
            .to_vec(),
        Key::Rs256(k) => {
            let mut out = vec![0u8; k.public().modulus_len()];
            k.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut out,
            )
            .map_err(|_| "signing the client assertion failed".to_string())?;
            out
        }
    };
    Ok(format!("{signing_input}.{}", b64url(&sig)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn es256_pem() -> (String, Vec<u8>) {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        (
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
            pair.public_key().as_ref().to_vec(),
        )
    }

    #[test]
    fn an_es256_assertion_verifies_with_the_public_key_and_names_the_client() {
        let (pem, public) = es256_pem();
        assert_eq!(check_key(&pem).unwrap(), "ES256");
        let jwt = client_assertion(
            &pem,
            "cli",
            &["https://as.example", "https://as.example/token"],
            1000,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[2])
            .unwrap();
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["iss"], "cli");
        assert_eq!(claims["sub"], "cli");
        assert_eq!(claims["aud"][0], "https://as.example");
        assert_eq!(claims["exp"], 1300);
    }

    #[test]
    fn keys_tether_cannot_use_say_what_to_do() {
        let e = check_key("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----")
            .unwrap_err();
        assert!(e.contains("openssl pkcs8"), "{e}");
        let e =
            check_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }
}
