//! Text and JSON rendering of command results.

use crate::update::Changes as Diff;
use serde::Serialize;
use serde_json::json;

use crate::cas::VerifyReport;
use crate::repo::{CommitInfo, GcReport, RefInfo};

fn print_json<T: Serialize + ?Sized>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("zarr-fuse: cannot render JSON: {e}"),
    }
}

fn commit_json(c: &CommitInfo) -> serde_json::Value {
    c.to_json()
}

fn commit_text(c: &CommitInfo) {
    println!("commit {}", c.id);
    if c.parents.len() > 1 {
        println!("Merge:  {}", c.parents.join(" "));
    }
    println!(
        "Author: {}",
        c.author.as_deref().unwrap_or("(not recorded)")
    );
    println!("Date:   {}", c.time_text());
    if let Some(op) = &c.operation {
        println!("Op:     {op}");
    }
    if let Some(s) = &c.source {
        println!("Source: {s}");
    }
    if !c.meta.is_empty() {
        let pairs: Vec<String> = c
            .meta
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string())))
            .collect();
        println!("Meta:   {}", pairs.join(" "));
    }
    println!();
    for line in c.message.lines() {
        println!("    {line}");
    }
    // a squash commit lists the contributions it folds, newest first
    for f in crate::repo::folded_leaves(c) {
        println!(
            "    folded {}  {}  {}  {}",
            &f.id[..f.id.len().min(10)],
            f.extra
                .get("time")
                .and_then(|t| t.as_str())
                .map_or_else(|| f.time_text(), str::to_string),
            f.author.as_deref().unwrap_or("-"),
            f.message
        );
    }
    println!();
}

/// `log`.
pub(super) fn log(commits: &[CommitInfo], json: bool) {
    if json {
        print_json(&commits.iter().map(commit_json).collect::<Vec<_>>());
    } else {
        commits.iter().for_each(commit_text);
    }
}

/// `show`.
pub(super) fn show(c: &CommitInfo, d: Option<&Diff>, json: bool) {
    if json {
        let mut v = commit_json(c);
        if let Some(o) = v.as_object_mut() {
            o.insert("changes".into(), json!(d));
        }
        print_json(&v);
    } else {
        commit_text(c);
        if let Some(d) = d {
            diff_text(d);
        }
    }
}

fn diff_text(diff: &Diff) {
    let d = &diff.chunks;
    if d.is_empty() {
        println!("no differences");
        return;
    }
    if let Some(cells) = &diff.cells {
        cells_text(cells);
    }
    for p in &d.groups_added {
        println!("+ group  {p}");
    }
    for p in &d.groups_removed {
        println!("- group  {p}");
    }
    for c in &d.groups_changed {
        println!(
            "~ group  {} attributes: {}",
            c.path,
            c.attributes.join(", ")
        );
    }
    for p in &d.arrays_added {
        println!("+ array  {p}");
    }
    for p in &d.arrays_removed {
        println!("- array  {p}");
    }
    for c in &d.arrays_changed {
        println!(
            "~ array  {} metadata{}",
            c.path,
            if c.attributes.is_empty() {
                String::new()
            } else {
                format!(" (attributes: {})", c.attributes.join(", "))
            }
        );
    }
    for (path, coords) in &d.chunks {
        let shown: Vec<String> = coords.iter().take(10).map(|c| format!("{c:?}")).collect();
        let more = if coords.len() > 10 {
            format!(" … (+{})", coords.len() - 10)
        } else {
            String::new()
        };
        println!(
            "  chunks {path}: {} changed {}{more}",
            coords.len(),
            shown.join(" ")
        );
    }
}

fn cells_text(c: &crate::update::CellDiff) {
    for (node, vars) in &c.nodes {
        for (var, v) in vars {
            let name = if node.is_empty() {
                var.clone()
            } else {
                format!("{node}/{var}")
            };
            println!(
                "~ cells  {name}: {} changed, {} added, {} set to NA",
                v.changed, v.added, v.set_na
            );
            for b in &v.boxes {
                let dims: Vec<String> = b
                    .coords
                    .iter()
                    .map(|s| {
                        if s.first == s.last {
                            format!("{}={}", s.dim, s.first)
                        } else {
                            format!("{}={}..{}", s.dim, s.first, s.last)
                        }
                    })
                    .collect();
                println!("    {} ({} cell(s))", dims.join(" × "), b.cells);
            }
            if v.boxes_total > v.boxes.len() {
                println!("    … {} more box(es)", v.boxes_total - v.boxes.len());
            }
        }
    }
}

