//! The store engine on every backend: provenance, content addressing, refs, time travel,
//! rollback, revert, merge, cherry-pick, diff, verify, gc, in-process concurrency.

mod common;

use common::*;
use zarr_fuse::repo::{RepoError, Strategy};
use zarr_fuse::{Location, Repo};

fn each_backend(
    name: &str,
    f: impl Fn(Location) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    for b in backends() {
        let loc = fresh_location(b, dir.path(), name).expect("location");
        eprintln!("-- {name} on {b}");
        rt().block_on(f(loc));
    }
}

#[test]
fn commits_carry_provenance_and_content_digest() {
    each_backend("prov", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let mut p = prov("three arrays");
            p.source = Some("forecast-2026-01-01.csv".into());
            p.input_blake3 = Some(blake3::hash(b"input").to_hex().to_string());
            p.meta.insert("station".into(), "CZ-01".into());
            let tx = repo.transaction("main").await.unwrap();
            for n in ["a", "b", "c"] {
                ensure_array(&tx, n)
                    .await
                    .async_store_chunk(&[0, 0], values(1.0))
                    .await
                    .unwrap();
            }
            let out = tx.commit(p).await.unwrap();
            let id = out.commit.clone().expect("a commit");
            let log = repo.log("main", None).await.unwrap();
            assert_eq!(log[0].id, id);
            assert_eq!(log[0].author.as_deref(), Some(AUTHOR));
            assert_eq!(log[0].message, "three arrays");
            assert_eq!(log[0].source.as_deref(), Some("forecast-2026-01-01.csv"));
            assert_eq!(log[0].meta["station"], "CZ-01");
            assert_eq!(log[0].content_digest, out.content_digest);
            assert_eq!(
                log[0].counts["chunks_written"], 1,
                "identical chunks in a, b, c are stored once"
            );
            assert_eq!(log[0].counts["chunks_deduplicated"], 2);
            // the digest is what verify recomputes from the stored bytes
            let report = repo.verify("main", &|_| {}).await.unwrap();
            assert!(report.ok, "{report:?}");
            assert_eq!(Some(report.computed_digest), out.content_digest);
            assert_eq!(report.chunks, 3);
        })
    });
}

#[test]
fn unchanged_data_makes_no_commit_and_recommits_store_no_bytes() {
    each_backend("dedup", |loc| {
        let local = matches!(&loc, Location::Local(_)).then(|| match &loc {
            Location::Local(p) => p.clone(),
            _ => unreachable!(),
        });
        Box::pin(async move {
            let repo = init(&loc).await;
            let c1 = write(&repo, "main", &["a", "b", "c"], 1.0, "v1").await;
            assert!(c1.commit.is_some());
            let tip = repo.branch_tip("main").await.unwrap();
            // same data again: nothing changes, no commit
            let same = write(&repo, "main", &["a", "b", "c"], 1.0, "again").await;
            assert_eq!(same.commit, None);
            assert_eq!(same.stats.chunks_unchanged, 3);
            assert_eq!(repo.branch_tip("main").await.unwrap(), tip);
            let bytes_before = local.as_ref().map(|p| dir_size(p, "chunks"));
            // new data, then back to the first data: the old objects are reused
            let c2 = write(&repo, "main", &["a", "b", "c"], 2.0, "v2").await;
            assert_eq!(c2.stats.chunks_written, 1);
            let mid = local.as_ref().map(|p| dir_size(p, "chunks"));
            let c3 = write(&repo, "main", &["a", "b", "c"], 1.0, "back to v1").await;
            assert!(c3.commit.is_some());
            assert_eq!(c3.stats.chunks_written, 0);
            assert_eq!(c3.stats.bytes_written, 0);
            assert_eq!(c3.stats.chunks_deduplicated, 3);
            if let (Some(p), Some(b), Some(m)) = (&local, bytes_before, mid) {
                assert!(m > b);
                assert_eq!(
                    dir_size(p, "chunks"),
                    m,
                    "re-committing known data adds no chunk bytes"
                );
            }
            assert!(same_vals(
                &read(&repo, "main", "a").await.unwrap(),
                &values(1.0)
            ));
        })
    });
}

fn same_vals(a: &[f64], b: &[f64]) -> bool {
    same(a, b)
}

