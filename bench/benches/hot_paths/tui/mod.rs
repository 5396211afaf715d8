//! The client crate's markdown layout, code highlighting and word wrap (see main.rs).

#[path = "../../../../crates/tui/src/screen/highlight.rs"]
pub mod highlight;
#[path = "../../../../crates/tui/src/screen/markdown.rs"]
pub mod markdown;
#[path = "../../../../crates/tui/src/screen/wrap.rs"]
pub mod wrap;
