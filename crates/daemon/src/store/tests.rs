//! The store's tests: gapless appends, group commit, reads across the index and its tail,
//! names, search and forks.

use tether_proto::{Event, EventBody};

use crate::store::Store;
use crate::store::error::StoreError;
use crate::store::rows::SessionRow;

pub fn row(id: &str, name: Option<&str>) -> SessionRow {
    SessionRow {
        name: name.map(Into::into),
        ..SessionRow::new(
            id.into(),
            "anthropic/claude-sonnet-4-6".into(),
            "/tmp/w".into(),
            50,
        )
    }
}

fn seqs(evs: &[Event]) -> Vec<u64> {
    evs.iter().map(|e| e.seq).collect()
}

/// Reads must see the same log whether events sit in the index or in the unindexed tail,
/// across catch-ups, reopen and delete.
#[tokio::test]
async fn reads_are_identical_across_the_index_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let n_per: u64 = 3_500;
    {
        let store = Store::open(&path).unwrap();
        for s in ["sesn_a", "sesn_b", "sesn_c"] {
            store.create_session(row(s, None), None).await.unwrap();
        }
        // Interleave sessions and batch sizes; total 10,500 events: two catch-ups and a tail.
        for round in 0..(n_per / 50) {
            for s in ["sesn_a", "sesn_b", "sesn_c"] {
                let k = if round % 2 == 0 { 1 } else { 99 };
                store
                    .append(s, vec![EventBody::user_text("x"); k], None)
                    .await
                    .unwrap();
            }
        }
        let total = (n_per / 50).div_ceil(2) + (n_per / 50 / 2) * 99;
        for s in ["sesn_a", "sesn_b", "sesn_c"] {
            let all = store
                .read_events(s, 0, None, u32::MAX, false)
                .await
                .unwrap();
            assert_eq!(seqs(&all), (1..=total).collect::<Vec<_>>(), "{s}");
            assert!(all.iter().all(|e| e.session_id == s));
            let desc = store
                .read_events(s, 100, Some(110), 100, true)
                .await
                .unwrap();
            assert_eq!(seqs(&desc), (101..110).rev().collect::<Vec<_>>());
            // A page that straddles index and tail, both directions.
            let tail_start = total - 5;
            let page = store
                .read_events(s, tail_start - 10, None, 20, false)
                .await
                .unwrap();
            assert_eq!(seqs(&page), ((tail_start - 9)..=total).collect::<Vec<_>>());
            let page = store.read_events(s, 0, None, 20, true).await.unwrap();
            assert_eq!(
                seqs(&page),
                ((total - 19)..=total).rev().collect::<Vec<_>>()
            );
            assert_eq!(store.get_session(s).await.unwrap().unwrap().last_seq, total);
        }
        let listed = store.list_sessions(false).await.unwrap();
        assert!(listed.iter().all(|r| r.last_seq == total));
        store.delete_session("sesn_b").await.unwrap();
        assert!(
            store
                .read_events("sesn_b", 0, None, 10, false)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // Reopen: the tail is folded in at start; seqs continue where they were.
    let store = Store::open(&path).unwrap();
    let before = store
        .read_events("sesn_a", 0, None, u32::MAX, false)
        .await
        .unwrap();
    let next = store
        .append("sesn_a", vec![EventBody::user_text("y")], None)
        .await
        .unwrap();
    assert_eq!(next[0].seq, before.len() as u64 + 1);
    let after = store
        .read_events("sesn_a", 0, None, u32::MAX, false)
        .await
        .unwrap();
    assert_eq!(&after[..before.len()], &before[..]);
    assert!(
        store
            .read_events("sesn_b", 0, None, 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .read_events("sesn_c", 0, None, u32::MAX, false)
            .await
            .unwrap()
            .len(),
        before.len()
    );
}

#[tokio::test]
async fn appends_are_gapless_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let store = Store::open(&path).unwrap();
        store
            .create_session(row("sesn_a", Some("a")), None)
            .await
            .unwrap();
        let evs = store
            .append(
                "sesn_a",
                vec![EventBody::user_text("1"), EventBody::user_text("2")],
                None,
            )
            .await
            .unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        let evs = store
            .append("sesn_a", vec![EventBody::user_text("3")], None)
            .await
            .unwrap();
        assert_eq!(evs[0].seq, 3);
    }
    let store = Store::open(&path).unwrap();
    let evs = store
        .read_events("sesn_a", 0, None, 100, false)
        .await
        .unwrap();
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    let evs = store
        .append("sesn_a", vec![EventBody::user_text("4")], None)
        .await
        .unwrap();
    assert_eq!(evs[0].seq, 4);
    let desc = store
        .read_events("sesn_a", 0, Some(4), 2, true)
        .await
        .unwrap();
    assert_eq!(desc.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 2]);
}

