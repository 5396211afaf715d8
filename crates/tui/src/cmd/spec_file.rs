//! Resource files (agents, environments) read by their extension: `.yaml`/`.yml`, `.json`,
//! `.toml`; anything else as YAML (which also accepts JSON).

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses a resource file by its extension; on error, `locate` may find the nested field
/// that fails (serde reports errors inside tagged entries at the entry).
pub(super) fn parse_with<T: DeserializeOwned>(
    path: &str,
    text: &str,
    locate: fn(&Value) -> Option<String>,
) -> Result<T, String> {
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let typed = match ext.as_str() {
        "json" => serde_json::from_str(text).map_err(|e| e.to_string()),
        // Through a JSON value: TOML's errors already name the key and show the line.
        "toml" => toml::from_str::<Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string())),
        _ => serde_norway::from_str(text).map_err(|e| e.to_string()),
    };
    typed.map_err(|e| {
        let value = match ext.as_str() {
            "json" => serde_json::from_str::<Value>(text).ok(),
            "toml" => toml::from_str::<Value>(text).ok(),
            _ => serde_norway::from_str::<Value>(text).ok(),
        };
        let deeper = value.as_ref().and_then(locate);
        format!("{path}: {}", deeper.unwrap_or(e))
    })
}
