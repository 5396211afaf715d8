//! Model-provider keys stored by `tether auth login` in `credentials.toml` (config dir, mode
//! 0600), which the daemon reads when it builds a provider client, so a key added after the
//! daemon started works without a restart. The file's shape and the key hint both sides show;
//! reading and writing the file is each side's own I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file: one table per provider name (`[anthropic]`, `[openai]`, `[ollama]`…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credentials {
    pub providers: BTreeMap<String, StoredKey>,
}

/// One provider's stored key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    pub api_key: String,
}

// Never print a key, even in a debug dump.
impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("api_key", &key_hint(&self.api_key))
            .finish()
    }
}

impl Credentials {
    /// The stored key for `provider`. `openai-responses` shares the `openai` account, as the
    /// two built-ins share OPENAI_API_KEY.
    pub fn key(&self, provider: &str) -> Option<&str> {
        let get = |name: &str| {
            self.providers
                .get(name)
                .map(|k| k.api_key.trim())
                .filter(|k| !k.is_empty())
        };
        get(provider).or_else(|| (provider == "openai-responses").then(|| get("openai"))?)
    }
}

/// A key as people may see it: enough to tell two keys apart, never enough to use one
/// (`sk-ant-…wxyz`; a short key shows only its length).
pub fn key_hint(key: &str) -> String {
    let key = key.trim();
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 16 {
        return format!("({} characters)", chars.len());
    }
    let prefix: String = match key.find(['-', '_']) {
        // Vendor prefixes such as `sk-ant-` or `sk-proj-` say which kind of key it is.
        Some(_) => {
            let mut end = 0;
            for (i, part) in key.split_inclusive(['-', '_']).enumerate() {
                if i >= 2 || part.len() > 8 {
                    break;
                }
                end += part.len();
            }
            key[..end].to_string()
        }
        None => String::new(),
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_show_the_vendor_prefix_and_last_four() {
        assert_eq!(
            key_hint("sk-ant-api03-abcdefghijklmnopWXYZ"),
            "sk-ant-…WXYZ"
        );
        assert_eq!(key_hint("sk-proj-abcdefghijklmnop1234"), "sk-proj-…1234");
        assert_eq!(key_hint("abcdefghijklmnopqrstuvwxyz"), "…wxyz");
        assert_eq!(key_hint("short"), "(5 characters)");
        assert!(!key_hint("sk-ant-api03-abcdefghijklmnopWXYZ").contains("abcdef"));
    }

    #[test]
    fn openai_responses_uses_the_openai_key() {
        let mut c = Credentials::default();
        c.providers.insert(
            "openai".into(),
            StoredKey {
                api_key: "sk-o".into(),
            },
        );
        assert_eq!(c.key("openai-responses"), Some("sk-o"));
        assert_eq!(c.key("anthropic"), None);
    }

    #[test]
    fn debug_never_prints_the_key() {
        let k = StoredKey {
            api_key: "sk-ant-api03-secretsecretsecretXYZW".into(),
        };
        assert!(!format!("{k:?}").contains("secret"));
    }
}
