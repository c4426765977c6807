//! `zarr-fuse demo DIR`: a local repository built from the bundled weather schema and generated
//! hourly forecasts — re-fetches by two authors, a Kalman update on a branch that is merged, a
//! bad update that is reverted, a tag — then its log, a blame of one cell, the diff of the revert,
//! and the Python lines that open the tag in xarray.

use std::fmt::Write as _;
use std::path::Path;

use crate::audit::{blame, Where};
use crate::history::{self, HistoryOptions};
use crate::ingest::Table;
use crate::provenance::Provenance;
use crate::repo::Repo;
use crate::storage::Location;
use crate::update::{self, convert::composed_key, Scalar, UpdateOptions};

/// The bundled schema.
pub const WEATHER_SCHEMA: &str = include_str!("../schemas/weather.yaml");

const SITES: [(&str, f64, f64, f64); 4] = [
    ("Praha", 50.08, 14.42, 0.0),
    ("Brno", 49.19, 16.61, 1.0),
    ("Liberec", 50.77, 15.06, -1.5),
    ("Ostrava", 49.82, 18.26, 0.5),
];
const ADA: &str = "Ada Forecaster <ada@example.org>";
const BOB: &str = "Bob Fetcher <bob@example.org>";
const KALMAN: &str = "Kalman Filter <kalman@example.org>";
const BASE: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// One forecast fetch as CSV: 48 hourly times from `BASE + start` hours for every site.
fn forecast(start: i64, revision: f64, temp_bias: f64) -> String {
    let mut s = String::from("time,latitude,longitude,air_temperature,relative_humidity,air_pressure_at_sea_level,wind_speed\n");
    for h in start..start + 48 {
        let t = chrono::DateTime::from_timestamp(BASE + h * 3600, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ");
        let day = (h as f64) * std::f64::consts::TAU / 24.0;
        for (_, lat, lon, off) in SITES {
            let temp = 2.0 + 5.0 * day.sin() + off + revision + temp_bias;
            let hum = 70.0 + 15.0 * day.cos() - off;
            let press = 1013.0 + 2.0 * (day / 3.0).sin() + off;
            let wind = 3.0 + 1.5 * (day + off).sin().abs();
            let _ = writeln!(s, "{t},{lat},{lon},{temp:.2},{hum:.1},{press:.1},{wind:.2}");
        }
    }
    s
}

/// Why the demo could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing an input file of the tour.
    #[error("cannot write '{}': {source}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An update, revert or merge of the tour.
    #[error(transparent)]
    Update(#[from] crate::update::UpdateError),
    /// A merge or revert of the tour.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
    /// A repository operation of the tour.
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    /// Reading a generated table.
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A generated contribution that changed nothing (a bug of the demo).
    #[error("{0} changed nothing")]
    NothingChanged(String),
}

async fn contribute(
    repo: &Repo,
    dir: &Path,
    branch: &str,
    name: &str,
    csv: &str,
    author: &str,
    msg: &str,
) -> Result<String, DemoError> {
    let path = dir.join("inputs").join(name);
    std::fs::write(&path, csv).map_err(|source| DemoError::Write {
        path: path.clone(),
        source,
    })?;
    let table = Table::from_csv_bytes(csv.as_bytes(), &path.display().to_string())?;
    let mut prov = Provenance::new(author, "update", msg);
    prov.source = Some(format!("inputs/{name}"));
    prov.input_blake3 = Some(table.blake3.clone());
    let rep = update::update(
        repo,
        branch,
        &[(String::new(), table)],
        prov,
        &UpdateOptions::default(),
    )
    .await?;
    rep.commit
        .map(|c| c.to_string())
        .ok_or_else(|| DemoError::NothingChanged(name.to_string()))
}

/// Build the demo repository in `dir` and print the tour.
pub async fn run(dir: &Path) -> Result<(), DemoError> {
    let location = Location::Local(dir.to_path_buf());
    let repo = Repo::init(&location).await?;
    update::init_dataset(
        &repo,
        WEATHER_SCHEMA,
        "schemas/weather.yaml",
        Provenance::new(ADA, "init", "Weather dataset from the bundled schema"),
    )
    .await?;
    std::fs::create_dir_all(dir.join("inputs")).map_err(|source| DemoError::Write {
        path: dir.join("inputs"),
        source,
    })?;
    // hourly re-fetches, each overlapping the previous one by 47 hours
    for k in 0..4 {
        let author = if k % 2 == 0 { ADA } else { BOB };
        contribute(
            &repo,
            dir,
            "main",
            &format!("fetch-{k:02}.csv"),
            &forecast(k, 0.1 * k as f64, 0.0),
            author,
            &format!("yr.no fetch {k}"),
        )
        .await?;
    }
    // a Kalman analysis on its own branch, merged back
    repo.create_branch("kalman", "main").await?;
    let mut kal = String::from("time,latitude,longitude,air_temperature,relative_humidity,air_pressure_at_sea_level,wind_speed\n");
    for line in forecast(3, 0.3, -0.8)
        .lines()
        .skip(1)
        .take(12 * SITES.len())
    {
        kal.push_str(line);
        kal.push('\n');
    }
    contribute(
        &repo,
        dir,
        "kalman",
        "kalman-analysis.csv",
        &kal,
        KALMAN,
        "Kalman analysis: assimilated station temperatures",
    )
    .await?;
    let merged = history::merge(
        &repo,
        "kalman",
        "main",
        &HistoryOptions::default(),
        Provenance::new(ADA, "merge", "Merge the Kalman analysis"),
    )
    .await?;
    for k in 4..6 {
        let author = if k % 2 == 0 { ADA } else { BOB };
        contribute(
            &repo,
            dir,
            "main",
            &format!("fetch-{k:02}.csv"),
            &forecast(k, 0.1 * k as f64, 0.0),
            author,
            &format!("yr.no fetch {k}"),
        )
        .await?;
    }
    // a bad fetch (temperatures already in kelvin, read as degC), then its revert
    let bad = contribute(
        &repo,
        dir,
        "main",
        "fetch-bad.csv",
        &forecast(6, 0.6, 273.15),
        BOB,
        "yr.no fetch 6",
    )
    .await?;
    let reverted = history::revert(
        &repo,
        &bad,
        "main",
        &HistoryOptions::default(),
        Provenance::new(ADA, "revert", "Revert fetch 6: temperatures were in kelvin"),
    )
    .await?;
    let revert_id = reverted
        .commit
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    repo.create_tag("v1.0", "main", Some("first published state"))
        .await?;

    println!("Demo repository: {}\n", dir.display());
    println!("== log (newest first)");
    for c in repo.log("main", None).await? {
        println!(
            "{}  {:<34} {}",
            &c.id[..10],
            c.author.as_deref().unwrap_or("-"),
            c.message
        );
    }
    print_blame(&repo).await?;
    print_revert(&revert_id, &reverted);
    println!(
        "\nmerged the Kalman branch as {}; tagged v1.0",
        merged.commit.as_deref().unwrap_or("(nothing)")
    );
    println!("\n== open the tag in Python (icechunk-python >= 2.3, xarray):");
    println!("import icechunk, xarray as xr");
    println!(
        "repo = icechunk.Repository.open(icechunk.local_filesystem_storage({:?}))",
        dir.display().to_string()
    );
    println!("ds = xr.open_zarr(repo.readonly_session(tag=\"v1.0\").store, consolidated=False)");
    println!("print(ds.temperature.sel(time=\"2026-01-01T12:00\"))");
    println!("\n== publish the tag on Zenodo (a verifiable package, opens without icechunk):");
    println!(
        "zarr-fuse release {0} v1.0 --out {0}-v1.0 && zarr-fuse release verify {0}-v1.0 --repo {0}",
        dir.display()
    );
    Ok(())
}

/// Blame one cell: Praha at 2026-01-01T12:00Z.
async fn print_blame(repo: &Repo) -> Result<(), DemoError> {
    let (name, lat, lon, _) = SITES[0];
    let key = composed_key(&[Scalar::F(lat), Scalar::F(lon)]);
    let cell = [
        Where::parse("time=2026-01-01T12:00:00")?,
        Where::parse(&format!("site={key}"))?,
    ];
    println!(
        "\n== blame temperature at time=2026-01-01T12:00Z, site={name} ({lat}, {lon}; key {key})"
    );
    for r in blame(repo, "/", "temperature", "main", &cell).await? {
        println!(
            "{}  {}  {}",
            r.commit.as_deref().map(|c| &c[..10]).unwrap_or("-"),
            r.author.unwrap_or_default(),
            r.message.unwrap_or_default()
        );
    }
    Ok(())
}

/// What the revert restored, by cells.
fn print_revert(revert_id: &str, reverted: &history::HistoryReport) {
    println!(
        "\n== what the revert restored ({}; by cells, {} chunk(s) by reference, {} rewritten)",
        &revert_id[..revert_id.len().min(10)],
        reverted.chunks_by_reference,
        reverted.chunks_rewritten
    );
    for (var, d) in reverted.changed.values().flatten() {
        let at = d.boxes.first().map(|b| {
            b.coords
                .iter()
                .map(|s| format!("{} {}..{}", s.dim, s.first, s.last))
                .collect::<Vec<_>>()
                .join(" × ")
        });
        println!(
            "  {var}: {} cell(s) changed back, {} set to NA ({})",
            d.changed,
            d.set_na,
            at.unwrap_or_default()
        );
    }
}