/// `diff`.
pub(super) fn diff(d: &Diff, json: bool) {
    if json {
        print_json(d);
    } else {
        diff_text(d);
    }
}

/// `branch list`, `tag list`.
pub(super) fn refs(r: &[RefInfo], json: bool) {
    if json {
        print_json(r);
    } else {
        for x in r {
            println!("{}\t{}", x.name, x.commit);
        }
    }
}

/// `verify`.
pub(super) fn verify(r: &VerifyReport, json: bool) {
    if json {
        print_json(r);
        return;
    }
    println!("commit          {}", r.commit);
    println!("nodes           {}", r.nodes);
    println!("chunks          {} ({} bytes read)", r.chunks, r.bytes);
    println!("content digest  {}", r.computed_digest);
    match &r.recorded_digest {
        Some(d) if *d == r.computed_digest => println!("recorded digest matches"),
        Some(d) => println!("recorded digest {d} DIFFERS"),
        None => println!("no recorded digest (commit not made by zarr-fuse)"),
    }
    for b in &r.bad_chunks {
        println!(
            "BAD {} chunk {:?} ({}): {}",
            b.array, b.coords, b.object, b.problem
        );
    }
    println!("{}", if r.ok { "OK" } else { "FAILED" });
}

/// `gc`.
pub(super) fn gc(r: &GcReport, json: bool) {
    if json {
        print_json(r);
        return;
    }
    let verb = if r.dry_run { "would expire" } else { "expired" };
    println!(
        "{verb} {} snapshot(s) older than {}",
        r.snapshots_expired, r.older_than
    );
    if r.snapshots_kept_for_provenance > 0 {
        println!(
            "kept {} older snapshot(s) for their provenance (blame names who wrote their cells); --drop-provenance expires them",
            r.snapshots_kept_for_provenance
        );
    }
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} chunk(s), {} manifest(s), {} snapshot(s), {} transaction log(s): {} bytes",
        r.chunks_deleted,
        r.manifests_deleted,
        r.snapshots_deleted,
        r.transaction_logs_deleted,
        r.bytes_deleted
    );
    println!(
        "{verb} {} repo-object backup(s) ({} bytes; the newest {} are kept) and {} temporary file(s)",
        r.repo_backups_deleted,
        r.repo_backup_bytes_deleted,
        crate::repo::KEEP_REPO_BACKUPS,
        r.temp_files_deleted
    );
}

