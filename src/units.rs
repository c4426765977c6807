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
    /// Whether the name is in the registry; an unknown unit converts only to itself.
    pub known: bool,
}

/// Errors parsing or converting units.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    /// A conversion that needs a unit the registry does not know.
    #[error("'{from}' does not convert to '{to}': '{unknown}' is not a unit this registry knows (spec/021)")]
    UnknownConversion {
        /// Source unit.
        from: String,
        /// Target unit.
        to: String,
        /// The unknown one.
        unknown: String,
    },
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

const Q: usize = 6; // electric current

/// (scale, offset, dims, takes SI prefixes) of a unit name of pint's default registry (spec/021).
fn atom(name: &str) -> Option<(f64, f64, Dims, bool)> {
    let deg_to_rad = std::f64::consts::PI / 180.0;
    let pressure = dims(&[(M, 1), (L, -1), (T, -2)]);
    let energy = dims(&[(M, 1), (L, 2), (T, -2)]);
    let speed = dims(&[(L, 1), (T, -1)]);
    Some(match name {
        "m" | "meter" | "metre" => (1.0, 0.0, dims(&[(L, 1)]), true),
        "in" | "inch" | "inches" => (0.0254, 0.0, dims(&[(L, 1)]), false),
        "ft" | "foot" | "feet" => (0.3048, 0.0, dims(&[(L, 1)]), false),
        "yd" | "yard" => (0.9144, 0.0, dims(&[(L, 1)]), false),
        "mi" | "mile" => (1609.344, 0.0, dims(&[(L, 1)]), false),
        "nmi" | "nautical_mile" => (1852.0, 0.0, dims(&[(L, 1)]), false),
        "micron" => (1e-6, 0.0, dims(&[(L, 1)]), false),
        "angstrom" | "Å" => (1e-10, 0.0, dims(&[(L, 1)]), false),
        "ha" | "hectare" => (1e4, 0.0, dims(&[(L, 2)]), false),
        "g" | "gram" => (1e-3, 0.0, dims(&[(M, 1)]), true),
        "t" | "tonne" | "metric_ton" => (1e3, 0.0, dims(&[(M, 1)]), false),
        "lb" | "pound" => (0.453_592_37, 0.0, dims(&[(M, 1)]), false),
        "oz" | "ounce" => (0.028_349_523_125, 0.0, dims(&[(M, 1)]), false),
        "s" | "sec" | "second" => (1.0, 0.0, dims(&[(T, 1)]), true),
        "min" | "minute" => (60.0, 0.0, dims(&[(T, 1)]), false),
        "h" | "hr" | "hour" => (3600.0, 0.0, dims(&[(T, 1)]), false),
        "day" | "d" => (86400.0, 0.0, dims(&[(T, 1)]), false),
        "week" => (604_800.0, 0.0, dims(&[(T, 1)]), false),
        "year" | "yr" | "julian_year" => (31_557_600.0, 0.0, dims(&[(T, 1)]), false),
        "K" | "kelvin" | "degK" | "degree_Kelvin" => (1.0, 0.0, dims(&[(K, 1)]), true),
        "degC" | "celsius" | "degree_Celsius" | "°C" | "deg_C" => {
            (1.0, 273.15, dims(&[(K, 1)]), false)
        }
        "degF" | "fahrenheit" | "degree_Fahrenheit" | "°F" | "deg_F" => {
            (5.0 / 9.0, 459.67 * 5.0 / 9.0, dims(&[(K, 1)]), false)
        }
        "degR" | "rankine" | "degree_Rankine" => (5.0 / 9.0, 0.0, dims(&[(K, 1)]), false),
        "deg" | "degree" | "°" | "arcdeg" | "arcdegree" | "angular_degree" => {
            (deg_to_rad, 0.0, dims(&[(A, 1)]), false)
        }
        // CF / UDUNITS spellings of geographic angles
        "degree_north" | "degrees_north" | "degree_N" | "degrees_N" | "degree_east"
        | "degrees_east" | "degree_E" | "degrees_E" => (deg_to_rad, 0.0, dims(&[(A, 1)]), false),
        "arcmin" | "arcminute" | "arc_minute" => (deg_to_rad / 60.0, 0.0, dims(&[(A, 1)]), false),
        "arcsec" | "arcsecond" | "arc_second" => (deg_to_rad / 3600.0, 0.0, dims(&[(A, 1)]), false),
        "rad" | "radian" => (1.0, 0.0, dims(&[(A, 1)]), true),
        "turn" | "revolution" => (std::f64::consts::TAU, 0.0, dims(&[(A, 1)]), false),
        "sr" | "steradian" => (1.0, 0.0, dims(&[(A, 2)]), true),
        "%" | "percent" => (0.01, 0.0, dims(&[]), false),
        "‰" | "permille" => (1e-3, 0.0, dims(&[]), false),
        "ppm" => (1e-6, 0.0, dims(&[]), false),
        "ppb" => (1e-9, 0.0, dims(&[]), false),
        "ppt" => (1e-12, 0.0, dims(&[]), false),
        "Pa" | "pascal" => (1.0, 0.0, pressure, true),
        "bar" => (1e5, 0.0, pressure, true),
        "atm" | "atmosphere" => (101_325.0, 0.0, pressure, false),
        "torr" => (101_325.0 / 760.0, 0.0, pressure, false),
        "mmHg" | "millimeter_Hg" => (133.322_387_415, 0.0, pressure, false),
        "psi" => (6_894.757_293_168, 0.0, pressure, false),
        "knot" | "kt" | "kn" => (1852.0 / 3600.0, 0.0, speed, false),
        "mph" | "MPH" => (1609.344 / 3600.0, 0.0, speed, false),
        "kph" | "KPH" => (1000.0 / 3600.0, 0.0, speed, false),
        "N" | "newton" => (1.0, 0.0, dims(&[(M, 1), (L, 1), (T, -2)]), true),
        "J" | "joule" => (1.0, 0.0, energy, true),
        "Wh" | "watt_hour" => (3600.0, 0.0, energy, true),
        "cal" | "calorie" => (4.184, 0.0, energy, true),
        "eV" | "electron_volt" => (1.602_176_634e-19, 0.0, energy, true),
        "W" | "watt" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -3)]), true),
        "l" | "L" | "liter" | "litre" => (1e-3, 0.0, dims(&[(L, 3)]), true),
        "Hz" | "hertz" => (1.0, 0.0, dims(&[(T, -1)]), true),
        "Bq" | "becquerel" => (1.0, 0.0, dims(&[(T, -1)]), true),
        "mol" | "mole" => (1.0, 0.0, dims(&[(5, 1)]), true),
        "A" | "ampere" => (1.0, 0.0, dims(&[(Q, 1)]), true),
        "C" | "coulomb" => (1.0, 0.0, dims(&[(Q, 1), (T, 1)]), true),
        "V" | "volt" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -3), (Q, -1)]), true),
        "ohm" | "Ω" => (1.0, 0.0, dims(&[(M, 1), (L, 2), (T, -3), (Q, -2)]), true),
        "S" | "siemens" => (1.0, 0.0, dims(&[(M, -1), (L, -2), (T, 3), (Q, 2)]), true),
        "cd" | "candela" => (1.0, 0.0, dims(&[(7, 1)]), true),
        "lm" | "lumen" => (1.0, 0.0, dims(&[(7, 1), (A, 2)]), true),
        "lx" | "lux" => (1.0, 0.0, dims(&[(7, 1), (A, 2), (L, -2)]), true),
        "dimensionless" | "1" | "count" => (1.0, 0.0, dims(&[]), false),
        // zarr-fuse's extra registry entries for integer and boolean columns
        "int" | "bool" | "boolean" | "true" | "false" => (1.0, 0.0, dims(&[]), false),
        _ => return None,
    })
}

