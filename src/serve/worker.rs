//! The worker: applies the queue in arrival order, one commit per upload, as `update` does (the
//! schema, units, merge semantics and errors of the CLI). A commit records its upload id, so an
//! upload committed before a crash (and before its state was written) is found, not applied twice.

use std::sync::Arc;
use std::time::Instant;

use super::queue::{Upload, UploadState};
use super::Service;
use crate::provenance::Provenance;

/// Commits to look back through for an upload committed before a crash.
const LOOK_BACK: usize = 1000;

/// Work the queue until the process ends.
pub(super) async fn run(svc: Arc<Service>) {
    // only an upload already queued at start can have been committed by a process that was
    // killed before it wrote the upload's state: those are looked up in the history first
    let recovering: std::collections::HashSet<String> = svc.queue.pending().into_iter().collect();
    // states decided but not yet written (a full disk): written again, never applied again
    let mut unwritten: std::collections::HashMap<String, UploadState> = Default::default();
    loop {
        let pending = svc.queue.pending();
        svc.metrics.set_depth(pending.len());
        for id in pending {
            let state = match unwritten.remove(&id) {
                Some(s) => s,
                None => match decide(&svc, &id, recovering.contains(&id)).await {
                    Some(s) => s,
                    None => continue,
                },
            };
            if let Err(e) = svc.queue.set_state(&id, &state) {
                eprintln!(
                    "{}",
                    super::log_line("worker", "-", &id, 500, Some(&e.to_string()))
                );
                unwritten.insert(id, state);
                continue;
            }
            svc.done.notify_waiters();
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(500), svc.work.notified()).await;
    }
}

/// Apply upload `id` (or, when `recovering`, find that it was): its state.
async fn decide(svc: &Service, id: &str, recovering: bool) -> Option<UploadState> {
    let up = svc.queue.upload(id)?;
    let earlier = match recovering {
        true => committed_before(svc, &up).await,
        false => None,
    };
    let state = match earlier {
        Some(commit) => UploadState {
            status: "committed".into(),
            commit: Some(commit),
            error: None,
            report: None,
        },
        None => commit(svc, &up).await,
    };
    svc.metrics.count(&state.status);
    Some(state)
}

/// The commit that already holds upload `up` (the process was killed after committing it).
async fn committed_before(svc: &Service, up: &Upload) -> Option<String> {
    let log = svc.repo.log(&up.branch, Some(LOOK_BACK)).await.ok()?;
    log.iter()
        .take_while(|c| c.time >= up.received - chrono::Duration::minutes(10))
        .find(|c| c.meta.get("upload").and_then(|v| v.as_str()) == Some(up.id.as_str()))
        .map(|c| c.id.to_string())
}

/// Merge upload `up` as one commit.
async fn commit(svc: &Service, up: &Upload) -> UploadState {
    let mut prov = Provenance::new(
        up.author.clone(),
        "update",
        up.message
            .clone()
            .unwrap_or_else(|| format!("Upload {} via {}", up.id, up.source)),
    );
    prov.source = Some(up.source.clone());
    for (k, v) in [
        ("upload", Some(up.id.clone())),
        ("client", Some(up.client.clone())),
        ("user_agent", up.user_agent.clone()),
        ("token", Some(up.token.clone())),
    ] {
        if let Some(v) = v {
            prov.meta.insert(k.into(), v);
        }
    }
    for (k, v) in &up.meta {
        prov.meta.insert(k.clone(), v.clone());
    }
    let opts = crate::update::UpdateOptions {
        input: crate::ingest::InputOptions {
            format: Some(
                up.format
                    .as_deref()
                    .and_then(super::config::input_format)
                    .unwrap_or(crate::ingest::InputFormat::Csv),
            ),
            set: up.set.clone(),
            rename: vec![],
        },
        ..Default::default()
    };
    let t = Instant::now();
    let out = svc
        .repo
        .update(&up.branch)
        .file(&up.node, svc.queue.body(&up.id))
        .provenance(prov)
        .options(opts)
        .commit()
        .await;
    svc.metrics.observe_commit(t.elapsed());
    match out {
        Ok(report) => UploadState {
            status: "committed".into(),
            commit: report.commit.as_ref().map(|c| c.to_string()),
            error: None,
            report: serde_json::to_value(&report).ok(),
        },
        Err(e) => UploadState {
            status: "refused".into(),
            commit: None,
            // the CLI's message without its flag hints (an HTTP client has no flags)
            error: Some(crate::repo::one_line(&e.to_string())),
            report: None,
        },
    }
}
