//! `{{task.output}}`, `{{task.output.field}}` and `{{item}}` in prompts and `for_each`,
//! filled from the outputs of finished tasks. Pure: the same state renders the same text
//! (a prompt is rendered again after a restart if its message was not yet delivered).

use serde_json::Value;
use tether_proto::workflow::{TemplatePart, TemplateRef, output_field, parse_template};

/// What a template reads: a finished task's output, and the fan-out item.
pub trait Outputs {
    fn output(&self, task: &str) -> Option<&str>;
}

/// The text of a JSON value as a prompt shows it: strings bare, the rest as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders `text`; a missing output (an optional dependency that failed) renders empty,
/// a missing JSON field says so in place, so the agent sees what is absent.
pub fn render(text: &str, outputs: &impl Outputs, item: Option<&Value>) -> String {
    let Ok(parts) = parse_template(text) else {
        // Validated at the start of the run; keep the text as written if it can't parse.
        return text.to_string();
    };
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(&t),
            TemplatePart::Ref(TemplateRef::Item) => {
                out.push_str(&item.map(value_text).unwrap_or_default())
            }
            TemplatePart::Ref(TemplateRef::Output { task, path }) => {
                let output = outputs.output(&task).unwrap_or_default();
                if path.is_empty() {
                    out.push_str(output);
                } else {
                    match output_field(output, &path) {
                        Some(v) => out.push_str(&value_text(&v)),
                        None => out.push_str(&format!(
                            "(no field `{}` in the JSON output of `{task}`)",
                            path.join(".")
                        )),
                    }
                }
            }
        }
    }
    out
}

/// The items a `for_each` template names: a JSON array in a dependency's output.
pub fn items(for_each: &str, outputs: &impl Outputs) -> Result<Vec<Value>, String> {
    let parts = parse_template(for_each)?;
    let [TemplatePart::Ref(TemplateRef::Output { task, path })] = parts.as_slice() else {
        return Err(format!(
            "for_each `{for_each}` is not one reference to a list"
        ));
    };
    let output = outputs.output(task).unwrap_or_default();
    let value = if path.is_empty() {
        serde_json::from_str::<Value>(output.trim())
            .ok()
            .or_else(|| output_field(output, &[]))
    } else {
        output_field(output, path)
    };
    match value {
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!(
            "for_each `{for_each}` is {}, not a list: the output of `{task}` must hold a JSON array there",
            match other {
                Value::Object(_) => "an object",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        None => Err(format!(
            "for_each `{for_each}` found no JSON list: the output of `{task}` is not JSON with that field (it should reply with JSON, e.g. {{\"{}\": [...]}})",
            path.first().map(String::as_str).unwrap_or("items")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, &'static str>);
    impl Outputs for Map {
        fn output(&self, task: &str) -> Option<&str> {
            self.0.get(task).copied()
        }
    }

    #[test]
    fn renders_outputs_fields_and_items() {
        let m = Map(HashMap::from([
            ("collect", "{\"modules\": [\"net\", \"db\"], \"n\": 2}"),
            ("plain", "hello"),
        ]));
        assert_eq!(
            render(
                "a {{plain.output}} b {{collect.output.n}} {{item}}",
                &m,
                Some(&json!("x"))
            ),
            "a hello b 2 x"
        );
        assert!(render("{{collect.output.none}}", &m, None).contains("no field `none`"));
        assert_eq!(
            items("{{collect.output.modules}}", &m).unwrap(),
            vec![json!("net"), json!("db")]
        );
        let e = items("{{collect.output.n}}", &m).unwrap_err();
        assert!(e.contains("a number, not a list"), "{e}");
        let e = items("{{plain.output.modules}}", &m).unwrap_err();
        assert!(e.contains("found no JSON list"), "{e}");
    }
}
