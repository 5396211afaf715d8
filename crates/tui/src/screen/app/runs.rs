//! Workflow runs in the session view: the run panel (ctrl-g: every task of a run with its live
//! status; enter shows a task's thread) and the checkpoint prompt (a run waiting for a person:
//! `y` approves, `n` asks an optional note then denies). The prompt opens by itself when a
//! checkpoint starts waiting and closes when the run goes on, whoever answered.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tether_proto::workflow::RunStatus;

use super::{Cmd, Effect, Overlay, State};

/// A checkpoint: (run id, task id).
pub type CheckpointKey = (String, String);

/// Checkpoints the user put away (esc) or answered here and whose answer is on its way: the
/// prompt doesn't open for them by itself again.
#[derive(Debug, Default)]
pub struct Checkpoints {
    pub put_away: BTreeSet<CheckpointKey>,
    answered: BTreeSet<CheckpointKey>,
}

impl State {
    /// Opens the run panel on the newest run still going (else the newest).
    pub(super) fn open_runs(&mut self) -> Vec<Effect> {
        if !self.runs.any() {
            self.notice = Some(
                "no workflow runs in this session: `tether workflows run FILE --session ...` starts one"
                    .into(),
            );
            return Vec::new();
        }
        let run = self
            .runs
            .runs
            .iter()
            .rposition(|r| r.status != RunStatus::Ended)
            .unwrap_or(self.runs.runs.len() - 1);
        self.overlay = Overlay::Runs { run, selected: 0 };
        Vec::new()
    }

    /// `tether workflows watch RUN`: its panel, once the run is known (on the checkpoint
    /// waiting, if one is).
    pub(super) fn open_watched_run(&mut self) {
        let Some(id) = self.watch_run.as_deref() else {
            return;
        };
        if self.overlay != Overlay::None {
            return;
        }
        let Some(run) = self.runs.runs.iter().position(|r| r.id == id) else {
            return;
        };
        let selected = self.runs.runs[run]
            .tasks
            .iter()
            .position(|t| t.waits_for_answer())
            .unwrap_or(0);
        self.watch_run = None;
        self.overlay = Overlay::Runs { run, selected };
    }

    /// The prompt for the next checkpoint waiting, when nothing else is open and the user
    /// isn't typing; closes a prompt whose checkpoint was answered (here or elsewhere).
    pub(super) fn sync_checkpoint(&mut self) {
        let waiting = self.runs.waiting();
        let still = |k: &CheckpointKey| waiting.contains(k);
        self.checkpoints.put_away.retain(still);
        self.checkpoints.answered.retain(still);
        if let Overlay::Checkpoint { run, task, .. } = &self.overlay
            && !self.runs.waits(run, task)
        {
            self.notice = Some(format!("checkpoint `{task}` was answered elsewhere"));
            self.overlay = Overlay::None;
        }
        if self.read_only
            || self.overlay != Overlay::None
            || self.search.editing
            || !self.composer_empty()
        {
            return;
        }
        if let Some((run, task)) = waiting.into_iter().find(|k| {
            !self.checkpoints.put_away.contains(k) && !self.checkpoints.answered.contains(k)
        }) {
            self.overlay = Overlay::Checkpoint {
                run,
                task,
                draft: None,
            };
        }
    }

    /// Checkpoints waiting whose prompt is not shown (for the footer's hint).
    pub fn checkpoints_waiting(&self) -> usize {
        let shown = match &self.overlay {
            Overlay::Checkpoint { run, task, .. } => Some((run.clone(), task.clone())),
            _ => None,
        };
        self.runs
            .waiting()
            .into_iter()
            .filter(|k| Some(k) != shown.as_ref() && !self.checkpoints.answered.contains(k))
            .count()
    }

    /// ctrl-a with no tool call put away: the first checkpoint waiting, prompted again.
    pub(super) fn reopen_checkpoint(&mut self) -> Option<Vec<Effect>> {
        if self.read_only || self.overlay != Overlay::None {
            return None;
        }
        let (run, task) = self.runs.waiting().into_iter().next()?;
        let key = (run.clone(), task.clone());
        self.checkpoints.put_away.remove(&key);
        self.checkpoints.answered.remove(&key);
        self.overlay = Overlay::Checkpoint {
            run,
            task,
            draft: None,
        };
        Some(Vec::new())
    }

    fn answer(&mut self, run: String, task: String, approve: bool, note: String) -> Vec<Effect> {
        self.checkpoints
            .answered
            .insert((run.clone(), task.clone()));
        if matches!(&self.overlay, Overlay::Checkpoint { run: r, task: t, .. } if *r == run && *t == task)
        {
            self.overlay = Overlay::None;
        }
        // A refusal (say another client answered first) replaces it with the daemon's word.
        self.notice = Some(format!(
            "{} checkpoint `{task}`",
            if approve { "approved" } else { "denied" }
        ));
        let note = note.trim().to_string();
        vec![Effect::Net(Cmd::AnswerCheckpoint {
            run,
            task,
            approve,
            note: (!note.is_empty()).then_some(note),
        })]
    }
}

