//! Assistant markdown → wrapped, styled lines. Headings, lists, emphasis, links, inline code,
//! quotes and fenced code blocks (with a gutter, so the code stays visible without colour, and
//! syntax highlighting from highlight.rs).

use pulldown_cmark::{CodeBlockKind, Event as Md, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;

use super::highlight;
use super::wrap::{Seg, wrap};

/// A fenced (or indented) code block of a message, and the rows it was drawn on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlock {
    pub lang: String,
    pub code: String,
    pub rows: std::ops::Range<usize>,
}

/// Renders `text` at `width` cells; also returns the code blocks it drew.
pub fn render_blocks(text: &str, width: usize) -> (Vec<Line<'static>>, Vec<CodeBlock>) {
    let mut r = Renderer {
        width,
        out: Vec::new(),
        cur: Vec::new(),
        styles: vec![Style::default()],
        lists: Vec::new(),
        quote: 0,
        code: None,
        item_prefix: None,
        blocks: Vec::new(),
        table: None,
    };
    let opts = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES;
    for ev in Parser::new_ext(text, opts) {
        r.event(ev);
    }
    r.flush();
    while r.out.last().is_some_and(|l| l.width() == 0) {
        r.out.pop();
    }
    (r.out, r.blocks)
}

struct Renderer {
    width: usize,
    out: Vec<Line<'static>>,
    cur: Vec<Seg>,
    styles: Vec<Style>,
    /// Next number for ordered lists, None for bullets.
    lists: Vec<Option<u64>>,
    quote: usize,
    /// Language and collected text of the fenced block being read.
    code: Option<(String, String)>,
    /// Marker of the list item whose first line is pending.
    item_prefix: Option<String>,
    blocks: Vec<CodeBlock>,
    /// The table being read: its rows of cells (the first row is the header).
    table: Option<Vec<Vec<Vec<Seg>>>>,
}

impl Renderer {
    fn style(&self) -> Style {
        self.styles.last().copied().unwrap_or_default()
    }

    fn push_style(&mut self, f: impl FnOnce(Style) -> Style) {
        let s = f(self.style());
        self.styles.push(s);
    }

    fn indent(&self) -> String {
        let mut s = "▎ ".repeat(self.quote);
        s.push_str(&"  ".repeat(self.lists.len().saturating_sub(1)));
        s
    }

    fn flush(&mut self) {
        if self.cur.is_empty() && self.item_prefix.is_none() {
            return;
        }
        let indent = self.indent();
        let dim = Style::default().add_modifier(Modifier::DIM);
        let (first, rest) = match self.item_prefix.take() {
            Some(marker) => {
                let pad = " ".repeat(unicode_width::UnicodeWidthStr::width(marker.as_str()));
                (
                    vec![
                        (indent.clone(), dim),
                        (marker, Style::default().fg(Color::Cyan)),
                    ],
                    vec![(format!("{indent}{pad}"), dim)],
                )
            }
            None => (vec![(indent.clone(), dim)], vec![(indent, dim)]),
        };
        let segs = std::mem::take(&mut self.cur);
        self.out.extend(wrap(&segs, self.width, &first, &rest));
    }

    fn blank(&mut self) {
        if self.out.last().is_some_and(|l| l.width() > 0) {
            self.out.push(Line::default());
        }
    }

    fn text(&mut self, t: &str) {
        if let Some((_, buf)) = &mut self.code {
            buf.push_str(t);
            return;
        }
        let s = self.style();
        self.cur.push((t.to_string(), s));
    }