/// `blame`.
pub(super) fn blame(recs: &[crate::audit::BlameRecord], json: bool) {
    if json {
        print_json(recs);
        return;
    }
    for r in recs {
        let sel: Vec<String> = r
            .selection
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        match &r.commit {
            Some(c) => println!(
                "{}  {}  {}  {}  {}",
                &c[..c.len().min(10)],
                r.time.as_deref().unwrap_or(""),
                r.author.as_deref().unwrap_or("?"),
                sel.join(" "),
                r.message
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            None => println!(
                "({})  {}",
                r.message.as_deref().unwrap_or("never written"),
                sel.join(" ")
            ),
        }
    }
}

/// `release`.
pub(super) fn release(r: &crate::release::ReleaseReport, json: bool) {
    if json {
        return print_json(r);
    }
    println!(
        "released tag {} (commit {}) to {}: {} node(s), {} chunk(s), {} B of Zarr data, {} commit(s) of history, {:.1} s",
        r.tag, r.commit, r.out, r.nodes, r.chunks, r.zarr_bytes, r.commits, r.seconds
    );
    println!("content digest {}", r.content_digest);
    for f in &r.files {
        if !f.name.contains('/') {
            println!("  {:<44} {:>12} B  md5 {}", f.name, f.bytes, f.md5);
        }
    }
    let inner = r.files.iter().filter(|f| f.name.contains('/')).count();
    if inner > 0 {
        println!("  ... and {inner} file(s) inside the .zarr directory");
    }
}

/// `release verify`.
pub(super) fn release_verify(r: &crate::release::VerifyReport, json: bool) {
    if json {
        return print_json(r);
    }
    println!(
        "package {} (tag {}, commit {}): {} file(s), {} Zarr entr(ies), {} B read",
        r.dir, r.header.tag, r.header.commit, r.files, r.entries, r.bytes
    );
    match &r.computed_digest {
        Some(d) => println!("content digest {d} (recorded {})", r.header.content_digest),
        None => println!(
            "content digest not computable (recorded {})",
            r.header.content_digest
        ),
    }
    if let Some(repo) = &r.repo_checked {
        println!("compared with tag '{}' in {repo}", r.header.tag);
    }
    for p in &r.problems {
        println!("PROBLEM {p}");
    }
    println!("{}", if r.ok { "OK" } else { "FAILED" });
}

/// `import`.
pub(super) fn import(r: &crate::release::import::ImportReport, json: bool) {
    if json {
        return print_json(r);
    }
    println!(
        "imported release {} (commit {} of the source) into {} branch '{}'{}: commit {}",
        r.tag,
        r.source_commit,
        r.repo,
        r.branch,
        if r.created_repository {
            " (new repository)"
        } else {
            ""
        },
        r.commit.as_deref().unwrap_or("(none: nothing to import)")
    );
    println!(
        "{} node(s), {} chunk(s), {} source commit(s) referenced; content digest {} the release's",
        r.nodes,
        r.chunks,
        r.commits_referenced,
        if r.digest_matches {
            "equals"
        } else {
            "DIFFERS FROM"
        }
    );
}

/// `revert`, `merge`, `cherry-pick`: the commit id on stdout (nothing else, for scripts), a
/// summary on stderr; a dry run prints the cells that would change on stdout.
pub(super) fn history(r: &crate::history::HistoryReport) {
    let cells: u64 = r
        .changed
        .values()
        .flat_map(|v| v.values())
        .map(|d| d.changed + d.added + d.set_na)
        .sum();
    let vars: usize = r.changed.values().map(|v| v.len()).sum();
    if r.dry_run {
        println!(
            "dry run, nothing committed: {} would change {cells} cell(s) in {vars} variable(s)",
            r.operation
        );
        cells_text(&crate::update::CellDiff {
            nodes: r.changed.clone(),
        });
    } else {
        match (&r.commit, &r.note) {
            (Some(c), _) => println!("{c}"),
            (None, Some(n)) => println!("{n}; no commit made"),
            (None, None) => println!("nothing changed; no commit made"),
        }
        if r.commit.is_some() {
            eprintln!(
                "{}: {cells} cell(s) changed in {vars} variable(s); {} chunk(s) restored by reference, {} rewritten",
                r.operation, r.chunks_by_reference, r.chunks_rewritten
            );
        }
    }
    if r.conflict_cells > 0 {
        let how = match r.resolve {
            crate::history::Resolve::TakeSource => "took the source's value",
            _ => "kept the target's value",
        };
        eprintln!("{how} of {} conflicting cell(s):", r.conflict_cells);
        for c in &r.conflicts {
            let by = if c.later_commits.is_empty() {
                String::new()
            } else {
                format!(" (written later by {})", c.later_commits.join(", "))
            };
            eprintln!("  {}/{}: {} cell(s){by}", c.node, c.var, c.cells);
        }
    }
    for c in &r.chunk_conflicts {
        eprintln!(
            "kept the target's state of {}{}",
            c.array,
            c.coords
                .as_ref()
                .map_or(" metadata".to_string(), |k| format!(" chunk {k:?}"))
        );
    }
}

/// `squash`.
pub(super) fn squash(r: &crate::repo::SquashReport, json: bool) {
    if json {
        print_json(r);
        return;
    }
    let verb = if r.dry_run { "would fold" } else { "folded" };
    println!(
        "{verb} {} commit(s) into {} (branch {}: {} commit(s) → {}; {} replayed)",
        r.commits_folded,
        r.periods.len(),
        r.branch,
        r.commits_before,
        r.commits_after,
        r.commits_replayed
    );
    for p in &r.periods {
        println!(
            "  {}: {} contribution(s){}",
            p.period,
            p.contributions,
            p.commit
                .as_ref()
                .map(|c| format!(" → {c}"))
                .unwrap_or_default()
        );
    }
}