#[tokio::test]
async fn concurrent_appenders_get_distinct_contiguous_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_a", None), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                s.append("sesn_a", vec![EventBody::user_text(i.to_string())], None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let evs = store
        .read_events("sesn_a", 0, None, 1000, false)
        .await
        .unwrap();
    assert_eq!(evs.len(), 400);
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
    }
}

#[tokio::test]
async fn unknown_session_fails_without_poisoning_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_a", None), None)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        store.append("sesn_nope", vec![EventBody::user_text("x")], None),
        store.append("sesn_a", vec![EventBody::user_text("y")], None)
    );
    assert!(matches!(a, Err(StoreError::NotFound(_))));
    assert_eq!(b.unwrap()[0].seq, 1);
}

#[tokio::test]
async fn duplicate_name_is_a_conflict_and_resolve_finds_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_01abc", Some("fix")), None)
        .await
        .unwrap();
    store
        .create_session(row("sesn_01abd", None), None)
        .await
        .unwrap();
    let e = store
        .create_session(row("sesn_02", Some("fix")), None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e}");
    assert_eq!(store.resolve("fix").await.unwrap(), vec!["sesn_01abc"]);
    assert_eq!(store.resolve("01abd").await.unwrap(), vec!["sesn_01abd"]);
    assert_eq!(store.resolve("sesn_01ab").await.unwrap().len(), 2);
    assert!(store.resolve("zzz").await.unwrap().is_empty());
    assert!(store.resolve("%").await.unwrap().is_empty());
}

#[tokio::test]
async fn rename_moves_the_name_and_a_taken_name_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_a", Some("old")), None)
        .await
        .unwrap();
    store
        .create_session(row("sesn_b", Some("taken")), None)
        .await
        .unwrap();
    store
        .set_session_name("sesn_a", "new".into())
        .await
        .unwrap();
    assert_eq!(store.resolve("new").await.unwrap(), vec!["sesn_a"]);
    assert!(store.resolve("old").await.unwrap().is_empty());
    let e = store
        .set_session_name("sesn_a", "taken".into())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Conflict(m) if m.contains("`taken`")),
        "{e}"
    );
    let e = store
        .set_session_name("sesn_zz", "x".into())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
}

#[tokio::test]
async fn search_walks_the_whole_log_backwards_in_text_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_s", None), None)
        .await
        .unwrap();
    // 2,500 events (more than one chunk); the needle early and late.
    let mut bodies: Vec<EventBody> = (0..2500)
        .map(|i| EventBody::user_text(format!("filler {i}")))
        .collect();
    bodies[10] = EventBody::user_text("the Needle, early");
    bodies[2400] = EventBody::AgentMessage {
        content: vec![tether_proto::ContentBlock::text("a NEEDLE late")],
    };
    for chunk in bodies.chunks(500) {
        store.append("sesn_s", chunk.to_vec(), None).await.unwrap();
    }
    let seqs = |v: Vec<Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    let found = store
        .search_events("sesn_s", "needle", None, 5)
        .await
        .unwrap();
    assert_eq!(seqs(found), vec![2401, 11]);
    let older = store
        .search_events("sesn_s", "needle", Some(2401), 1)
        .await
        .unwrap();
    assert_eq!(seqs(older), vec![11]);
    // Only the text a person reads: event types and ids are not matched.
    assert!(
        store
            .search_events("sesn_s", "user.message", None, 1)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn fork_copies_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_a", None), None)
        .await
        .unwrap();
    store
        .append(
            "sesn_a",
            vec![EventBody::user_text("1"), EventBody::user_text("2")],
            None,
        )
        .await
        .unwrap();
    store
        .create_session(row("sesn_b", None), Some("sesn_a".into()))
        .await
        .unwrap();
    let evs = store
        .read_events("sesn_b", 0, None, 10, false)
        .await
        .unwrap();
    assert_eq!(evs.len(), 2);
    assert!(evs.iter().all(|e| e.session_id == "sesn_b"));
    let next = store
        .append("sesn_b", vec![EventBody::user_text("3")], None)
        .await
        .unwrap();
    assert_eq!(next[0].seq, 3);
    assert_eq!(
        store.get_session("sesn_b").await.unwrap().unwrap().last_seq,
        3
    );
}

