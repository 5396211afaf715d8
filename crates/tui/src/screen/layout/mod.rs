//! Transcript items laid out as styled lines at a width, cached per item until the item
//! changes: what the view draws, and what the update measures scrolling, search and code-block
//! focus in. Depends on the transcript model only; the model knows nothing of it.

pub mod approval;
pub mod items;
mod outcome;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use ratatui::text::Line;

use super::markdown::CodeBlock;
use super::transcript::Item;
use super::wrap::line_text;

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

/// Width of the text the pager gets.
pub const PAGER_WIDTH: usize = 100;

/// One item as plain text lines (for $PAGER; not cached, the pager reads each item once).
pub fn item_text(item: &Item, out: &mut String) {
    for line in items::render(item, PAGER_WIDTH) {
        out.push_str(line_text(&line).trim_end());
        out.push('\n');
    }
}
