//! What a model costs and how much it can read: a built-in table for common
//! models of the built-in providers, overridden per `provider/model` by
//! `[models."provider/model"]` in config.toml. A model found nowhere has no
//! price: its requests report tokens without cost, never a guessed number.

use std::collections::BTreeMap;

use tether_proto::ModelUsage;

use crate::config::{ModelConfig, split_model};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// The cost of one request's usage in USD.
    pub fn cost(&self, u: &ModelUsage) -> f64 {
        (u.input_tokens as f64 * self.input
            + u.output_tokens as f64 * self.output
            + u.cache_read_input_tokens as f64 * self.cache_read
            + u.cache_creation_input_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// What tether knows about one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    pub price: Option<Price>,
    pub context_window: Option<u64>,
}

/// `(bare id, input, output, cache read, cache write, context window)`, list prices
/// of 2025-11. Anthropic cache writes are the 5-minute rate.
const TABLE: &[(&str, f64, f64, f64, f64, u64)] = &[
    ("claude-opus-4-5", 5.0, 25.0, 0.5, 6.25, 200_000),
    ("claude-opus-4-1", 15.0, 75.0, 1.5, 18.75, 200_000),
    ("claude-opus-4", 15.0, 75.0, 1.5, 18.75, 200_000),
    ("claude-sonnet-4-6", 3.0, 15.0, 0.3, 3.75, 200_000),
    ("claude-sonnet-4-5", 3.0, 15.0, 0.3, 3.75, 200_000),
    ("claude-sonnet-4", 3.0, 15.0, 0.3, 3.75, 200_000),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.3, 3.75, 200_000),
    ("claude-haiku-4-5", 1.0, 5.0, 0.1, 1.25, 200_000),
    ("claude-3-5-haiku", 0.8, 4.0, 0.08, 1.0, 200_000),
    ("gpt-5.1", 1.25, 10.0, 0.125, 0.0, 400_000),
    ("gpt-5", 1.25, 10.0, 0.125, 0.0, 400_000),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.0, 400_000),
    ("gpt-5-nano", 0.05, 0.4, 0.005, 0.0, 400_000),
    ("gpt-4.1", 2.0, 8.0, 0.5, 0.0, 1_047_576),
    ("gpt-4.1-mini", 0.4, 1.6, 0.1, 0.0, 1_047_576),
    ("gpt-4.1-nano", 0.1, 0.4, 0.025, 0.0, 1_047_576),
    ("gpt-4o", 2.5, 10.0, 1.25, 0.0, 128_000),
    ("gpt-4o-mini", 0.15, 0.6, 0.075, 0.0, 128_000),
    ("o3", 2.0, 8.0, 0.5, 0.0, 200_000),
    ("o4-mini", 1.1, 4.4, 0.275, 0.0, 200_000),
];

/// Providers whose model names mean the vendor's models (a custom provider's
/// `gpt-4o` may be a self-hosted model with another price, or none).
const PRICED_PROVIDERS: &[&str] = &["anthropic", "openai", "openai-responses"];

/// The built-in entry for a bare id: exact, or the id plus a date suffix
/// (`claude-sonnet-4-5-20250929`, `gpt-4o-2024-08-06`).
fn built_in(model: &str) -> Option<ModelInfo> {
    TABLE
        .iter()
        .filter(|(id, ..)| match model.strip_prefix(id) {
            Some("") => true,
            Some(rest) => {
                rest.starts_with("-20") && rest[1..].chars().all(|c| c.is_ascii_digit() || c == '-')
            }
            None => false,
        })
        .max_by_key(|(id, ..)| id.len())
        .map(
            |&(_, input, output, cache_read, cache_write, window)| ModelInfo {
                price: Some(Price {
                    input,
                    output,
                    cache_read,
                    cache_write,
                }),
                context_window: Some(window),
            },
        )
}

