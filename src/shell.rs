//! The one place where values become POSIX shell text.
//!
//! Every value that reaches a shell on a host (a path read from a config file, an inventory
//! variable, a database name, a user name) goes through [`quote`], and only through it. Code
//! never pastes a value into shell text any other way: a remote command is either
//!
//! - a [`Script`]: fixed text written by the programmer (`&'static str`), with values passed as
//!   positional parameters (`$1`, `$2`, ... or `"$@"`), each quoted by [`quote`]; or
//! - a component spec's template, rendered by `components::template`, where every `{{ var }}`
//!   becomes one quoted word (`{{ var | words }}`: one quoted word per item of a list).
//!
//! A value is therefore always data: `$(touch /x)`, `;`, quotes, newlines and spaces arrive at the
//! program as the exact bytes they were.

/// Quote `s` as one POSIX shell word: unchanged when it holds only characters that are never
/// special to `sh`, else in single quotes with each `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+' | b'%'
                )
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quote each item as its own word, separated by spaces (an empty list gives "").
pub fn quote_words<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items
        .into_iter()
        .map(|s| quote(s.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A shell script whose text is fixed at compile time; values enter only as positional
/// parameters, quoted by [`quote`].
///
/// ```
/// use lsbackup::shell::Script;
/// let s = Script::new(r#"test -d "$1" && ls -- "$1""#).arg("/var/lib/my dir");
/// assert_eq!(s.to_shell(), "set -- '/var/lib/my dir'\ntest -d \"$1\" && ls -- \"$1\"");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    text: std::borrow::Cow<'static, str>,
    args: Vec<String>,
}

impl Script {
    /// A script of fixed text. Refer to values as `"$1"`, `"$2"`, ... or `"$@"`.
    pub fn new(text: &'static str) -> Script {
        Script {
            text: std::borrow::Cow::Borrowed(text),
            args: Vec::new(),
        }
    }

    /// Shell text produced by a template renderer that quoted every value it inserted
    /// (`components::template`); not for text built any other way.
    pub(crate) fn from_rendered(text: String) -> Script {
        Script {
            text: std::borrow::Cow::Owned(text),
            args: Vec::new(),
        }
    }

    /// Append one positional parameter.
    pub fn arg(mut self, value: impl Into<String>) -> Script {
        self.args.push(value.into());
        self
    }

    /// Append positional parameters.
    pub fn args<I, S>(mut self, values: I) -> Script
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(values.into_iter().map(Into::into));
        self
    }

    /// The script's fixed text (without the parameters).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The positional parameters.
    pub fn params(&self) -> &[String] {
        &self.args
    }

    /// The complete shell text: `set -- ARGS` (when there are any), then the script.
    pub fn to_shell(&self) -> String {
        if self.args.is_empty() {
            self.text.to_string()
        } else {
            format!("set -- {}\n{}", quote_words(&self.args), self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("/etc/x.conf"), "/etc/x.conf");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("my db"), "'my db'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote_words(["a", "b c"]), "a 'b c'");
        assert_eq!(quote_words(Vec::<String>::new()), "");
    }

    /// Hostile values come out of `sh` as the exact bytes that went in, and run nothing.
    #[test]
    fn hostile_values_stay_data() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join("MARK");
        let m = mark.display().to_string();
        let hostile = [
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("x; touch {m}"),
            format!("x' ; touch {m}; echo '"),
            format!("x\" ; touch {m}; echo \""),
            format!("a\nb; touch {m}"),
            "  spaced  out  ".to_string(),
            "*".to_string(),
            "-n".to_string(),
            "\\".to_string(),
            String::new(),
        ];
        for v in &hostile {
            let s = Script::new(r#"printf '%s' "$1""#).arg(v.clone());
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(s.to_shell())
                .output()
                .unwrap();
            assert!(out.status.success(), "{v:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), *v);
            let inline = format!("printf '%s' {}", quote(v));
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&inline)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), *v);
        }
        assert!(!mark.exists());
    }
}