#[test]
fn branches_tags_and_time_travel() {
    each_backend("refs", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let c1 = write(&repo, "main", &["a"], 1.0, "one")
                .await
                .commit
                .unwrap();
            let t_between = chrono::Utc::now();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let c2 = write(&repo, "main", &["a"], 2.0, "two")
                .await
                .commit
                .unwrap();
            repo.create_tag("v1", &c1, Some("first release"))
                .await
                .unwrap();
            assert_eq!(
                repo.tag_message("v1").await.unwrap().as_deref(),
                Some("first release")
            );
            // tags are immutable
            assert!(matches!(
                repo.create_tag("v1", "main", None).await,
                Err(RepoError::TagExists(_))
            ));
            // a deleted tag's name cannot be reused
            repo.delete_tag("v1").await.unwrap();
            assert!(matches!(
                repo.create_tag("v1", "main", None).await,
                Err(RepoError::TagExists(_))
            ));
            repo.create_tag("v1.1", "main", None).await.unwrap();
            repo.create_branch("dev", &c1).await.unwrap();
            assert!(matches!(
                repo.create_branch("dev", "main").await,
                Err(RepoError::BranchExists(_))
            ));
            let names: Vec<String> = repo
                .branches()
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.name)
                .collect();
            assert_eq!(names, vec!["dev", "main"]);
            // every way of naming a revision
            assert!(same(&read(&repo, "dev", "a").await.unwrap(), &values(1.0)));
            assert!(same(&read(&repo, "v1.1", "a").await.unwrap(), &values(2.0)));
            assert!(same(&read(&repo, &c1, "a").await.unwrap(), &values(1.0)));
            assert!(same(
                &read(&repo, &c2[..8].to_lowercase(), "a").await.unwrap(),
                &values(2.0)
            ));
            let at = format!("main@{}", t_between.to_rfc3339());
            assert_eq!(repo.resolve(&at).await.unwrap().id.to_string(), c1);
            assert!(matches!(
                repo.resolve("main@1999-01-01").await,
                Err(RepoError::RevNotFound { .. })
            ));
            match repo.resolve("nosuch").await {
                Err(RepoError::RevNotFound { hint, .. }) => {
                    assert!(hint.contains("main") && hint.contains("dev"), "{hint}")
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                repo.resolve(&c1[..4]).await,
                Err(RepoError::RevNotFound { .. })
            ));
            repo.delete_branch("dev").await.unwrap();
            assert!(matches!(
                repo.branch_tip("dev").await,
                Err(RepoError::NoSuchBranch(_))
            ));
            assert!(repo.delete_branch("main").await.is_err());
        })
    });
}

#[test]
fn reset_moves_a_branch_back_within_its_history() {
    each_backend("reset", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let c1 = write(&repo, "main", &["a"], 1.0, "one")
                .await
                .commit
                .unwrap();
            write(&repo, "main", &["a"], 2.0, "two").await;
            repo.create_branch("side", "main").await.unwrap();
            let s = write(&repo, "side", &["a"], 3.0, "side")
                .await
                .commit
                .unwrap();
            assert_eq!(
                repo.reset("main", &c1, false).await.unwrap().to_string(),
                c1
            );
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(1.0)));
            assert!(matches!(
                repo.reset("main", &s, false).await,
                Err(RepoError::NotInHistory { .. })
            ));
            repo.reset("main", &s, true).await.unwrap();
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(3.0)));
        })
    });
}

