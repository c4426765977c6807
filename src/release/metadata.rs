//! Release metadata: read from the schema's root ATTRS and an optional `--meta` file, checked,
//! and rendered as Zenodo deposition metadata (`zenodo.json`) and DataCite 4 JSON
//! (`datacite.json`). Keys and defaults: spec/015-release.md.

use serde_json::{json, Map, Value};

use super::ReleaseError;

/// The keys a `--meta` file may hold (the root ATTRS may hold anything; these are read from it).
pub const KEYS: &[&str] = &[
    "title",
    "description",
    "creators",
    "contributors",
    "keywords",
    "license",
    "publisher",
    "publication_date",
    "funding",
    "related_identifiers",
    "source_repository",
    "communities",
    "access_right",
    "language",
];

/// A person or organisation credited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// As given (`Given Family`, or `Family, Given`).
    pub name: String,
    /// Affiliation.
    pub affiliation: Option<String>,
    /// ORCID iD (`0000-0002-1825-0097`).
    pub orcid: Option<String>,
    /// For contributors: DataCite contributor type (default `DataCollector`).
    pub role: Option<String>,
}

impl Person {
    /// `Family, Given` (Zenodo's form); names with a comma or of one word are kept.
    pub fn family_given(&self) -> String {
        if self.name.contains(',') {
            return self.name.clone();
        }
        match self.name.trim().rsplit_once(' ') {
            Some((given, family)) => format!("{}, {}", family.trim(), given.trim()),
            None => self.name.trim().to_string(),
        }
    }

    fn split(&self) -> Option<(String, String)> {
        let fg = self.family_given();
        let (f, g) = fg.split_once(',')?;
        Some((f.trim().to_string(), g.trim().to_string()))
    }
}

/// A funding reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Funding {
    /// Funder name.
    pub funder: String,
    /// Funder identifier (e.g. a Crossref Funder ID DOI or ROR URL).
    pub funder_id: Option<String>,
    /// Award number.
    pub award_number: Option<String>,
    /// Award title.
    pub award_title: Option<String>,
}

/// A related identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    /// URL or DOI.
    pub identifier: String,
    /// DataCite relation type in Zenodo's camel case (e.g. `isDerivedFrom`).
    pub relation: String,
}

/// Everything the deposition metadata needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Title.
    pub title: String,
    /// Abstract.
    pub description: String,
    /// Creators, in credit order.
    pub creators: Vec<Person>,
    /// Contributors.
    pub contributors: Vec<Person>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// License id (Zenodo/SPDX, e.g. `cc-by-4.0`).
    pub license: String,
    /// Publisher (default Zenodo).
    pub publisher: String,
    /// `YYYY-MM-DD` (default: the date of the tagged commit).
    pub publication_date: String,
    /// Version = the tag.
    pub version: String,
    /// Funding.
    pub funding: Vec<Funding>,
    /// Related identifiers.
    pub related: Vec<Related>,
    /// Zenodo community ids.
    pub communities: Vec<String>,
    /// `open`, `embargoed`, `restricted` or `closed`.
    pub access_right: String,
    /// ISO 639 language of the texts, if given.
    pub language: Option<String>,
}

/// What the history supplies to the metadata.
pub struct Defaults {
    /// The tag.
    pub version: String,
    /// Date of the tagged commit.
    pub date: String,
    /// Commit authors (`Name <email>`), first appearance first.
    pub authors: Vec<String>,
}

fn name_of(author: &str) -> String {
    author
        .split_once('<')
        .map_or(author, |(n, _)| n)
        .trim()
        .to_string()
}

struct Reader<'a> {
    /// The merged map: ATTRS overridden by the file.
    map: Map<String, Value>,
    /// Where each key came from, for messages.
    origin: Box<dyn Fn(&str) -> String + 'a>,
    problems: Vec<String>,
}

