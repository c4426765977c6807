//! Physical units: parsing pint-style spellings and converting values between them,
//! affine temperature scales included.
//!
//! A unit is a scale and an offset onto SI base dimensions: `value_si = value * scale + offset`.
//! Expressions: products and quotients of atoms with optional exponents (`m/s`, `g/m^3`,
//! `kg m-2`, `mm/h`, `W*m**-2`); atoms take SI prefixes (`km`, `hPa`, `mg`, `µm`).

use std::fmt;

/// Exponents of the base dimensions: length, mass, time, temperature, angle, amount, current, luminosity.
pub type Dims = [i8; 8];

/// A parsed unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The spelling it was parsed from.
    pub text: String,
    /// Multiplier onto SI.
    pub scale: f64,
    /// Offset onto SI (non-zero for degC and degF only).
    pub offset: f64,
    /// Dimension exponents.
    pub dims: Dims,
}

/// Errors parsing or converting units.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// Unknown unit name.
    #[error("unknown unit '{atom}' in '{text}'")]
    Unknown {
        /// The whole expression.
        text: String,
        /// The part not understood.
        atom: String,
    },
    /// Two units measure different things.
    #[error("'{from}' does not convert to '{to}' (different dimensions)")]
    Incompatible {
        /// Source unit.
        from: String,
        /// Target unit.
        to: String,
    },
    /// An affine unit (degC, degF) used inside a product.
    #[error("'{0}': offset units like degC and degF cannot be combined with other units")]
    AffineInProduct(String),
}

const L: usize = 0;
const M: usize = 1;
const T: usize = 2;
const K: usize = 3;
const A: usize = 4;

fn dims(pairs: &[(usize, i8)]) -> Dims {
    let mut d = [0; 8];
    for (i, e) in pairs {
        d[*i] = *e;
    }
    d
}

/// (names, scale, offset, dims, takes SI prefixes)
fn atom(name: &str) -> Option<(f64, f64, Dims, bool)> {
    let deg_to_rad = std::f64::consts::PI / 180.0;
    Some(match name {
        "m" | "meter" | "metre" => (1.0, 0.0, dims(&[(L, 1)]), true),
        "g" | "gram" => (1e-3, 0.0, dims(&[(M, 1)]), true),
        "t" | "tonne" => (1e3, 0.0, dims(&[(M, 1)]), false),
        "s" | "sec" | "second" => (1.0, 0.0, dims(&[(T, 1)]), true),
        "min" | "minute" => (60.0, 0.0, dims(&[(T, 1)]), false),
        "h" | "hr" | "hour" => (3600.0, 0.0, dims(&[(T, 1)]), false),
        "day" | "d" => (86400.0, 0.0, dims(&[(T, 1)]), false),
        "K" | "kelvin" => (1.0, 0.0, dims(&[(K, 1)]), true),
        "degC" | "celsius" | "degree_Celsius" | "°C" => (1.0, 273.15, dims(&[(K, 1)]), false),
        "degF" | "fahrenheit" | "degree_Fahrenheit" | "°F" => {
            (5.0 / 9.0, 459.67 * 5.0 / 9.0, dims(&[(K, 1)]), false)
        }
        "deg" | "degree" | "°" => (deg_to_rad, 0.0, dims(&[(A, 1)]), false),
        "rad" | "radian" => (1.0, 0.0, dims(&[(A, 1)]), true),
        "%" | "percent" => (0.01, 0.0, dims(&[]), false),
        "ppm" => (1e-6, 0.0, dims(&[]), false),
        "Pa" | "pascal" => (1.0, 0.0, dims(&[(M, 1), (L, -1), (T, -2)]), true),
        "bar" => (1e5, 0.0, dims(&[(M, 1), (L, -1), (T, -2)]), true),
        "atm" => (101_325.0, 0.0, dims(&[(M, 1), (L, -1), (T, -2)]), false),
        "N" | "newton" => (1.0, 0.0, dims(&[(M, 1), (L, 1), (T, -2)]), true),
        "J" | "joule" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -2)]), true),
        "W" | "watt" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -3)]), true),
        "l" | "L" | "liter" | "litre" => (1e-3, 0.0, dims(&[(L, 3)]), true),
        "Hz" | "hertz" => (1.0, 0.0, dims(&[(T, -1)]), true),
        "mol" | "mole" => (1.0, 0.0, dims(&[(5, 1)]), true),
        "A" | "ampere" => (1.0, 0.0, dims(&[(6, 1)]), true),
        "V" | "volt" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -3), (6, -1)]), true),
        "S" | "siemens" => (1.0, 0.0, dims(&[(M, -1), (L, -2), (T, 3), (6, 2)]), true),
        "cd" | "candela" => (1.0, 0.0, dims(&[(7, 1)]), true),
        "dimensionless" | "1" => (1.0, 0.0, dims(&[]), false),
        _ => return None,
    })
}

fn prefix(p: &str) -> Option<f64> {
    Some(match p {
        "Y" => 1e24,
        "Z" => 1e21,
        "E" => 1e18,
        "P" => 1e15,
        "T" => 1e12,
        "G" => 1e9,
        "M" => 1e6,
        "k" => 1e3,
        "h" => 1e2,
        "da" => 1e1,
        "d" => 1e-1,
        "c" => 1e-2,
        "m" => 1e-3,
        "u" | "µ" | "μ" => 1e-6,
        "n" => 1e-9,
        "p" => 1e-12,
        "f" => 1e-15,
        _ => return None,
    })
}