#[test]
fn revert_restores_one_commit_by_reference() {
    each_backend("revert", |loc| {
        let local = match &loc {
            Location::Local(p) => Some(p.clone()),
            _ => None,
        };
        Box::pin(async move {
            let repo = init(&loc).await;
            write(&repo, "main", &["a", "b"], 1.0, "good").await;
            let bad = write(&repo, "main", &["a"], 99.0, "bad kalman update")
                .await
                .commit
                .unwrap();
            write(&repo, "main", &["b"], 3.0, "later, other array").await;
            let chunks_before = local
                .as_ref()
                .map(|p| std::fs::read_dir(p.join("chunks")).unwrap().count());
            let (out, kept) = repo
                .revert_by_chunks(&bad, "main", Strategy::Fail, prov(""))
                .await
                .unwrap();
            assert!(kept.is_empty());
            assert!(out.commit.is_some());
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(1.0)));
            assert!(same(&read(&repo, "main", "b").await.unwrap(), &values(3.0)));
            if let (Some(p), Some(n)) = (&local, chunks_before) {
                assert_eq!(
                    std::fs::read_dir(p.join("chunks")).unwrap().count(),
                    n,
                    "revert copies no chunk bytes"
                );
            }
            let log = repo.log("main", Some(1)).await.unwrap();
            assert_eq!(log[0].extra["reverts"], bad.as_str());
            assert!(log[0].message.contains("bad kalman update"));
            assert!(repo.verify("main", &|_| {}).await.unwrap().ok);

            // a later commit touched the same chunk: refused, naming it
            let bad2 = write(&repo, "main", &["a", "b"], 50.0, "bad 2")
                .await
                .commit
                .unwrap();
            let later = write(&repo, "main", &["a"], 60.0, "fix a by hand")
                .await
                .commit
                .unwrap();
            let tip = repo.branch_tip("main").await.unwrap();
            match repo
                .revert_by_chunks(&bad2, "main", Strategy::Fail, prov(""))
                .await
            {
                Err(RepoError::Conflicts { conflicts, .. }) => {
                    assert_eq!(conflicts.len(), 1);
                    assert_eq!(conflicts[0].array, "/a");
                    assert_eq!(conflicts[0].coords, Some(vec![0, 0]));
                    assert_eq!(conflicts[0].later_commits, vec![later.clone()]);
                }
                other => panic!("expected conflicts, got {other:?}"),
            }
            assert_eq!(
                repo.branch_tip("main").await.unwrap(),
                tip,
                "refused revert writes nothing"
            );
            // --strategy theirs keeps the later state and reverts the rest
            let (_, kept) = repo
                .revert_by_chunks(&bad2, "main", Strategy::Theirs, prov(""))
                .await
                .unwrap();
            assert_eq!(kept.len(), 1);
            assert!(same(
                &read(&repo, "main", "a").await.unwrap(),
                &values(60.0)
            ));
            assert!(same(&read(&repo, "main", "b").await.unwrap(), &values(3.0)));
            // re-committing the reverted data stores no new bytes
            let again = write(&repo, "main", &["b"], 50.0, "re-apply").await;
            assert_eq!(again.stats.chunks_written, 0);
            assert_eq!(again.stats.chunks_deduplicated, 1);
        })
    });
}

#[test]
fn revert_of_array_creation_and_first_commit() {
    each_backend("revert-create", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let first = repo
                .log("main", None)
                .await
                .unwrap()
                .last()
                .unwrap()
                .id
                .clone();
            let c = write(&repo, "main", &["new"], 1.0, "adds an array")
                .await
                .commit
                .unwrap();
            repo.revert_by_chunks(&c, "main", Strategy::Fail, prov(""))
                .await
                .unwrap();
            assert!(
                read(&repo, "main", "new").await.is_none(),
                "the array is gone again"
            );
            assert!(
                read(&repo, &c, "new").await.is_some(),
                "history still has it"
            );
            assert!(matches!(
                repo.revert_by_chunks(&first, "main", Strategy::Fail, prov(""))
                    .await,
                Err(RepoError::Invalid(_))
            ));
        })
    });
}

#[test]
fn merge_and_cherry_pick_three_way_at_chunk_level() {
    each_backend("merge", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            write(&repo, "main", &["a", "b", "c"], 1.0, "base").await;
            repo.create_branch("kalman", "main").await.unwrap();
            write(&repo, "kalman", &["b"], 2.0, "kalman b").await;
            let pick = write(&repo, "kalman", &["c"], 7.0, "kalman c")
                .await
                .commit
                .unwrap();
            write(&repo, "main", &["a"], 3.0, "main a").await;
            let out = repo
                .merge_by_chunks("kalman", "main", prov(""))
                .await
                .unwrap();
            let m = out.commit.unwrap();
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(3.0)));
            assert!(same(&read(&repo, "main", "b").await.unwrap(), &values(2.0)));
            assert!(same(&read(&repo, "main", "c").await.unwrap(), &values(7.0)));
            let info = &repo.log("main", Some(1)).await.unwrap()[0];
            assert_eq!(info.id, m);
            assert_eq!(info.parents.len(), 2, "merge commit names the merged tip");
            // merging again changes nothing
            assert_eq!(
                repo.merge_by_chunks("kalman", "main", prov(""))
                    .await
                    .unwrap()
                    .commit,
                None
            );

            // both sides change the same chunk differently: conflict, nothing written
            repo.create_branch("x", "main").await.unwrap();
            write(&repo, "x", &["a"], 10.0, "x a").await;
            write(&repo, "main", &["a"], 11.0, "main a again").await;
            let tip = repo.branch_tip("main").await.unwrap();
            match repo.merge_by_chunks("x", "main", prov("")).await {
                Err(RepoError::Conflicts { conflicts, .. }) => {
                    assert_eq!(conflicts[0].array, "/a");
                    assert_eq!(conflicts[0].coords, Some(vec![0, 0]));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(repo.branch_tip("main").await.unwrap(), tip);
            // equal bytes on both sides are not a conflict
            repo.create_branch("y", "main").await.unwrap();
            write(&repo, "y", &["b"], 20.0, "y b").await;
            write(&repo, "main", &["b"], 20.0, "main b same").await;
            assert!(repo.merge_by_chunks("y", "main", prov("")).await.is_ok());

            // cherry-pick one commit onto another branch
            repo.create_branch("rel", "main").await.unwrap();
            write(&repo, "rel", &["c"], 5.0, "rel changes c").await;
            repo.create_branch("z", "main").await.unwrap();
            let cp_src = write(&repo, "z", &["b"], 33.0, "z b").await.commit.unwrap();
            let out = repo
                .cherry_pick_by_chunks(&cp_src, "rel", prov(""))
                .await
                .unwrap();
            assert!(out.commit.is_some());
            assert!(same(&read(&repo, "rel", "b").await.unwrap(), &values(33.0)));
            assert!(same(&read(&repo, "rel", "c").await.unwrap(), &values(5.0)));
            // picking a change whose chunk the target changed differently conflicts
            assert!(matches!(
                repo.cherry_pick_by_chunks(&pick, "rel", prov("")).await,
                Err(RepoError::Conflicts { .. })
            ));
        })
    });
}