impl Reader<'_> {
    fn bad(&mut self, key: &str, what: &str) {
        let o = (self.origin)(key);
        self.problems.push(format!("{o}: '{key}' {what}"));
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                self.bad(key, "must be a text");
                None
            }
        }
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        match self.map.get(key).cloned() {
            None | Some(Value::Null) => vec![],
            Some(Value::String(s)) => s
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect(),
            Some(Value::Array(a)) => {
                let mut out = vec![];
                for v in a {
                    match v {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        _ => {
                            self.bad(key, "must be a list of texts");
                            return vec![];
                        }
                    }
                }
                out
            }
            Some(_) => {
                self.bad(key, "must be a list of texts");
                vec![]
            }
        }
    }

    fn objects(&mut self, key: &str) -> Vec<Map<String, Value>> {
        match self.map.get(key).cloned() {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::Object(o) => o,
                    Value::String(s) => {
                        let mut o = Map::new();
                        o.insert("name".into(), Value::String(s));
                        o
                    }
                    _ => Map::new(),
                })
                .collect(),
            Some(Value::String(s)) => {
                let mut o = Map::new();
                o.insert("name".into(), Value::String(s));
                vec![o]
            }
            Some(_) => {
                self.bad(key, "must be a list");
                vec![]
            }
        }
    }

    fn people(&mut self, key: &str) -> Vec<Person> {
        let mut out = vec![];
        for (i, o) in self.objects(key).into_iter().enumerate() {
            let field = |k: &str| {
                o.get(k)
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            let Some(name) = field("name").map(|n| name_of(&n)) else {
                self.bad(key, &format!("entry {} has no name", i + 1));
                continue;
            };
            let orcid = field("orcid").map(|s| {
                s.trim_start_matches("https://orcid.org/")
                    .trim_start_matches("http://orcid.org/")
                    .to_string()
            });
            if let Some(id) = &orcid {
                if !orcid_ok(id) {
                    self.bad(
                        key,
                        &format!("entry '{name}': ORCID '{id}' is not a valid ORCID iD (form 0000-0002-1825-0097, checksum)"),
                    );
                }
            }
            out.push(Person {
                name,
                affiliation: field("affiliation"),
                orcid,
                role: field("type").or_else(|| field("role")),
            });
        }
        out
    }
}

/// Whether `id` is an ORCID iD with a valid ISO 7064 11-2 check digit.
pub fn orcid_ok(id: &str) -> bool {
    let digits: Vec<char> = id.chars().filter(|c| *c != '-').collect();
    if digits.len() != 16 || id.len() != 19 || id.matches('-').count() != 3 {
        return false;
    }
    let mut total = 0u32;
    for c in &digits[..15] {
        let Some(d) = c.to_digit(10) else {
            return false;
        };
        total = (total + d) * 2;
    }
    let check = (12 - total % 11) % 11;
    let expect = if check == 10 {
        'X'
    } else {
        char::from_digit(check, 10).unwrap_or('?')
    };
    digits[15] == expect
}

