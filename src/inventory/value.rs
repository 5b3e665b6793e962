//! The values Ansible's parsers produce (Python objects), before they become JSON.
//!
//! INI values come out of `ast.literal_eval`, YAML values out of PyYAML's YAML 1.1 resolver; both
//! can yield things JSON has no direct notion of (non-string map keys, tuples, sets, `!unsafe`
//! and `!vault` strings). [`Data`] keeps enough of that to apply Ansible's rules (a host name
//! must be a string, a dict key `1` prints as `"1"`) and [`Data::to_json`] renders it the way
//! `ansible-inventory --list` does (`json.dumps` with Ansible's `inventory_legacy` encoder).

use serde_json::{Map, Number, Value};

/// A parsed value, as Python would hold it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    /// A YAML `!unsafe` string: printed as `{"__ansible_unsafe": "..."}`.
    Unsafe(String),
    /// A YAML `!vault` string: printed as `{"__ansible_vault": "..."}`.
    Vault(String),
    Seq(Vec<Data>),
    /// Keys in first-insertion order; a repeated key replaced the earlier value.
    Map(Vec<(Data, Data)>),
}

impl Data {
    /// The Python type name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Data::Null => "NoneType",
            Data::Bool(_) => "bool",
            Data::Int(_) => "int",
            Data::Float(_) => "float",
            Data::Str(_) | Data::Unsafe(_) => "str",
            Data::Vault(_) => "EncryptedString",
            Data::Seq(_) => "list",
            Data::Map(_) => "dict",
        }
    }

    /// The string, if this is one (`!unsafe` strings included).
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Data::Str(s) | Data::Unsafe(s) => Some(s),
            _ => None,
        }
    }

    /// Insert into a map-shaped pair list the way a Python dict does: a repeated key keeps its
    /// first position and takes the new value.
    pub(crate) fn map_insert(pairs: &mut Vec<(Data, Data)>, key: Data, value: Data) {
        if let Some(slot) = pairs.iter_mut().find(|(k, _)| key_eq(k, &key)) {
            slot.1 = value;
        } else {
            pairs.push((key, value));
        }
    }

    /// Render as JSON the way `json.dumps(..., cls=inventory_legacy.Encoder)` does.
    pub(crate) fn to_json(&self) -> Result<Value, String> {
        Ok(match self {
            Data::Null => Value::Null,
            Data::Bool(b) => Value::Bool(*b),
            Data::Int(i) => int_to_json(*i),
            Data::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Data::Str(s) => Value::String(s.clone()),
            Data::Unsafe(s) => {
                let mut m = Map::new();
                m.insert("__ansible_unsafe".into(), Value::String(s.clone()));
                Value::Object(m)
            }
            Data::Vault(s) => {
                let mut m = Map::new();
                m.insert("__ansible_vault".into(), Value::String(s.clone()));
                Value::Object(m)
            }
            Data::Seq(items) => {
                Value::Array(items.iter().map(Data::to_json).collect::<Result<_, _>>()?)
            }
            Data::Map(pairs) => {
                let mut m = Map::new();
                for (k, v) in pairs {
                    m.insert(k.json_key()?, v.to_json()?);
                }
                Value::Object(m)
            }
        })
    }

    /// A dict key as `json.dumps` writes it (str, int, float, bool and None are allowed).
    pub(crate) fn json_key(&self) -> Result<String, String> {
        match self {
            Data::Str(s) | Data::Unsafe(s) => Ok(s.clone()),
            Data::Int(i) => Ok(i.to_string()),
            Data::Float(f) => Ok(py_float_repr(*f, true)),
            Data::Bool(true) => Ok("true".into()),
            Data::Bool(false) => Ok("false".into()),
            Data::Null => Ok("null".into()),
            other => Err(format!(
                "a {} cannot be a dictionary key (keys must be str, int, float, bool or None)",
                other.type_name()
            )),
        }
    }

    /// From JSON (a `.json` vars file or inventory).
    pub(crate) fn from_json(v: &Value) -> Data {
        match v {
            Value::Null => Data::Null,
            Value::Bool(b) => Data::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Data::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    Data::Int(u as i128)
                } else {
                    Data::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => Data::Str(s.clone()),
            Value::Array(a) => Data::Seq(a.iter().map(Data::from_json).collect()),
            Value::Object(o) => {
                if o.len() == 1 {
                    if let Some(Value::String(s)) = o.get("__ansible_unsafe") {
                        return Data::Unsafe(s.clone());
                    }
                    if let Some(Value::String(s)) = o.get("__ansible_vault") {
                        return Data::Vault(s.clone());
                    }
                }
                Data::Map(
                    o.iter()
                        .map(|(k, v)| (Data::Str(k.clone()), Data::from_json(v)))
                        .collect(),
                )
            }
        }
    }
}