#[test]
fn diff_between_any_two_revisions() {
    each_backend("diff", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let c1 = write(&repo, "main", &["a"], 1.0, "a").await.commit.unwrap();
            repo.create_branch("dev", "main").await.unwrap();
            write(&repo, "dev", &["b"], 1.0, "b").await;
            let c3 = write(&repo, "main", &["a"], 2.0, "a2")
                .await
                .commit
                .unwrap();
            let d = repo.diff(&c1, &c3).await.unwrap();
            assert_eq!(d.chunk_counts.get("/a"), Some(&1));
            assert!(d.arrays_added.is_empty());
            // siblings: neither is an ancestor of the other
            let d = repo.diff("main", "dev").await.unwrap();
            assert_eq!(d.arrays_added, vec!["/b".to_string()]);
            assert_eq!(d.chunk_counts.get("/a"), Some(&1));
            assert_eq!(d.chunk_counts.get("/b"), Some(&1));
            let d = repo.diff("dev", "main").await.unwrap();
            assert_eq!(d.arrays_removed, vec!["/b".to_string()]);
            assert!(d.arrays_added.is_empty());
            assert!(repo.diff(&c3, &c3).await.unwrap().is_empty());
        })
    });
}

#[test]
fn attribute_changes_show_in_diff() {
    each_backend("attrs", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let c1 = write(&repo, "main", &["a"], 1.0, "a").await.commit.unwrap();
            let tx = repo.transaction("main").await.unwrap();
            let mut g = zarrs::group::GroupBuilder::new();
            let mut attrs = serde_json::Map::new();
            attrs.insert("title".into(), "Weather".into());
            g.attributes(attrs);
            g.build(tx.store(), "/")
                .unwrap()
                .async_store_metadata()
                .await
                .unwrap();
            let c2 = tx.commit(prov("title")).await.unwrap().commit.unwrap();
            let d = repo.diff(&c1, &c2).await.unwrap();
            assert_eq!(d.groups_changed.len(), 1);
            assert_eq!(d.groups_changed[0].attributes, vec!["title".to_string()]);
            assert!(d.chunks.is_empty());
        })
    });
}

#[test]
fn concurrent_transactions_rebase_when_disjoint_and_conflict_otherwise() {
    each_backend("conc", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            write(&repo, "main", &["a", "b"], 1.0, "base").await;
            // two separately opened repositories, both starting from the same tip
            let r1 = Repo::open(&loc).await.unwrap();
            let r2 = Repo::open(&loc).await.unwrap();
            let t1 = r1.transaction("main").await.unwrap();
            let t2 = r2.transaction("main").await.unwrap();
            ensure_array(&t1, "a")
                .await
                .async_store_chunk(&[0, 0], values(5.0))
                .await
                .unwrap();
            ensure_array(&t2, "b")
                .await
                .async_store_chunk(&[0, 0], values(6.0))
                .await
                .unwrap();
            let o1 = t1.commit(prov("t1")).await.unwrap();
            let o2 = t2.commit(prov("t2")).await.unwrap();
            assert_eq!(o2.rebases, 1);
            let ids: Vec<String> = repo
                .log("main", None)
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id.to_string())
                .collect();
            assert!(
                ids.contains(&o1.commit.unwrap().to_string())
                    && ids.contains(&o2.commit.unwrap().to_string())
            );
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(5.0)));
            assert!(same(&read(&repo, "main", "b").await.unwrap(), &values(6.0)));
            assert!(
                repo.verify("main", &|_| {}).await.unwrap().ok,
                "digest recomputed after rebase"
            );
            // same chunk: the second fails, the branch keeps the first
            let t1 = r1.transaction("main").await.unwrap();
            let t2 = r2.transaction("main").await.unwrap();
            ensure_array(&t1, "a")
                .await
                .async_store_chunk(&[0, 0], values(7.0))
                .await
                .unwrap();
            ensure_array(&t2, "a")
                .await
                .async_store_chunk(&[0, 0], values(8.0))
                .await
                .unwrap();
            let w = t1.commit(prov("t1")).await.unwrap().commit.unwrap();
            assert!(matches!(
                t2.commit(prov("t2")).await,
                Err(RepoError::Conflict { .. })
            ));
            assert_eq!(repo.branch_tip("main").await.unwrap().to_string(), w);
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(7.0)));
        })
    });
}

