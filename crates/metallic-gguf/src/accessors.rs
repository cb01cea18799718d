//! Typed metadata lookups. `get_*` distinguish "absent" (Ok(None)) from "present
//! but unusable" (Err), so model loaders can apply defaults without masking
//! corrupt files; `require_*` turn absence into [`GgufError::MissingKey`].

use crate::{GgufError, GgufFile, Result, Value};

fn wrong_type(key: &str, expected: &'static str, v: &Value) -> GgufError {
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: v.type_name(),
    }
}

fn missing(key: &str) -> GgufError {
    GgufError::MissingKey {
        key: key.to_owned(),
    }
}

/// Converts any integer value to `T`, distinguishing a non-integer (WrongType)
/// from an integer that does not fit (OutOfRange).
fn int_as<T: TryFrom<i128>>(key: &str, v: &Value, target: &'static str) -> Result<T> {
    let i = v.as_int().ok_or_else(|| wrong_type(key, target, v))?;
    T::try_from(i).map_err(|_| GgufError::OutOfRange {
        key: key.to_owned(),
        value: i.to_string(),
        target,
    })
}

impl GgufFile {
    fn lookup<'a, T>(
        &'a self,
        key: &str,
        f: impl FnOnce(&'a Value) -> Result<T>,
    ) -> Result<Option<T>> {
        self.get(key).map(f).transpose()
    }

    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.lookup(key, |v| int_as(key, v, "u32"))
    }

    pub fn require_u32(&self, key: &str) -> Result<u32> {
        self.get_u32(key)?.ok_or_else(|| missing(key))
    }

    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.lookup(key, |v| int_as(key, v, "u64"))
    }

    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key)?.ok_or_else(|| missing(key))
    }

    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.lookup(key, |v| int_as(key, v, "i64"))
    }

    /// F32 or F64 (F64 is narrowed).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.lookup(key, |v| match *v {
            Value::F32(x) => Ok(x),
            Value::F64(x) => Ok(x as f32),
            _ => Err(wrong_type(key, "f32", v)),
        })
    }

    pub fn require_f32(&self, key: &str) -> Result<f32> {
        self.get_f32(key)?.ok_or_else(|| missing(key))
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.lookup(key, |v| {
            v.as_bool().ok_or_else(|| wrong_type(key, "bool", v))
        })
    }

    pub fn require_bool(&self, key: &str) -> Result<bool> {
        self.get_bool(key)?.ok_or_else(|| missing(key))
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.lookup(key, |v| {
            v.as_str().ok_or_else(|| wrong_type(key, "string", v))
        })
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?.ok_or_else(|| missing(key))
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.lookup(key, |v| {
            v.as_array().ok_or_else(|| wrong_type(key, "array", v))
        })
    }

    pub fn require_array(&self, key: &str) -> Result<&[Value]> {
        self.get_array(key)?.ok_or_else(|| missing(key))
    }

    /// Errors if any element is not a string.
    pub fn get_string_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(arr) = self.get_array(key)? else {
            return Ok(None);
        };
        arr.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| wrong_type(key, "array of string", v))
            })
            .collect::<Result<_>>()
            .map(Some)
    }

    /// Accepts any integer element type whose values fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(arr) = self.get_array(key)? else {
            return Ok(None);
        };
        arr.iter()
            .map(|v| int_as(key, v, "array of i32"))
            .collect::<Result<_>>()
            .map(Some)
    }

    /// Accepts F32 or F64 elements.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(arr) = self.get_array(key)? else {
            return Ok(None);
        };
        arr.iter()
            .map(|v| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| wrong_type(key, "array of f32", v))
            })
            .collect::<Result<_>>()
            .map(Some)
    }
}
