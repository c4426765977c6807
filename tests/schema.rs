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
        "VARS:\n  temp: {coords: [time, tiem]}\nCOORDS: {time: {}}\n",
        2,
        &["coordinate 'tiem' does not exist", "did you mean 'time'"],
    ),
    (
        "VARS:\n  temp: {coords: t, unit: K, source_unit: m}\nCOORDS: {t: {}}\n",
        2,
        &["source_unit", "does not convert"],
    ),
    (
        "VARS:\n  temp: {coords: t, unit: m, source_unit: furlongs}\nCOORDS: {t: {}}\n",
        2,
        &["'furlongs' is not a unit this registry knows"],
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
        &["'x' given twice", "first at line 2"],
    ),
    (
        "VARS: {x: {coords: t}}\nCOORDS: {t: {}}\nVARZ: {y: {coords: t}}\n",
        3,
        &["unknown key 'VARZ'", "did you mean 'VARS'"],
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

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}"))
}

/// A schema in zarr-fuse's style (anchors, aliases, merge keys, obsolete forms) loads with one
/// warning per construct, each naming file:line and the key path; `strict` refuses it.
#[test]
fn legacy_schema_loads_with_warnings_and_strict_refuses_it() {
    let s = load_file(&fixture("legacy_schema.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let h = s.node("hillside").expect("node");
    let w: Vec<String> = s.warnings.iter().map(|w| w.to_string()).collect();
    let has = |path: &str, words: &str| {
        assert!(
            s.warnings
                .iter()
                .any(|w| w.path == path && w.message.contains(words) && w.line > 0),
            "no warning at {path} with '{words}' in {w:#?}"
        )
    };
    has("location_file", "not a child node");
    has("hillside/source_file", "not a child node");
    has("hillside/VARS/charge/unit", "coulomb");
    has("hillside/VARS/wind_dir/dtype", "obsolete 'dtype'");
    has("hillside/VARS/quality/discrete", "outside 'range'");
    has(
        "hillside/VARS/quality/coords",
        "coordinate 'depth' is not in COORDS",
    );
    has("hillside/VARS/date_time", "merged into the coordinate");
    has("hillside/VARS/comment_field/df_col", "df_col: None");
    has("hillside/COORDS/date_time/sorted", "obsolete value");
    has("hillside/COORDS/date_time/merge", "merge: None");
    has("hillside/COORDS/station/merge", "obsolete 'merge:' block");
    // the merge keys and aliases were applied
    let air = h.var("air_temp").unwrap();
    assert_eq!(air.coords, ["date_time", "station"]);
    assert!(matches!(&air.unit, UnitSpec::Physical(u) if u.text == "degC"));
    assert_eq!(air.df_col, "t_air");
    let soil = h.var("soil_temp").unwrap();
    assert!(matches!(&soil.unit, UnitSpec::Physical(u) if u.text == "K"));
    assert!(matches!(&soil.source_unit, UnitSpec::Physical(u) if u.text == "degC"));
    // legacy keys were read
    assert_eq!(h.var("wind_dir").unwrap().dtype, Some(DType::F64));
    assert_eq!(h.var("count").unwrap().dtype, Some(DType::Int(64)));
    assert_eq!(h.var("raining").unwrap().dtype, Some(DType::Bool));
    assert_eq!(h.var("quality").unwrap().dtype, Some(DType::Int(8)));
    assert!(matches!(
        h.var("quality").unwrap().range,
        zarr_fuse::schema::Range::Discrete(_)
    ));
    assert_eq!(h.var("comment_field").unwrap().df_col, "comment_field");
    // the coordinate in both VARS and COORDS keeps the variable's unit, source unit, column
    let dt = h.coord("date_time").unwrap();
    assert!(matches!(&dt.var.source_unit, UnitSpec::Time { tz_text: Some(z), .. } if z == "CET"));
    assert_eq!(dt.var.df_col, "timestamp");
    assert_eq!(
        dt.var.description.as_deref(),
        Some("When the reading was taken")
    );
    assert!(dt.sorted);
    assert!(h.var("date_time").is_none());
    // the implicit coordinate
    assert!(h.coord("depth").is_some());
    assert_eq!(h.coord("station").unwrap().chunk_size, Some(32));
    assert_eq!(h.coord("date_time").unwrap().chunk_size, None);
    let n = s.warnings.len();
    let e = s.strict().expect_err("strict refuses warnings");
    assert!(e.to_string().contains("--strict"), "{e}");
    assert!(e.to_string().contains(&format!("{n} warning(s)")), "{e}");
    assert!(e.line > 0);
}

/// Unknown keys that look like typos of a valid key stay errors; others load with a warning.
#[test]
fn typos_of_keys_are_errors_other_unknown_keys_warn() {
    for (key, want) in [
        ("unti", "unit"),
        ("Unit", "unit"),
        ("units", "unit"),
        ("cooords", "coords"),
        ("df_cal", "df_col"),
        ("source_units", "source_unit"),
    ] {
        let text = format!("VARS:\n  x: {{coords: t, {key}: K}}\nCOORDS: {{t: {{}}}}\n");
        let e = load_str(&text, "t.yaml").expect_err(key);
        assert!(
            e.to_string().contains(&format!("did you mean '{want}'")),
            "{key}: {e}"
        );
        assert_eq!(e.line, 2, "{key}");
    }
    let s = load_str(
        "VARS:\n  x: {coords: t, comment: hello, name: x}\nCOORDS: {t: {sorted: true, legacy_flag: 1}}\n",
        "t.yaml",
    )
    .unwrap();
    assert_eq!(s.warnings.len(), 3, "{:#?}", s.warnings);
}

#[test]
fn yaml_anchors_merge_keys_and_their_errors_keep_positions() {
    let e = load_str(
        "VARS:\n  x: {coords: t, unit: *nope}\nCOORDS: {t: {}}\n",
        "a.yaml",
    )
    .expect_err("undefined alias");
    assert_eq!((e.file.as_str(), e.line), ("a.yaml", 2), "{e}");
    assert!(e.to_string().contains("invalid YAML"), "{e}");
    // a unit error inside merged content points at where the text is written
    let e = load_str(
        "base: &b {coords: t, unit: K, source_unit: m}\nVARS:\n  x:\n    <<: *b\nCOORDS: {t: {}}\n",
        "b.yaml",
    )
    .expect_err("unit");
    assert_eq!(e.line, 1, "{e}");
    // a billion laughs is refused fast
    let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    doc.push_str("VARS: {x: {coords: t}}\nCOORDS: {t: {}}\n");
    let t = std::time::Instant::now();
    let e = load_str(&doc, "bomb.yaml").expect_err("bomb");
    assert!(e.to_string().contains("expands to more than"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn node_names_are_path_segments() {
    for (name, why) in [
        ("\"../../x\"", "path separator"),
        ("\"a/b\"", "path separator"),
        ("\".\"", "relative path"),
        ("\"..\"", "relative path"),
        ("\"\"", "empty"),
    ] {
        let text = format!("{name}:\n  VARS: {{x: {{coords: t}}}}\n  COORDS: {{t: {{}}}}\n");
        let e = load_str(&text, "n.yaml").expect_err(name);
        assert!(e.to_string().contains(why), "{name}: {e}");
        assert_eq!(e.line, 1);
    }
    assert!(load_str(
        "\"yr.no\":\n  VARS: {x: {coords: t}}\n  COORDS: {t: {}}\n",
        "n.yaml"
    )
    .is_ok());
}

/// A quoted number keeps meaning a number where the schema wants one, as before full YAML.
#[test]
fn quoted_numbers_keep_their_meaning() {
    let s = load_str(
        "VARS:\n  x: {coords: t, type: int32, na_value: \"-9999\"}\nCOORDS: {t: {}}\n",
        "q.yaml",
    )
    .unwrap();
    assert_eq!(
        s.root.var("x").unwrap().na_value,
        Some(serde_json::json!(-9999))
    );
}