/// Build the metadata from the root `attrs`, the optional `--meta` file content and the history.
pub fn build(
    attrs: &Map<String, Value>,
    file: Option<(&str, &Map<String, Value>)>,
    defaults: &Defaults,
) -> Result<Metadata, ReleaseError> {
    let mut r = reader(attrs, file);
    let title = r.string("title");
    let description = r.string("description");
    let license = r.string("license");
    let (creators, contributors) = credited(&mut r, defaults);
    let publication_date = r
        .string("publication_date")
        .unwrap_or_else(|| defaults.date.clone());
    if !publication_date.is_ascii()
        || chrono::NaiveDate::parse_from_str(&publication_date, "%Y-%m-%d").is_err()
    {
        r.bad("publication_date", "must be a date YYYY-MM-DD");
    }
    let access_right = r.string("access_right").unwrap_or_else(|| "open".into());
    if !["open", "embargoed", "restricted", "closed"].contains(&access_right.as_str()) {
        r.bad(
            "access_right",
            "must be one of open, embargoed, restricted, closed",
        );
    }
    let funding = r
        .objects("funding")
        .into_iter()
        .filter_map(|o| {
            let f = |k: &str| {
                o.get(k)
                    .and_then(|v| v.as_str())
                    .map(|s| s.trim().to_string())
            };
            Some(Funding {
                funder: f("funder").or_else(|| f("name"))?,
                funder_id: f("funder_id"),
                award_number: f("award_number"),
                award_title: f("award_title"),
            })
        })
        .collect();
    let mut related: Vec<Related> = r
        .objects("related_identifiers")
        .into_iter()
        .filter_map(|o| {
            Some(Related {
                identifier: o.get("identifier")?.as_str()?.trim().to_string(),
                relation: o
                    .get("relation")
                    .and_then(|v| v.as_str())
                    .unwrap_or("isSupplementTo")
                    .to_string(),
            })
        })
        .collect();
    if let Some(src) = r.string("source_repository") {
        related.push(Related {
            identifier: src,
            relation: "isDerivedFrom".into(),
        });
    }
    let keywords = r.strings("keywords");
    let communities = r.strings("communities");
    let publisher = r.string("publisher").unwrap_or_else(|| "Zenodo".into());
    let language = r.string("language");
    let mut missing = vec![];
    if title.is_none() {
        missing.push("title".to_string());
    }
    if description.is_none() {
        missing.push("description".to_string());
    }
    if license.is_none() {
        missing.push("license".to_string());
    }
    if creators.is_empty() {
        missing.push("creators (no commit has an author either)".to_string());
    }
    if !missing.is_empty() || !r.problems.is_empty() {
        return Err(ReleaseError::Metadata {
            missing,
            problems: r.problems,
        });
    }
    Ok(Metadata {
        title: title.unwrap_or_default(),
        description: description.unwrap_or_default(),
        creators,
        contributors,
        keywords,
        license: license.unwrap_or_default(),
        publisher,
        publication_date,
        version: defaults.version.clone(),
        funding,
        related,
        communities,
        access_right,
        language,
    })
}

/// A reader of the root ATTRS with the metadata file's keys laid over them (unknown keys of the
/// file are problems).
fn reader(
    attrs: &Map<String, Value>,
    file: Option<(&str, &Map<String, Value>)>,
) -> Reader<'static> {
    let mut problems = vec![];
    let mut map = attrs.clone();
    let mut from_file = std::collections::BTreeSet::new();
    if let Some((name, f)) = file {
        for (k, v) in f {
            if !KEYS.contains(&k.as_str()) {
                problems.push(format!(
                    "{name}: unknown key '{k}' (known: {})",
                    KEYS.join(", ")
                ));
                continue;
            }
            from_file.insert(k.clone());
            map.insert(k.clone(), v.clone());
        }
    }
    let file_name = file.map(|(n, _)| n.to_string()).unwrap_or_default();
    Reader {
        map,
        origin: Box::new(move |k: &str| {
            if from_file.contains(k) {
                file_name.clone()
            } else {
                "root ATTRS".to_string()
            }
        }),
        problems,
    }
}

/// The creators (given, else the commit authors) and contributors (given, else the authors who
/// are not creators, as data collectors).
fn credited(r: &mut Reader<'_>, defaults: &Defaults) -> (Vec<Person>, Vec<Person>) {
    let mut creators = r.people("creators");
    let explicit_creators = !creators.is_empty();
    let authors: Vec<Person> = defaults
        .authors
        .iter()
        .map(|a| Person {
            name: name_of(a),
            affiliation: None,
            orcid: None,
            role: None,
        })
        .collect();
    if creators.is_empty() {
        creators = authors.clone();
    }
    let mut contributors = r.people("contributors");
    if contributors.is_empty() && explicit_creators {
        // commit authors who are not credited as creators are data collectors
        contributors = authors
            .into_iter()
            .filter(|a| {
                !creators
                    .iter()
                    .any(|c| c.family_given() == a.family_given())
            })
            .map(|mut a| {
                a.role = Some("DataCollector".into());
                a
            })
            .collect();
    }
    (creators, contributors)
}