/// Python dict key equality, close enough: `1 == 1.0 == True` is honoured for numbers.
pub(crate) fn key_eq(a: &Data, b: &Data) -> bool {
    fn num(d: &Data) -> Option<f64> {
        match d {
            Data::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Data::Int(i) => Some(*i as f64),
            Data::Float(f) => Some(*f),
            _ => None,
        }
    }
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

pub(crate) fn int_to_json(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        Value::Number(v.into())
    } else if let Ok(v) = u64::try_from(i) {
        Value::Number(v.into())
    } else {
        // Python ints are unbounded; serde_json (without arbitrary_precision) is not.
        Number::from_f64(i as f64)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Python's `repr(float)` (`add_dot_0`: `repr(1.0)` is `1.0`; inside `repr(complex)` it is `1`).
pub(crate) fn py_float_repr(f: f64, add_dot_0: bool) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Shortest round-trip digits, as Python's repr uses.
    let e = format!("{:e}", f); // e.g. "-1.5e16", "1e0"
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    // repr switches to exponent notation when exp < -4 or exp >= 16.
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let body = if exp >= n - 1 {
        let zeros = "0".repeat((exp - (n - 1)) as usize);
        if add_dot_0 {
            format!("{digits}{zeros}.0")
        } else {
            format!("{digits}{zeros}")
        }
    } else if exp >= 0 {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    } else {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(py_float_repr(1.0, true), "1.0");
        assert_eq!(py_float_repr(1.0, false), "1");
        assert_eq!(py_float_repr(1.5, true), "1.5");
        assert_eq!(py_float_repr(1e16, true), "1e+16");
        assert_eq!(py_float_repr(1e15, true), "1000000000000000.0");
        assert_eq!(py_float_repr(0.0001, true), "0.0001");
        assert_eq!(py_float_repr(1e-5, true), "1e-05");
        assert_eq!(py_float_repr(-2.5e-7, true), "-2.5e-07");
        assert_eq!(py_float_repr(123.456, true), "123.456");
    }

    #[test]
    fn dict_keys_render_like_json_dumps() {
        let m = Data::Map(vec![
            (Data::Int(1), Data::Str("a".into())),
            (Data::Bool(true), Data::Str("b".into())),
            (Data::Null, Data::Str("c".into())),
            (Data::Float(1.5), Data::Str("d".into())),
        ]);
        let v = m.to_json().unwrap();
        assert_eq!(
            v,
            serde_json::json!({"1": "a", "true": "b", "null": "c", "1.5": "d"})
        );
        let bad = Data::Map(vec![(Data::Seq(vec![]), Data::Null)]);
        assert!(bad.to_json().is_err());
    }

    #[test]
    fn repeated_keys_keep_first_position_and_last_value() {
        let mut pairs = Vec::new();
        Data::map_insert(&mut pairs, Data::Str("a".into()), Data::Int(1));
        Data::map_insert(&mut pairs, Data::Str("b".into()), Data::Int(2));
        Data::map_insert(&mut pairs, Data::Str("a".into()), Data::Int(3));
        assert_eq!(
            pairs,
            vec![
                (Data::Str("a".into()), Data::Int(3)),
                (Data::Str("b".into()), Data::Int(2))
            ]
        );
        // 1 and True are the same dict key in Python.
        let mut pairs = Vec::new();
        Data::map_insert(&mut pairs, Data::Int(1), Data::Str("a".into()));
        Data::map_insert(&mut pairs, Data::Bool(true), Data::Str("b".into()));
        assert_eq!(pairs, vec![(Data::Int(1), Data::Str("b".into()))]);
    }

    #[test]
    fn unsafe_and_vault_render_like_the_legacy_encoder() {
        assert_eq!(
            Data::Unsafe("{{ x }}".into()).to_json().unwrap(),
            serde_json::json!({"__ansible_unsafe": "{{ x }}"})
        );
        let v = serde_json::json!({"__ansible_vault": "$ANSIBLE_VAULT;1.1"});
        assert_eq!(
            Data::from_json(&v),
            Data::Vault("$ANSIBLE_VAULT;1.1".into())
        );
    }
}
