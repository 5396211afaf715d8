//! Transcript items laid out as styled lines at a width, cached per item until the item
//! changes: what the view draws, and what the update measures scrolling, search and code-block
//! focus in. Depends on the transcript model only; the model knows nothing of it.

pub mod approval;
pub mod items;
mod outcome;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;

use super::markdown::CodeBlock;
use super::transcript::Item;

/// One item laid out at one width.
#[derive(Debug)]
pub struct Layout {
    pub lines: Vec<Line<'static>>,
    /// The code blocks of an assistant message, with their rows in `lines`.
    pub blocks: Vec<CodeBlock>,
}

#[derive(Debug)]
struct Cached {
    rev: u64,
    width: u16,
    layout: Rc<Layout>,
}

/// The layout of each item, computed once per width and content. Entries are keyed by the
/// item's identity, so a changed item replaces its own entry.
#[derive(Debug, Default)]
pub struct Layouts {
    cache: RefCell<HashMap<u64, Cached>>,
}

impl Layouts {
    /// `item` laid out at `width` (from the cache when it is still good). An `Rc`, so callers
    /// may hold it while laying out other items.
    pub fn of(&self, item: &Item, width: u16) -> Rc<Layout> {
        let (id, rev) = item.version();
        if let Some(c) = self.cache.borrow().get(&id)
            && c.rev == rev
            && c.width == width
        {
            return Rc::clone(&c.layout);
        }
        let (lines, blocks) = items::render_blocks(item, width as usize);
        let layout = Rc::new(Layout { lines, blocks });
        self.cache.borrow_mut().insert(
            id,
            Cached {
                rev,
                width,
                layout: Rc::clone(&layout),
            },
        );
        layout
    }

    /// Rows `item` takes at `width`.
    pub fn height(&self, item: &Item, width: u16) -> usize {
        self.of(item, width).lines.len()
    }
}

/// One item for $PAGER at `width`: every card expanded, styled with ANSI SGR codes (for
/// `less -R`). Not cached: the pager reads each item once.
pub fn item_text(item: &Item, width: usize, out: &mut String) {
    for line in items::render_expanded(item, width) {
        ansi_line(&line, out);
        out.push('\n');
    }
}

/// A line as text with SGR codes; trailing blanks dropped.
fn ansi_line(line: &Line<'_>, out: &mut String) {
    let mut spans: Vec<(String, Style)> = line
        .spans
        .iter()
        .map(|s| (s.content.to_string(), line.style.patch(s.style)))
        .collect();
    while let Some((text, _)) = spans.last_mut() {
        let kept = text.trim_end().len();
        if kept > 0 {
            text.truncate(kept);
            break;
        }
        spans.pop();
    }
    for (text, style) in spans.into_iter().filter(|(t, _)| !t.is_empty()) {
        let sgr = sgr(style);
        if sgr.is_empty() {
            out.push_str(&text);
        } else {
            out.push_str(&format!("\x1b[{sgr}m{text}\x1b[0m"));
        }
    }
}

/// The SGR parameters of a style ("" for none).
fn sgr(style: Style) -> String {
    let mut p: Vec<String> = Vec::new();
    let m = style.add_modifier;
    for (flag, code) in [
        (Modifier::BOLD, "1"),
        (Modifier::DIM, "2"),
        (Modifier::ITALIC, "3"),
        (Modifier::UNDERLINED, "4"),
        (Modifier::REVERSED, "7"),
        (Modifier::CROSSED_OUT, "9"),
    ] {
        if m.contains(flag) {
            p.push(code.into());
        }
    }
    if let Some(c) = style.fg.and_then(|c| colour(c, false)) {
        p.push(c);
    }
    if let Some(c) = style.bg.and_then(|c| colour(c, true)) {
        p.push(c);
    }
    p.join(";")
}

fn colour(c: Color, bg: bool) -> Option<String> {
    let base = if bg { 40 } else { 30 };
    let named = |n: u8, bright: bool| Some(format!("{}", base + n + if bright { 60 } else { 0 }));
    match c {
        Color::Reset => None,
        Color::Black => named(0, false),
        Color::Red => named(1, false),
        Color::Green => named(2, false),
        Color::Yellow => named(3, false),
        Color::Blue => named(4, false),
        Color::Magenta => named(5, false),
        Color::Cyan => named(6, false),
        Color::Gray => named(7, false),
        Color::DarkGray => named(0, true),
        Color::LightRed => named(1, true),
        Color::LightGreen => named(2, true),
        Color::LightYellow => named(3, true),
        Color::LightBlue => named(4, true),
        Color::LightMagenta => named(5, true),
        Color::LightCyan => named(6, true),
        Color::White => named(7, true),
        Color::Indexed(i) => Some(format!("{};5;{i}", base + 8)),
        Color::Rgb(r, g, b) => Some(format!("{};2;{r};{g};{b}", base + 8)),
    }
}

/// Text with its SGR codes taken out (for a pager that shows them raw).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}
