//! Configuration errors that point at the offending key: `file:line:column: what is wrong`,
//! followed by the source line and a caret, like `nginx -t` and rustc.

use std::fmt;
use std::ops::Range;

use toml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no position (the file could not be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
    snippet: Option<String>,
}

impl ConfigError {
    /// An error that concerns the whole file (unreadable, missing).
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            snippet: None,
        }
    }

    /// An error at a byte span of `source`.
    pub fn at(file: &str, source: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        let start = span.start.min(source.len());
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let text = source[line_start..line_end].trim_end_matches('\r');
        let width = source[start..span.end.clamp(start, line_end)]
            .chars()
            .count()
            .max(1);
        let snippet = format!(
            "{line:>5} | {text}\n      | {}{}",
            " ".repeat(column - 1),
            "^".repeat(width)
        );
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            snippet: Some(snippet),
        }
    }

    /// The first line alone, as logged on a failed reload.
    pub fn headline(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.file, self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Where errors point: the file's name and its text.
pub(super) struct Source<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn err<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.text, spanned.span(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let src = "a = 1\nactive = \"purple\"\n";
        let e = ConfigError::at("f.toml", src, 15..23, "names no upstream");
        assert_eq!((e.line, e.column), (2, 10));
        assert_eq!(e.headline(), "f.toml:2:10: names no upstream");
        assert!(e.to_string().contains("^^^^^^^^"));
    }
}