/// Keys of the checkpoint prompt.
pub(super) fn checkpoint_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Checkpoint { run, task, draft } = &mut s.overlay else {
        return Vec::new();
    };
    let (run, task) = (run.clone(), task.clone());
    match draft {
        // Typing the denial's note: enter denies, esc goes back to the choice.
        Some(note) => match k.code {
            KeyCode::Enter => {
                let note = std::mem::take(note);
                return s.answer(run, task, false, note);
            }
            KeyCode::Esc => *draft = None,
            KeyCode::Backspace => {
                note.pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => note.push(c),
            _ => {}
        },
        None => match (k.code, k.modifiers) {
            (KeyCode::Char('y') | KeyCode::Char('a'), KeyModifiers::NONE) => {
                return s.answer(run, task, true, String::new());
            }
            (KeyCode::Char('n') | KeyCode::Char('d'), KeyModifiers::NONE) => {
                *draft = Some(String::new())
            }
            (KeyCode::Char('g'), KeyModifiers::CONTROL) => {
                let at = s.runs.runs.iter().position(|r| r.id == run).unwrap_or(0);
                let selected = s.runs.runs[at]
                    .tasks
                    .iter()
                    .position(|t| t.id == task)
                    .unwrap_or(0);
                s.checkpoints.put_away.insert((run, task));
                s.overlay = Overlay::Runs { run: at, selected };
            }
            (KeyCode::Esc, _) => {
                s.checkpoints.put_away.insert((run, task));
                s.overlay = Overlay::None;
                s.notice = Some(
                    "ctrl-a reopens the checkpoint (or `tether workflows approve RUN TASK`)".into(),
                );
            }
            _ => {}
        },
    }
    Vec::new()
}

/// Keys of the run panel.
pub(super) fn panel_key(s: &mut State, k: KeyEvent) -> Vec<Effect> {
    let Overlay::Runs { run, selected } = &mut s.overlay else {
        return Vec::new();
    };
    let runs = s.runs.runs.len().max(1);
    *run = (*run).min(runs - 1);
    let tasks = s.runs.runs.get(*run).map_or(0, |r| r.tasks.len());
    let page = usize::from(s.height.saturating_sub(10)).max(1);
    match (k.code, k.modifiers) {
        (KeyCode::Up | KeyCode::Char('k'), _) => *selected = selected.saturating_sub(1),
        (KeyCode::Down | KeyCode::Char('j'), _) => {
            *selected = (*selected + 1).min(tasks.saturating_sub(1))
        }
        (KeyCode::PageUp, _) => *selected = selected.saturating_sub(page),
        (KeyCode::PageDown, _) => *selected = (*selected + page).min(tasks.saturating_sub(1)),
        (KeyCode::Home, _) => *selected = 0,
        (KeyCode::End, _) => *selected = tasks.saturating_sub(1),
        (KeyCode::Tab | KeyCode::Right | KeyCode::Char('l'), _) => {
            *run = (*run + 1) % runs;
            *selected = 0;
        }
        (KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h'), _) => {
            *run = (*run + runs - 1) % runs;
            *selected = 0;
        }
        (KeyCode::Esc | KeyCode::Char('q'), _) | (KeyCode::Char('g'), KeyModifiers::CONTROL) => {
            s.overlay = Overlay::None;
        }
        (KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('n'), _) => {
            let (run, selected) = (*run, *selected);
            return on_task(s, run, selected, k.code);
        }
        _ => {}
    }
    Vec::new()
}

/// Enter (or y/n) on a task of the panel: answer a waiting checkpoint, else show the task's
/// thread.
fn on_task(s: &mut State, run: usize, selected: usize, code: KeyCode) -> Vec<Effect> {
    let Some(r) = s.runs.runs.get(run) else {
        return Vec::new();
    };
    let Some(t) = r.tasks.get(selected) else {
        return Vec::new();
    };
    let (run_id, task_id) = (r.id.clone(), t.id.clone());
    if t.waits_for_answer() {
        if s.read_only {
            s.notice = Some("read-only: this client cannot answer checkpoints".into());
            return Vec::new();
        }
        return match code {
            KeyCode::Char('y') => s.answer(run_id, task_id, true, String::new()),
            _ => {
                s.overlay = Overlay::Checkpoint {
                    run: run_id,
                    task: task_id,
                    draft: (code == KeyCode::Char('n')).then(String::new),
                };
                Vec::new()
            }
        };
    }
    if code != KeyCode::Enter {
        return Vec::new();
    }
    match t.thread.clone() {
        Some(thread) => {
            s.overlay = Overlay::None;
            s.view_thread(Some(thread))
        }
        None => {
            s.notice = Some(match t.items {
                // A fan-out task runs as its items, each on a thread of its own.
                Some(n) => format!("task `{task_id}` runs as its {n} items: choose one"),
                None => format!("task `{task_id}` has no thread yet: it has not started"),
            });
            Vec::new()
        }
    }
}