/// What the package says about the snapshot, quoted in both metadata files.
pub struct PackageFacts {
    /// Commit id of the tag.
    pub commit: String,
    /// Snapshot content digest.
    pub content_digest: String,
    /// First and last commit dates of the history (YYYY-MM-DD).
    pub first_date: String,
    /// Date of the tagged commit.
    pub last_date: String,
    /// Bytes of the Zarr data.
    pub zarr_bytes: u64,
    /// File name of the Zarr data.
    pub zarr_name: String,
}

fn notes(facts: &PackageFacts) -> String {
    format!(
        "Snapshot {} (zarr-fuse content digest blake3:{}), released by {}. \
         Data: {} (plain Zarr v3, opens with zarr-python 3 and xarray). \
         Check the download with `zarr-fuse release verify DIR` or with the MD5/BLAKE3 lines of CHECKSUMS; \
         PROVENANCE.json lists every commit and who contributed what.",
        facts.commit,
        facts.content_digest,
        crate::provenance::TOOL,
        facts.zarr_name
    )
}

fn person_zenodo(p: &Person, with_type: bool) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(p.family_given()));
    if let Some(a) = &p.affiliation {
        o.insert("affiliation".into(), json!(a));
    }
    if let Some(id) = &p.orcid {
        o.insert("orcid".into(), json!(id));
    }
    if with_type {
        o.insert(
            "type".into(),
            json!(p.role.clone().unwrap_or_else(|| "DataCollector".into())),
        );
    }
    Value::Object(o)
}

/// `zenodo.json`: the body of a Zenodo deposition create/update request.
pub fn zenodo_json(m: &Metadata, facts: &PackageFacts) -> Value {
    let mut md = Map::new();
    md.insert("upload_type".into(), json!("dataset"));
    md.insert("title".into(), json!(m.title));
    md.insert("description".into(), json!(m.description));
    md.insert(
        "creators".into(),
        Value::Array(m.creators.iter().map(|p| person_zenodo(p, false)).collect()),
    );
    if !m.contributors.is_empty() {
        md.insert(
            "contributors".into(),
            Value::Array(
                m.contributors
                    .iter()
                    .map(|p| person_zenodo(p, true))
                    .collect(),
            ),
        );
    }
    if !m.keywords.is_empty() {
        md.insert("keywords".into(), json!(m.keywords));
    }
    md.insert("license".into(), json!(m.license));
    md.insert("access_right".into(), json!(m.access_right));
    md.insert("version".into(), json!(m.version));
    md.insert("publication_date".into(), json!(m.publication_date));
    if !m.related.is_empty() {
        md.insert(
            "related_identifiers".into(),
            Value::Array(
                m.related
                    .iter()
                    .map(|r| json!({"identifier": r.identifier, "relation": r.relation, "resource_type": "dataset"}))
                    .collect(),
            ),
        );
    }
    if !m.communities.is_empty() {
        md.insert(
            "communities".into(),
            Value::Array(
                m.communities
                    .iter()
                    .map(|c| json!({"identifier": c}))
                    .collect(),
            ),
        );
    }
    if let Some(l) = &m.language {
        md.insert("language".into(), json!(l));
    }
    let mut n = notes(facts);
    for f in &m.funding {
        n.push_str(&format!(
            " Funding: {}{}{}.",
            f.funder,
            f.award_number
                .as_ref()
                .map(|a| format!(", award {a}"))
                .unwrap_or_default(),
            f.award_title
                .as_ref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        ));
    }
    md.insert("notes".into(), json!(n));
    json!({ "metadata": md })
}

