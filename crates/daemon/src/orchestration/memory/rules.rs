//! What a memory store accepts, checked before anything is written: store names and
//! descriptions, memory paths (hosted rules), content size, hashes.

use tether_proto::memory::MAX_CONTENT_BYTES;
use tether_proto::{ErrorBody, ErrorCode};
use unicode_normalization::UnicodeNormalization;

fn invalid(msg: String) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn store_name(name: &str) -> Result<(), ErrorBody> {
    let n = name.chars().count();
    if n == 0 || n > 255 {
        return Err(invalid(format!(
            "name: expected 1 to 255 characters, got {n}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            "name: control characters (newlines, tabs, ...) are not allowed".into(),
        ));
    }
    Ok(())
}

pub fn description(d: &str) -> Result<(), ErrorBody> {
    if d.chars().count() > 1024 {
        return Err(invalid(
            "description: expected at most 1024 characters".into(),
        ));
    }
    Ok(())
}

/// Unicode format characters (category Cf) the hosted rules refuse, plus the line and paragraph
/// separators.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{08E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}' | '\u{2028}' | '\u{2029}')
}

/// A memory path: leading `/`, 1 to 20 segments, none empty, `.` or `..`; no control or
/// format characters; NFC; at most 1024 bytes.
pub fn memory_path(path: &str) -> Result<(), ErrorBody> {
    let bad = |why: &str| {
        invalid(format!(
            "path `{}`: {why}; a memory path looks like `/notes/today.md`",
            path.escape_debug()
        ))
    };
    if path.len() > 1024 {
        return Err(bad("longer than 1024 bytes"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("must start with `/`"));
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() > 20 {
        return Err(bad("more than 20 segments"));
    }
    for s in &segments {
        match *s {
            "" => return Err(bad("has an empty segment (`//` or a trailing `/`)")),
            "." | ".." => return Err(bad("`.` and `..` segments are not allowed")),
            _ => {}
        }
    }
    if path.chars().any(|c| c.is_control() || is_format(c)) {
        return Err(bad("control and format characters are not allowed"));
    }
    if path.nfc().ne(path.chars()) {
        return Err(bad("must be in Unicode NFC form"));
    }
    Ok(())
}

/// A `path_prefix`: `/`, or a valid path's leading segments ending with `/`.
pub fn path_prefix(prefix: &str) -> Result<(), ErrorBody> {
    if prefix == "/" {
        return Ok(());
    }
    match prefix.strip_suffix('/') {
        Some(dir) => memory_path(dir).map_err(|e| invalid(format!("path_prefix: {}", e.message))),
        None => Err(invalid(format!(
            "path_prefix `{prefix}`: must end with `/` (it matches whole segments)"
        ))),
    }
}

pub fn content(content: &str) -> Result<(), ErrorBody> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(invalid(format!(
            "content: {} bytes is over the {MAX_CONTENT_BYTES}-byte (100 KiB) limit of a memory; split it into several memories",
            content.len()
        )));
    }
    Ok(())
}

/// A `content_sha256`: 64 lowercase hex digits.
pub fn sha(field: &str, sha: &str) -> Result<(), ErrorBody> {
    if sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field}: expected 64 lowercase hex digits (the SHA-256 of the content), got `{sha}`"
        )))
    }
}

pub fn instructions(text: &str) -> Result<(), ErrorBody> {
    if text.chars().count() > 4096 {
        return Err(invalid(
            "resources[].instructions: expected at most 4096 characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_hosted_rules() {
        for ok in ["/a", "/notes/today.md", "/A/b c/ü.txt", "/.hidden"] {
            assert!(memory_path(ok).is_ok(), "{ok}");
        }
        let deep = format!("/{}", vec!["d"; 21].join("/"));
        let long = format!("/{}", "x".repeat(1024));
        for bad in [
            "",
            "a",
            "/",
            "/a/",
            "//a",
            "/a/./b",
            "/a/../b",
            "/a\nb",
            "/a\u{200B}b",
            "/a\u{2028}",
            "/e\u{301}",
            &deep,
            &long,
        ] {
            assert!(memory_path(bad).is_err(), "{bad:?}");
        }
        assert!(memory_path(&format!("/{}", vec!["d"; 20].join("/"))).is_ok());
    }

    #[test]
    fn prefixes_end_with_a_slash() {
        assert!(path_prefix("/").is_ok());
        assert!(path_prefix("/a/b/").is_ok());
        assert!(path_prefix("/a").is_err());
        assert!(path_prefix("a/").is_err());
    }

    #[test]
    fn content_is_capped_at_100_kib() {
        assert!(content(&"x".repeat(MAX_CONTENT_BYTES)).is_ok());
        let e = content(&"x".repeat(MAX_CONTENT_BYTES + 1)).unwrap_err();
        assert!(e.message.contains("100 KiB"), "{}", e.message);
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        let h = sha256_hex(b"");
        assert_eq!(
            h,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha("x", &h).is_ok());
        assert!(sha("x", &h.to_uppercase()).is_err());
        assert!(sha("x", "abc").is_err());
    }

    #[test]
    fn store_names_refuse_control_characters() {
        assert!(store_name("prefs").is_ok());
        assert!(store_name("").is_err());
        assert!(store_name("a\tb").is_err());
        assert!(store_name(&"n".repeat(256)).is_err());
    }
}