    fn event(&mut self, ev: Md<'_>) {
        match ev {
            Md::Start(tag) => self.start(tag),
            Md::End(tag) => self.end(tag),
            Md::Text(t) => self.text(&t),
            Md::Code(t) => self
                .cur
                .push((t.to_string(), self.style().fg(Color::Yellow))),
            Md::SoftBreak => self.text(" "),
            Md::HardBreak => self.flush(),
            Md::Rule => {
                self.flush();
                self.out.push(Line::styled(
                    "─".repeat(self.width.min(40)),
                    Style::default().add_modifier(Modifier::DIM),
                ));
                self.blank();
            }
            Md::Html(t) | Md::InlineHtml(t) => self.text(&t),
            Md::TaskListMarker(done) => self.text(if done { "[x] " } else { "[ ] " }),
            Md::FootnoteReference(t) => self.text(&format!("[{t}]")),
            _ => {}
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => {
                self.flush();
                self.styles.push(heading_style(level));
            }
            Tag::Paragraph => self.flush(),
            Tag::BlockQuote(_) => {
                self.flush();
                self.quote += 1;
                self.push_style(|s| s.add_modifier(Modifier::ITALIC));
            }
            Tag::CodeBlock(kind) => {
                self.flush();
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => l.split(',').next().unwrap_or("").to_string(),
                    CodeBlockKind::Indented => String::new(),
                };
                self.code = Some((lang, String::new()));
            }
            Tag::List(start) => {
                self.flush();
                self.lists.push(start);
            }
            Tag::Item => {
                self.flush();
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let m = format!("{n}. ");
                        *n += 1;
                        m
                    }
                    _ => "• ".to_string(),
                };
                self.item_prefix = Some(marker);
            }
            Tag::Emphasis => self.push_style(|s| s.add_modifier(Modifier::ITALIC)),
            Tag::Strong => self.push_style(|s| s.add_modifier(Modifier::BOLD)),
            Tag::Strikethrough => self.push_style(|s| s.add_modifier(Modifier::CROSSED_OUT)),
            Tag::Link { .. } => {
                self.push_style(|s| s.fg(Color::Blue).add_modifier(Modifier::UNDERLINED))
            }
            Tag::Table(_) => {
                self.flush();
                self.table = Some(Vec::new());
            }
            Tag::TableHead => {
                self.push_style(|s| s.add_modifier(Modifier::BOLD));
                self.table.get_or_insert_with(Vec::new).push(Vec::new());
            }
            Tag::TableRow => self.table.get_or_insert_with(Vec::new).push(Vec::new()),
            Tag::TableCell => self.cur.clear(),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                self.flush();
                self.styles.pop();
                self.blank();
            }
            TagEnd::Paragraph => {
                self.flush();
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            TagEnd::BlockQuote(_) => {
                self.flush();
                self.quote = self.quote.saturating_sub(1);
                self.styles.pop();
                self.blank();
            }
            TagEnd::CodeBlock => {
                if let Some((lang, text)) = self.code.take() {
                    let indent = self.indent();
                    let start = self.out.len();
                    self.out
                        .extend(code_block(&text, &lang, self.width, &indent));
                    self.blocks.push(CodeBlock {
                        code: text.trim_end_matches('\n').to_string(),
                        lang,
                        rows: start..self.out.len(),
                    });
                }
                self.blank();
            }
            TagEnd::List(_) => {
                self.flush();
                self.lists.pop();
                if self.lists.is_empty() {
                    self.blank();
                }
            }
            TagEnd::Item => self.flush(),
            TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => {
                self.styles.pop();
            }
            TagEnd::Link => {
                self.styles.pop();
            }
            TagEnd::TableCell => {
                let cell = std::mem::take(&mut self.cur);
                if let Some(row) = self.table.as_mut().and_then(|t| t.last_mut()) {
                    row.push(cell);
                }
            }
            TagEnd::TableHead => {
                self.styles.pop();
            }
            TagEnd::Table => {
                let rows = self.table.take().unwrap_or_default();
                let indent = self.indent();
                self.out.extend(table(&rows, self.width, &indent));
                self.blank();
            }
            _ => {}
        }
    }
}

/// A table in aligned columns, a rule under the header. Too wide for the screen, each row is
/// its cells joined by `│` and word-wrapped instead (columns can't line up then anyway).
fn table(rows: &[Vec<Vec<Seg>>], width: usize, indent: &str) -> Vec<Line<'static>> {
    use unicode_width::UnicodeWidthStr;
    let dim = Style::default().add_modifier(Modifier::DIM);
    let cell_w = |c: &Vec<Seg>| c.iter().map(|(t, _)| t.width()).sum::<usize>();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell_w(c));
        }
    }
    let total = indent.width() + widths.iter().sum::<usize>() + 3 * cols.saturating_sub(1);
    let sep = || (" │ ".to_string(), dim);
    let mut out = Vec::new();
    if total <= width {
        for (r, row) in rows.iter().enumerate() {
            let mut segs: Vec<Seg> = vec![(indent.to_string(), dim)];
            for (i, w) in widths.iter().enumerate() {
                if i > 0 {
                    segs.push(sep());
                }
                let cell = row.get(i).cloned().unwrap_or_default();
                let pad = w - cell_w(&cell);
                segs.extend(cell);
                if pad > 0 && i + 1 < cols {
                    segs.push((" ".repeat(pad), Style::default()));
                }
            }
            out.push(Line::from(
                segs.into_iter()
                    .map(|(t, s)| ratatui::text::Span::styled(t, s))
                    .collect::<Vec<_>>(),
            ));
            if r == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
                out.push(Line::styled(format!("{indent}{}", rule.join("─┼─")), dim));
            }
        }
        return out;
    }
    let pad = vec![(indent.to_string(), dim)];
    for row in rows {
        let mut segs: Vec<Seg> = Vec::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                segs.push(sep());
            }
            segs.extend(c.iter().cloned());
        }
        out.extend(wrap(&segs, width, &pad, &pad));
    }
    out
}