fn prefix(p: &str) -> Option<f64> {
    Some(match p {
        "yotta" => 1e24,
        "zetta" => 1e21,
        "exa" => 1e18,
        "peta" => 1e15,
        "tera" => 1e12,
        "giga" => 1e9,
        "mega" => 1e6,
        "kilo" => 1e3,
        "hecto" => 1e2,
        "deca" | "deka" => 1e1,
        "deci" => 1e-1,
        "centi" => 1e-2,
        "milli" => 1e-3,
        "micro" => 1e-6,
        "nano" => 1e-9,
        "pico" => 1e-12,
        "femto" => 1e-15,
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
    // plurals of long names, as pint reads them: meters, hours, degrees, kilometers
    if let Some(single) = name.strip_suffix('s').filter(|n| n.chars().count() >= 3) {
        if let Some(found) = lookup(single) {
            return Some(found);
        }
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
            known: true,
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

    /// A unit not in the registry, kept by its spelling (a warning at load, spec/021).
    pub fn opaque(text: &str) -> Unit {
        Unit {
            text: text.to_string(),
            scale: 1.0,
            offset: 0.0,
            dims: [0; 8],
            known: false,
        }
    }

    /// A function converting values in `self` to values in `to`.
    pub fn converter(&self, to: &Unit) -> Result<impl Fn(f64) -> f64 + Copy, UnitError> {
        if !self.known || !to.known {
            if self.text.trim() == to.text.trim() {
                return Ok(Self::affine(1.0, 0.0, 1.0, 0.0));
            }
            let unknown = if self.known { &to.text } else { &self.text };
            return Err(UnitError::UnknownConversion {
                from: self.text.clone(),
                to: to.text.clone(),
                unknown: unknown.clone(),
            });
        }
        if self.dims != to.dims {
            return Err(UnitError::Incompatible {
                from: self.text.clone(),
                to: to.text.clone(),
            });
        }
        Ok(Self::affine(self.scale, self.offset, to.scale, to.offset))
    }

    fn affine(s1: f64, o1: f64, s2: f64, o2: f64) -> impl Fn(f64) -> f64 + Copy {
        move |v: f64| (v * s1 + o1 - o2) / s2
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

    /// Names of pint's default registry that real schemas write (spec/021), each converted
    /// against a unit of the same dimension with its known factor.
    #[test]
    fn pint_names_and_aliases() {
        let pi = std::f64::consts::PI;
        let table: &[(&str, &str, f64, f64)] = &[
            ("degrees", "rad", 180.0, pi),
            ("degree", "deg", 1.0, 1.0),
            ("radians", "degree", pi, 180.0),
            ("degrees_north", "deg", 1.0, 1.0),
            ("arcmin", "deg", 60.0, 1.0),
            ("percent", "%", 1.0, 1.0),
            ("%", "ppm", 1.0, 10_000.0),
            ("permille", "percent", 10.0, 1.0),
            ("ppb", "ppm", 1000.0, 1.0),
            ("1", "dimensionless", 3.0, 3.0),
            ("int", "1", 3.0, 3.0),
            ("bool", "", 1.0, 1.0),
            ("count", "1", 2.0, 2.0),
            ("meters", "km", 1500.0, 1.5),
            ("kilometers", "m", 1.5, 1500.0),
            ("inch", "mm", 1.0, 25.4),
            ("feet", "m", 1.0, 0.3048),
            ("mile", "km", 1.0, 1.609_344),
            ("hours", "min", 2.0, 120.0),
            ("days", "hour", 1.0, 24.0),
            ("week", "day", 1.0, 7.0),
            ("ms", "s", 1500.0, 1.5),
            ("knot", "m/s", 3600.0, 1852.0),
            ("mph", "km/h", 1.0, 1.609_344),
            ("mbar", "hPa", 1.0, 1.0),
            ("atm", "kPa", 1.0, 101.325),
            ("mmHg", "Pa", 1.0, 133.322_387_415),
            ("psi", "kPa", 1.0, 6.894_757_293_168),
            ("degC", "degF", 100.0, 212.0),
            ("degree_Celsius", "kelvin", 0.0, 273.15),
            ("degK", "K", 1.0, 1.0),
            ("mg/L", "g/m^3", 1.0, 1.0),
            ("ug/m3", "mg/m**3", 1000.0, 1.0),
            ("µg m-3", "kg/m^3", 1e9, 1.0),
            ("mol/m^3", "mmol/L", 1.0, 1.0),
            ("W m-2", "W/m^2", 5.0, 5.0),
            ("kWh", "MJ", 1.0, 3.6),
            ("mm/h", "mm/day", 1.0, 24.0),
            ("C", "A*s", 1.0, 1.0),
        ];
        for &(from, to, a, b) in table {
            let got = conv(from, to, a);
            assert!(
                (got - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{a} {from} -> {got} {to}, expected {b}"
            );
        }
    }

    #[test]
    fn unknown_units_convert_only_to_themselves() {
        let psu = Unit::opaque("psu");
        assert_eq!(psu.converter(&Unit::opaque("psu")).unwrap()(35.0), 35.0);
        let e = psu.converter(&Unit::parse("m").unwrap()).err().unwrap();
        assert!(e.to_string().contains("'psu' is not a unit"), "{e}");
        assert!(Unit::parse("m")
            .unwrap()
            .converter(&Unit::parse("Pa").unwrap())
            .is_err());
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
