//! Command-line options: `--name value` pairs after the subcommand, read by hand.

use std::str::FromStr;

/// The `--name value` options given to one subcommand.
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Reads `--name value` pairs; a stray word or a flag without a value is an error.
    pub fn parse(mut words: impl Iterator<Item = String>) -> Result<Args, String> {
        let mut pairs = Vec::new();
        while let Some(word) = words.next() {
            let name = word
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {word:?}"))?;
            let value = words
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            pairs.push((name.to_owned(), value));
        }
        Ok(Args { pairs })
    }

    /// Fails on any option not in `known`: a typo must not silently run with a default.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(name, _)| !known.contains(&name.as_str()))
        {
            Some((name, _)) => Err(format!(
                "unknown option --{name} (this mode takes --{})",
                known.join(", --")
            )),
            None => Ok(()),
        }
    }

    /// The value of `--name`, which must be given.
    pub fn required(&self, name: &str) -> Result<&str, String> {
        self.value(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// The value of `--name` parsed as `T`, or `default` when it is absent.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.value(name) {
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: bad value {text:?}")),
            None => Ok(default),
        }
    }

    /// A duration in seconds from `--name` (finite, not negative), or `default`.
    pub fn seconds(&self, name: &str, default: f64) -> Result<f64, String> {
        let value = self.get(name, default)?;
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(format!("--{name}: {value} is not a number of seconds"))
        }
    }

    /// The last value given for `--name`, if any.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `words` as if they followed the mode on the command line.
    fn args(words: &[&str]) -> Result<Args, String> {
        Args::parse(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn reads_pairs_and_defaults() {
        let a = args(&["--clients", "10", "--url", "ws://x/"]).unwrap();
        assert_eq!(a.get("clients", 1_usize), Ok(10));
        assert_eq!(a.get("size", 32_usize), Ok(32));
        assert_eq!(a.required("url"), Ok("ws://x/"));
        assert!(a.required("publish").is_err());
        assert!(a.only(&["clients", "url"]).is_ok());
        assert!(a.only(&["url"]).is_err());
    }

    #[test]
    fn rejects_malformed() {
        assert!(args(&["clients", "10"]).is_err());
        assert!(args(&["--clients"]).is_err());
        assert!(args(&["--clients", "ten"])
            .unwrap()
            .get("clients", 1_usize)
            .is_err());
    }
}