/// A fenced block: a dim gutter with the language on the first row, highlighted code.
pub fn code_block(text: &str, lang: &str, width: usize, indent: &str) -> Vec<Line<'static>> {
    let dim = Style::default().add_modifier(Modifier::DIM);
    let mut out = Vec::new();
    if !lang.is_empty() {
        out.push(Line::styled(format!("{indent}╭ {lang}"), dim));
    }
    let gutter = vec![(format!("{indent}│ "), dim)];
    // A long line breaks between words where it can (a word longer than the row is split);
    // its indentation stays. Copying takes the code itself, never these rows.
    for segs in highlight::highlight(text.trim_end_matches('\n'), lang).iter() {
        out.extend(wrap(segs, width, &gutter, &gutter));
    }
    out
}

/// Each heading level looks different: H1 bold, underlined, cyan; H2 bold cyan; H3 bold;
/// deeper ones bold italic.
fn heading_style(level: HeadingLevel) -> Style {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    match level {
        HeadingLevel::H1 => bold.add_modifier(Modifier::UNDERLINED).fg(Color::Cyan),
        HeadingLevel::H2 => bold.fg(Color::Cyan),
        HeadingLevel::H3 => bold,
        _ => bold.add_modifier(Modifier::ITALIC),
    }
}

#[cfg(test)]
mod tests {
    use super::super::wrap::line_text;
    use super::*;

    fn plain(md: &str, w: usize) -> Vec<String> {
        render_blocks(md, w).0.iter().map(line_text).collect()
    }

    #[test]
    fn tables_line_up_in_columns_and_fall_back_to_rows_when_too_wide() {
        let md = "| name | size |\n|---|---|\n| a | 1 |\n| longer name | 12345 |\n";
        assert_eq!(
            plain(md, 40),
            vec![
                "name        │ size",
                "────────────┼──────",
                "a           │ 1",
                "longer name │ 12345",
            ]
        );
        let narrow = plain(md, 12);
        assert!(narrow.iter().all(|l| l.chars().count() <= 12), "{narrow:?}");
        assert!(narrow.iter().any(|l| l.contains("longer")), "{narrow:?}");
    }

    #[test]
    fn long_code_lines_wrap_between_words_and_keep_their_indentation() {
        let md = "```\n    let total = first_value + second_value + third_value;\n```\n";
        let rows = plain(md, 30);
        assert_eq!(
            rows,
            vec![
                "│     let total = first_value",
                "│ + second_value +",
                "│ third_value;",
            ]
        );
    }

    #[test]
    fn each_heading_level_looks_different() {
        let (lines, _) = render_blocks("# One\n\n## Two\n\n### Three\n\n#### Four\n", 40);
        let style_of = |text: &str| {
            lines
                .iter()
                .find(|l| line_text(l) == text)
                .and_then(|l| l.spans.iter().find(|s| !s.content.trim().is_empty()))
                .map(|s| s.style)
                .unwrap_or_else(|| panic!("{text} missing: {lines:?}"))
        };
        let styles = ["One", "Two", "Three", "Four"].map(style_of);
        for (i, a) in styles.iter().enumerate() {
            assert!(a.add_modifier.contains(Modifier::BOLD));
            for b in &styles[i + 1..] {
                assert_ne!(a, b, "two heading levels look the same");
            }
        }
    }

    #[test]
    fn headings_lists_code_and_inline_markup_lose_their_markers() {
        let md = "# Title\n\nSome *em* and `code` [link](http://x).\n\n- one\n- two\n\n1. first\n2. second\n\n```rust\nfn main() {}\n```\n";
        assert_eq!(
            plain(md, 40),
            vec![
                "Title",
                "",
                "Some em and code link.",
                "",
                "• one",
                "• two",
                "",
                "1. first",
                "2. second",
                "",
                "╭ rust",
                "│ fn main() {}",
            ]
        );
    }

    #[test]
    fn list_items_wrap_under_their_text() {
        assert_eq!(plain("- aaa bbb ccc", 8), vec!["• aaa", "  bbb", "  ccc"]);
    }
}
