//! Reading a tool call's JSON input, with error messages meant for the model
//! (e.g. "read: missing required field `file_path`").
//!
//! Unknown fields are ignored: models sometimes add harmless extras (such as
//! a `description`) and rejecting those would only cost a round trip.

use serde_json::{Map, Value};

/// A tool call's input object, tagged with the tool name for error messages.
pub struct Args<'a> {
    tool: &'static str,
    obj: &'a Map<String, Value>,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Args<'a> {
    pub fn new(tool: &'static str, input: &'a Value) -> Result<Self, String> {
        match input {
            Value::Object(obj) => Ok(Self { tool, obj }),
            other => Err(format!(
                "{tool}: input must be a JSON object, got {}",
                kind(other)
            )),
        }
    }

    pub fn tool(&self) -> &'static str {
        self.tool
    }

    /// The field's value, treating `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn type_error(&self, key: &str, expected: &str, got: &Value) -> String {
        format!(
            "{}: field `{key}` must be {expected}, got {}",
            self.tool,
            kind(got)
        )
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, String> {
        match self.opt_str(key)? {
            Some(s) => Ok(s),
            None => Err(format!("{}: missing required field `{key}`", self.tool)),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(self.type_error(key, "a string", other)),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.type_error(key, "a boolean", other)),
        }
    }

    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                // Accept integral floats such as 2.0; reject 2.5.
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(self.type_error(key, "an integer", v)),
                },
            },
            Some(other) => Err(self.type_error(key, "an integer", other)),
        }
    }

    /// An optional array of exactly two integers.
    pub fn opt_i64_pair(&self, key: &str) -> Result<Option<(i64, i64)>, String> {
        let expected = "an array of two integers [start, end]";
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Array(items)) => {
                let ints: Vec<i64> = items
                    .iter()
                    .filter_map(|i| {
                        i.as_i64().or_else(|| {
                            i.as_f64()
                                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                                .map(|f| f as i64)
                        })
                    })
                    .collect();
                match ints.as_slice() {
                    [a, b] if items.len() == 2 => Ok(Some((*a, *b))),
                    _ => Err(self.type_error(key, expected, v)),
                }
            }
            Some(other) => Err(self.type_error(key, expected, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_tool_and_field() {
        let input =
            json!({"a": "x", "n": 5, "f": 2.0, "g": 2.5, "b": true, "z": null, "r": [1, -1]});
        let args = Args::new("read", &input).unwrap();
        assert_eq!(args.req_str("a").unwrap(), "x");
        assert_eq!(
            args.req_str("missing").unwrap_err(),
            "read: missing required field `missing`"
        );
        assert_eq!(
            args.req_str("z").unwrap_err(),
            "read: missing required field `z`"
        );
        assert_eq!(
            args.req_str("n").unwrap_err(),
            "read: field `n` must be a string, got a number"
        );
        assert_eq!(args.opt_i64("n").unwrap(), Some(5));
        assert_eq!(args.opt_i64("f").unwrap(), Some(2));
        assert!(args.opt_i64("g").is_err());
        assert_eq!(args.opt_bool("b").unwrap(), Some(true));
        assert!(args.opt_bool("a").is_err());
        assert_eq!(args.opt_i64_pair("r").unwrap(), Some((1, -1)));
        assert!(args.opt_i64_pair("a").is_err());
        let bad = json!({"r": [1, 2, 3], "s": ["1", 2]});
        let args = Args::new("read", &bad).unwrap();
        assert!(args.opt_i64_pair("r").is_err());
        assert!(args.opt_i64_pair("s").is_err());
        assert!(Args::new("read", &json!([1])).is_err());
    }
}