/// What is known about `model` (`provider/model` or a bare Anthropic id).
pub fn model_info(overrides: &BTreeMap<String, ModelConfig>, model: &str) -> ModelInfo {
    let (provider, bare) = split_model(model);
    let base = if PRICED_PROVIDERS.contains(&provider) {
        built_in(bare)
    } else {
        None
    }
    .unwrap_or(ModelInfo {
        price: None,
        context_window: None,
    });
    let Some(o) = overrides.get(&format!("{provider}/{bare}")) else {
        return base;
    };
    // An override with input and output prices is a full price (cache defaults to input);
    // a partial one amends the built-in price.
    let price = match (base.price, o.input_per_mtok, o.output_per_mtok) {
        (_, Some(input), Some(output)) => Some(Price {
            input,
            output,
            cache_read: o.cache_read_per_mtok.unwrap_or(input),
            cache_write: o.cache_write_per_mtok.unwrap_or(input),
        }),
        (Some(p), ..) => Some(Price {
            input: o.input_per_mtok.unwrap_or(p.input),
            output: o.output_per_mtok.unwrap_or(p.output),
            cache_read: o.cache_read_per_mtok.unwrap_or(p.cache_read),
            cache_write: o.cache_write_per_mtok.unwrap_or(p.cache_write),
        }),
        (None, ..) => None,
    };
    ModelInfo {
        price,
        context_window: o.context_window.or(base.context_window),
    }
}

/// `usage` with its cost filled in when the model has a price.
pub fn priced(
    overrides: &BTreeMap<String, ModelConfig>,
    model: &str,
    usage: ModelUsage,
) -> ModelUsage {
    let cost = model_info(overrides, model).price.map(|p| p.cost(&usage));
    ModelUsage {
        cost_usd: cost,
        ..usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64, cr: u64, cw: u64) -> ModelUsage {
        ModelUsage {
            input_tokens: i,
            output_tokens: o,
            cache_read_input_tokens: cr,
            cache_creation_input_tokens: cw,
            cost_usd: None,
        }
    }

    #[test]
    fn cost_arithmetic_for_known_usage() {
        let none = BTreeMap::new();
        // 1M input at $3 + 100k output at $15 + 2M cache reads at $0.30 + 40k writes at $3.75.
        let u = priced(
            &none,
            "anthropic/claude-sonnet-4-5",
            usage(1_000_000, 100_000, 2_000_000, 40_000),
        );
        let cost = u.cost_usd.unwrap();
        assert!((cost - (3.0 + 1.5 + 0.6 + 0.15)).abs() < 1e-9, "{cost}");
        let u = priced(&none, "openai/gpt-5.1", usage(10_000, 1_000, 0, 0));
        assert!((u.cost_usd.unwrap() - 0.0225).abs() < 1e-12);
        // Dated snapshots match; the longest id wins.
        assert_eq!(
            model_info(&none, "openai/gpt-4o-mini-2024-07-18").price,
            model_info(&none, "openai/gpt-4o-mini").price
        );
        assert_ne!(
            model_info(&none, "openai/gpt-4o-mini").price,
            model_info(&none, "openai/gpt-4o").price
        );
        assert_eq!(
            model_info(&none, "claude-sonnet-4-5-20250929").context_window,
            Some(200_000)
        );
    }

    #[test]
    fn unknown_models_have_no_price() {
        let none = BTreeMap::new();
        for m in [
            "anthropic/claude-mock",
            "openai/gpt-5-turbo-experimental",
            "ollama/gpt-4o",
            "openai/gpt-4ox",
        ] {
            assert_eq!(priced(&none, m, usage(5, 5, 0, 0)).cost_usd, None, "{m}");
        }
    }

    #[test]
    fn config_overrides() {
        let mut o = BTreeMap::new();
        o.insert(
            "ollama/qwen3:8b".to_string(),
            ModelConfig {
                context_window: Some(32_768),
                input_per_mtok: Some(0.0),
                output_per_mtok: Some(0.0),
                ..Default::default()
            },
        );
        o.insert(
            "openai/gpt-5.1".to_string(),
            ModelConfig {
                output_per_mtok: Some(20.0),
                ..Default::default()
            },
        );
        let info = model_info(&o, "ollama/qwen3:8b");
        assert_eq!(info.context_window, Some(32_768));
        assert_eq!(
            priced(&o, "ollama/qwen3:8b", usage(100, 100, 0, 0)).cost_usd,
            Some(0.0)
        );
        let p = model_info(&o, "openai/gpt-5.1").price.unwrap();
        assert_eq!((p.input, p.output), (1.25, 20.0));
    }
}
