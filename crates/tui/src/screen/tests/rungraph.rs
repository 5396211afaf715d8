//! The run panel as a graph (rungraph.rs): each task under the task it depends on, a task
//! with several dependencies once under the deepest with "after" naming the others, a
//! fan-out folded into a tally until unfolded, long chains that never push names off the
//! row; the cost of a run event with a 1,000-item fan-out; snapshots at 80×24 and 160×48.

use std::time::Instant;

use tether_proto::workflow::{AttemptStatus, TaskStatus, WorkflowSpec};

use super::*;
use crate::screen::rungraph::{GraphRow, RowKind, layout};
use crate::screen::runs::{RunView, Runs, Shown};

const RUN: &str = "wrun_graph";

fn created(seq: u64, tasks: serde_json::Value) -> Event {
    let spec: WorkflowSpec =
        serde_json::from_value(json!({"name": "graph", "tasks": tasks})).unwrap();
    super::runs::run_created(seq, RUN, spec)
}

fn running_run(seq: u64) -> Event {
    ev(
        seq,
        EventBody::WorkflowRunStatusRunning {
            workflow_run_id: RUN.into(),
        },
    )
}

fn started(seq: u64, task: &str, thread: &str) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskStarted {
            workflow_run_id: RUN.into(),
            task_id: task.into(),
            attempt: 1,
            thread_id: Some(thread.into()),
            model: Some("anthropic/claude-haiku-4-5".into()),
        },
    )
}

fn ended(seq: u64, task: &str, status: AttemptStatus) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskEnded {
            workflow_run_id: RUN.into(),
            task_id: task.into(),
            attempt: 1,
            status,
            output: None,
            explanation: (status == AttemptStatus::Failed).then(|| "check exited 1".into()),
            usage: Some(ModelUsage {
                cost_usd: Some(0.002),
                ..ModelUsage::default()
            }),
        },
    )
}

fn fanned(seq: u64, task: &str, n: usize) -> Event {
    ev(
        seq,
        EventBody::SpanWorkflowTaskFannedOut {
            workflow_run_id: RUN.into(),
            task_id: task.into(),
            items: (0..n).map(|i| json!(format!("mod{i}"))).collect(),
        },
    )
}

fn task(id: &str, deps: &[&str]) -> serde_json::Value {
    json!({"id": id, "prompt": "do it", "depends_on": deps})
}

fn fold(events: &[Event]) -> RunView {
    let mut runs = Runs::default();
    for e in events {
        runs.apply(e);
    }
    runs.runs.remove(0)
}

/// The rows as text: the tree's guides (wide enough for all of them), the task, "after".
fn outline(r: &RunView, rows: &[GraphRow]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let t = &r.tasks[row.task];
            let mut line = format!("{}{}", row.prefix(200), t.id);
            if !row.after.is_empty() {
                line.push_str(&format!(" after {}", row.after.join(", ")));
            }
            line
        })
        .collect()
}

fn diamond() -> Vec<Event> {
    vec![
        created(
            1,
            json!([
                task("a", &[]),
                task("b", &["a"]),
                task("c", &["a"]),
                task("d", &["b", "c"])
            ]),
        ),
        running_run(2),
        started(3, "a", "sthr_a"),
        ended(4, "a", AttemptStatus::Succeeded),
        started(5, "b", "sthr_b"),
        started(6, "c", "sthr_c"),
        ended(7, "c", AttemptStatus::Failed),
    ]
}

#[test]
fn the_diamond_reads_top_down_with_the_join_under_its_last_branch() {
    let r = fold(&diamond());
    let rows = layout(&r, |_| false);
    assert_eq!(outline(&r, &rows), ["a", "├─ b", "└─ c", "   └─ d after b"]);
    assert_eq!(
        rows.iter().map(|r| r.depth).collect::<Vec<_>>(),
        [0, 1, 1, 2]
    );
}

#[test]
fn a_task_with_three_dependencies_sits_once_under_the_deepest() {
    // z is deeper than x and y (it waits for y), so w hangs under z.
    let r = fold(&[created(
        1,
        json!([
            task("x", &[]),
            task("y", &[]),
            task("z", &["y"]),
            task("w", &["z", "x", "y"]),
            task("v", &["w"])
        ]),
    )]);
    let rows = layout(&r, |_| false);
    assert_eq!(
        outline(&r, &rows),
        ["x", "y", "└─ z", "   └─ w after x, y", "      └─ v"]
    );
    // Every task exactly once.
    assert_eq!(rows.len(), 5);
}

