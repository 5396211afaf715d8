//! Word wrapping of styled text into ratatui lines, measured in terminal cells.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// A run of text in one style.
pub type Seg = (String, Style);

/// Wraps one logical line to `width` cells. `first` prefixes the first row, `rest` the
/// continuation rows (a gutter or an indent); both count against the width.
pub fn wrap(segs: &[Seg], width: usize, first: &[Seg], rest: &[Seg]) -> Vec<Line<'static>> {
    let prefix_w = |p: &[Seg]| p.iter().map(|(t, _)| t.width()).sum::<usize>();
    let mut rows: Vec<Line<'static>> = Vec::new();
    let mut cur: Vec<Span<'static>> = first
        .iter()
        .map(|(t, s)| Span::styled(t.clone(), *s))
        .collect();
    let mut avail = width.saturating_sub(prefix_w(first)).max(1);
    let rest_avail = width.saturating_sub(prefix_w(rest)).max(1);
    let mut used = 0usize;
    let mut row_has_text = false;
    let new_row = |rows: &mut Vec<Line<'static>>, cur: &mut Vec<Span<'static>>| {
        // The break point's spaces don't belong to either row.
        if let Some(last) = cur.last_mut() {
            let trimmed = last.content.trim_end().len();
            if trimmed > 0 {
                last.content.to_mut().truncate(trimmed);
            }
        }
        rows.push(Line::from(std::mem::take(cur)));
        *cur = rest
            .iter()
            .map(|(t, s)| Span::styled(t.clone(), *s))
            .collect();
    };
    for (text, style) in segs {
        for token in tokens(text) {
            let w = token.width();
            let blank = token.chars().all(char::is_whitespace);
            if used + w <= avail {
                push(&mut cur, token, *style);
                used += w;
                row_has_text |= !blank;
                continue;
            }
            if blank {
                // A break eats the spaces at the wrap point.
                if row_has_text {
                    new_row(&mut rows, &mut cur);
                    avail = rest_avail;
                    used = 0;
                    row_has_text = false;
                }
                continue;
            }
            if w <= rest_avail && row_has_text {
                new_row(&mut rows, &mut cur);
                avail = rest_avail;
                push(&mut cur, token, *style);
                used = w;
                row_has_text = true;
                continue;
            }
            // Longer than a row: split by characters.
            for ch in token.chars() {
                let cw = ch.width().unwrap_or(0);
                if used + cw > avail && used > 0 {
                    new_row(&mut rows, &mut cur);
                    avail = rest_avail;
                    used = 0;
                }
                push(&mut cur, &ch.to_string(), *style);
                used += cw;
                row_has_text = true;
            }
        }
    }
    rows.push(Line::from(cur));
    rows
}

/// Hard-wraps plain text (tool output, code): no word breaking, whitespace kept.
pub fn hard_wrap(text: &str, style: Style, width: usize, gutter: &[Seg]) -> Vec<Line<'static>> {
    hard_wrap_segs(&[(text.to_string(), style)], width, gutter)
}

/// [`hard_wrap`] of styled runs (highlighted code).
pub fn hard_wrap_segs(segs: &[Seg], width: usize, gutter: &[Seg]) -> Vec<Line<'static>> {
    let gw: usize = gutter.iter().map(|(t, _)| t.width()).sum();
    let avail = width.saturating_sub(gw).max(1);
    let start = || -> Vec<Span<'static>> {
        gutter
            .iter()
            .map(|(t, st)| Span::styled(t.clone(), *st))
            .collect()
    };
    let mut rows = Vec::new();
    let mut cur = start();
    let mut used = 0;
    let mut has_text = false;
    for (text, style) in segs {
        for ch in text.chars() {
            let ch = if ch == '\t' { ' ' } else { ch };
            if ch.is_control() {
                continue;
            }
            let cw = ch.width().unwrap_or(0);
            if used + cw > avail {
                rows.push(Line::from(std::mem::replace(&mut cur, start())));
                used = 0;
                has_text = false;
            }
            // Runs merge, but never into the gutter (the view restyles the gutter alone).
            match cur.last_mut() {
                Some(last) if has_text && last.style == *style => last.content.to_mut().push(ch),
                _ => cur.push(Span::styled(ch.to_string(), *style)),
            }
            used += cw;
            has_text = true;
        }
    }
    if !has_text {
        // An empty line still carries its style (as the single-style version always did).
        cur.push(Span::styled(
            String::new(),
            segs.first().map(|s| s.1).unwrap_or_default(),
        ));
    }
    rows.push(Line::from(cur));
    rows
}

fn push(cur: &mut Vec<Span<'static>>, text: &str, style: Style) {
    if let Some(last) = cur.last_mut()
        && last.style == style
    {
        last.content.to_mut().push_str(text);
        return;
    }
    cur.push(Span::styled(text.to_string(), style));
}

/// Words and whitespace runs, in order.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let ws = first.is_whitespace();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() != ws)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let (tok, tail) = rest.split_at(end);
        rest = tail;
        Some(tok)
    })
}

/// Plain text of a line (for search and copy).
pub fn line_text(line: &Line<'_>) -> String {
    line.spans.iter().map(|s| s.content.as_ref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(line_text).collect()
    }

    #[test]
    fn wraps_at_word_boundaries_with_prefixes() {
        let segs = vec![("hello brave new world".to_string(), Style::default())];
        let first = vec![("> ".to_string(), Style::default())];
        let rest = vec![("  ".to_string(), Style::default())];
        assert_eq!(
            texts(&wrap(&segs, 12, &first, &rest)),
            vec!["> hello", "  brave new", "  world"]
        );
    }

    #[test]
    fn splits_words_longer_than_a_row() {
        let segs = vec![("abcdefghij".to_string(), Style::default())];
        assert_eq!(texts(&wrap(&segs, 4, &[], &[])), vec!["abcd", "efgh", "ij"]);
    }

    #[test]
    fn hard_wrap_keeps_spaces_and_counts_wide_chars() {
        let rows = hard_wrap("a  b日本", Style::default(), 5, &[]);
        assert_eq!(texts(&rows), vec!["a  b", "日本"]);
    }
}