/// SPDX identifier and URL of common Zenodo license ids.
fn license_info(id: &str) -> (String, Option<&'static str>) {
    let url = match id.to_ascii_lowercase().as_str() {
        "cc-by-4.0" => Some("https://creativecommons.org/licenses/by/4.0/legalcode"),
        "cc-by-sa-4.0" => Some("https://creativecommons.org/licenses/by-sa/4.0/legalcode"),
        "cc-by-nc-4.0" => Some("https://creativecommons.org/licenses/by-nc/4.0/legalcode"),
        "cc0-1.0" => Some("https://creativecommons.org/publicdomain/zero/1.0/legalcode"),
        "odc-by-1.0" => Some("https://opendatacommons.org/licenses/by/1-0/"),
        "odbl-1.0" => Some("https://opendatacommons.org/licenses/odbl/1-0/"),
        "mit" => Some("https://opensource.org/licenses/MIT"),
        _ => None,
    };
    let spdx = match id.to_ascii_lowercase().as_str() {
        "cc0-1.0" => "CC0-1.0".to_string(),
        "mit" => "MIT".to_string(),
        "odbl-1.0" => "ODbL-1.0".to_string(),
        "odc-by-1.0" => "ODC-By-1.0".to_string(),
        other => other.to_ascii_uppercase(),
    };
    (spdx, url)
}

fn person_datacite(p: &Person, contributor: bool) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(p.family_given()));
    o.insert("nameType".into(), json!("Personal"));
    if let Some((family, given)) = p.split() {
        o.insert("givenName".into(), json!(given));
        o.insert("familyName".into(), json!(family));
    }
    if let Some(a) = &p.affiliation {
        o.insert("affiliation".into(), json!([{ "name": a }]));
    }
    if let Some(id) = &p.orcid {
        o.insert(
            "nameIdentifiers".into(),
            json!([{ "nameIdentifier": format!("https://orcid.org/{id}"), "nameIdentifierScheme": "ORCID", "schemeUri": "https://orcid.org" }]),
        );
    }
    if contributor {
        o.insert(
            "contributorType".into(),
            json!(p.role.clone().unwrap_or_else(|| "DataCollector".into())),
        );
    }
    Value::Object(o)
}