#[test]
fn a_long_chain_indents_each_link_and_cuts_the_guides_not_the_names() {
    let tasks: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            let dep = format!("t{}", i.max(1) - 1);
            let deps: Vec<&str> = if i == 0 { vec![] } else { vec![dep.as_str()] };
            task(&format!("t{i}"), &deps)
        })
        .collect();
    let r = fold(&[created(1, json!(tasks))]);
    let rows = layout(&r, |_| false);
    assert_eq!(rows.len(), 40);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(r.tasks[row.task].id, format!("t{i}"));
        assert_eq!(row.depth, i);
    }
    assert_eq!(rows[2].prefix(200), "   └─ ");
    // Deep rows keep their deepest guides after a `…`, within the room given.
    let deep = rows[39].prefix(20);
    assert!(deep.starts_with('…') && deep.ends_with("└─ "), "{deep:?}");
    assert!(deep.chars().count() <= 20, "{deep:?}");

    // On an 80-column screen the last link's name is still on its row.
    let mut s = state(80, 24);
    feed(&mut s, &[created(1, json!(tasks))]);
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    key(&mut s, KeyCode::End);
    let f = frame(&s);
    let line = f.lines().find(|l| l.contains('▶')).unwrap();
    assert!(line.contains("t39"), "{line}");
}

/// collect passed; per-module fanned out to 50: 38 passed, 2 running, 10 pending; report
/// waits for both.
fn fan_out() -> Vec<Event> {
    let mut evs = vec![
        created(
            1,
            json!([
                task("collect", &[]),
                {"id": "per-module", "depends_on": ["collect"], "prompt": "review {{item}}",
                 "for_each": "{{collect.output.modules}}", "agent": "reviewer"},
                task("report", &["per-module", "collect"])
            ]),
        ),
        running_run(2),
        started(3, "collect", "sthr_collect"),
        ended(4, "collect", AttemptStatus::Succeeded),
        fanned(5, "per-module", 50),
    ];
    let mut seq = 6;
    for i in 0..40 {
        let id = format!("per-module[{i}]");
        evs.push(started(seq, &id, &format!("sthr_m{i}")));
        seq += 1;
        if i < 38 {
            evs.push(ended(seq, &id, AttemptStatus::Succeeded));
            seq += 1;
        }
    }
    evs
}

#[test]
fn a_fan_out_is_one_row_with_its_tally_until_unfolded() {
    let r = fold(&fan_out());
    let parent = r.task("per-module").unwrap();
    assert_eq!(parent.tally.get(Shown::Passed), 38);
    assert_eq!(parent.tally.get(Shown::Running), 2);
    assert_eq!(parent.tally.get(Shown::Pending), 10);
    assert_eq!(parent.status, TaskStatus::Running);
    assert_eq!(
        outline(&r, &layout(&r, |_| false)),
        ["collect", "└─ per-module", "   └─ report after collect"]
    );
    let rows = layout(&r, |t| t == "per-module");
    assert_eq!(rows.len(), 53);
    let text = outline(&r, &rows);
    assert_eq!(text[2], "   ├─ per-module[0]");
    // The items come before the dependents, so the last item is not the last branch.
    assert_eq!(text[51], "   ├─ per-module[49]");
    assert_eq!(text[52], "   └─ report after collect");
    assert!(rows[2..52].iter().all(|r| r.kind == RowKind::Item));

    let mut s = state(80, 24);
    feed(&mut s, &fan_out());
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    key(&mut s, KeyCode::Down);
    let f = frame(&s);
    assert!(f.contains("per-module ×50▸"), "{f}");
    assert!(f.contains("38 passed, 2 running, 10 pending"), "{f}");
    // enter unfolds, ← folds back (from an item: onto its task).
    key(&mut s, KeyCode::Enter);
    assert_eq!(s.run_rows(0).len(), 53);
    key(&mut s, KeyCode::Down);
    key(&mut s, KeyCode::Down);
    assert!(frame(&s).contains("[1] mod1"));
    key(&mut s, KeyCode::Left);
    assert_eq!(s.run_rows(0).len(), 3);
    assert_eq!(
        s.overlay,
        Overlay::Runs {
            run: 0,
            selected: 1
        }
    );
    key(&mut s, KeyCode::Right);
    assert_eq!(s.run_rows(0).len(), 53);
    // A failed item turns the tally red and the run's end folds the rest in.
    feed(
        &mut s,
        &[
            ended(200, "per-module[38]", AttemptStatus::Failed),
            ev(
                201,
                EventBody::WorkflowRunStatusEnded {
                    workflow_run_id: RUN.into(),
                    result: tether_proto::workflow::RunResult::Stopped {},
                    notice: None,
                },
            ),
        ],
    );
    let p = s.runs.runs[0].task("per-module").unwrap();
    assert_eq!(p.tally.get(Shown::Failed), 1);
    assert_eq!(p.tally.get(Shown::Skipped), 11);
    assert_eq!(p.tally.get(Shown::Passed), 38);
}

