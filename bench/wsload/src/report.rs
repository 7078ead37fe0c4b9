//! The result line: one JSON object, written by hand (numbers and a mode name only).

use std::fmt;

/// A JSON object built field by field, printed on one line.
pub struct Report {
    fields: Vec<(&'static str, String)>,
}

impl Report {
    /// A report for `mode` (its first field).
    pub fn new(mode: &'static str) -> Report {
        Report {
            fields: vec![("mode", format!("\"{mode}\""))],
        }
    }

    /// Adds an integer field.
    pub fn int(mut self, key: &'static str, value: u64) -> Report {
        self.fields.push((key, value.to_string()));
        self
    }

    /// Adds a string field (`value` must need no escaping: a word).
    pub fn text(mut self, key: &'static str, value: &str) -> Report {
        self.fields.push((key, format!("\"{value}\"")));
        self
    }

    /// Adds a rate, rounded to one decimal (JSON has no NaN: a non-finite value becomes 0).
    pub fn rate(mut self, key: &'static str, value: f64) -> Report {
        let value = if value.is_finite() { value } else { 0.0 };
        self.fields.push((key, format!("{value:.1}")));
        self
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (key, value)) in self.fields.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}\"{key}\":{value}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_one_json_object() {
        let line = Report::new("echo")
            .rate("msgs_per_sec", 12.345)
            .int("errors", 0)
            .to_string();
        assert_eq!(line, r#"{"mode":"echo","msgs_per_sec":12.3,"errors":0}"#);
        assert_eq!(
            Report::new("x").rate("r", f64::NAN).to_string(),
            r#"{"mode":"x","r":0.0}"#
        );
    }
}