/// A thread's row and its primary's events commit together; cross-posted copies keep the
/// original's id and name their thread; threads stay out of session listings and lookups.
#[tokio::test]
async fn multi_stream_appends_create_threads_and_keep_cross_post_ids() {
    use crate::store::{Draft, StreamAppend};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_p", Some("p")), None)
        .await
        .unwrap();
    let thread = SessionRow {
        parent_id: Some("sesn_p".into()),
        thread_agent: Some(tether_proto::thread::ThreadAgent::Advisor { model: "m".into() }),
        ..row("sthr_c", None)
    };
    let created = Draft {
        id: None,
        session_thread_id: Some("sthr_c".into()),
        body: EventBody::SessionThreadCreated {
            agent_name: "a".into(),
            workflow_run_id: None,
            model: None,
        },
    };
    let out = store
        .append_multi(
            Some(thread),
            vec![StreamAppend {
                session_id: "sesn_p".into(),
                drafts: vec![created],
                summary: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(out[0][0].seq, 1);
    let shared = Draft {
        id: Some("sevt_same".into()),
        session_thread_id: None,
        body: EventBody::user_text("hi"),
    };
    let copy = Draft {
        session_thread_id: Some("sthr_c".into()),
        ..shared.clone()
    };
    let out = store
        .append_multi(
            None,
            vec![
                StreamAppend {
                    session_id: "sthr_c".into(),
                    drafts: vec![shared],
                    summary: None,
                },
                StreamAppend {
                    session_id: "sesn_p".into(),
                    drafts: vec![copy],
                    summary: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (out[0][0].seq, out[1][0].seq),
        (1, 2),
        "each stream its own seq"
    );
    assert_eq!(out[0][0].id, out[1][0].id);
    let read = store
        .read_events("sesn_p", 0, None, 10, false)
        .await
        .unwrap();
    assert_eq!(read[1].session_thread_id.as_deref(), Some("sthr_c"));
    assert_eq!(read[1].id, "sevt_same");
    // Threads are not sessions in listings and lookups, but are listed under their session.
    let ids: Vec<String> = store
        .list_sessions(true)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["sesn_p"]);
    assert!(store.resolve("sthr_c").await.unwrap().is_empty());
    let threads = store.list_threads("sesn_p").await.unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].parent_id.as_deref(), Some("sesn_p"));
    assert!(threads[0].thread_agent.is_some());
    // Its event is still in the unindexed tail, and the listing counts it.
    assert_eq!(
        threads[0].last_seq,
        store.get_session("sthr_c").await.unwrap().unwrap().last_seq
    );
    assert!(threads[0].last_seq >= 1, "{:?}", threads[0].last_seq);
    // A failing part (no such stream) writes none of the batch.
    let err = store
        .append_multi(
            None,
            vec![
                StreamAppend {
                    session_id: "sesn_p".into(),
                    drafts: vec![Draft::new(EventBody::user_text("lost"))],
                    summary: None,
                },
                StreamAppend {
                    session_id: "sthr_missing".into(),
                    drafts: vec![Draft::new(EventBody::user_text("x"))],
                    summary: None,
                },
            ],
        )
        .await;
    assert!(err.is_err());
    let read = store
        .read_events("sesn_p", 0, None, 10, false)
        .await
        .unwrap();
    assert_eq!(read.len(), 2, "nothing of a failed multi-append is kept");
}

/// The spawn-time lookups: the advisor and archived threads don't count against the limit,
/// and a name finds the newest live thread of that agent.
#[tokio::test]
async fn live_child_threads_leave_out_the_advisor_and_archived_ones() {
    use tether_proto::agent::AgentModel;
    use tether_proto::thread::ThreadAgent;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    store
        .create_session(row("sesn_p", Some("p")), None)
        .await
        .unwrap();
    let inline = |name: &str| ThreadAgent::Inline {
        name: name.into(),
        description: None,
        system: None,
        model: AgentModel {
            id: "m".into(),
            effort: None,
            speed: None,
        },
        tools: vec![],
        mcp_servers: vec![],
        skills: vec![],
    };
    for (id, agent) in [
        ("sthr_1", inline("rev")),
        ("sthr_2", ThreadAgent::Advisor { model: "m".into() }),
        ("sthr_3", inline("rev")),
        ("sthr_4", inline("docs")),
    ] {
        let child = SessionRow {
            parent_id: Some("sesn_p".into()),
            thread_agent: Some(agent),
            ..row(id, None)
        };
        store.create_session(child, None).await.unwrap();
    }
    assert_eq!(store.live_child_threads("sesn_p").await.unwrap(), 3);
    assert_eq!(
        store.live_thread_named("sesn_p", "rev").await.unwrap(),
        Some("sthr_3".into())
    );
    store
        .set_archived("sthr_3", Some("2026-12-07T00:00:00Z".into()))
        .await
        .unwrap();
    assert_eq!(store.live_child_threads("sesn_p").await.unwrap(), 2);
    assert_eq!(
        store.live_thread_named("sesn_p", "rev").await.unwrap(),
        Some("sthr_1".into())
    );
    assert_eq!(
        store.live_thread_named("sesn_p", "advisor").await.unwrap(),
        None
    );
    assert_eq!(store.live_child_threads("sesn_other").await.unwrap(), 0);
}