#[test]
fn narrow_screens_drop_columns_and_never_wrap_a_row() {
    for w in [40u16, 60, 80, 120] {
        let mut s = state(w, 24);
        feed(&mut s, &fan_out());
        key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
        let f = frame(&s);
        // Each task on exactly one row, its name on it.
        for name in ["per-module", "report"] {
            assert_eq!(
                f.lines().filter(|l| l.contains(name)).count(),
                1,
                "{w} columns:\n{f}"
            );
        }
        assert_eq!(f.contains("AGENT"), w >= 80, "{w} columns:\n{f}");
    }
}

#[test]
fn a_run_event_with_a_thousand_items_folds_in_without_relaying_them_out() {
    const N: usize = 1000;
    let mut s = state(120, 40);
    feed(
        &mut s,
        &[
            created(
                1,
                json!([
                    task("list", &[]),
                    {"id": "each", "depends_on": ["list"], "prompt": "{{item}}",
                     "for_each": "{{list.output.items}}"}
                ]),
            ),
            running_run(2),
            started(3, "list", "sthr_list"),
            ended(4, "list", AttemptStatus::Succeeded),
            fanned(5, "each", N),
        ],
    );
    key_m(&mut s, KeyCode::Char('g'), KeyModifiers::CONTROL);
    let events: Vec<Event> = (0..N)
        .flat_map(|i| {
            let id = format!("each[{i}]");
            let seq = 10 + 2 * i as u64;
            [
                started(seq, &id, &format!("sthr_{i}")),
                ended(seq + 1, &id, AttemptStatus::Succeeded),
            ]
        })
        .collect();
    // Fold each event and lay the panel out again, as a frame after it would; the last
    // 200 events go through the whole update and a 120×40 frame.
    let (folded, drawn) = events.split_at(events.len() - 200);
    let t0 = Instant::now();
    let mut rows = 0;
    for e in folded {
        s.runs.apply(e);
        rows = s.run_rows(0).len();
    }
    let fold_and_layout = t0.elapsed();
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    let (mut updating, mut drawing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for e in drawn {
        let t = Instant::now();
        update(&mut s, Msg::Net(NetMsg::Event(Box::new(e.clone()))));
        updating += t.elapsed();
        let t = Instant::now();
        term.draw(|f| view::draw_session(f, &s)).unwrap();
        drawing += t.elapsed();
    }
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / drawn.len() as f64;
    println!(
        "run event with a {N}-item fan-out: fold + layout {:.1} µs/event ({} events); \
         whole update {:.0} µs/event, 120×40 frame {:.0} µs/frame ({} events)",
        fold_and_layout.as_secs_f64() * 1e6 / folded.len() as f64,
        folded.len(),
        per(updating),
        per(drawing),
        drawn.len()
    );
    assert_eq!(rows, 2, "the folded fan-out is one row");
    let each = s.runs.runs[0].task("each").unwrap();
    assert_eq!(each.tally.get(Shown::Passed), N);
    assert_eq!(each.status, TaskStatus::Succeeded);
    assert!(frame(&s).contains(&format!("{N} passed")));
}

// ---- snapshots ----

#[test]
fn snapshot_the_diamond() {
    snap_both("rungraph_diamond", |s| {
        feed(s, &diamond());
        key_m(s, KeyCode::Char('g'), KeyModifiers::CONTROL);
        key(s, KeyCode::End);
    });
}

#[test]
fn snapshot_a_fan_out_folded_and_unfolded() {
    snap_both("rungraph_fanout", |s| {
        feed(s, &fan_out());
        key_m(s, KeyCode::Char('g'), KeyModifiers::CONTROL);
        key(s, KeyCode::Down);
    });
    snap_both("rungraph_fanout_unfolded", |s| {
        feed(s, &fan_out());
        key_m(s, KeyCode::Char('g'), KeyModifiers::CONTROL);
        key(s, KeyCode::Down);
        key(s, KeyCode::Right);
        key(s, KeyCode::Down);
    });
}