#[test]
fn gc_deletes_only_unreachable_objects() {
    each_backend("gc", |loc| {
        Box::pin(async move {
            let repo = init(&loc).await;
            let keep = write(&repo, "main", &["a"], 1.0, "keep")
                .await
                .commit
                .unwrap();
            write(&repo, "main", &["a"], 2.0, "drop").await;
            repo.reset("main", &keep, false).await.unwrap();
            let dry = repo
                .gc(chrono::Utc::now() + chrono::Duration::seconds(1), true)
                .await
                .unwrap();
            assert!(dry.chunks_deleted >= 1, "{dry:?}");
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(1.0)));
            let r = repo
                .gc(chrono::Utc::now() + chrono::Duration::seconds(1), false)
                .await
                .unwrap();
            assert!(r.chunks_deleted >= 1, "{r:?}");
            let repo = Repo::open(repo.location()).await.unwrap();
            assert!(same(&read(&repo, "main", "a").await.unwrap(), &values(1.0)));
            assert!(repo.verify("main", &|_| {}).await.unwrap().ok);
        })
    });
}

#[test]
fn verify_names_a_corrupted_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let loc = Location::Local(dir.path().join("tamper"));
    rt().block_on(async {
        let repo = init(&loc).await;
        write(&repo, "main", &["a", "b"], 1.0, "one").await;
        write(&repo, "main", &["b"], 2.0, "two").await;
        assert!(repo.verify("main", &|_| {}).await.unwrap().ok);
        // flip one byte in b's current chunk object
        let id = repo.branch_tip("main").await.unwrap();
        let s = repo.session_at(&id).await.unwrap();
        let payload = s
            .get_chunk_ref(
                &icechunk::format::Path::new("/b").unwrap(),
                &icechunk::format::ChunkIndices(vec![0, 0]),
            )
            .await
            .unwrap();
        let Some(icechunk::format::manifest::ChunkPayload::Ref(r)) = payload else {
            panic!("expected an object")
        };
        let file = dir.path().join("tamper").join(format!("chunks/{}", r.id));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        let repo = Repo::open(&loc).await.unwrap();
        let report = repo.verify("main", &|_| {}).await.unwrap();
        assert!(!report.ok);
        assert_eq!(report.bad_chunks.len(), 1);
        assert_eq!(report.bad_chunks[0].array, "/b");
        assert_eq!(report.bad_chunks[0].coords, vec![0, 0]);
        assert_ne!(
            report.recorded_digest.as_deref(),
            Some(report.computed_digest.as_str())
        );
    });
}

#[test]
fn bad_locations_and_names_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let not_repo = Location::Local(dir.path().join("nothing"));
        let e = Repo::open(&not_repo).await.err().expect("must fail");
        assert!(matches!(e, RepoError::NotARepository(_)));
        assert!(e.to_string().contains("zarr-fuse init"));
        let loc = Location::Local(dir.path().join("r"));
        let repo = init(&loc).await;
        assert!(matches!(
            Repo::init(&loc).await,
            Err(RepoError::AlreadyExists(_))
        ));
        assert!(matches!(
            repo.create_branch("a b", "main").await,
            Err(RepoError::InvalidName { .. })
        ));
        assert!(matches!(
            repo.create_branch("x", "nosuch").await,
            Err(RepoError::RevNotFound { .. })
        ));
        assert!(matches!(
            repo.transaction("nosuch").await,
            Err(RepoError::NoSuchBranch(_))
        ));
    });
}