fn relation_datacite(r: &str) -> String {
    let mut c = r.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// `datacite.json`: DataCite Metadata Schema 4 (JSON form of the kernel), DOI to be assigned.
pub fn datacite_json(m: &Metadata, facts: &PackageFacts) -> Value {
    let (spdx, url) = license_info(&m.license);
    let mut rights = Map::new();
    rights.insert("rights".into(), json!(m.license));
    rights.insert("rightsIdentifier".into(), json!(spdx));
    rights.insert("rightsIdentifierScheme".into(), json!("SPDX"));
    if let Some(u) = url {
        rights.insert("rightsUri".into(), json!(u));
    }
    let mut v = Map::new();
    v.insert(
        "schemaVersion".into(),
        json!("http://datacite.org/schema/kernel-4"),
    );
    // the JSON form of DataCite 4.5 (as the `datacite` package's schema has it) names the DOI in
    // `doi`, which Zenodo assigns at publication: left out until then (spec/015)
    v.insert(
        "creators".into(),
        Value::Array(
            m.creators
                .iter()
                .map(|p| person_datacite(p, false))
                .collect(),
        ),
    );
    v.insert("titles".into(), json!([{ "title": m.title }]));
    v.insert("publisher".into(), json!({ "name": m.publisher }));
    v.insert(
        "publicationYear".into(),
        json!(m.publication_date.get(..4).unwrap_or_default()),
    );
    v.insert(
        "types".into(),
        json!({"resourceTypeGeneral": "Dataset", "resourceType": "Zarr v3 dataset"}),
    );
    v.insert(
        "subjects".into(),
        Value::Array(m.keywords.iter().map(|k| json!({ "subject": k })).collect()),
    );
    v.insert(
        "contributors".into(),
        Value::Array(
            m.contributors
                .iter()
                .map(|p| person_datacite(p, true))
                .collect(),
        ),
    );
    v.insert(
        "dates".into(),
        json!([
            {"date": m.publication_date, "dateType": "Issued"},
            {"date": format!("{}/{}", facts.first_date, facts.last_date), "dateType": "Collected"},
            {"date": facts.last_date, "dateType": "Updated"}
        ]),
    );
    if let Some(l) = &m.language {
        v.insert("language".into(), json!(l));
    }
    v.insert("version".into(), json!(m.version));
    v.insert("rightsList".into(), json!([Value::Object(rights)]));
    v.insert(
        "descriptions".into(),
        json!([
            {"description": m.description, "descriptionType": "Abstract"},
            {"description": notes(facts), "descriptionType": "TechnicalInfo"}
        ]),
    );
    if !m.funding.is_empty() {
        v.insert(
            "fundingReferences".into(),
            Value::Array(
                m.funding
                    .iter()
                    .map(|f| {
                        let mut o = Map::new();
                        o.insert("funderName".into(), json!(f.funder));
                        if let Some(x) = &f.funder_id {
                            o.insert("funderIdentifier".into(), json!(x));
                        }
                        if let Some(x) = &f.award_number {
                            o.insert("awardNumber".into(), json!(x));
                        }
                        if let Some(x) = &f.award_title {
                            o.insert("awardTitle".into(), json!(x));
                        }
                        Value::Object(o)
                    })
                    .collect(),
            ),
        );
    }
    v.insert(
        "relatedIdentifiers".into(),
        Value::Array(
            m.related
                .iter()
                .map(|r| {
                    let kind = if r.identifier.starts_with("10.") { "DOI" } else { "URL" };
                    json!({"relatedIdentifier": r.identifier, "relatedIdentifierType": kind, "relationType": relation_datacite(&r.relation)})
                })
                .collect(),
        ),
    );
    v.insert(
        "sizes".into(),
        json!([format!("{} bytes", facts.zarr_bytes)]),
    );
    v.insert("formats".into(), json!(["application/zip", "Zarr v3"]));
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            version: "v1.0".into(),
            date: "2026-01-02".into(),
            authors: vec![
                "Ada Lovelace <ada@x.org>".into(),
                "Alan Turing <a@t.uk>".into(),
            ],
        }
    }

    #[test]
    fn orcid_checksum() {
        assert!(orcid_ok("0000-0002-1825-0097"));
        assert!(orcid_ok("0000-0002-1694-233X"));
        assert!(!orcid_ok("0000-0002-1825-0098"));
        assert!(!orcid_ok("0000000218250097"));
    }

    #[test]
    fn every_missing_field_is_listed() {
        let attrs = Map::new();
        let d = Defaults {
            authors: vec![],
            ..defaults()
        };
        let e = build(&attrs, None, &d).unwrap_err().to_string();
        for k in ["title", "description", "license", "creators"] {
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn creators_default_to_authors_and_file_overrides() {
        let mut attrs = Map::new();
        attrs.insert("title".into(), json!("T"));
        attrs.insert("description".into(), json!("D"));
        attrs.insert("license".into(), json!("cc-by-4.0"));
        let m = build(&attrs, None, &defaults()).unwrap();
        assert_eq!(m.creators.len(), 2);
        assert_eq!(m.creators[0].family_given(), "Lovelace, Ada");
        assert!(m.contributors.is_empty());
        let mut f = Map::new();
        f.insert(
            "creators".into(),
            json!([{"name": "Turing, Alan", "orcid": "0000-0002-1825-0097", "affiliation": "NPL"}]),
        );
        f.insert("title".into(), json!("Other"));
        let m = build(&attrs, Some(("meta.yaml", &f)), &defaults()).unwrap();
        assert_eq!(m.title, "Other");
        assert_eq!(m.creators.len(), 1);
        assert_eq!(m.contributors.len(), 1, "Ada becomes a contributor");
        assert_eq!(m.contributors[0].name, "Ada Lovelace");
        f.insert("titel".into(), json!("x"));
        let e = build(&attrs, Some(("meta.yaml", &f)), &defaults())
            .unwrap_err()
            .to_string();
        assert!(e.contains("meta.yaml") && e.contains("titel"), "{e}");
    }
}