fn lookup(name: &str) -> Option<(f64, f64, Dims)> {
    if let Some((s, o, d, _)) = atom(name) {
        return Some((s, o, d));
    }
    for (i, _) in name.char_indices().skip(1) {
        let (p, rest) = name.split_at(i);
        if let (Some(f), Some((s, o, d, true))) = (prefix(p), atom(rest)) {
            return Some((s * f, o, d));
        }
    }
    None
}

impl Unit {
    /// Parse a unit expression. The empty string is dimensionless.
    pub fn parse(text: &str) -> Result<Unit, UnitError> {
        let t = text.trim();
        let mut u = Unit {
            text: text.to_string(),
            scale: 1.0,
            offset: 0.0,
            dims: [0; 8],
        };
        if t.is_empty() {
            return Ok(u);
        }
        // tokens: atoms with exponents, separated by '*', '·', ' ' (multiply) or '/' (divide)
        let normalised = t.replace("**", "^").replace('·', "*");
        let mut sign = 1i8;
        let mut pieces = 0;
        let mut affine = false;
        let mut token = String::new();
        let mut flush = |token: &mut String, sign: i8| -> Result<(), UnitError> {
            if token.is_empty() {
                return Ok(());
            }
            let (name, exp) = split_exponent(token);
            let (s, o, d) = lookup(name).ok_or_else(|| UnitError::Unknown {
                text: text.to_string(),
                atom: name.to_string(),
            })?;
            let e = exp.ok_or_else(|| UnitError::Unknown {
                text: text.to_string(),
                atom: token.clone(),
            })? * sign;
            if o != 0.0 {
                affine = true;
                u.offset = o;
            }
            u.scale *= s.powi(i32::from(e));
            for (k, v) in d.iter().enumerate() {
                u.dims[k] += v * e;
            }
            pieces += 1;
            token.clear();
            Ok(())
        };
        for c in normalised.chars() {
            match c {
                '*' | ' ' => flush(&mut token, sign)?,
                '/' => {
                    flush(&mut token, sign)?;
                    sign = -1;
                }
                _ => token.push(c),
            }
        }
        flush(&mut token, sign)?;
        if affine && pieces > 1 {
            return Err(UnitError::AffineInProduct(text.to_string()));
        }
        Ok(u)
    }

    /// A function converting values in `self` to values in `to`.
    pub fn converter(&self, to: &Unit) -> Result<impl Fn(f64) -> f64 + Copy, UnitError> {
        if self.dims != to.dims {
            return Err(UnitError::Incompatible {
                from: self.text.clone(),
                to: to.text.clone(),
            });
        }
        let (s1, o1, s2, o2) = (self.scale, self.offset, to.scale, to.offset);
        Ok(move |v: f64| (v * s1 + o1 - o2) / s2)
    }
}

fn split_exponent(token: &str) -> (&str, Option<i8>) {
    if let Some((name, e)) = token.split_once('^') {
        return (name, e.parse().ok());
    }
    // trailing integer exponent: "m2", "s-1" (but not a bare number)
    let idx = token
        .find(|c: char| c == '-' || c.is_ascii_digit())
        .filter(|&i| i > 0);
    match idx {
        Some(i) if token[i..].parse::<i8>().is_ok() && lookup(&token[..i]).is_some() => {
            (&token[..i], token[i..].parse().ok())
        }
        _ => (token, Some(1)),
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(a: &str, b: &str, v: f64) -> f64 {
        Unit::parse(a)
            .unwrap()
            .converter(&Unit::parse(b).unwrap())
            .unwrap()(v)
    }

    #[test]
    fn conversions() {
        assert!((conv("degC", "K", 25.0) - 298.15).abs() < 1e-9);
        assert!((conv("K", "degC", 0.0) + 273.15).abs() < 1e-9);
        assert!((conv("degF", "degC", 212.0) - 100.0).abs() < 1e-9);
        assert!((conv("cm", "m", 150.0) - 1.5).abs() < 1e-12);
        assert!((conv("hPa", "Pa", 1013.25) - 101_325.0).abs() < 1e-6);
        assert!((conv("bar", "hPa", 1.0) - 1000.0).abs() < 1e-9);
        assert!((conv("km/h", "m/s", 36.0) - 10.0).abs() < 1e-12);
        assert!((conv("mm/h", "m/s", 3600.0) - 1e-3).abs() < 1e-15);
        assert!((conv("g/m^3", "kg/m^3", 1000.0) - 1.0).abs() < 1e-12);
        assert!((conv("%", "", 50.0) - 0.5).abs() < 1e-12);
        assert!((conv("min", "s", 2.0) - 120.0).abs() < 1e-12);
        assert!((conv("day", "h", 1.0) - 24.0).abs() < 1e-12);
        assert!((conv("kg m-2", "g/m^2", 1.0) - 1000.0).abs() < 1e-9);
        assert!((conv("deg", "rad", 180.0) - std::f64::consts::PI).abs() < 1e-12);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Unit::parse("furlong"),
            Err(UnitError::Unknown { .. })
        ));
        assert!(matches!(
            Unit::parse("m")
                .unwrap()
                .converter(&Unit::parse("s").unwrap()),
            Err(UnitError::Incompatible { .. })
        ));
        assert!(matches!(
            Unit::parse("degC/s"),
            Err(UnitError::AffineInProduct(_))
        ));
    }
}
