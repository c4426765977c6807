//! The schema language: the bundled examples load; malformed schemas give `file:line:col: path:
//! message` errors with suggestions.

use zarr_fuse::schema::{load_file, load_str, DType, StepLimits, UnitSpec};

#[test]
fn bundled_schemas_load() {
    for f in ["weather", "borehole", "kalman"] {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("schemas/{f}.yaml"));
        let s = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.digest().len(), 64);
    }
    let w =
        load_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/weather.yaml"))
            .unwrap();
    let t = w.root.var("temperature").unwrap();
    assert!(matches!(&t.unit, UnitSpec::Physical(u) if u.text == "K"));
    assert_eq!(t.df_col, "air_temperature");
    assert_eq!(t.dtype, Some(DType::F64));
    let site = w.root.coord("site").unwrap();
    assert!(!site.sorted, "composed coordinates are unsorted");
    assert_eq!(site.composed, vec!["latitude", "longitude"]);
    let time = w.root.coord("time").unwrap();
    assert!(time.sorted);
    assert!(matches!(time.var.dtype, Some(DType::DateTime(_))));
    let b =
        load_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/borehole.yaml"))
            .unwrap();
    assert_eq!(
        b.root.coord("date_time").unwrap().step_limits,
        StepLimits::Bounds(600.0, 3660.0)
    );
    let k =
        load_file(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/kalman.yaml"))
            .unwrap();
    assert!(k.node("inversion").is_some());
    assert!(k.node("/inversion").is_some());
}

#[test]
fn digest_ignores_formatting_but_not_meaning() {
    let a = load_str("VARS:\n  t2: {coords: t}\nCOORDS:\n  t: {}\n", "a.yaml").unwrap();
    let b = load_str(
        "# comment\nCOORDS: {t: {sorted: true}}\nVARS: {t2: {coords: [t]}}\n",
        "b.yaml",
    )
    .unwrap();
    assert_eq!(a.digest(), b.digest());
    let c = load_str(
        "VARS:\n  t2: {coords: t, unit: m}\nCOORDS:\n  t: {}\n",
        "c.yaml",
    )
    .unwrap();
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn obsolete_forms_warn() {
    let s = load_str("VARS: {x: {coords: t}, t: {coords: t}}\nCOORDS:\n  t:\n    merge: {step_limits: [1, 2]}\n    sorted: None\n", "o.yaml").unwrap();
    assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
    assert_eq!(
        s.root.coord("t").unwrap().step_limits,
        StepLimits::Bounds(1.0, 2.0)
    );
}

/// (schema, line, words the message must contain)
const BAD: &[(&str, usize, &[&str])] = &[
    (
        "VARS:\n  temp: {coords: t, unti: K}\nCOORDS: {t: {}}\n",
        2,
        &[
            "VARS/temp/unti",
            "unknown key 'unti'",
            "did you mean 'unit'",
        ],
    ),
    (
        "VARS:\n  temp: {coords: t}\nCOORDS:\n  t: {sortd: false}\n",
        4,
        &["COORDS/t/sortd", "did you mean 'sorted'"],
    ),
    (
        "VARS:\n  temp: {coords: t, sorted: false}\nCOORDS: {t: {}}\n",
        2,
        &["belongs to COORDS"],
    ),
    (
        "VARS:\n  temp: {coords: [t, x]}\nCOORDS: {t: {}}\n",
        2,
        &["coordinate 'x' does not exist"],
    ),
    (
        "VARS:\n  temp: {coords: tt}\nCOORDS: {t: {}}\n",
        2,
        &["'tt' does not exist", "did you mean 't'"],
    ),
    (
        "VARS:\n  temp: {coords: t, unit: K, source_unit: m}\nCOORDS: {t: {}}\n",
        2,
        &["source_unit", "does not convert"],
    ),
    (
        "VARS:\n  temp: {coords: t, unit: furlongs}\nCOORDS: {t: {}}\n",
        2,
        &["unknown unit 'furlongs'"],
    ),
    (
        "VARS:\n  temp: {coords: t, type: flaot}\nCOORDS: {t: {}}\n",
        2,
        &["unknown type 'flaot'", "did you mean 'float'"],
    ),
    (
        "VARS:\n  temp: {unit: K}\nCOORDS: {t: {}}\n",
        2,
        &["needs 'coords'"],
    ),
    (
        "VARS:\n  lat: {coords: [t]}\nCOORDS:\n  t: {}\n  loc: {composed: [lat, lon]}\n",
        5,
        &["component 'lat' must have coords [loc]"],
    ),
    (
        "VARS:\n  lat: {coords: [loc]}\nCOORDS:\n  loc: {composed: [lat, lon]}\n",
        4,
        &["component 'lon' is not a variable"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {unit: {tick: s, tz: Mars/Base}}\n",
        4,
        &["unknown time zone 'Mars/Base'"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {unit: {tick: fortnight}}\n",
        4,
        &["tick 'fortnight'"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {step_limits: any_nwe}\n",
        4,
        &["did you mean 'any_new'"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {chunk_size: -4}\n",
        4,
        &["chunk_size must be a positive integer"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {sorted: false, step_limits: [1, 2]}\n",
        4,
        &["sorted coordinates only"],
    ),
    (
        "VARS:\n  x: {coords: t, range: {interval: [5, 1]}}\nCOORDS: {t: {}}\n",
        2,
        &["greater than max"],
    ),
    (
        "VARS:\n  x: {coords: t\nCOORDS: {t: {}}\n",
        3,
        &["invalid YAML"],
    ),
    (
        "VARS:\n  x: {coords: t}\n  x: {coords: t}\nCOORDS: {t: {}}\n",
        3,
        &["Duplicate key"],
    ),
    (
        "VARS: {x: {coords: t}}\nCOORDS: {t: {}}\nVARZ: 3\n",
        3,
        &["child node", "did you mean 'VARS'"],
    ),
    (
        "VARS:\n  x: {coords: t, unit: K, type: \"str[4]\"}\nCOORDS: {t: {}}\n",
        2,
        &["numeric type"],
    ),
    (
        "VARS:\n  x: {coords: t, unit: degC/s}\nCOORDS: {t: {}}\n",
        2,
        &["offset units"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {coords: [x]}\n",
        4,
        &["coords must be [t]"],
    ),
    (
        "VARS:\n  x: {coords: t}\nCOORDS:\n  t: {interpolate: cubic}\n",
        4,
        &["'cubic' is not linear or nearest"],
    ),
    ("- just\n- a list\n", 1, &["must be a mapping"]),
    ("", 1, &["empty"]),
];

#[test]
fn malformed_schemas_name_file_line_and_path() {
    for (i, (text, line, words)) in BAD.iter().enumerate() {
        let err = match load_str(text, "bad.yaml") {
            Ok(_) => panic!("case {i} loaded but must fail:\n{text}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert_eq!(err.file, "bad.yaml", "case {i}: {msg}");
        assert_eq!(err.line, *line, "case {i}: wrong line in '{msg}'");
        assert!(
            msg.starts_with(&format!("bad.yaml:{line}:")),
            "case {i}: {msg}"
        );
        for w in *words {
            assert!(msg.contains(w), "case {i}: '{msg}' lacks '{w}'");
        }
    }
}
